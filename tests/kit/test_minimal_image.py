"""The contract kit against an image that is not smkit: a minimal stdlib container passes the SageMaker level,
and each deliberately broken variant of it fails exactly the rule it breaks (every other rule it is
checked on passes)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from local_test.docker_run import OptMl, train

from kit.runner import KitRun, build_minimal_image, run_kit

pytestmark = pytest.mark.docker

FEATURES = 3
# Short waits for the variants: a server without a model is watched 5 s, a SIGTERM waited on 5 s.
QUICK = ["--no-model-window", "5", "--stop-timeout", "5"]
SERVE_RULES = {"serve.ping-ready", "serve.ping-no-model", "serve.bind-to-port", "serve.bind-to-port-label",
               "serve.read-only-root", "serve.sigterm", "invocations.payloads", "invocations.accept",
               "invocations.accept-wildcard", "invocations.accept-q-values", "invocations.content-type-parameters",
               "invocations.unsupported-content-type", "invocations.unsupported-accept", "invocations.empty-body",
               "invocations.malformed-body", "invocations.payload-limit", "execution-parameters"}
TRAIN_RULES = {"train.succeeds", "train.model-written", "train.bad-hyperparameters", "train.bad-data",
               "train.missing-channel", "train.failure-file"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("kit")


@pytest.fixture(scope="module")
def train_args(workdir) -> list[str]:
    channel = workdir / "train"
    channel.mkdir()
    rng = random.Random(0)
    rows = [[rng.random() for _ in range(FEATURES)] for _ in range(60)]
    (channel / "part-0.csv").write_text("".join(f"{int(sum(r) > 1.5)},{','.join(map(str, r))}\n" for r in rows))
    return ["--train-channel", f"train={channel}:text/csv", "--hyperparameters", '{"scale": 2}']


@pytest.fixture(scope="module")
def serve_args(workdir) -> list[str]:
    (workdir / "rows.csv").write_text("0.1,0.2,0.3\n0.4,0.5,0.6\n")
    (workdir / "rows.json").write_text('{"instances": [[0.1, 0.2, 0.3]]}')
    return ["--payload", f"{workdir / 'rows.csv'}:text/csv", "--payload", f"{workdir / 'rows.json'}:application/json",
            "--accept", "application/json", "--accept", "text/csv"]


@pytest.fixture(scope="module")
def minimal_model(docker, workdir, train_args) -> Path:
    """A model trained by the (good) minimal image itself, for the serving-only runs of the variants."""
    opt_ml = OptMl(workdir / "opt-ml", {"scale": "2"}, {"train": {"ContentType": "text/csv"}})
    for source in (workdir / "train").iterdir():
        (opt_ml.channel_dir("train") / source.name).write_bytes(source.read_bytes())
    result = train(docker, build_minimal_image(), opt_ml)
    assert result.exit_code == 0, result.logs
    return opt_ml.model_dir


def _assert_only(run: KitRun, failing: set[str], checked: set[str]) -> None:
    """Exactly ``failing`` fails; every other rule of ``checked`` passes."""
    statuses = run.statuses("sagemaker")
    assert run.with_status("sagemaker", "FAIL") == failing, run.output
    assert {rule for rule in checked - failing if statuses[rule] != "PASS"} == set(), run.output
    assert run.exit_code == (1 if failing else 0), run.output


def test_the_minimal_image_passes_the_sagemaker_level(docker, workdir, train_args, serve_args):
    """Trains through the kit, serves the model it trained; smkit conventions fail but do not count."""
    run = run_kit(build_minimal_image(), *train_args, *serve_args, "--level", "smkit", workdir=workdir)
    _assert_only(run, set(), SERVE_RULES | TRAIN_RULES)
    assert run.statuses("sagemaker")["multi-model.api"] == "SKIP"  # no multi-models label
    assert run.report["levels"]["sagemaker"] == {"passed": True, "failed": []}
    # Plain-text errors, no request log, no worker processes, no MODEL LOAD FAILED line: not smkit, still accepted.
    assert {"smkit.error-body", "smkit.request-log", "smkit.unprivileged-workers",
            "smkit.model-load-failed"} <= run.with_status("smkit", "FAIL"), run.output
    assert "smkit conventions" in run.output and "sagemaker: " in run.output


@pytest.mark.parametrize("variant, rule", [
    ("ping-without-model", "serve.ping-no-model"),
    ("500-on-bad-content-type", "invocations.unsupported-content-type"),
    ("500-on-malformed-body", "invocations.malformed-body"),
    ("charset-unsupported", "invocations.content-type-parameters"),
    ("ignores-q-values", "invocations.accept-q-values"),
    ("no-payload-limit", "invocations.payload-limit"),
    ("ignores-bind-to-port", "serve.bind-to-port"),
    ("ignores-sigterm", "serve.sigterm"),
    ("writes-root-fs", "serve.read-only-root"),
    ("no-bind-label", "serve.bind-to-port-label"),
    ("claims-multi-models", "multi-model.api"),
])
def test_a_broken_server_fails_exactly_its_rule(docker, workdir, serve_args, minimal_model, variant, rule):
    run = run_kit(build_minimal_image(variant), "--model-dir", str(minimal_model), *serve_args, *QUICK,
                  workdir=workdir)
    _assert_only(run, {rule}, SERVE_RULES)
    assert {r for r in TRAIN_RULES if run.statuses("sagemaker")[r] == "SKIP"} == TRAIN_RULES
    result = next(r for r in run.report["results"] if r["id"] == rule)
    assert result["detail"] and result["fix"] and result["sagemaker"]
    assert f"FAIL  {rule}" in run.output and f"fix: {result['fix']}" in run.output


@pytest.mark.parametrize("variant, rule", [
    ("no-failure-file", "train.failure-file"),
    ("accepts-any-hyperparameter", "train.bad-hyperparameters"),
    ("trains-without-channels", "train.missing-channel"),
])
def test_a_broken_training_job_fails_exactly_its_rule(docker, workdir, train_args, variant, rule):
    run = run_kit(build_minimal_image(variant), *train_args, workdir=workdir)
    _assert_only(run, {rule}, TRAIN_RULES)
    assert {r for r in SERVE_RULES if run.statuses("sagemaker")[r] == "SKIP"} == SERVE_RULES
