"""The README's main job (./run.sh runs local_test.run_pipeline) end to end, on a small dataset: XGBoost (two
versions) and PyTorch (script mode) trained on the same preprocess features, each scored on the same held-out
orders through its pipeline, and one report comparing this week vs last week and PyTorch vs XGBoost."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from local_test.docker_run import ROOT
from local_test.orders import make_orders

pytestmark = pytest.mark.docker

LAST_WEEK, THIS_WEEK, TORCH = "XGBoost last week", "XGBoost this week", "PyTorch MLP"
FILES = {LAST_WEEK: "xgboost_last_week", THIS_WEEK: "xgboost_this_week", TORCH: "pytorch_mlp"}


def _read(path):
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], [row[0] for row in rows[1:]], np.array([float(row[1]) for row in rows[1:]])


def test_the_main_job_trains_both_frameworks_scores_and_compares_them(image_of, tmp_path):
    for name in ("preprocess", "xgboost", "pytorch"):
        image_of(name)
    out = tmp_path / "report"
    result = subprocess.run([sys.executable, "-m", "local_test.run_pipeline", "--orders", "6000", "--out", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    for step in range(1, 10):
        assert f"[{step}/9]" in result.stdout
    assert "-> default risk 0." in result.stdout  # live orders scored through the pipeline's one port
    assert "a broken order: 400 from stage 1" in result.stdout
    assert "TorchScript model.pt: " in result.stdout  # the PyTorch image ran the example script

    # One score per held-out order, per model, in the held-out orders' order (the last 20% of the orders).
    held_out = make_orders(6000, seed=42)[4800:]
    header, ids, labels = _read(out / "scores" / "labels.csv")
    assert header == ["order_id", "default"]
    assert ids == [order["order_id"] for order in held_out] and len(set(ids)) == 1200
    assert labels.tolist() == [order["default"] for order in held_out]
    scores = {}
    for model, stem in FILES.items():
        header, model_ids, scores[model] = _read(out / "scores" / f"{stem}.csv")
        assert header == ["order_id", "score"] and model_ids == ids
        assert ((scores[model] >= 0) & (scores[model] <= 1)).all()
    # PyTorch's scores are its own model's (not a copy of XGBoost's) and real: well above chance, and close to
    # XGBoost's on the same features (0.78 and 0.76 when written).
    assert np.abs(scores[TORCH] - scores[THIS_WEEK]).max() > 0.01
    torch_auc = roc_auc_score(labels, scores[TORCH])
    assert torch_auc > 0.7 and torch_auc > roc_auc_score(labels, scores[THIS_WEEK]) - 0.05

    numbers = json.loads((out / "model_comparison.json").read_text())
    assert numbers["data"]["rows"] == 1200 and set(numbers["models"]) == set(FILES)
    for model in FILES:  # the report measured the scores written next to it
        assert numbers["metrics"][model]["roc_auc"] == pytest.approx(roc_auc_score(labels, scores[model]), abs=1e-12)
    pairs = [(pair["baseline"], pair["candidate"]) for pair in numbers["comparisons"]]
    assert pairs == [(LAST_WEEK, THIS_WEEK), (THIS_WEEK, TORCH)]
    html = (out / "model_comparison.html").read_text()
    for pair in numbers["comparisons"]:
        verdict = pair["verdict"]
        assert verdict["label"] in ("better", "worse", "no clear difference")
        assert verdict["sentence"].split(":")[-1].strip()[:30] in html  # each verdict heads its section
        assert verdict["sentence"] in result.stdout
    assert numbers["verdict"] == numbers["comparisons"][0]["verdict"]
    assert "data:image/png;base64," in html

    # The score files are enough to redo the report with the command line (model_report/README.md's command).
    again = subprocess.run(
        [sys.executable, "-m", "smkit_report", "compare", *(f"{m}={out / 'scores' / f'{stem}.csv'}" for m, stem in
                                                           FILES.items()),
         "--pair", LAST_WEEK, THIS_WEEK, "--pair", THIS_WEEK, TORCH, "--labels", str(out / "scores" / "labels.csv"),
         "--label-column", "default", "--score-column", "score", "--out", str(tmp_path / "again")],
        capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    redone = json.loads((tmp_path / "again" / "model_comparison.json").read_text())
    assert redone["comparisons"] == numbers["comparisons"] and redone["metrics"] == numbers["metrics"]
