"""The contract suite's image descriptors (containers/*/contract.py), checked without Docker: the training
data they write and the request bodies they give hold the rows they claim, the same rows in every type."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from local_test.docker_run import OptMl

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "contract"))

from descriptor import ImageDescriptor, numeric_rows  # noqa: E402
from images import load_descriptor  # noqa: E402

TEMPLATE = ROOT / "templates" / "container" / "contract.py"
#: The images described with numeric_rows (XGBoost, PyTorch, a template's); preprocess takes records.
NUMERIC = [load_descriptor(path) for path in sorted(ROOT.glob("containers/*/contract.py"))
           if "numeric_rows(" in path.read_text()]


def _template_descriptor(tmp_path: Path) -> ImageDescriptor:
    """The template's descriptor as ``new-container.sh demo`` writes it."""
    contract = tmp_path / "demo" / "contract.py"
    contract.parent.mkdir()
    contract.write_text(TEMPLATE.read_text().replace("{{name}}", "demo"))
    return load_descriptor(contract)


def _check(descriptor: ImageDescriptor, tmp_path: Path) -> None:
    opt_ml = OptMl(tmp_path / descriptor.name)
    descriptor.write_training_data(opt_ml)
    assert opt_ml.channels and all(entry == {"ContentType": "text/csv"} for entry in opt_ml.channels.values())
    payloads = descriptor.payloads(opt_ml.model_dir)
    assert set(descriptor.accepts) <= set(payloads)
    rows = np.loadtxt(io.BytesIO(payloads["text/csv"]), delimiter=",", ndmin=2)
    assert rows.shape[0] == descriptor.records_per_payload
    features = rows.shape[1]
    for channel in opt_ml.channels:
        (data,) = sorted(opt_ml.channel_dir(channel).iterdir())
        assert np.loadtxt(data, delimiter=",", ndmin=2).shape[1] == features + 1  # label first
    np.testing.assert_array_equal(json.loads(payloads["application/json"])["instances"], rows)
    lines = payloads["application/jsonlines"].decode().splitlines()
    np.testing.assert_array_equal([json.loads(line) for line in lines], rows)
    np.testing.assert_array_equal(np.load(io.BytesIO(payloads["application/x-npy"])), rows)
    content_type, body = descriptor.wrong_shape(opt_ml.model_dir)
    assert content_type == "text/csv" and len(body.decode().split(",")) != features
    content_type, body = descriptor.large_payload(opt_ml.model_dir, 2 * 1024 * 1024)
    assert content_type == "text/csv" and len(body) >= 2 * 1024 * 1024
    assert {len(line.split(",")) for line in body.decode().splitlines()} == {features}


@pytest.mark.parametrize("descriptor", NUMERIC, ids=str)
def test_each_numeric_descriptor_gives_what_it_claims(descriptor, tmp_path):
    _check(descriptor, tmp_path)


def test_xgboost_and_pytorch_are_described_with_numeric_rows():
    assert {"xgboost", "pytorch"} <= {descriptor.name for descriptor in NUMERIC}


def test_the_templates_descriptor_gives_what_it_claims(tmp_path):
    _check(_template_descriptor(tmp_path), tmp_path)


def test_numeric_rows_writes_its_channels_and_extra_types(tmp_path):
    descriptor = numeric_rows("demo", features=3, hyperparameters={}, label=lambda x: x.sum(axis=1),
                              channels={"train": 5, "validation": 2},
                              extra_payloads={"text/plain": lambda rows: str(len(rows)).encode()})
    opt_ml = OptMl(tmp_path)
    descriptor.write_training_data(opt_ml)
    train = np.loadtxt(opt_ml.channel_dir("train") / "part-0.csv", delimiter=",")
    assert train.shape == (5, 4) and np.allclose(train[:, 0], train[:, 1:].sum(axis=1), atol=1e-6)
    assert np.loadtxt(opt_ml.channel_dir("validation") / "part-0.csv", delimiter=",").shape == (2, 4)
    assert descriptor.payloads(tmp_path)["text/plain"] == b"2"
    assert not descriptor.multi_model and descriptor.accepts[0] == "text/csv"
