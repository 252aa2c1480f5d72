"""One place for every environment variable: ``serving_common/settings.py`` reads them, docs/contract.md lists them.

Scanned: what runs in an image or a Spark executor (``serving_common``, ``containers``, ``spark``, the
container template). Not scanned: tests, user example scripts (``containers/*/examples``: user code, which
reads what SageMaker gives it), and the host tools, which are no part of an image and read their own
variables (``bench/``, ``local_test/``; ``contract_kit/`` installs on its own, without serving_common).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from serving_common import settings

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("serving_common", "containers", "spark", "templates")
SETTINGS = Path("serving_common/settings.py")
# Uses of os.environ that read no variable: each is (file, the line, why).
ALLOWED = {
    (Path("serving_common/workers.py"), "os.environ[WORKER_INDEX] = str(self.age - 1)"):
        "a write: the model server tells each worker its index (read back by settings.worker_index)",
    (Path("serving_common/training/script_runner.py"), "child_env = child_environment(env, code_dir, os.environ)"):
        "the user's script inherits the whole environment, as under sagemaker-training",
}
ENVIRONMENT_NAMES = {"environ", "environb", "getenv", "getenvb"}
VARIABLE = re.compile(r"^(SAGEMAKER|SMKIT|SM|AWS|TRAINING)_[A-Z0-9_]+$")
DOCS = ROOT / "docs" / "contract.md"


def _scanned_files() -> list[Path]:
    files = []
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            relative = path.relative_to(ROOT)
            parts = relative.parts
            if "tests" in parts or "examples" in parts or path.name == "conftest.py" or relative == SETTINGS:
                continue
            files.append(relative)
    return files


def environment_reads(relative: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, source line) of each ``os.environ`` / ``os.getenv`` (or ``from os import environ``) in a file."""
    text = (root / relative).read_text().replace("{{name}}", "name")  # template files hold the placeholder
    lines = text.splitlines()
    found = []
    for node in ast.walk(ast.parse(text, str(relative))):
        if isinstance(node, ast.Attribute) and node.attr in ENVIRONMENT_NAMES:
            found.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module in ("os", "posix"):
            found += [node.lineno for alias in node.names if alias.name in ENVIRONMENT_NAMES]
    return [(line, lines[line - 1].strip()) for line in sorted(set(found))]


def test_no_module_but_settings_reads_the_environment():
    files = _scanned_files()
    assert Path("serving_common/training/user_code.py") in files and len(files) > 50  # the scan sees the tree
    reads = [f"{path}:{line}: {source}" for path in files for line, source in environment_reads(path)
             if (path, source) not in ALLOWED]
    assert not reads, ("read the variable in serving_common/settings.py (Settings, TrainingSettings) and pass "
                       "the parsed value on:\n" + "\n".join(reads))


def test_the_scan_finds_each_way_of_reading_the_environment(tmp_path):
    """The check above would catch a read (it finds the allowed ones, and the settings module's own)."""
    assert {source for path in {path for path, _ in ALLOWED} for _, source in environment_reads(path)} >= {
        source for _, source in ALLOWED}
    assert any("os.environ if env is None else env" in source for _, source in environment_reads(SETTINGS))
    probe = tmp_path / "probe.py"
    probe.write_text("import os\nfrom os import getenv\nA = os.environ.get('X')\nB = os.getenv('Y')\n")
    assert [line for line, _ in environment_reads(Path("probe.py"), tmp_path)] == [2, 3, 4]


def declared_variables() -> set[str]:
    """Every variable name ``serving_common.settings`` declares (its upper-case string constants)."""
    return {value for name, value in vars(settings).items()
            if name.isupper() and isinstance(value, str) and VARIABLE.match(value)}


def documented_variables() -> set[str]:
    """The variable names in the first column of docs/contract.md's "Environment variables" table."""
    section = DOCS.read_text().split("## Environment variables", 1)[1].split("\n## ", 1)[0]
    names = set()
    for row in section.splitlines():
        if row.startswith("| `"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split(" | ")[0]))
    return names


def test_every_declared_variable_is_in_the_docs_table_and_no_other():
    declared = declared_variables()
    assert {"SAGEMAKER_BIND_TO_PORT", "SMKIT_OUTPUT_LABEL", "SMKIT_COLLECTIVE_TIMEOUT_S", "AWS_REGION"} <= declared
    documented = documented_variables()
    assert not declared - documented, f"add to the table in {DOCS.name}: {sorted(declared - documented)}"
    assert not documented - declared, f"the table in {DOCS.name} lists variables nothing reads: " \
                                      f"{sorted(documented - declared)}"


# A valid value other than the default of every declared variable.
VALUES = {
    "SAGEMAKER_BIND_TO_PORT": "9001", "SAGEMAKER_SAFE_PORT_RANGE": "29000-29999",
    "SAGEMAKER_MODEL_SERVER_WORKERS": "7", "SAGEMAKER_MODEL_SERVER_TIMEOUT": "120",
    "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "20",
    "SAGEMAKER_PROGRAM": "serve.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/code", "SAGEMAKER_BATCH": "true",
    "SAGEMAKER_BATCH_STRATEGY": "SINGLE_RECORD", "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "4",
    "SAGEMAKER_MULTI_MODEL": "true", "SM_MODEL_DIR": "/model", "SMKIT_LOG_LEVEL": "debug",
    "SMKIT_WORKER_USER": "model", "SMKIT_ACCESS_LOG": "true", "SMKIT_WORKER_INDEX": "2",
    "SMKIT_INLINE_PREDICTIONS": "false", "SMKIT_MME_MEMORY_BUDGET_MB": "512", "SMKIT_MAX_MISSING_FIELDS": "2",
    "SMKIT_UNKNOWN_FIELDS": "error", "SMKIT_MODELS_ROOT": "/models", "SMKIT_OUTPUT_LABEL": "true",
    "SMKIT_RECORD_ERRORS": "line", "SMKIT_PIPELINE_STAGES": "b=9002", "SMKIT_PIPELINE_TIMEOUT": "30",
    "SMKIT_PIPELINE_WORKERS": "3", "SMKIT_PIPELINE_POOL": "4", "SMKIT_OPT_ML": "/job", "TRAINING_JOB_NAME": "job",
    "SAGEMAKER_TRAINING_MODULE": "module", "AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "us-east-1",
    "SMKIT_PIP_WHEELHOUSE": "/wheels", "SMKIT_PIP_INDEX_URL": "http://mirror/simple",
    "SMKIT_COLLECTIVE_TIMEOUT_S": "20",
}


def _parsed(env: dict[str, str]) -> tuple:
    """Everything the settings module parses out of ``env``."""
    return (settings.Settings.from_env(env),
            settings.PipelineConfig.from_env({"SMKIT_PIPELINE_STAGES": "a=9100", **env}),
            settings.TrainingSettings.from_env(env), settings.training_base_dir(env), settings.worker_index(env))


def test_every_declared_variable_is_parsed():
    assert set(VALUES) == declared_variables()  # a new variable gets a value here
    unread = [name for name, value in VALUES.items() if _parsed({name: value}) == _parsed({})]
    assert not unread, f"declared but never parsed: {unread}"
