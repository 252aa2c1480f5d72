"""Fused models: the fuse command's checks and refusals, and the in-process transform of FusedHandler
against the chained pipeline (the preprocess handler, its CSV, the XGBoost handler) on the same records."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import numpy as np
import pytest

from preprocess_container.handler import PreprocessHandler
from serving_common import encoders
from serving_common.app import build_service
from serving_common.content_types import CSV, JSON, JSONLINES
from serving_common.fuse import FuseError, fuse, main
from serving_common.fused import PREPROCESS_DIR, FusedHandler, FusedModelError
from serving_common.invocations import Request, Service
from serving_common.settings import Settings
from xgboost_container.handler import XGBoostHandler

from .models import LABEL, fit_preprocess, orders, train_model

ROOT = Path(__file__).resolve().parents[3]
TRAIN = orders(400, seed=1)
LIVE = [{key: value for key, value in order.items() if key != LABEL} for order in orders(40, seed=9)]


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    """(preprocess model folder, XGBoost model folder trained on its output)."""
    base = tmp_path_factory.mktemp("pair")
    preprocess = fit_preprocess(base / "preprocess", TRAIN)
    return preprocess, train_model(base / "xgboost", preprocess, TRAIN)


@pytest.fixture(scope="module")
def fused_dir(pair, tmp_path_factory) -> Path:
    archive = tmp_path_factory.mktemp("fused") / "fused.tar.gz"
    fuse(*pair, archive)
    folder = archive.parent / "model"
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    return folder


class RecordingXGBoostHandler(XGBoostHandler):
    """The XGBoost image's handler, keeping the rows it was asked to score."""

    def predict(self, model, data, context):
        self.rows = data
        return super().predict(model, data, context)


def _service(handler_factory, model_dir: Path, **settings) -> Service:
    return build_service(handler_factory, Settings(model_dir=model_dir, **settings), model_dir)


def _invoke(service: Service, body: bytes, content_type: str, accept: str | None = None):
    return service.invoke(Request(body, content_type, accept, "r"))


def test_fuse_writes_the_model_with_its_stage_in_preprocess(pair, fused_dir):
    preprocess, model = pair
    assert sorted(p.name for p in fused_dir.iterdir()) == sorted([*(p.name for p in model.iterdir()), PREPROCESS_DIR])
    for path in preprocess.rglob("*"):
        if path.is_file():
            assert (fused_dir / PREPROCESS_DIR / path.relative_to(preprocess)).read_bytes() == path.read_bytes()


def test_fuse_reads_archives_too(pair, tmp_path):
    archives = []
    for folder in pair:
        archive = tmp_path / f"{folder.name}.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            for entry in folder.iterdir():
                tar.add(entry, arcname=entry.name)
        archives.append(archive)
    assert main([str(archives[0]), str(archives[1]), "-o", str(tmp_path / "out" / "fused.tar.gz")]) == 0
    with tarfile.open(tmp_path / "out" / "fused.tar.gz") as tar:
        assert f"{PREPROCESS_DIR}/features.json" in tar.getnames()


def test_fused_service_scores_as_the_chained_pipeline(pair, fused_dir):
    """Same records: the preprocess handler's CSV into the XGBoost handler (the chained pipeline's hops) vs
    the fused model's one request. Features byte-identical, scores identical, every response type."""
    preprocess, model = pair
    front, back = _service(PreprocessHandler, preprocess), _service(XGBoostHandler, model)
    fused = _service(XGBoostHandler, fused_dir)
    assert isinstance(fused.handler, FusedHandler)
    body = json.dumps(LIVE).encode()
    features_csv = _invoke(front, body, JSON, CSV)
    assert features_csv.status == 200
    # the rows the image's predict receives, encoded as the preprocess image encodes them: the same bytes
    seen = _service(RecordingXGBoostHandler, fused_dir)
    assert _invoke(seen, body, JSON, CSV).status == 200
    assert seen.handler.inner.rows.dtype == np.float64
    assert encoders.encode(seen.handler.inner.rows, CSV) == features_csv.body
    for accept in (CSV, JSON, JSONLINES, "application/x-npy"):
        chained = _invoke(back, features_csv.body, CSV, accept)
        alone = _invoke(fused, body, JSON, accept)
        assert (alone.status, alone.content_type, alone.body) == (chained.status, chained.content_type, chained.body)
    jsonlines = b"".join(json.dumps(order).encode() + b"\n" for order in LIVE)
    assert _invoke(fused, jsonlines, JSONLINES, CSV).body == _invoke(back, features_csv.body, CSV, CSV).body
    assert fused.default_accept == back.default_accept == CSV


@pytest.mark.parametrize(("body", "content_type"), [
    (b'{"amount": "lots"}', JSON),  # a value the transform cannot read
    (b'[{"amount": 1.0}, 5]', JSON),  # a record that is not an object
    (b'{"instances": [{"amount": 1.0}], "extra": 1}', JSON),  # a wrapper with other keys
    (b"[]", JSON),  # no records
    (b'{"amount": {"nested": 1}}', JSON),  # an object where a value is expected
    (b'{"unknown_a": 1, "unknown_b": 2}', JSON),  # no field of the model
    (b"1,2\n", CSV),  # a row of the wrong width
    (b"not json", JSON),  # a body that does not parse
    (b'{"amount": 1e999}', JSON),  # a value out of range
])
def test_bad_records_get_the_chained_pipelines_answer(pair, fused_dir, body, content_type):
    front, fused = _service(PreprocessHandler, pair[0]), _service(XGBoostHandler, fused_dir)
    chained, alone = _invoke(front, body, content_type, CSV), _invoke(fused, body, content_type, CSV)
    assert chained.status == 400
    assert (alone.status, alone.content_type, alone.body) == (chained.status, chained.content_type, chained.body)


def test_content_types_are_the_chained_pipelines(pair, fused_dir):
    fused = _service(XGBoostHandler, fused_dir)
    assert fused.handler.content_types == PreprocessHandler.content_types  # the front of the pipeline reads
    assert fused.handler.accepts == XGBoostHandler.accepts  # the back of the pipeline answers
    assert _invoke(fused, b"1 2:1\n", "text/libsvm").status == 415
    assert _invoke(fused, b'{"amount": 1}', JSON, "text/html").status == 406


def test_a_plain_model_folder_keeps_the_images_handler(pair):
    assert isinstance(_service(XGBoostHandler, pair[1]).handler, XGBoostHandler)


def _other_preprocess(tmp_path: Path) -> Path:
    """A preprocess model on other features (one field dropped): another fingerprint and width."""
    return fit_preprocess(tmp_path / "other", TRAIN, drop=("order_id", "amount"))


def test_fuse_refuses_another_fingerprint(pair, tmp_path, capsys):
    other = _other_preprocess(tmp_path)
    with pytest.raises(FuseError, match=r"fuse refused: .* fingerprint"):
        fuse(other, pair[1], tmp_path / "fused.tar.gz")
    assert main([str(other), str(pair[1]), "-o", str(tmp_path / "fused.tar.gz")]) == 1
    assert "fingerprint" in capsys.readouterr().err
    assert not (tmp_path / "fused.tar.gz").exists()


def test_fuse_refuses_another_width_without_a_fingerprint(pair, tmp_path):
    other, model = _other_preprocess(tmp_path), tmp_path / "model"
    shutil.copytree(pair[1], model)
    meta = json.loads((model / "xgboost-meta.json").read_text())
    (model / "xgboost-meta.json").write_text(json.dumps({**meta, "features_fingerprint": None}))
    with pytest.raises(FuseError, match=r"rows of \d+ features .* answers rows of \d+"):
        fuse(other, model, tmp_path / "fused.tar.gz")


def test_fuse_refuses_a_model_that_records_nothing_to_check(pair, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(pair[1], model)
    (model / "xgboost-meta.json").unlink()
    with pytest.raises(FuseError, match="neither the width nor the features fingerprint"):
        fuse(pair[0], model, tmp_path / "fused.tar.gz")


def _without_fast_path(preprocess: Path, target: Path) -> Path:
    shutil.copytree(preprocess, target)
    meta = json.loads((target / "features.json").read_text())
    meta.pop("fast_transform")
    meta["files"].pop("fast_transform.npz")
    (target / "fast_transform.npz").unlink()
    (target / "features.json").write_text(json.dumps(meta))
    return target


def test_fuse_refuses_a_preprocess_model_without_fast_path(pair, tmp_path):
    slow = _without_fast_path(pair[0], tmp_path / "slow")
    with pytest.raises(FuseError, match="no compiled fast path"):
        fuse(slow, pair[1], tmp_path / "fused.tar.gz")


def test_serving_refuses_a_fused_folder_without_fast_path_or_with_a_mismatch(pair, fused_dir, tmp_path):
    folder = tmp_path / "fused"
    shutil.copytree(fused_dir, folder)
    shutil.rmtree(folder / PREPROCESS_DIR)
    _without_fast_path(pair[0], folder / PREPROCESS_DIR)
    with pytest.raises(FusedModelError, match="no compiled fast path"):
        _service(XGBoostHandler, folder)
    shutil.rmtree(folder / PREPROCESS_DIR)
    shutil.copytree(_other_preprocess(tmp_path), folder / PREPROCESS_DIR)
    with pytest.raises(FusedModelError, match=r"fused model refused: .* fingerprint"):
        _service(XGBoostHandler, folder)


def test_fuse_cli_runs_as_a_module(pair, tmp_path):
    result = subprocess.run([sys.executable, "-m", "serving_common.fuse", str(pair[0]), str(pair[1]), "-o",
                             str(tmp_path / "fused.tar.gz")], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "fingerprint" in result.stdout and "width" in result.stdout


EXTRACTS = {
    "double": "def extract(record):\n    return {**record, 'amount': record.get('amount', 0) * 2}\n",
    "flat": "def extract(record):\n    return {**record, 'amount': 1.0}\n",
}


def test_two_fused_models_with_their_own_feature_code_in_one_process(tmp_path):
    """Per-market models: each keeps its own extract() and transform, whatever was loaded after it."""
    body, expected = json.dumps(LIVE).encode(), {}
    for market, code_text in EXTRACTS.items():
        code = tmp_path / f"{market}.py"
        code.write_text(textwrap.dedent(code_text))
        preprocess = fit_preprocess(tmp_path / market / "preprocess", TRAIN, code=code)
        model = train_model(tmp_path / market / "xgboost", preprocess, TRAIN, rounds=3)
        fuse(preprocess, model, tmp_path / market / "fused.tar.gz")
        with tarfile.open(tmp_path / market / "fused.tar.gz") as tar:
            tar.extractall(tmp_path / market / "fused", filter="data")
        # the market's chained pipeline, answered before any other market's code is imported
        front, back = _service(PreprocessHandler, preprocess), _service(XGBoostHandler, model)
        expected[market] = _invoke(back, _invoke(front, body, JSON, CSV).body, CSV, CSV).body
    assert expected["double"] != expected["flat"]
    services = {market: _service(XGBoostHandler, tmp_path / market / "fused") for market in EXTRACTS}
    for market, service in services.items():  # all loaded before any answers
        answer = _invoke(service, body, JSON, CSV)
        assert answer.status == 200 and answer.body == expected[market], market


def test_serving_a_fused_stage_imports_no_sklearn_scipy_pandas(fused_dir):
    """The transform's side of a fused model needs numpy alone (the XGBoost image brings scipy itself)."""
    script = textwrap.dedent(f"""
        import json, sys
        from pathlib import Path
        from serving_common.fused import load_stage
        from serving_common.features.requests import decoded_records, transform
        from serving_common.content_types import parse
        from serving_common.settings import Settings
        features = load_stage(Path({str(fused_dir / PREPROCESS_DIR)!r}), Settings())
        rows = transform(features, decoded_records({LIVE[:3]!r}, parse("application/json")))
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("sklearn", "scipy", "joblib", "pandas"))
        print(json.dumps({{"rows": len(rows), "heavy": heavy}}))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True)
    assert json.loads(result.stdout.splitlines()[-1]) == {"rows": 3, "heavy": []}


# -- batch transform settings, as the preprocess image's -------------------------------------------------

def _batch(records: list) -> bytes:
    return b"".join(json.dumps(record).encode() + b"\n" for record in records)


def test_record_errors_in_line_keep_each_records_score_or_error_on_its_line(pair, fused_dir):
    """SMKIT_RECORD_ERRORS=line: the good records' lines are the chained pipeline's scores of those records,
    each bad record's line is the preprocess image's error object for it (its place in the request)."""
    records = [*LIVE[:3], {"amount": "lots"}, *LIVE[3:5], {"amount": {"nested": 1}}, LIVE[5]]
    bad = {3, 6}
    good = [record for index, record in enumerate(records) if index not in bad]
    front = _service(PreprocessHandler, pair[0], record_errors="line")
    fused = _service(XGBoostHandler, fused_dir, record_errors="line")
    back = _service(XGBoostHandler, pair[1])
    errors = _invoke(front, _batch(records), JSONLINES, CSV).body.splitlines()
    for accept in (CSV, JSONLINES):
        scores = _invoke(back, _invoke(front, _batch(good), JSONLINES, CSV).body, CSV, accept).body.splitlines()
        answer = _invoke(fused, _batch(records), JSONLINES, accept)
        assert answer.status == 200 and answer.content_type == accept
        lines = answer.body.splitlines()
        assert answer.body.endswith(b"\n") and len(lines) == len(records)
        assert [lines[index] for index in sorted(bad)] == [errors[index] for index in sorted(bad)]
        assert json.loads(lines[6]) == {"error": json.loads(errors[6])["error"]} and "record 6" in lines[6].decode()
        assert [line for index, line in enumerate(lines) if index not in bad] == scores
    refused = _invoke(fused, _batch(records), JSONLINES, JSON)  # one JSON document: no line to put errors on
    assert refused.status == 400 and "record 3" in refused.body.decode() and "record 6" in refused.body.decode()
    everything_bad = _invoke(fused, _batch([{"amount": "lots"}, {"amount": "more"}]), JSONLINES, CSV)
    assert everything_bad.status == 200 and [json.loads(line)["error"][:8] for line in
                                             everything_bad.body.splitlines()] == ["record 0", "record 1"]
    good_only = _invoke(fused, _batch(good), JSONLINES, CSV)
    assert good_only.body == _invoke(back, _invoke(front, _batch(good), JSONLINES, CSV).body, CSV, CSV).body


def test_record_errors_fail_the_request_by_default(pair, fused_dir):
    records = [*LIVE[:2], {"amount": "lots"}]
    front, fused = _service(PreprocessHandler, pair[0]), _service(XGBoostHandler, fused_dir)
    chained, alone = _invoke(front, _batch(records), JSONLINES, CSV), _invoke(fused, _batch(records), JSONLINES, CSV)
    assert chained.status == 400 and (alone.status, alone.body) == (chained.status, chained.body)


def test_output_label_is_refused_at_load(fused_dir):
    with pytest.raises(FusedModelError, match=r"SMKIT_OUTPUT_LABEL=true .* answers scores"):
        build_service(XGBoostHandler, Settings(model_dir=fused_dir, output_label=True), fused_dir)


def test_settings_read_the_record_options():
    assert (Settings.from_env({}).output_label, Settings.from_env({}).record_errors) == (False, "fail")
    settings = Settings.from_env({"SMKIT_OUTPUT_LABEL": "true", "SMKIT_RECORD_ERRORS": " Line "})
    assert (settings.output_label, settings.record_errors) == (True, "line")
    with pytest.raises(ValueError, match="SMKIT_RECORD_ERRORS='skip' is not one of fail, line"):
        Settings.from_env({"SMKIT_RECORD_ERRORS": "skip"})


# -- another image: PyTorch's handler decodes to a float32 tensor ------------------------------------------

def test_a_fused_pytorch_model_scores_as_its_chained_pipeline(pair, tmp_path):
    """The PyTorch handler reads CSV rows as a float32 tensor; the fused model hands it the same tensor
    (``from_rows``), so every response is byte-identical to the chained pipeline's."""
    torch = pytest.importorskip("torch")
    from pytorch_container.handler import PyTorchHandler

    preprocess = pair[0]
    width = len(json.loads((preprocess / "features.json").read_text())["output_columns"])
    model = tmp_path / "torch"
    model.mkdir()
    torch.manual_seed(0)
    torch.jit.script(torch.nn.Sequential(torch.nn.Linear(width, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))).save(
        str(model / "model.pt"))
    fingerprint = json.loads((preprocess / "features.json").read_text())["fingerprint"]
    (model / "pytorch-meta.json").write_text(json.dumps({"num_features": width, "features_fingerprint": fingerprint}))
    fuse(preprocess, model, tmp_path / "fused.tar.gz")
    with tarfile.open(tmp_path / "fused.tar.gz") as tar:
        tar.extractall(tmp_path / "fused", filter="data")
    front, back = _service(PreprocessHandler, preprocess), _service(PyTorchHandler, model)
    fused = _service(PyTorchHandler, tmp_path / "fused")
    body = json.dumps(LIVE).encode()
    features_csv = _invoke(front, body, JSON, CSV).body
    for accept in (JSON, CSV, JSONLINES, "application/x-npy"):
        chained, alone = _invoke(back, features_csv, CSV, accept), _invoke(fused, body, JSON, accept)
        assert chained.status == 200
        assert (alone.status, alone.content_type, alone.body) == (chained.status, chained.content_type, chained.body)
    bad = _invoke(fused, b'{"amount": "lots"}', JSON)
    assert (bad.status, bad.body) == (400, _invoke(front, b'{"amount": "lots"}', JSON).body)
