"""Compare two model versions on the same held-out set: a JSON of the numbers and an HTML report to look at.

    .venv/bin/python -m local_test.report --labels labels.csv --scores old=old.csv --scores new=new.csv --out DIR

The old model is the *baseline*, the new one the *candidate* ("last week" vs "this week", two
hyperparameter sets, XGBoost vs PyTorch). Both score the same rows; every difference is new - old.

What is computed, per model (scikit-learn's metrics throughout): ROC-AUC, PR-AUC (average precision),
log loss, Brier score, a calibration curve (equal-count bins by default: bins, mean predicted, fraction
positive, counts), precision,
recall and F1 at fixed thresholds and at two operating points (the highest threshold that reaches a target
recall; the threshold that flags the top k% of rows), score distribution summaries by class, and thinned
ROC/PR curves and score histograms for the plots.

The differences in ROC-AUC, PR-AUC, log loss and Brier score get a paired, stratified bootstrap: the same
resampled rows score both models (rows are resampled within each class, so every resample keeps the
class counts and its AUC is defined), ``n_bootstrap`` resamples from a fixed seed, percentile confidence
interval. A metric is clearly better/worse when its interval excludes zero. The verdict is "better" when at
least one of ROC-AUC, PR-AUC and log loss is clearly better and none clearly worse, "worse" the other way
round, "no clear difference" when none is clear; when they disagree (say, ranks better but is calibrated
worse) ROC-AUC decides (or, if it is unclear, "no clear difference") and the sentence says so.

The bootstrap replicates use vectorised forms of the same metrics (one sort per model instead of thousands
of scikit-learn calls); the tests check them against scikit-learn on the resampled rows.

API::

    result = compare(labels, {"old": old_scores, "new": new_scores}, baseline="old", candidate="new")
    html_path, json_path = write_report(result, Path("out"), "Risk model, week 12 vs 11", "2,000 held-out orders")
"""

from __future__ import annotations

import argparse
import base64
import csv
import html
import io
import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    log_loss,
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

SCHEMA = "local_test.report/model-comparison/1"
DEFAULT_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
BOOTSTRAPPED = ("roc_auc", "pr_auc", "log_loss", "brier")
VERDICT_METRICS = ("roc_auc", "pr_auc", "log_loss")
PRIMARY = "roc_auc"
HIGHER_IS_BETTER = {"roc_auc": True, "pr_auc": True, "log_loss": False, "brier": False}
METRIC_NAMES = {"roc_auc": "ROC-AUC", "pr_auc": "PR-AUC", "log_loss": "log loss", "brier": "Brier score"}
MAX_CURVE_POINTS = 400
HISTOGRAM_BINS = 40
# Okabe-Ito: distinguishable with every common colour-vision deficiency. Baseline blue, candidate vermilion.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
MINUS = "\u2212"


class ReportInputError(ValueError):
    """Labels, scores or settings that cannot be compared; the message says which and why."""


# --------------------------------------------------------------------------------------------- validation


def _as_1d(values: Any, what: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ReportInputError(f"{what} must be numbers: {exc}") from None
    if array.ndim == 2 and 1 in array.shape:
        array = array.reshape(-1)
    if array.ndim != 1:
        raise ReportInputError(f"{what} must be one column of numbers, got an array of shape {array.shape}")
    if array.size == 0:
        raise ReportInputError(f"{what} are empty")
    return array


def _check_labels(labels: Any) -> np.ndarray:
    array = _as_1d(labels, "labels")
    bad = ~np.isfinite(array)
    if bad.any():
        raise ReportInputError(f"labels must be 0 or 1: {int(bad.sum())} are missing or not finite "
                               f"(first at row {int(np.flatnonzero(bad)[0])})")
    values = np.unique(array)
    others = values[(values != 0) & (values != 1)]
    if others.size:
        shown = ", ".join(f"{v:g}" for v in others[:5])
        raise ReportInputError(f"labels must be binary (0 or 1); found other values: {shown}"
                               f"{' ...' if others.size > 5 else ''}")
    if values.size < 2:
        raise ReportInputError(f"labels hold a single class (all {int(values[0])}): ROC-AUC, PR-AUC and the "
                               "comparison need both positives and negatives in the held-out set")
    return array.astype(np.int8)


def _check_scores(name: str, scores: Any, n_rows: int) -> np.ndarray:
    array = _as_1d(scores, f"scores of {name!r}")
    if array.size != n_rows:
        raise ReportInputError(f"scores of {name!r} have {array.size} rows but the labels have {n_rows}: "
                               "both models must score the same held-out rows, in the same order")
    bad = ~np.isfinite(array)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ReportInputError(f"scores of {name!r} must be finite probabilities: {int(bad.sum())} are NaN or "
                               f"infinite (first at row {first}: {array[first]})")
    outside = (array < 0) | (array > 1)
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        raise ReportInputError(f"scores of {name!r} must be probabilities in [0, 1]: {int(outside.sum())} are "
                               f"outside (first at row {first}: {array[first]:g}; min {array.min():g}, "
                               f"max {array.max():g})")
    return array


def _check_fraction(value: float, what: str, *, zero_ok: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ReportInputError(f"{what} must be a number, got {value!r}")
    if not (0 <= value <= 1 if zero_ok else 0 < value <= 1):
        raise ReportInputError(f"{what} must be in {'[0, 1]' if zero_ok else '(0, 1]'}, got {value}")
    return float(value)


def _check_settings(thresholds: Iterable[float], n_bootstrap: int, confidence: float, target_recall: float,
                    top_k: float, calibration_bins: int, calibration_strategy: str) -> list[float]:
    thresholds = list(thresholds)
    if not thresholds:
        raise ReportInputError("thresholds must name at least one threshold")
    checked = sorted({_check_fraction(t, "every threshold", zero_ok=True) for t in thresholds})
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 1:
        raise ReportInputError(f"n_bootstrap must be a positive whole number, got {n_bootstrap!r}")
    _check_fraction(confidence, "confidence")
    if confidence >= 1:
        raise ReportInputError(f"confidence must be below 1, got {confidence}")
    _check_fraction(target_recall, "target_recall")
    _check_fraction(top_k, "top_k")
    if isinstance(calibration_bins, bool) or not isinstance(calibration_bins, int) or calibration_bins < 2:
        raise ReportInputError(f"calibration_bins must be a whole number >= 2, got {calibration_bins!r}")
    if calibration_strategy not in ("uniform", "quantile"):
        raise ReportInputError(f"calibration_strategy must be 'uniform' or 'quantile', got {calibration_strategy!r}")
    return checked


# ---------------------------------------------------------------------------------------- single-model numbers


def _at_threshold(y: np.ndarray, s: np.ndarray, threshold: float) -> dict[str, Any]:
    """Precision, recall, F1 and the confusion counts when rows with score >= threshold are flagged."""
    flagged = s >= threshold
    precision, recall, f1, _ = precision_recall_fscore_support(y, flagged, average="binary", zero_division=0.0)
    tn, fp, fn, tp = confusion_matrix(y, flagged, labels=[0, 1]).ravel()
    return {"threshold": float(threshold), "precision": float(precision), "recall": float(recall),
            "f1": float(f1), "flagged": int(tp + fp), "flagged_fraction": float((tp + fp) / y.size),
            "tp": int(tp), "fp": int(fp), "fn": int(fn), "tn": int(tn)}


def _operating_points(y: np.ndarray, s: np.ndarray, target_recall: float, top_k: float) -> dict[str, Any]:
    _, recall, thresholds = precision_recall_curve(y, s)
    # recall[i] belongs to thresholds[i] (ascending thresholds, non-increasing recall).
    reaching = np.flatnonzero(recall[:-1] >= target_recall)
    recall_point = _at_threshold(y, s, thresholds[reaching.max()])
    recall_point.update(target_recall=target_recall,
                        rule=f"highest threshold whose recall is at least {target_recall:g}")
    k = max(1, math.ceil(top_k * y.size))
    top_threshold = float(np.sort(s)[::-1][k - 1])
    top_point = _at_threshold(y, s, top_threshold)
    top_point.update(top_k_fraction=top_k, top_k_rows=k,
                     rule=f"threshold = score of the {k}th highest-scored row (top {_percent(top_k)} of rows); "
                          "ties at the threshold are flagged too")
    return {"target_recall": recall_point, "top_k": top_point}


def _summary(values: np.ndarray) -> dict[str, float]:
    quantiles = np.percentile(values, [1, 5, 25, 50, 75, 95, 99])
    return {"count": int(values.size), "mean": float(values.mean()), "std": float(values.std()),
            "min": float(values.min()),
            **{f"p{q:02d}": float(v) for q, v in zip((1, 5, 25, 50, 75, 95, 99), quantiles, strict=True)},
            "max": float(values.max())}


def _calibration(y: np.ndarray, s: np.ndarray, n_bins: int, strategy: str) -> dict[str, Any]:
    fraction_positive, mean_predicted = calibration_curve(y, s, n_bins=n_bins, strategy=strategy)
    # The same bins as calibration_curve, for their edges and row counts (it drops empty bins; so do we).
    if strategy == "quantile":
        edges = np.percentile(s, np.linspace(0, 100, n_bins + 1))
    else:
        edges = np.linspace(0, 1, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], s)
    counts = np.bincount(ids, minlength=n_bins)
    used = np.flatnonzero(counts)
    bins = [{"lower": float(edges[i]), "upper": float(edges[i + 1]), "mean_predicted": float(m),
             "fraction_positive": float(f), "count": int(counts[i])}
            for i, m, f in zip(used, mean_predicted, fraction_positive, strict=True)]
    ece = float(np.sum(counts[used] * np.abs(fraction_positive - mean_predicted)) / s.size)
    return {"strategy": strategy, "n_bins": n_bins, "bins": bins, "expected_calibration_error": ece}


def _thin(length: int, keep: int = MAX_CURVE_POINTS) -> np.ndarray:
    """Indices of at most ``keep`` points spread evenly along a curve, both ends included."""
    if length <= keep:
        return np.arange(length)
    return np.unique(np.linspace(0, length - 1, keep).round().astype(int))


def _score_range(scores: Iterable[np.ndarray]) -> float:
    """A round upper end for score axes that holds 99.5% of every model's scores (risk scores bunch near 0)."""
    return _round_up(max(float(np.percentile(s, 99.5)) for s in scores))


def _round_up(value: float) -> float:
    return next(edge for edge in (0.05, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0) if edge >= min(value, 1.0))


def _curves(y: np.ndarray, s: np.ndarray, score_range: float) -> dict[str, Any]:
    fpr, tpr, _ = roc_curve(y, s)
    roc = _thin(fpr.size)
    precision, recall, thresholds = precision_recall_curve(y, s)
    # Aligned points (precision[i], recall[i], thresholds[i]); sklearn's end point (recall 0, precision 1) dropped.
    pr = _thin(thresholds.size)
    edges = np.linspace(0, score_range, HISTOGRAM_BINS + 1)
    above = s > score_range
    return {
        "roc": {"fpr": fpr[roc].tolist(), "tpr": tpr[roc].tolist()},
        "pr": {"recall": recall[pr].tolist(), "precision": precision[pr].tolist(),
               "thresholds": thresholds[pr].tolist()},
        "score_histogram": {"bin_edges": edges.tolist(),
                            "negative": np.histogram(s[y == 0], edges)[0].tolist(),
                            "positive": np.histogram(s[y == 1], edges)[0].tolist(),
                            "negative_above": int(np.sum(above & (y == 0))),
                            "positive_above": int(np.sum(above & (y == 1)))},
    }


def _model_metrics(y: np.ndarray, s: np.ndarray, thresholds: Sequence[float], target_recall: float,
                   top_k: float, calibration_bins: int, calibration_strategy: str) -> dict[str, Any]:
    return {
        "roc_auc": float(roc_auc_score(y, s)),
        "pr_auc": float(average_precision_score(y, s)),
        "log_loss": float(log_loss(y, s, labels=[0, 1])),
        "brier": float(brier_score_loss(y, s, labels=[0, 1])),
        "calibration": _calibration(y, s, calibration_bins, calibration_strategy),
        "at_thresholds": [_at_threshold(y, s, t) for t in thresholds],
        "operating_points": _operating_points(y, s, target_recall, top_k),
        "score_summary": {"all": _summary(s), "negative": _summary(s[y == 0]), "positive": _summary(s[y == 1])},
    }


# ------------------------------------------------------------------------------------------------ bootstrap


class _Resampled:
    """ROC-AUC, PR-AUC, log loss and Brier score of one model on many resamples of its rows at once.

    Equal to scikit-learn's metrics on the resampled rows (the tests check it), but one sort per model
    instead of thousands of sklearn calls: each row's tie group (by descending score) is found once, and a
    resample only counts its positives and negatives per group.
    """

    def __init__(self, y: np.ndarray, s: np.ndarray) -> None:
        order = np.argsort(-s, kind="stable")
        ordered = s[order]
        starts = np.r_[True, ordered[1:] != ordered[:-1]]
        group = np.empty(s.size, dtype=np.int64)
        group[order] = np.cumsum(starts) - 1
        # Runs of tie groups without a positive between two with one can be merged: that changes neither
        # metric and leaves about two cells per positive instead of one per distinct score.
        has_positive = np.zeros(int(starts.sum()), dtype=bool)
        has_positive[group[y == 1]] = True
        new_cell = np.r_[True, has_positive[1:] | has_positive[:-1]]
        self.group = (np.cumsum(new_cell) - 1)[group]
        self.groups = int(new_cell.sum())
        # log loss and Brier score are means of per-row losses (clipped as sklearn clips).
        eps = np.finfo(float).eps
        self.row_log_loss = np.where(y == 1, -np.log(np.clip(s, eps, 1 - eps)), -np.log(np.clip(1 - s, eps, 1 - eps)))
        self.row_brier = (s - y) ** 2

    def __call__(self, rows: np.ndarray, positives: int) -> dict[str, np.ndarray]:
        """Metrics of each resample: one line of ``rows`` per resample, its first ``positives`` rows of class 1."""
        rows = np.atleast_2d(rows)
        count = rows.shape[0]
        size = count * self.groups
        cells = self.group[rows] + (np.arange(count, dtype=self.group.dtype) * self.groups)[:, None]
        pos = np.bincount(cells[:, :positives].ravel(), minlength=size).reshape(count, self.groups)
        neg = np.bincount(cells[:, positives:].ravel(), minlength=size).reshape(count, self.groups)
        n_pos = pos.sum(axis=1)
        n_neg = neg.sum(axis=1)
        # ROC-AUC: each positive beats the negatives scored below it and half-beats those tied with it.
        neg_above_or_tied = np.cumsum(neg, axis=1)
        roc_auc = (pos * (n_neg[:, None] - neg_above_or_tied + 0.5 * neg)).sum(axis=1) / (n_pos * n_neg)
        # Average precision: over the distinct thresholds, (recall step) x (precision there).
        tp = np.cumsum(pos, axis=1)
        flagged = tp + neg_above_or_tied
        precision = np.divide(tp, flagged, out=np.zeros(tp.shape), where=flagged > 0)
        pr_auc = (pos * precision).sum(axis=1) / n_pos
        return {"roc_auc": roc_auc, "pr_auc": pr_auc, "log_loss": self.row_log_loss[rows].mean(axis=1),
                "brier": self.row_brier[rows].mean(axis=1)}


def _resamples(y: np.ndarray, n_bootstrap: int, rng: np.random.Generator) -> Iterable[np.ndarray]:
    """Row indices of the resamples, a chunk at a time: rows drawn with replacement within each class,
    the positives first."""
    classes = [np.flatnonzero(y == 1), np.flatnonzero(y == 0)]
    chunk = max(1, min(n_bootstrap, 1_000_000 // y.size))
    for start in range(0, n_bootstrap, chunk):
        count = min(chunk, n_bootstrap - start)
        yield np.concatenate([rows[rng.integers(0, rows.size, size=(count, rows.size))] for rows in classes], axis=1)


def _bootstrap(y: np.ndarray, scores: Sequence[np.ndarray], n_bootstrap: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Replicates of each metric for each model, on the same (paired) resamples."""
    rng = np.random.default_rng(seed)
    positives = int(y.sum())
    models = [_Resampled(y, s) for s in scores]
    parts: list[list[dict[str, np.ndarray]]] = [[] for _ in scores]
    for rows in _resamples(y, n_bootstrap, rng):
        for part, model in zip(parts, models, strict=True):
            part.append(model(rows, positives))
    return [{m: np.concatenate([p[m] for p in part]) for m in BOOTSTRAPPED} for part in parts]


def _interval(values: np.ndarray, confidence: float) -> list[float]:
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return [float(low), float(high)]


# ------------------------------------------------------------------------------------------------- verdict


def _status(metric: str, ci: Sequence[float]) -> str:
    low, high = (0.0 if abs(v) < 1e-12 else v for v in ci)
    if low > 0:
        return "better" if HIGHER_IS_BETTER[metric] else "worse"
    if high < 0:
        return "worse" if HIGHER_IS_BETTER[metric] else "better"
    return "unclear"


def _decimals(*values: float) -> int:
    """3 decimals, 4 for small differences, more where a bound would otherwise read as zero."""
    decimals = 3 if max(abs(v) for v in values) >= 0.01 else 4
    while decimals < 6 and any(abs(v) >= 1e-12 and round(v, decimals) == 0 for v in values):
        decimals += 1
    return decimals


def signed(value: float, decimals: int = 3) -> str:
    """``+0.021`` / ``\u22120.004`` (a true minus sign, U+2212), zero as ``+0.000``."""
    value = 0.0 if round(value, decimals) == 0 else value
    return f"{value:+.{decimals}f}".replace("-", MINUS)


def delta_text(metric: str, entry: Mapping[str, Any], confidence: float) -> str:
    """``ROC-AUC +0.021 (95% CI +0.012 to +0.030)``."""
    low, high = entry["delta_ci"]
    d = _decimals(entry["delta"], low, high)
    return (f"{METRIC_NAMES[metric]} {signed(entry['delta'], d)} "
            f"({confidence:.0%} CI {signed(low, d)} to {signed(high, d)})")


def _names(metrics: Sequence[str]) -> str:
    names = [METRIC_NAMES[m] for m in metrics]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _verdict(comparison: Mapping[str, Any], baseline: str, candidate: str, confidence: float) -> dict[str, Any]:
    status = {m: comparison[m]["status"] for m in VERDICT_METRICS}
    better = [m for m in VERDICT_METRICS if status[m] == "better"]
    worse = [m for m in VERDICT_METRICS if status[m] == "worse"]
    mixed = bool(better and worse)
    if better and not worse:
        label = "better"
    elif worse and not better:
        label = "worse"
    elif mixed and status[PRIMARY] != "unclear":
        label = status[PRIMARY]
    else:
        label = "no clear difference"
    numbers = ", ".join(delta_text(m, comparison[m], confidence) for m in VERDICT_METRICS)
    if label == "no clear difference":
        head = f"No clear difference between \u201c{candidate}\u201d and \u201c{baseline}\u201d"
        if mixed:
            head += f" ({_names(better)} better, {_names(worse)} worse)"
    else:
        head = f"\u201c{candidate}\u201d is {label} than \u201c{baseline}\u201d"
        unclear = [m for m in VERDICT_METRICS if status[m] == "unclear"]
        if not mixed and unclear:
            head += f" on {_names(better or worse)} (no clear difference in {_names(unclear)})"
        if mixed:
            against = worse if label == "better" else better
            head += (f" on {METRIC_NAMES[PRIMARY]}, but {_names(against)} "
                     f"{'is' if len(against) == 1 else 'are'} {'worse' if label == 'better' else 'better'}")
    return {"label": label, "mixed": mixed, "primary_metric": PRIMARY, "by_metric": status,
            "sentence": f"{head}: {numbers}."}


# ------------------------------------------------------------------------------------------------- compare


def compare(labels: Any, scores_by_model: Mapping[str, Any], *, baseline: str, candidate: str,
            thresholds: Iterable[float] = DEFAULT_THRESHOLDS, n_bootstrap: int = 1000, seed: int = 0,
            confidence: float = 0.95, target_recall: float = 0.8, top_k: float = 0.05,
            calibration_bins: int = 10, calibration_strategy: str = "quantile") -> dict[str, Any]:
    """Every number of the report, as a JSON-ready dict (plain floats, ints, strings and lists).

    ``labels``: 0/1 per held-out row. ``scores_by_model``: name -> probability of class 1 per row, same rows
    in the same order; ``baseline`` (old) and ``candidate`` (new) name two of them (more are measured and
    plotted, but not compared). A row is flagged positive when its score >= threshold. Raises
    ReportInputError on inputs that cannot be compared.
    """
    if not isinstance(scores_by_model, Mapping) or len(scores_by_model) < 2:
        raise ReportInputError("scores_by_model must map at least two model names to their scores")
    for name in scores_by_model:
        if not isinstance(name, str) or not name.strip():
            raise ReportInputError(f"model names must be non-empty strings, got {name!r}")
    for role, name in (("baseline", baseline), ("candidate", candidate)):
        if name not in scores_by_model:
            raise ReportInputError(f"{role} {name!r} is not one of the models: {', '.join(map(repr, scores_by_model))}")
    if baseline == candidate:
        raise ReportInputError(f"baseline and candidate must be two different models, both are {baseline!r}")
    thresholds = _check_settings(thresholds, n_bootstrap, confidence, target_recall, top_k, calibration_bins,
                                 calibration_strategy)
    y = _check_labels(labels)
    scores = {name: _check_scores(name, values, y.size) for name, values in scores_by_model.items()}
    models = [baseline, candidate, *(name for name in scores if name not in (baseline, candidate))]

    metrics = {name: _model_metrics(y, scores[name], thresholds, target_recall, top_k, calibration_bins,
                                    calibration_strategy) for name in models}
    old, new = _bootstrap(y, [scores[baseline], scores[candidate]], n_bootstrap, seed)
    comparison = {}
    for m in BOOTSTRAPPED:
        deltas = new[m] - old[m]
        delta_ci = _interval(deltas, confidence)
        better_share = float(np.mean(deltas > 0) if HIGHER_IS_BETTER[m] else np.mean(deltas < 0))
        comparison[m] = {
            "baseline": metrics[baseline][m], "baseline_ci": _interval(old[m], confidence),
            "candidate": metrics[candidate][m], "candidate_ci": _interval(new[m], confidence),
            "delta": metrics[candidate][m] - metrics[baseline][m], "delta_ci": delta_ci,
            "higher_is_better": HIGHER_IS_BETTER[m], "candidate_better_share": better_share,
            "status": _status(m, delta_ci),
        }
    n_pos = int(y.sum())
    score_range = _score_range(scores.values())
    return {
        "schema": SCHEMA,
        "baseline": baseline,
        "candidate": candidate,
        "models": models,
        "data": {"rows": int(y.size), "positives": n_pos, "negatives": int(y.size - n_pos),
                 "prevalence": n_pos / y.size},
        "settings": {
            "flag_rule": "a row is flagged positive when its score >= threshold",
            "thresholds": thresholds, "target_recall": target_recall, "top_k_fraction": top_k,
            "calibration": {"n_bins": calibration_bins, "strategy": calibration_strategy},
            "bootstrap": {"resamples": n_bootstrap, "seed": seed, "confidence": confidence,
                          "method": "paired stratified bootstrap (the same resampled rows for both models, "
                                    "resampled within each class), percentile interval of new - old"},
        },
        "metrics": metrics,
        "comparison": comparison,
        "verdict": _verdict(comparison, baseline, candidate, confidence),
        "curves": {name: _curves(y, scores[name], score_range) for name in models},
    }


# ------------------------------------------------------------------------------------------------- plots


def _colours(result: Mapping[str, Any]) -> dict[str, str]:
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(result["models"])}


def _figure(width: float = 6.4, height: float = 4.8, **kwargs: Any) -> Figure:
    figure = Figure(figsize=(width, height), dpi=110, layout="constrained", **kwargs)
    FigureCanvasAgg(figure)
    return figure


def _style(ax: Any, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=13, loc="left", fontweight="bold")
    ax.set_xlabel(xlabel, fontsize=11)
    ax.set_ylabel(ylabel, fontsize=11)
    ax.grid(True, color="#e5e5e5", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _legend_below(ax: Any, columns: int | None = None) -> None:
    """A legend under the axes, where it cannot hide a curve: one row when it fits, else one entry a row."""
    handles, labels = ax.get_legend_handles_labels()
    if columns is None:
        columns = len(labels) if sum(len(label) + 7 for label in labels) <= 80 else 1
    ax.figure.legend(handles, labels, loc="outside lower center", ncol=columns, fontsize=10, frameon=False)


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _plot_roc(result: Mapping[str, Any], colours: Mapping[str, str]) -> str:
    figure = _figure(6.4, 5.6)
    ax = figure.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="#9e9e9e", linewidth=1, label="chance")
    for name in result["models"]:
        curve = result["curves"][name]["roc"]
        ax.plot(curve["fpr"], curve["tpr"], color=colours[name], linewidth=2.2,
                label=f"{name} (AUC {result['metrics'][name]['roc_auc']:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    _style(ax, "ROC curve", "False positive rate", "True positive rate (recall)")
    # The low false-positive corner is where a risk model is used; zoom into it.
    inset = ax.inset_axes([0.54, 0.08, 0.42, 0.30])  # below the diagonal, where no curve is
    for name in result["models"]:
        curve = result["curves"][name]["roc"]
        inset.plot(curve["fpr"], curve["tpr"], color=colours[name], linewidth=1.6)
    inset.set_xlim(0, 0.1)
    inset.set_title("zoom: FPR \u2264 0.1", fontsize=9)
    inset.tick_params(labelsize=8)
    inset.grid(True, color="#eeeeee", linewidth=0.6)
    _legend_below(ax)
    return _png(figure)


def _plot_pr(result: Mapping[str, Any], colours: Mapping[str, str]) -> str:
    figure = _figure(6.4, 5.6)
    ax = figure.add_subplot()
    prevalence = result["data"]["prevalence"]
    ax.axhline(prevalence, linestyle="--", color="#9e9e9e", linewidth=1, label=f"chance ({prevalence:.3f})")
    for name in result["models"]:
        curve = result["curves"][name]["pr"]
        ax.plot(curve["recall"], curve["precision"], color=colours[name], linewidth=2.2, drawstyle="steps-post",
                label=f"{name} (AP {result['metrics'][name]['pr_auc']:.3f})")
    ax.set_xlim(0, 1)
    # Rare positives keep precision low: zoom in, leaving out only the first few rows' spikes at recall < 5%.
    settled = max(max((p for p, r in zip(result["curves"][name]["pr"]["precision"],
                                         result["curves"][name]["pr"]["recall"], strict=True) if r >= 0.05),
                      default=1.0) for name in result["models"])
    zoomed = settled * 1.1 < 0.6
    ax.set_ylim(0, _round_up(settled * 1.1) if zoomed else 1.01)
    _style(ax, "Precision-recall curve", "Recall", "Precision (axis zoomed)" if zoomed else "Precision")
    _legend_below(ax)
    return _png(figure)


def _wilson(fraction: np.ndarray, count: np.ndarray, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    """95% Wilson interval of a bin's fraction of positives: how much a bin with few rows can be trusted."""
    denominator = 1 + z**2 / count
    centre = (fraction + z**2 / (2 * count)) / denominator
    half = z * np.sqrt(fraction * (1 - fraction) / count + z**2 / (4 * count**2)) / denominator
    # It holds the fraction; min/max only undo rounding at 0 and 1.
    return np.clip(np.minimum(centre - half, fraction), 0, 1), np.clip(np.maximum(centre + half, fraction), 0, 1)


def _plot_calibration(result: Mapping[str, Any], colours: Mapping[str, str]) -> str:
    figure = _figure(6.4, 6.4)
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], linestyle="--", color="#9e9e9e", linewidth=1, label="perfectly calibrated")
    reach = 0.0
    for name in result["models"]:
        calibration = result["metrics"][name]["calibration"]
        bins = calibration["bins"]
        x = np.array([b["mean_predicted"] for b in bins])
        fraction = np.array([b["fraction_positive"] for b in bins])
        low, high = _wilson(fraction, np.array([b["count"] for b in bins]))
        top.errorbar(x, fraction, yerr=[fraction - low, high - fraction], marker="o", color=colours[name],
                     linewidth=2, markersize=6, elinewidth=1.2, ecolor=colours[name], alpha=0.95, capsize=3,
                     label=f"{name} (ECE {calibration['expected_calibration_error']:.3f})")
        reach = max(reach, x.max(), fraction.max())
        histogram = result["curves"][name]["score_histogram"]
        counts = np.add(histogram["negative"], histogram["positive"])
        bottom.stairs(counts, histogram["bin_edges"], color=colours[name], linewidth=1.8)
    # Both axes end where the bins end, so the diagonal stays at 45 degrees and the points are not squeezed.
    reach = _round_up(reach * 1.05)
    top.set_xlim(0, reach)
    top.set_ylim(0, reach * 1.01)
    strategy = result["settings"]["calibration"]["strategy"]
    _style(top, "Calibration (reliability)", "",
           f"Fraction of positives ({'equal-count' if strategy == 'quantile' else 'equal-width'} bins)")
    top.legend(loc="upper left", fontsize=10, frameon=True, framealpha=0.9, edgecolor="none")
    bottom.set_yscale("log")
    _style(bottom, "", "Predicted probability (bin mean above)", "Rows")
    return _png(figure)


def _plot_distributions(result: Mapping[str, Any], colours: Mapping[str, str]) -> str:
    figure = _figure(12.8, 4.4)
    axes = figure.subplots(1, 2, sharex=True)
    data = result["data"]
    panels = (("negative", f"Label 0: negatives ({data['negatives']:,} rows)"),
              ("positive", f"Label 1: positives ({data['positives']:,} rows)"))
    for ax, (cls, title) in zip(axes, panels, strict=True):
        for name in result["models"]:
            histogram = result["curves"][name]["score_histogram"]
            counts = np.asarray(histogram[cls], dtype=float)
            share = 100 * counts / counts.sum()
            edges = histogram["bin_edges"]
            ax.stairs(share, edges, color=colours[name], linewidth=2, label=name)
            ax.stairs(share, edges, color=colours[name], alpha=0.12, fill=True)
            median = result["metrics"][name]["score_summary"][cls]["p50"]
            ax.axvline(median, color=colours[name], linestyle=":", linewidth=1.5)
        ax.set_xlim(0, edges[-1])
        hidden = max(result["curves"][name]["score_histogram"][f"{cls}_above"] for name in result["models"])
        if hidden:
            ax.annotate(f"not shown: up to {hidden:,} rows above {edges[-1]:g}", (1, 1), xycoords="axes fraction",
                        xytext=(-4, -4), textcoords="offset points", ha="right", va="top", fontsize=9,
                        color="#616161")
        _style(ax, title, "Score", "Share of the class's rows (%)")
    axes[0].legend(loc="center right", fontsize=10, frameon=False, title="dotted: median", title_fontsize=9)
    figure.suptitle("Score distributions by class", fontsize=13, fontweight="bold", x=0.01, ha="left")
    return _png(figure)


def _plot_thresholds(result: Mapping[str, Any], colours: Mapping[str, str]) -> str:
    figure = _figure(6.4, 5.6)
    ax = figure.add_subplot()
    for name in result["models"]:
        curve = result["curves"][name]["pr"]
        ax.plot(curve["thresholds"], curve["precision"], color=colours[name], linewidth=2.2, drawstyle="steps-post",
                label=f"{name} precision")
        ax.plot(curve["thresholds"], curve["recall"], color=colours[name], linewidth=2.2, linestyle="--",
                drawstyle="steps-post", label=f"{name} recall")
    target = result["settings"]["target_recall"]
    end = result["curves"][result["baseline"]]["score_histogram"]["bin_edges"][-1]
    ax.axhline(target, color="#9e9e9e", linewidth=1, linestyle=":")
    ax.annotate(f"target recall {target:g}", (end, target), xytext=(-4, 4), textcoords="offset points",
                ha="right", fontsize=9, color="#616161")
    ax.set_xlim(0, end)
    ax.set_ylim(0, 1.01)
    _style(ax, "Precision and recall vs threshold", "Threshold (flag when score \u2265 threshold)",
           "Precision (solid) / recall (dashed)")
    _legend_below(ax, columns=2 if max(len(name) for name in result["models"]) <= 20 else 1)
    return _png(figure)


# -------------------------------------------------------------------------------------------------- HTML

CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: #202124;
       margin: 0; background: #fafafa; }
main { max-width: 1440px; margin: 0 auto; padding: 24px 32px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 36px 0 10px; border-bottom: 1px solid #e0e0e0; padding-bottom: 4px; }
.sub { color: #5f6368; margin: 0 0 18px; }
.verdict { font-size: 25px; line-height: 1.35; font-weight: 600; padding: 18px 22px; border-radius: 8px;
           border-left: 10px solid; margin: 12px 0 20px; }
.verdict.better { background: #e6f4ea; border-color: #1e8e3e; }
.verdict.worse { background: #fce8e6; border-color: #d93025; }
.verdict.none { background: #f1f3f4; border-color: #80868b; }
.verdict .tag { display: block; font-size: 15px; text-transform: uppercase; letter-spacing: .06em; color: #5f6368; }
table { border-collapse: collapse; background: #fff; font-variant-numeric: tabular-nums; }
th, td { padding: 6px 12px; border-bottom: 1px solid #e8eaed; text-align: right; }
th { background: #f1f3f4; font-weight: 600; }
td.metric, th.metric { text-align: left; }
.headline td, .headline th { font-size: 16px; }
.better { color: #137333; } .worse { color: #c5221f; } .unclear { color: #5f6368; }
.verdict.better, .verdict.worse, .verdict.none { color: #202124; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin-right: 6px;
          vertical-align: -1px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 16px; }
figure { margin: 0; background: #fff; border: 1px solid #e8eaed; border-radius: 6px; padding: 8px; }
figure img { width: 100%; height: auto; display: block; }
figcaption { color: #5f6368; font-size: 13px; padding: 4px 6px 0; }
.note { color: #5f6368; font-size: 13px; max-width: 1100px; }
"""


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.3g}%"


def _f(value: float, decimals: int = 3) -> str:
    return f"{value:.{decimals}f}"


def _model_header(result: Mapping[str, Any], colours: Mapping[str, str], name: str, colspan: int = 1) -> str:
    role = " (old)" if name == result["baseline"] else " (new)" if name == result["candidate"] else ""
    span = f' colspan="{colspan}"' if colspan > 1 else ""
    return (f'<th{span}><span class="swatch" style="background:{colours[name]}"></span>'
            f"{html.escape(name)}{role}</th>")


def _headline_table(result: Mapping[str, Any], colours: Mapping[str, str]) -> str:
    base, cand = result["baseline"], result["candidate"]
    confidence = result["settings"]["bootstrap"]["confidence"]
    rows = []
    for m in BOOTSTRAPPED:
        entry = result["comparison"][m]
        low, high = entry["delta_ci"]
        d = _decimals(entry["delta"], low, high)
        mark = {"better": "\u2714 better", "worse": "\u2718 worse", "unclear": "no clear difference"}[entry["status"]]
        rows.append(
            f'<tr><td class="metric">{METRIC_NAMES[m]} <small class="unclear">'
            f'({"higher" if entry["higher_is_better"] else "lower"} is better)</small></td>'
            f"<td>{_f(entry['baseline'], 4)}</td><td>{_f(entry['candidate'], 4)}</td>"
            f'<td class="{entry["status"]}"><b>{signed(entry["delta"], d)}</b></td>'
            f"<td>{signed(low, d)} to {signed(high, d)}</td>"
            f'<td class="{entry["status"]}">{mark}</td></tr>')
    old_ops, new_ops = result["metrics"][base]["operating_points"], result["metrics"][cand]["operating_points"]
    target, top = old_ops["target_recall"]["target_recall"], old_ops["top_k"]["top_k_fraction"]
    for label, key, field in ((f"precision at recall \u2265 {target:g}", "target_recall", "precision"),
                              (f"recall when the top {_percent(top)} are flagged", "top_k", "recall"),
                              (f"precision when the top {_percent(top)} are flagged", "top_k", "precision")):
        a, b = old_ops[key][field], new_ops[key][field]
        rows.append(f'<tr><td class="metric">{label}</td><td>{_f(a, 4)}</td><td>{_f(b, 4)}</td>'
                    f"<td>{signed(b - a, 3)}</td><td>\u2014</td><td></td></tr>")
    return ('<table class="headline"><tr><th class="metric">metric</th>'
            f"{_model_header(result, colours, base)}{_model_header(result, colours, cand)}"
            f"<th>\u0394 new \u2212 old</th><th>{confidence:.0%} CI of \u0394</th><th></th></tr>"
            + "".join(rows) + "</table>")


def _threshold_table(result: Mapping[str, Any], colours: Mapping[str, str]) -> str:
    models = result["models"]
    head = ('<tr><th class="metric" rowspan="2">threshold</th>'
            + "".join(_model_header(result, colours, name, 4) for name in models) + "</tr><tr>"
            + "<th>precision</th><th>recall</th><th>F1</th><th>flagged</th>" * len(models) + "</tr>")

    def cells(point: Mapping[str, Any]) -> str:
        return (f"<td>{_f(point['precision'])}</td><td>{_f(point['recall'])}</td><td>{_f(point['f1'])}</td>"
                f"<td>{point['flagged']:,} ({point['flagged_fraction']:.1%})</td>")

    rows = []
    for i, threshold in enumerate(result["settings"]["thresholds"]):
        rows.append(f'<tr><td class="metric">{threshold:g}</td>'
                    + "".join(cells(result["metrics"][name]["at_thresholds"][i]) for name in models) + "</tr>")
    settings = result["settings"]
    for key, label in (("target_recall", f"reaching recall \u2265 {settings['target_recall']:g}"),
                       ("top_k", f"flagging the top {_percent(settings['top_k_fraction'])}")):
        points = [result["metrics"][name]["operating_points"][key] for name in models]
        at = ", ".join(f'<span class="swatch" style="background:{colours[name]}"></span>{p["threshold"]:.4f}'
                       for name, p in zip(models, points, strict=True))
        rows.append(f'<tr><td class="metric"><i>{label}</i><br><small class="unclear">at {at}</small></td>'
                    + "".join(cells(p) for p in points) + "</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _summary_table(result: Mapping[str, Any], colours: Mapping[str, str]) -> str:
    stats = ("mean", "p05", "p25", "p50", "p75", "p95")
    head = ('<tr><th class="metric">model</th><th class="metric">class</th>'
            + "".join(f"<th>{'median' if s == 'p50' else s}</th>" for s in stats) + "</tr>")
    rows = []
    for name in result["models"]:
        for cls in ("negative", "positive"):
            summary = result["metrics"][name]["score_summary"][cls]
            rows.append(f'<tr><td class="metric"><span class="swatch" style="background:{colours[name]}"></span>'
                        f'{html.escape(name)}</td><td class="metric">{cls} ({summary["count"]:,})</td>'
                        + "".join(f"<td>{summary[s]:.3f}</td>" for s in stats) + "</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def render_html(result: Mapping[str, Any], title: str, description: str) -> str:
    """The self-contained HTML page of a ``compare`` result (plots inline as base64 PNG)."""
    colours = _colours(result)
    verdict = result["verdict"]
    data = result["data"]
    boot = result["settings"]["bootstrap"]
    css_class = {"better": "better", "worse": "worse"}.get(verdict["label"], "none")
    plots = [
        (_plot_roc(result, colours), "ROC curves", "Higher and further left is better; the inset zooms into "
                                                   "the low false-positive corner."),
        (_plot_pr(result, colours), "Precision-recall curves", "Higher is better; the dashed line is a model "
                                                                "that guesses at the prevalence."),
        (_plot_calibration(result, colours), "Calibration", "Points on the diagonal mean the scores are honest "
                                                            "probabilities; whiskers: 95% interval of each bin's "
                                                            "fraction (wide where a bin has few rows); bars count "
                                                            "the rows per bin (log scale)."),
        (_plot_thresholds(result, colours), "Precision/recall vs threshold", "Where to set the threshold for the "
                                                                             "precision or recall you need."),
    ]
    figures = "".join(f'<figure><img alt="{alt}" src="data:image/png;base64,{png}">'
                      f"<figcaption>{caption}</figcaption></figure>" for png, alt, caption in plots)
    distributions = _plot_distributions(result, colours)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{CSS}</style></head>
<body><main>
<h1>{html.escape(title)}</h1>
<p class="sub">{html.escape(description)} &middot; {data['rows']:,} rows, {data['positives']:,} positives
({data['prevalence']:.1%}) &middot; old: <b>{html.escape(result['baseline'])}</b>, new:
<b>{html.escape(result['candidate'])}</b></p>
<div class="verdict {css_class}"><span class="tag">verdict: {html.escape(verdict['label'])}</span>
{html.escape(verdict['sentence'])}</div>
{_headline_table(result, colours)}
<p class="note">\u0394 and its {boot['confidence']:.0%} confidence interval: {boot['resamples']:,} paired bootstrap
resamples of the held-out rows (seed {boot['seed']}), the same rows scoring both models. A metric is clearly
better or worse when its interval excludes zero.</p>
<h2>Curves</h2>
<div class="grid">{figures}</div>
<h2>Score distributions</h2>
<figure><img alt="Score distributions by class" src="data:image/png;base64,{distributions}">
<figcaption>A better model moves negatives to the left and positives to the right, with less overlap.
Score axes end where 99.5% of every model's scores lie.</figcaption></figure>
<p></p>{_summary_table(result, colours)}
<h2>At thresholds</h2>
<p class="note">{html.escape(result['settings']['flag_rule'].capitalize())}. The operating points pick each model's own
threshold: the highest one reaching the target recall, and the one that flags the top share of rows.</p>
{_threshold_table(result, colours)}
<p class="note">All numbers are in the JSON file next to this page ({html.escape(SCHEMA)}).</p>
</main></body></html>
"""


def write_report(result: Mapping[str, Any], out_dir: Path, title: str, description: str, *,
                 stem: str = "model_comparison") -> tuple[Path, Path]:
    """Write ``<stem>.html`` (self-contained) and ``<stem>.json`` (exactly ``result``) into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{stem}.json"
    html_path = out_dir / f"{stem}.html"
    json_path.write_text(json.dumps(result, indent=1, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    html_path.write_text(render_html(result, title, description), encoding="utf-8")
    return html_path, json_path


# --------------------------------------------------------------------------------------------------- CLI


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_column(path: Path, column: str | None = None) -> np.ndarray:
    """One numeric column of a CSV file (header optional): the only column, or the one named ``column``."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as stream:
            rows = [row for row in csv.reader(stream) if row and any(cell.strip() for cell in row)]
    except OSError as exc:
        raise ReportInputError(f"cannot read {path}: {exc.strerror}") from None
    if not rows:
        raise ReportInputError(f"{path} is empty")
    header = None if all(_is_number(cell) for cell in rows[0]) else [cell.strip() for cell in rows[0]]
    body = rows[1:] if header else rows
    width = len(rows[0])
    if column is None:
        if width != 1:
            names = ", ".join(header) if header else f"{width} unnamed columns"
            raise ReportInputError(f"{path} has {width} columns ({names}): say which one to use")
        index = 0
    elif header and column in header:
        index = header.index(column)
    elif column.isdigit() and int(column) < width:
        index = int(column)
    else:
        raise ReportInputError(f"{path} has no column {column!r}"
                               + (f" (columns: {', '.join(header)})" if header else " and no header row"))
    try:
        return np.array([float(row[index]) for row in body], dtype=float)
    except (ValueError, IndexError) as exc:
        raise ReportInputError(f"{path}: column {index} is not all numbers ({exc})") from None


def _model_file(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep:
        return Path(text).stem, Path(text)
    if not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, Path(path)


def _thresholds(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_test.report", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", type=Path, required=True, help="CSV of the held-out labels (0/1)")
    parser.add_argument("--scores", type=_model_file, action="append", required=True, metavar="NAME=PATH",
                        help="CSV of one model's scores on the same rows; give it twice (old first, then new)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the HTML and JSON")
    parser.add_argument("--baseline", help="the old model's NAME (default: the first --scores)")
    parser.add_argument("--candidate", help="the new model's NAME (default: the second --scores)")
    parser.add_argument("--label-column", help="column name or index in the labels CSV (when it has several)")
    parser.add_argument("--score-column", help="column name or index in the scores CSVs (when they have several)")
    parser.add_argument("--title", help="report title (default: 'Model comparison: NEW vs OLD')")
    parser.add_argument("--description", help="what the held-out set is (default: the labels file)")
    parser.add_argument("--thresholds", type=_thresholds, default=list(DEFAULT_THRESHOLDS),
                        help="comma-separated thresholds (default 0.1,...,0.9)")
    parser.add_argument("--target-recall", type=float, default=0.8)
    parser.add_argument("--top-k", type=float, default=0.05, help="share of rows flagged at the top-k point")
    parser.add_argument("--n-bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if len(args.scores) < 2:
        parser.error("give --scores at least twice: the old and the new model")
    names = [name for name, _ in args.scores]
    if len(set(names)) != len(names):
        parser.error(f"model names must differ, got {', '.join(names)}")
    baseline = args.baseline or names[0]
    candidate = args.candidate or names[1]
    try:
        labels = read_column(args.labels, args.label_column)
        scores = {name: read_column(path, args.score_column) for name, path in args.scores}
        result = compare(labels, scores, baseline=baseline, candidate=candidate, thresholds=args.thresholds,
                         n_bootstrap=args.n_bootstrap, seed=args.seed, target_recall=args.target_recall,
                         top_k=args.top_k)
    except ReportInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    html_path, json_path = write_report(result, args.out, args.title or f"Model comparison: {candidate} vs {baseline}",
                                        args.description or f"held-out set {args.labels}")
    print(result["verdict"]["sentence"])
    print(f"report: {html_path}\nnumbers: {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
