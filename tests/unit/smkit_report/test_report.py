"""The model comparison report: metrics equal scikit-learn's, the paired bootstrap, the verdict, the files, the CLI."""

from __future__ import annotations

import base64
import html
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from smkit_report import ReportInputError, compare, read_column, write_report
from smkit_report.cli import main
from smkit_report.comparison import (
    DEFAULT_THRESHOLDS,
    MINUS,
    _bootstrap,
    _interval,
    _Resampled,
    _resamples,
    _verdict,
)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def binormal(n: int, separations: tuple[float, ...], *, prevalence: float = 0.2, rho: float = 0.6,
             seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """Labels and one score per separation d: latent d*y + noise (noises correlated ``rho``), squashed to (0, 1).

    The population ROC-AUC of separation d is Phi(d / sqrt(2)), whatever the monotone squashing.
    """
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(int)
    shared = rng.normal(size=n)
    scores = []
    for d in separations:
        noise = math.sqrt(rho) * shared + math.sqrt(1 - rho) * rng.normal(size=n)
        scores.append(sigmoid(d * y + noise - 2))
    return y, scores


def population_auc(d: float) -> float:
    return 0.5 * (1 + math.erf(d / 2))  # Phi(d / sqrt 2)


@pytest.fixture(scope="module")
def data():
    y, (old, new) = binormal(2000, (1.0, 1.6), seed=1)
    return y, old, new


@pytest.fixture(scope="module")
def result(data):
    y, old, new = data
    return compare(y, {"last week": old, "this week": new}, baseline="last week", candidate="this week")


# ------------------------------------------------------------------------------------------------- metrics


def test_headline_metrics_equal_sklearn(data, result):
    y, old, new = data
    for name, s in (("last week", old), ("this week", new)):
        m = result["metrics"][name]
        assert m["roc_auc"] == roc_auc_score(y, s)
        assert m["pr_auc"] == average_precision_score(y, s)
        assert m["log_loss"] == log_loss(y, s)
        assert m["brier"] == brier_score_loss(y, s)
    comparison = result["comparison"]["roc_auc"]
    assert comparison["delta"] == pytest.approx(roc_auc_score(y, new) - roc_auc_score(y, old), abs=1e-15)
    assert result["data"] == {"rows": 2000, "positives": int(y.sum()), "negatives": int(2000 - y.sum()),
                              "prevalence": y.mean()}


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_calibration_equals_sklearn(data, strategy):
    y, old, new = data
    result = compare(y, {"a": old, "b": new}, baseline="a", candidate="b", n_bootstrap=10,
                     calibration_bins=8, calibration_strategy=strategy)
    for name, s in (("a", old), ("b", new)):
        calibration = result["metrics"][name]["calibration"]
        fraction, mean = calibration_curve(y, s, n_bins=8, strategy=strategy)
        bins = calibration["bins"]
        assert [b["fraction_positive"] for b in bins] == pytest.approx(fraction.tolist(), abs=1e-15)
        assert [b["mean_predicted"] for b in bins] == pytest.approx(mean.tolist(), abs=1e-15)
        assert sum(b["count"] for b in bins) == y.size
        for b in bins:
            inside = (s >= b["lower"]) & (s <= b["upper"])
            assert b["lower"] <= b["mean_predicted"] <= b["upper"]
            assert b["count"] <= inside.sum()
        assert calibration["expected_calibration_error"] == pytest.approx(
            sum(b["count"] * abs(b["fraction_positive"] - b["mean_predicted"]) for b in bins) / y.size)


def test_precision_recall_f1_at_thresholds_equal_sklearn(data, result):
    y, old, _ = data
    points = result["metrics"]["last week"]["at_thresholds"]
    assert [p["threshold"] for p in points] == list(DEFAULT_THRESHOLDS)
    for point in points:
        flagged = old >= point["threshold"]
        assert point["precision"] == precision_score(y, flagged, zero_division=0)
        assert point["recall"] == recall_score(y, flagged, zero_division=0)
        assert point["f1"] == f1_score(y, flagged, zero_division=0)
        assert point["flagged"] == flagged.sum() == point["tp"] + point["fp"]
        assert point["tp"] + point["fp"] + point["fn"] + point["tn"] == y.size


def test_operating_points(data, result):
    y, old, _ = data
    points = result["metrics"]["last week"]["operating_points"]
    recall_point = points["target_recall"]
    assert recall_point["recall"] >= 0.8
    # The highest such threshold: the next higher score no longer reaches the target.
    higher = old[old > recall_point["threshold"]].min()
    assert recall_score(y, old >= higher) < 0.8
    assert "recall is at least 0.8" in recall_point["rule"]
    top = points["top_k"]
    assert top["top_k_rows"] == 100 and top["flagged"] >= 100
    assert (old >= top["threshold"]).sum() == top["flagged"]
    assert (old > top["threshold"]).sum() < 100


def test_score_summaries_and_curves(data, result):
    y, old, _ = data
    summary = result["metrics"]["last week"]["score_summary"]
    assert summary["positive"]["count"] == y.sum()
    assert summary["negative"]["p50"] == pytest.approx(np.median(old[y == 0]))
    assert summary["all"]["max"] == old.max()
    curves = result["curves"]["last week"]
    assert len(curves["roc"]["fpr"]) <= 400 and curves["roc"]["fpr"][0] == 0 and curves["roc"]["tpr"][-1] == 1
    assert len(curves["pr"]["recall"]) == len(curves["pr"]["precision"]) == len(curves["pr"]["thresholds"])
    histogram = curves["score_histogram"]
    assert sum(histogram["positive"]) == y.sum() and sum(histogram["negative"]) == y.size - y.sum()


def test_more_than_two_models_are_measured_baseline_first():
    y, (a, b, c) = binormal(600, (1.0, 1.2, 0.5), seed=3)
    result = compare(y, {"c": c, "new": b, "old": a}, baseline="old", candidate="new", n_bootstrap=20)
    assert result["models"] == ["old", "new", "c"]
    assert result["metrics"]["c"]["roc_auc"] == roc_auc_score(y, c)


# ------------------------------------------------------------------------------------------ several pairs


@pytest.fixture(scope="module")
def three():
    y, (a, b, c) = binormal(1500, (1.0, 1.6, 1.2), seed=12)
    return y, {"last week": a, "this week": b, "pytorch": c}


@pytest.fixture(scope="module")
def two_pairs(three):
    y, scores = three
    return compare(y, scores, pairs=[("last week", "this week"), ("this week", "pytorch")], n_bootstrap=300)


def test_one_report_compares_several_pairs_on_one_bootstrap(three, two_pairs):
    """Each pair's numbers are those of the pair compared on its own: the pairs share the resampled rows."""
    y, scores = three
    assert two_pairs["models"] == ["last week", "this week", "pytorch"]
    assert [(p["baseline"], p["candidate"]) for p in two_pairs["comparisons"]] == [
        ("last week", "this week"), ("this week", "pytorch")]
    for pair in two_pairs["comparisons"]:
        old, new = pair["baseline"], pair["candidate"]
        alone = compare(y, {old: scores[old], new: scores[new]}, baseline=old, candidate=new, n_bootstrap=300)
        assert pair == alone["comparisons"][0]
        assert pair["comparison"]["roc_auc"]["delta"] == pytest.approx(
            roc_auc_score(y, scores[new]) - roc_auc_score(y, scores[old]), abs=1e-15)
    headline = two_pairs["comparisons"][0]
    assert (two_pairs["baseline"], two_pairs["candidate"]) == ("last week", "this week")
    assert two_pairs["comparison"] == headline["comparison"] and two_pairs["verdict"] == headline["verdict"]
    assert two_pairs["verdict"]["label"] == "better"  # separation 1.6 vs 1.0
    assert two_pairs["comparisons"][1]["verdict"]["label"] == "worse"  # 1.2 vs 1.6
    assert two_pairs["comparisons"][1]["verdict"]["sentence"].startswith(
        "\u201cpytorch\u201d is worse than \u201cthis week\u201d")


def test_a_model_in_no_pair_is_measured_not_compared(three):
    y, scores = three
    result = compare(y, scores, pairs=[("this week", "pytorch")], n_bootstrap=20)
    assert result["models"] == ["this week", "pytorch", "last week"]
    assert len(result["comparisons"]) == 1 and "last week" in result["metrics"]


def test_the_page_shows_every_pair(two_pairs, tmp_path):
    html_path, _ = write_report(two_pairs, tmp_path, "Week 12", "held-out orders")
    page = html_path.read_text(encoding="utf-8")
    for pair in two_pairs["comparisons"]:
        assert html.escape(pair["verdict"]["sentence"]) in page
        assert f"<h2>{pair['candidate']} vs {pair['baseline']}</h2>" in page
    assert page.count('<table class="headline">') == 2
    assert "compared: <b>this week</b> vs <b>last week</b>; <b>pytorch</b> vs <b>this week</b>" in page


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"pairs": [("a", "b")], "baseline": "a"}, r"either baseline and candidate or pairs"),
    ({}, r"name the models to compare"),
    ({"pairs": []}, r"at least one \(baseline, candidate\) pair"),
    ({"pairs": [("a", "b", "c")]}, r"every pair must be \(baseline, candidate\)"),
    ({"pairs": ["ab"]}, r"every pair must be \(baseline, candidate\)"),
    ({"pairs": [("a", "b"), ("b", "x")]}, r"candidate 'x' is not one of the models: 'a', 'b', 'c'"),
    ({"pairs": [("a", "b"), ("c", "c")]}, r"two different models, both are 'c'"),
    ({"pairs": [("a", "b"), ("a", "b")]}, r"the pair \('a', 'b'\) is given twice"),
])
def test_pair_errors(good, kwargs, message):
    y, old, new = good
    with pytest.raises(ReportInputError, match=message):
        compare(y, {"a": old, "b": new, "c": old}, n_bootstrap=10, **kwargs)


# ------------------------------------------------------------------------------------------------ bootstrap


def test_resampled_metrics_equal_sklearn_on_the_resampled_rows():
    rng = np.random.default_rng(7)
    y = (rng.random(700) < 0.15).astype(int)
    s = np.round(np.clip(rng.random(700) * 0.8 + 0.25 * y, 0, 1), 2)  # many ties
    s[:5] = [0.0, 1.0, 0.0, 1.0, 0.5]  # sure scores, clipped by log loss
    resamples = next(_resamples(y, 5, rng))
    metrics = _Resampled(y, s)(resamples, int(y.sum()))
    for i, rows in enumerate(resamples):
        assert metrics["roc_auc"][i] == pytest.approx(roc_auc_score(y[rows], s[rows]), abs=1e-12)
        assert metrics["pr_auc"][i] == pytest.approx(average_precision_score(y[rows], s[rows]), abs=1e-12)
        assert metrics["log_loss"][i] == pytest.approx(log_loss(y[rows], s[rows]), abs=1e-12)
        assert metrics["brier"][i] == pytest.approx(brier_score_loss(y[rows], s[rows]), abs=1e-12)


def test_resamples_keep_the_class_counts_and_pair_the_models():
    y = np.array([1, 0, 0, 1, 0, 0, 0, 1, 0, 0])
    for rows in _resamples(y, 50, np.random.default_rng(0)):
        assert (y[rows[:, :3]] == 1).all() and (y[rows[:, 3:]] == 0).all()


def test_bootstrap_interval_covers_the_true_difference():
    true_delta = population_auc(1.6) - population_auc(1.0)
    y, (old, new) = binormal(3000, (1.0, 1.6), seed=11)
    result = compare(y, {"old": old, "new": new}, baseline="old", candidate="new")
    low, high = result["comparison"]["roc_auc"]["delta_ci"]
    assert low < true_delta < high
    assert 0 < low  # and the difference is clear
    # Coverage over many held-out sets: a 90% interval misses the truth about 10% of the time, not much more.
    covered = 0
    for seed in range(40):
        y, (old, new) = binormal(800, (1.0, 1.3), seed=100 + seed)
        replicates_old, replicates_new = _bootstrap(y, [old, new], 300, seed)
        low, high = _interval(replicates_new["roc_auc"] - replicates_old["roc_auc"], 0.9)
        covered += low <= population_auc(1.3) - population_auc(1.0) <= high
    assert covered >= 31


def test_bootstrap_is_deterministic_with_a_seed(data):
    y, old, new = data
    first = compare(y, {"old": old, "new": new}, baseline="old", candidate="new", n_bootstrap=200, seed=5)
    again = compare(y, {"old": old, "new": new}, baseline="old", candidate="new", n_bootstrap=200, seed=5)
    other = compare(y, {"old": old, "new": new}, baseline="old", candidate="new", n_bootstrap=200, seed=6)
    assert first == again
    assert first["comparison"]["roc_auc"]["delta"] == other["comparison"]["roc_auc"]["delta"]
    assert first["comparison"]["roc_auc"]["delta_ci"] != other["comparison"]["roc_auc"]["delta_ci"]
    assert first["settings"]["bootstrap"]["resamples"] == 200 and first["settings"]["bootstrap"]["seed"] == 5


# -------------------------------------------------------------------------------------------------- verdict


def test_verdict_clearly_better(result):
    verdict = result["verdict"]
    assert verdict["label"] == "better" and not verdict["mixed"]
    assert verdict["by_metric"] == {"roc_auc": "better", "pr_auc": "better", "log_loss": "better"}
    sentence = verdict["sentence"]
    assert sentence.startswith("\u201cthis week\u201d is better than \u201clast week\u201d: ROC-AUC +")
    delta = result["comparison"]["roc_auc"]
    assert f"ROC-AUC +{delta['delta']:.3f} (95% CI +{delta['delta_ci'][0]:.3f} to +{delta['delta_ci'][1]:.3f})" \
        in sentence
    assert f"log loss {MINUS}" in sentence and "PR-AUC +" in sentence


def test_verdict_clearly_worse(data):
    y, old, new = data
    result = compare(y, {"old": new, "new": old}, baseline="old", candidate="new", n_bootstrap=300)
    assert result["verdict"]["label"] == "worse"
    assert result["verdict"]["sentence"].startswith("\u201cnew\u201d is worse than \u201cold\u201d: ROC-AUC \u2212")
    assert all(result["comparison"][m]["status"] == "worse" for m in ("roc_auc", "pr_auc", "log_loss", "brier"))


def test_identical_scores_make_no_clear_difference(data):
    y, old, _ = data
    result = compare(y, {"old": old, "new": old.copy()}, baseline="old", candidate="new", n_bootstrap=200)
    assert result["verdict"]["label"] == "no clear difference"
    for entry in result["comparison"].values():
        assert entry["delta"] == 0 and entry["delta_ci"] == [0.0, 0.0] and entry["status"] == "unclear"
    assert result["verdict"]["sentence"] == (
        "No clear difference between \u201cnew\u201d and \u201cold\u201d: ROC-AUC +0.0000 (95% CI +0.0000 to "
        "+0.0000), PR-AUC +0.0000 (95% CI +0.0000 to +0.0000), log loss +0.0000 (95% CI +0.0000 to +0.0000).")


def test_better_ranking_but_worse_calibration_is_called_out():
    y, (old, new) = binormal(3000, (1.0, 2.0), seed=4)
    squashed = 0.5 + (new - 0.5) * 0.1  # ranks as well as new, but every score near 0.5: poor probabilities
    result = compare(y, {"old": old, "new": squashed}, baseline="old", candidate="new", n_bootstrap=300)
    verdict = result["verdict"]
    assert verdict["by_metric"] == {"roc_auc": "better", "pr_auc": "better", "log_loss": "worse"}
    assert verdict["label"] == "better" and verdict["mixed"]
    assert verdict["sentence"].startswith(
        "\u201cnew\u201d is better than \u201cold\u201d on ROC-AUC, but log loss is worse: ROC-AUC +")


@pytest.mark.parametrize(("statuses", "label"), [
    (("unclear", "better", "worse"), "no clear difference"),
    (("worse", "better", "unclear"), "worse"),
    (("unclear", "unclear", "better"), "better"),
    (("unclear", "worse", "unclear"), "worse"),
])
def test_verdict_rules(statuses, label):
    comparison = {m: {"status": s, "delta": 0.01, "delta_ci": [-0.01, 0.02]}
                  for m, s in zip(("roc_auc", "pr_auc", "log_loss"), statuses, strict=True)}
    assert _verdict(comparison, "old", "new", 0.95)["label"] == label


# ---------------------------------------------------------------------------------------------------- files


@pytest.fixture(scope="module")
def written(result, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return write_report(result, out / "nested", "Risk model <week 12>", "2,000 held-out orders & more")


def test_html_is_self_contained_and_shows_the_verdict(result, written):
    html_path, _ = written
    page = html_path.read_text(encoding="utf-8")
    assert html_path.name == "model_comparison.html"
    assert not re.search(r"https?://", page, re.IGNORECASE)
    assert "<script" not in page and "<link" not in page and "url(" not in page
    assert html.escape(result["verdict"]["sentence"]) in page
    assert "Risk model &lt;week 12&gt;" in page and "orders &amp; more" in page
    images = re.findall(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 5  # ROC, PR, calibration, precision/recall vs threshold, distributions
    for image in images:
        assert base64.b64decode(image, validate=True).startswith(b"\x89PNG\r\n\x1a\n")
    assert re.findall(r"<img ", page) and len(re.findall(r"<img ", page)) == len(images)


def test_json_round_trips(result, written):
    _, json_path = written
    assert json_path.name == "model_comparison.json"
    assert json.loads(json_path.read_text(encoding="utf-8")) == result


# ----------------------------------------------------------------------------------------------- validation


@pytest.fixture()
def good():
    y = np.array([0, 1, 0, 1, 1, 0])
    return y, np.array([0.1, 0.8, 0.3, 0.6, 0.9, 0.2]), np.array([0.2, 0.7, 0.1, 0.9, 0.8, 0.4])


@pytest.mark.parametrize(("change", "message"), [
    (lambda y, a, b: (y, a, b[:-1]), r"scores of 'new' have 5 rows but the labels have 6"),
    (lambda y, a, b: (np.array([0, 1, 2, 1, 1, 0]), a, b), r"labels must be binary \(0 or 1\); found other values: 2"),
    (lambda y, a, b: (np.array([0, 1, np.nan, 1, 1, 0]), a, b), r"labels must be 0 or 1: 1 are missing"),
    (lambda y, a, b: (np.ones(6), a, b), r"labels hold a single class \(all 1\)"),
    (lambda y, a, b: (np.zeros(6), a, b), r"single class \(all 0\)"),
    (lambda y, a, b: ([], [], []), r"labels are empty"),
    (lambda y, a, b: (["yes", "no", "yes", "no", "no", "yes"], a, b), r"labels must be numbers"),
    (lambda y, a, b: (y, a * 2, b), r"scores of 'old' must be probabilities in \[0, 1\]: 3 are outside"),
    (lambda y, a, b: (y, a - 0.5, b), r"must be probabilities in \[0, 1\].*min -0.4"),
    (lambda y, a, b: (y, a, np.r_[b[:5], np.nan]), r"scores of 'new' must be finite probabilities: 1 are NaN"),
    (lambda y, a, b: (y, a, np.r_[np.inf, b[1:]]), r"1 are NaN or infinite \(first at row 0: inf\)"),
    (lambda y, a, b: (y, np.c_[a, a], b), r"one column of numbers, got an array of shape \(6, 2\)"),
])
def test_input_errors(good, change, message):
    y, old, new = change(*good)
    with pytest.raises(ReportInputError, match=message):
        compare(y, {"old": old, "new": new}, baseline="old", candidate="new", n_bootstrap=10)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"baseline": "older"}, r"baseline 'older' is not one of the models: 'old', 'new'"),
    ({"candidate": "old"}, r"must be two different models"),
    ({"thresholds": [0.5, 1.5]}, r"every threshold must be in \[0, 1\]"),
    ({"thresholds": []}, r"at least one threshold"),
    ({"n_bootstrap": 0}, r"n_bootstrap must be a positive whole number"),
    ({"target_recall": 0}, r"target_recall must be in \(0, 1\]"),
    ({"calibration_strategy": "kmeans"}, r"'uniform' or 'quantile'"),
])
def test_setting_errors(good, kwargs, message):
    y, old, new = good
    arguments = {"baseline": "old", "candidate": "new", "n_bootstrap": 10, **kwargs}
    with pytest.raises(ReportInputError, match=message):
        compare(y, {"old": old, "new": new}, **arguments)


def test_input_errors_are_value_errors(good):
    y, old, _ = good
    with pytest.raises(ValueError, match="at least two model names"):
        compare(y, {"old": old}, baseline="old", candidate="new")


def test_two_dimensional_column_inputs_are_accepted(good):
    y, old, new = good
    result = compare(y[:, None], {"old": old[:, None], "new": new.tolist()}, baseline="old", candidate="new",
                     n_bootstrap=10)
    assert result["data"]["rows"] == 6


# ------------------------------------------------------------------------------------------------------ CLI


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_cli_writes_both_files(tmp_path, capsys):
    y, (old, new) = binormal(400, (0.8, 1.5), seed=9)
    labels = write_lines(tmp_path / "labels.csv", ["order_id,label", *(f"o{i},{v}" for i, v in enumerate(y))])
    write_lines(tmp_path / "old.csv", [str(float(v)) for v in old])
    write_lines(tmp_path / "new.csv", ["score", *(str(float(v)) for v in new)])
    code = main(["compare", "--labels", str(labels), "--label-column", "label",
                 "--scores", f"v1={tmp_path / 'old.csv'}", "--scores", f"v2={tmp_path / 'new.csv'}",
                 "--out", str(tmp_path / "out"), "--n-bootstrap", "100",
                 "--thresholds", "0.25,0.5", "--description", "400 test orders"])
    assert code == 0
    printed = capsys.readouterr().out
    result = json.loads((tmp_path / "out" / "model_comparison.json").read_text(encoding="utf-8"))
    assert result["verdict"]["sentence"] in printed and "\u201cv2\u201d" in printed
    assert result["metrics"]["v1"]["roc_auc"] == pytest.approx(roc_auc_score(y, old), abs=1e-15)
    assert result["settings"]["thresholds"] == [0.25, 0.5]
    page = (tmp_path / "out" / "model_comparison.html").read_text(encoding="utf-8")
    assert "Model comparison: v2 vs v1" in page and "400 test orders" in page


def test_cli_compares_several_pairs(tmp_path, capsys):
    y, (a, b, c) = binormal(400, (0.8, 1.5, 1.2), seed=9)
    labels = write_lines(tmp_path / "labels.csv", [str(v) for v in y])
    files = [write_lines(tmp_path / f"{name}.csv", [str(float(v)) for v in s])
             for name, s in (("v1", a), ("v2", b), ("torch", c))]
    code = main(["compare", *map(str, files), "--pair", "v1", "v2", "--pair", "v2", "torch",
                 "--labels", str(labels), "--out", str(tmp_path / "out"), "--n-bootstrap", "100"])
    assert code == 0
    printed = capsys.readouterr().out
    result = json.loads((tmp_path / "out" / "model_comparison.json").read_text(encoding="utf-8"))
    assert [(p["baseline"], p["candidate"]) for p in result["comparisons"]] == [("v1", "v2"), ("v2", "torch")]
    assert all(p["verdict"]["sentence"] in printed for p in result["comparisons"])
    page = (tmp_path / "out" / "model_comparison.html").read_text(encoding="utf-8")
    assert "Model comparison: v2 vs v1; torch vs v2" in page


def test_cli_pair_or_baseline_not_both(tmp_path, capsys):
    write_lines(tmp_path / "s.csv", ["0.1", "0.9"])
    with pytest.raises(SystemExit):
        main(["compare", f"a={tmp_path / 's.csv'}", f"b={tmp_path / 's.csv'}", "--pair", "a", "b",
              "--baseline", "a", "--labels", str(tmp_path / "s.csv"), "--out", str(tmp_path / "out")])
    assert "either --pair or --baseline/--candidate" in capsys.readouterr().err


def test_cli_reports_bad_inputs(tmp_path, capsys):
    write_lines(tmp_path / "labels.csv", ["0", "1", "0"])
    write_lines(tmp_path / "old.csv", ["0.1", "0.2", "0.3"])
    write_lines(tmp_path / "new.csv", ["0.1", "0.2"])
    code = main(["compare", "--labels", str(tmp_path / "labels.csv"), "--scores", f"old={tmp_path / 'old.csv'}",
                 "--scores", f"new={tmp_path / 'new.csv'}", "--out", str(tmp_path / "out")])
    assert code == 2
    assert "error: scores of 'new' have 2 rows but the labels have 3" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_needs_two_models(tmp_path, capsys):
    write_lines(tmp_path / "s.csv", ["0.1"])
    with pytest.raises(SystemExit):
        main(["compare", "--labels", str(tmp_path / "s.csv"), "--scores", str(tmp_path / "s.csv"),
              "--out", str(tmp_path)])
    assert "at least twice" in capsys.readouterr().err


def test_command_compares_two_score_files_for_anyone(tmp_path):
    """``python -m smkit_report compare A.csv B.csv --labels L --out DIR``, as a team outside the main job runs it."""
    y, (old, new) = binormal(300, (0.5, 1.5), seed=4)
    labels = write_lines(tmp_path / "labels.csv", [str(v) for v in y])
    write_lines(tmp_path / "last_week.csv", [str(float(v)) for v in old])
    write_lines(tmp_path / "this_week.csv", [str(float(v)) for v in new])
    done = subprocess.run([sys.executable, "-m", "smkit_report", "compare", str(tmp_path / "last_week.csv"),
                           str(tmp_path / "this_week.csv"), "--labels", str(labels), "--out", str(tmp_path / "out"),
                           "--n-bootstrap", "50"], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "out" / "model_comparison.json").read_text(encoding="utf-8"))
    assert (result["baseline"], result["candidate"]) == ("last_week", "this_week")
    assert result["metrics"]["this_week"]["roc_auc"] == pytest.approx(roc_auc_score(y, new), abs=1e-15)
    assert result["verdict"]["sentence"] in done.stdout
    assert (tmp_path / "out" / "model_comparison.html").stat().st_size > 0


def test_read_column(tmp_path):
    path = write_lines(tmp_path / "t.csv", ["id,score", "a,0.5", "", "b,0.25"])
    assert read_column(path, "score").tolist() == [0.5, 0.25]
    assert read_column(path, "1").tolist() == [0.5, 0.25]
    with pytest.raises(ReportInputError, match=r"has 2 columns \(id, score\): say which one"):
        read_column(path)
    with pytest.raises(ReportInputError, match=r"no column 'label' \(columns: id, score\)"):
        read_column(path, "label")
    with pytest.raises(ReportInputError, match=r"column 0 is not all numbers"):
        read_column(path, "id")
    with pytest.raises(ReportInputError, match="cannot read"):
        read_column(tmp_path / "missing.csv")
