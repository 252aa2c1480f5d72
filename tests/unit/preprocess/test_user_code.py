"""Script mode for feature code (extract / build_transformer) and a scikit-learn-free serving start."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from local_test.docker_run import OptMl
from local_test.orders import make_orders
from preprocess_container.handler import PreprocessHandler
from preprocess_container.train import HYPERPARAMETERS, train
from serving_common.errors import BadRequest
from serving_common.features.features import FEATURES_FILE, TABLES_FILE, FeatureError, FittedFeatures
from serving_common.features.requests import Rows
from serving_common.features.spec import FeatureSpec, infer_spec
from serving_common.features.user_code import CODE_PATH, FeatureCode, FeatureCodeError, find_training_code
from serving_common.handler import RequestContext
from serving_common.training.environment import TrainingEnvironment
from serving_common.training.harness import TrainingError, TrainingJob
from serving_common.training.hyperparameters import parse

ROOT = Path(__file__).resolve().parents[3]

EXTRACT = textwrap.dedent('''
    """Derived fields: what a researcher would write."""


    def extract(record):
        order = dict(record)
        amount, items = order.get("amount"), order.get("items")
        order["amount_per_item"] = None if amount is None or not items else amount / items
        return order
''')

CUSTOM = textwrap.dedent('''
    import numpy as np


    def log_amount(x):
        return np.log1p(x.astype(float))


    def build_transformer(spec):
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, OneHotEncoder

        log = FunctionTransformer(log_amount, feature_names_out="one-to-one")
        return ColumnTransformer(
            [
                ("amount", make_pipeline(SimpleImputer(strategy="median"), log), spec.column_indices(["amount"])),
                ("rest", make_pipeline(SimpleImputer(), MinMaxScaler()), spec.column_indices(["items", "hour"])),
                ("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value="none"),
                                      OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
                 spec.categorical_indices),
            ],
            verbose_feature_names_out=False,
        )
''')

BY_NAME = textwrap.dedent('''
    def build_transformer(spec):
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer

        return ColumnTransformer([("num", SimpleImputer(), ["amount"])])
''')

ORDERS = make_orders(400, seed=21)
PROBE = [*make_orders(30, seed=22), {"hour": 3}, {"amount": 10.0, "items": 0}, {"amount": None, "items": 3}]


def _module(tmp_path: Path, text: str, name: str = "my_features.py") -> Path:
    path = tmp_path / "src" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _spec(records) -> FeatureSpec:
    return infer_spec(records, label="default", drop=["order_id"])


def _per_item(order):
    return None if order.get("amount") is None or not order.get("items") else order["amount"] / order["items"]


# -- extract and build_transformer, in process ------------------------------------------------------


def test_extract_is_applied_at_training_and_serving(tmp_path):
    code = FeatureCode(_module(tmp_path, EXTRACT))
    assert code.functions == ("extract",) and code.original_name == "my_features.py"
    records = code.extract_records(ORDERS)
    spec = _spec(records)
    assert "amount_per_item" in spec.numeric
    fitted = FittedFeatures.fit(records, spec, code=code, extracted=True)
    assert fitted.fast_path and fitted.extracts
    fitted.save(tmp_path / "model")
    assert (tmp_path / "model" / CODE_PATH).read_text() == EXTRACT
    meta = json.loads((tmp_path / "model" / FEATURES_FILE).read_text())
    assert meta["code"]["original_name"] == "my_features.py" and meta["code"]["functions"] == ["extract"]
    assert CODE_PATH in meta["files"]

    loaded = FittedFeatures.load(tmp_path / "model")
    assert loaded.fast_path and loaded.extracts and loaded.fingerprint == fitted.fingerprint
    served = loaded.transform_records(PROBE)  # raw records: extract runs inside
    np.testing.assert_array_equal(served, fitted.transform_records(PROBE))
    np.testing.assert_array_equal(served, loaded.transform_records_sklearn(PROBE))
    # the derived column is exactly the scaled amount / items of each record
    column = loaded.output_columns.index("amount_per_item")
    scaler = fitted.transformer.named_transformers_["numeric"].named_steps["scale"]
    median = fitted.transformer.named_transformers_["numeric"].named_steps["impute"].statistics_
    k = spec.numeric.index("amount_per_item")
    for order, value in zip(PROBE, served[:, column], strict=True):
        raw = _per_item(order)
        expected = ((median[k] if raw is None else raw) - scaler.mean_[k]) / scaler.scale_[k]
        assert value == expected


def test_fit_extracts_raw_records_itself(tmp_path):
    code = FeatureCode(_module(tmp_path, EXTRACT))
    records = code.extract_records(ORDERS)
    spec = _spec(records)
    once = FittedFeatures.fit(records, spec, code=code, extracted=True)
    raw = FittedFeatures.fit(ORDERS, spec, code=code)  # extract applied by fit
    assert once.fingerprint == raw.fingerprint


def test_custom_transformer_falls_back_to_sklearn_with_the_same_numbers(tmp_path, caplog):
    code = FeatureCode(_module(tmp_path, EXTRACT + CUSTOM))
    assert code.functions == ("extract", "build_transformer")
    records = code.extract_records(ORDERS)
    spec = _spec(records)
    with caplog.at_level(logging.WARNING, logger="preprocess"):
        fitted = FittedFeatures.fit(records, spec, code=code, extracted=True)
    assert not fitted.fast_path
    assert "fast path not available for FunctionTransformer; using scikit-learn transform" in caplog.text
    assert fitted.output_columns[:3] == ["amount", "items", "hour"]
    fitted.save(tmp_path / "model")
    assert not (tmp_path / "model" / TABLES_FILE).exists()
    caplog.clear()
    loaded = FittedFeatures.load(tmp_path / "model")
    assert not loaded.fast_path and "using scikit-learn transform" in caplog.text
    served = loaded.transform_records(PROBE)
    np.testing.assert_array_equal(served, fitted.transform_records(PROBE))
    expected_amount = [np.log1p(o["amount"]) for o in PROBE[:30]]
    assert served[:30, 0].tolist() == expected_amount


def test_pickled_objects_of_the_feature_code_load_in_a_fresh_process(tmp_path):
    """The transformer references log_amount of the feature code: serving imports code/features.py under
    the module name used at training, so joblib finds it."""
    code = FeatureCode(_module(tmp_path, CUSTOM, "custom.py"))
    spec = _spec(ORDERS)
    FittedFeatures.fit(ORDERS, spec, code=code).save(tmp_path / "model")
    expected = FittedFeatures.load(tmp_path / "model").transform_records(PROBE[:5])
    result = _python(f"""
        import json, sys
        from serving_common.features.features import FittedFeatures
        model = FittedFeatures.load({str(tmp_path / "model")!r})
        print(json.dumps(model.transform_records(json.loads(sys.stdin.read())).tolist()))
    """, stdin=json.dumps(PROBE[:5]))
    assert np.array_equal(np.array(json.loads(result)), expected)


def test_fingerprint_covers_the_feature_code(tmp_path):
    spec = FeatureSpec(numeric=["amount", "items"], categorical=[])
    identity = "def extract(record):\n    return record\n"
    plain = FittedFeatures.fit(ORDERS, spec)
    a = FittedFeatures.fit(ORDERS, spec, code=FeatureCode(_module(tmp_path, identity, "a.py")))
    b = FittedFeatures.fit(ORDERS, spec, code=FeatureCode(_module(tmp_path, identity + "# v2\n", "b.py")))
    assert np.array_equal(plain.transform_records(ORDERS), a.transform_records(ORDERS))
    assert len({plain.fingerprint, a.fingerprint, b.fingerprint}) == 3


def test_changed_feature_code_is_refused_at_load(tmp_path):
    code = FeatureCode(_module(tmp_path, EXTRACT))
    FittedFeatures.fit(ORDERS, _spec(code.extract_records(ORDERS)), code=code).save(tmp_path / "model")
    (tmp_path / "model" / CODE_PATH).write_text(EXTRACT.replace("amount / items", "amount * items"))
    with pytest.raises(ValueError, match=r"code/features\.py does not match .*sha256 differs"):
        FittedFeatures.load(tmp_path / "model")
    (tmp_path / "model" / CODE_PATH).unlink()
    with pytest.raises(FileNotFoundError, match=r"code/features\.py not found"):
        FittedFeatures.load(tmp_path / "model")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("def extract(record):\n    return record if record['items'] else record['amount']\n",
         "record 1: extract() in f.py returned float, expected a dict"),
        ("def extract(record):\n    return {**record, 'x': 1 / record['items']}\n",
         "record 1: extract() in f.py failed: ZeroDivisionError: division by zero"),
    ],
)
def test_extract_errors_name_the_record(tmp_path, body, message):
    code = FeatureCode(_module(tmp_path, body, "f.py"))
    with pytest.raises(FeatureError, match=re.escape(message)):
        code.extract_records([{"amount": 1.0, "items": 1}, {"amount": 1.0, "items": 0}])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("x = 1\n", "defines neither extract"),
        ("import helpers_next_to_it\n", "ModuleNotFoundError.*self-contained module"),
        ("raise RuntimeError('boom')\n", "importing the feature code f.py failed: RuntimeError: boom"),
    ],
)
def test_unusable_modules(tmp_path, body, message):
    with pytest.raises(FeatureCodeError, match=message):
        FeatureCode(_module(tmp_path, body, "f.py"))


def test_columns_selected_by_name_get_a_clear_error(tmp_path):
    code = FeatureCode(_module(tmp_path, BY_NAME, "by_name.py"))
    with pytest.raises(FeatureError, match=r"selects columns by name.*spec\.column_indices"):
        FittedFeatures.fit(ORDERS, FeatureSpec(numeric=["amount"], categorical=[]), code=code)


# -- the serving handler ----------------------------------------------------------------------------


def _context() -> RequestContext:
    return RequestContext("r", "application/json", "application/json")


def test_handler_serves_extracted_features_and_refuses_csv_rows(tmp_path, monkeypatch):
    code = FeatureCode(_module(tmp_path, EXTRACT))
    records = code.extract_records(ORDERS)
    fitted = FittedFeatures.fit(records, _spec(records), code=code, extracted=True)
    fitted.save(tmp_path / "model")
    handler = PreprocessHandler()
    model = handler.load(tmp_path / "model")
    np.testing.assert_array_equal(handler.predict(model, PROBE, _context()), fitted.transform_records(PROBE))
    with pytest.raises(BadRequest, match=r"feature code \(my_features\.py\) extracts fields.*not CSV rows"):
        handler.predict(model, Rows([["1"] * len(model.input_columns)]), _context())
    with pytest.raises(BadRequest, match="record 1: extract"):
        handler.predict(model, [ORDERS[0], {"amount": "x", "items": 2}], _context())
    monkeypatch.setenv("SMKIT_OUTPUT_LABEL", "true")
    labelled = PreprocessHandler()
    matrix = labelled.predict(labelled.load(tmp_path / "model"), ORDERS[:10], _context())
    assert matrix[:, 0].tolist() == [o["default"] for o in ORDERS[:10]]
    np.testing.assert_array_equal(matrix[:, 1:], fitted.transform_records(ORDERS[:10]))


# -- serving start without scikit-learn -------------------------------------------------------------


def _python(script: str, stdin: str = "") -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "containers" / "preprocess"), str(ROOT)])}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], input=stdin, capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("with_code", [False, True], ids=["built-in", "extract"])
def test_serving_loads_and_transforms_without_sklearn(tmp_path, with_code):
    code = FeatureCode(_module(tmp_path, EXTRACT)) if with_code else None
    records = code.extract_records(ORDERS) if code else ORDERS
    fitted = FittedFeatures.fit(records, _spec(records), code=code, extracted=True)
    fitted.save(tmp_path / "model")
    expected = fitted.transform_records(PROBE)
    out = _python(f"""
        import json, sys
        from pathlib import Path
        import preprocess_container.handler as h
        handler = h.PreprocessHandler()
        model = handler.load(Path({str(tmp_path / "model")!r}))
        rows = model.transform_records(json.loads(sys.stdin.read()))
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("sklearn", "scipy", "joblib", "pandas"))
        print(json.dumps({{"fast": model.fast_path, "heavy": heavy, "rows": rows.tolist()}}))
    """, stdin=json.dumps(PROBE))
    result = json.loads(out)
    assert result["fast"] is True
    assert result["heavy"] == []  # sklearn, scipy, joblib, pandas: none imported
    assert np.array_equal(np.array(result["rows"]), expected)


# -- training: finding the feature code --------------------------------------------------------------


def _job(tmp_path: Path, hyperparameters: dict, code_files: dict[str, str] | None = None) -> TrainingJob:
    opt_ml = OptMl(tmp_path / "opt_ml", {"label": "default", "drop": "order_id", **hyperparameters},
                   {"train": {"ContentType": "application/jsonlines"}})
    opt_ml.write_config()
    train_dir = opt_ml.channel_dir("train")
    (train_dir / "orders.jsonl").write_text("\n".join(json.dumps(o) for o in ORDERS) + "\n")
    if code_files is not None:
        for name, text in code_files.items():
            (opt_ml.channel_dir("code") / name).write_text(text)
    env = TrainingEnvironment.load(opt_ml.root)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    return TrainingJob(env, parse(HYPERPARAMETERS, env.hyperparameters), model_dir)


def test_train_with_a_code_channel(tmp_path):
    job = _job(tmp_path, {}, {"derive.py": EXTRACT})
    train(job)
    meta = json.loads((job.model_dir / FEATURES_FILE).read_text())
    assert meta["code"]["original_name"] == "derive.py" and meta["fast_path"]
    assert "amount_per_item" in meta["input_columns"]
    model = PreprocessHandler().load(job.model_dir)
    code = FeatureCode(_module(tmp_path, EXTRACT))
    reference = FittedFeatures.fit(code.extract_records(ORDERS), FeatureSpec.from_dict(meta["spec"]), code=code,
                                   extracted=True)
    np.testing.assert_array_equal(model.transform_records(PROBE), reference.transform_records(PROBE))


@pytest.mark.parametrize("url", [False, True], ids=["path", "file-url"])
def test_train_with_sagemaker_program(tmp_path, url):
    source = _module(tmp_path, EXTRACT, "train_features.py")
    submit = f"file://{source.parent}" if url else str(source.parent)
    # The SageMaker SDK JSON-encodes hyperparameter values.
    job = _job(tmp_path, {"sagemaker_program": json.dumps("train_features.py"),
                          "sagemaker_submit_directory": json.dumps(submit)}, {"other.py": "x = 1\n"})
    train(job)
    meta = json.loads((job.model_dir / FEATURES_FILE).read_text())
    assert meta["code"]["original_name"] == "train_features.py"
    assert (job.model_dir / CODE_PATH).read_text() == EXTRACT


def test_find_training_code(tmp_path):
    channel = tmp_path / "code"
    channel.mkdir()
    base = tmp_path / "opt_ml"
    assert find_training_code({}, {}, base) is None
    with pytest.raises(FeatureCodeError, match=r"holds no \.py module"):
        find_training_code({}, {"code": channel}, base)
    (channel / "b.py").write_text("")
    assert find_training_code({}, {"code": channel}, base) == channel / "b.py"
    (channel / "a.py").write_text("")
    with pytest.raises(FeatureCodeError, match=r"several modules \(a\.py, b\.py\)"):
        find_training_code({}, {"code": channel}, base)
    assert find_training_code({"sagemaker_program": '"a.py"'}, {"code": channel}, base) == channel / "a.py"
    (channel / "features.py").write_text("")
    assert find_training_code({}, {"code": channel}, base) == channel / "features.py"
    # local mode with local code: the SDK mounts the source dir at /opt/ml/code
    (base / "code").mkdir(parents=True)
    (base / "code" / "entry.py").write_text("")
    hp = {"sagemaker_program": '"entry.py"', "sagemaker_submit_directory": '"file:///opt/ml/code"'}
    assert find_training_code(hp, {}, base) == base / "code" / "entry.py"
    with pytest.raises(FeatureCodeError, match=r"s3://bucket/src\.tar\.gz.*does not download code.*'code' channel"):
        find_training_code({"sagemaker_program": '"x.py"', "sagemaker_submit_directory": '"s3://bucket/src.tar.gz"'},
                           {}, base)
    assert find_training_code({"sagemaker_program": '"a.py"', "sagemaker_submit_directory": '"s3://b/s.tar.gz"'},
                              {"code": channel}, base) == channel / "a.py"  # the module given as a channel
    with pytest.raises(FeatureCodeError, match=r"'missing\.py' not found"):
        find_training_code({"sagemaker_program": "missing.py"}, {"code": channel}, base)
    with pytest.raises(FeatureCodeError, match=r"expected a \.py file name"):
        find_training_code({"sagemaker_program": "../etc/x.py"}, {}, base)
    with pytest.raises(FeatureCodeError, match=r"'missing\.py' not found in /x, "):
        find_training_code({"sagemaker_program": "missing.py", "sagemaker_submit_directory": "/x"}, {}, base)


def test_sagemaker_program_alone_is_ignored(tmp_path, caplog):
    """The SDK sets sagemaker_program on script-mode jobs: with no code given anywhere, train without."""
    assert find_training_code({"sagemaker_program": '"train.py"'}, {}, tmp_path) is None
    assert "training without feature code" in caplog.text


def test_train_reports_unusable_feature_code(tmp_path):
    job = _job(tmp_path, {}, {"bad.py": "def extract(record):\n    return record['nope']\n"})
    with pytest.raises(FeatureError, match=r"record 0: extract\(\) in bad\.py failed: KeyError"):
        train(job)
    job = _job(tmp_path / "2", {}, {"a.py": "", "b.py": ""})
    with pytest.raises(TrainingError, match="several modules"):
        train(job)
