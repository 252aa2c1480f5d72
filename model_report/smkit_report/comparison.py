"""The numbers of a model comparison: per-model metrics, the paired bootstrap of the differences, the verdict.

The old model is the *baseline*, the new one the *candidate* ("last week" vs "this week", two
hyperparameter sets, XGBoost vs PyTorch). Both score the same rows; every difference is new - old. One report
can hold several such pairs of the same models (``pairs``: this week vs last week, and PyTorch vs this week's
XGBoost); the first pair is the headline.

What is computed, per model (scikit-learn's metrics throughout): ROC-AUC, PR-AUC (average precision),
log loss, Brier score, a calibration curve (equal-count bins by default: bins, mean predicted, fraction
positive, counts), precision,
recall and F1 at fixed thresholds and at two operating points (the highest threshold that reaches a target
recall; the threshold that flags the top k% of rows), score distribution summaries by class, and thinned
ROC/PR curves and score histograms for the plots.

The differences in ROC-AUC, PR-AUC, log loss and Brier score get a paired, stratified bootstrap: the same
resampled rows score every compared model (rows are resampled within each class, so every resample keeps the
class counts and its AUC is defined), ``n_bootstrap`` resamples from a fixed seed, percentile confidence
interval. A metric is clearly better/worse when its interval excludes zero. The verdict is "better" when at
least one of ROC-AUC, PR-AUC and log loss is clearly better and none clearly worse, "worse" the other way
round, "no clear difference" when none is clear; when they disagree (say, ranks better but is calibrated
worse) ROC-AUC decides (or, if it is unclear, "no clear difference") and the sentence says so.

The bootstrap replicates use vectorised forms of the same metrics (one sort per model instead of thousands
of scikit-learn calls); the tests check them against scikit-learn on the resampled rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
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

SCHEMA = "local_test.report/model-comparison/2"
DEFAULT_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
BOOTSTRAPPED = ("roc_auc", "pr_auc", "log_loss", "brier")
VERDICT_METRICS = ("roc_auc", "pr_auc", "log_loss")
PRIMARY = "roc_auc"
HIGHER_IS_BETTER = {"roc_auc": True, "pr_auc": True, "log_loss": False, "brier": False}
METRIC_NAMES = {"roc_auc": "ROC-AUC", "pr_auc": "PR-AUC", "log_loss": "log loss", "brier": "Brier score"}
MAX_CURVE_POINTS = 400
HISTOGRAM_BINS = 40
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
                     rule=f"threshold = score of the {k}th highest-scored row (top {percent(top_k)} of rows); "
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
    return round_up(max(float(np.percentile(s, 99.5)) for s in scores))


def round_up(value: float) -> float:
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


def decimals(*values: float) -> int:
    """3 decimals, 4 for small differences, more where a bound would otherwise read as zero."""
    decimals = 3 if max(abs(v) for v in values) >= 0.01 else 4
    while decimals < 6 and any(abs(v) >= 1e-12 and round(v, decimals) == 0 for v in values):
        decimals += 1
    return decimals


def percent(fraction: float) -> str:
    return f"{fraction * 100:.3g}%"


def signed(value: float, decimals: int = 3) -> str:
    """``+0.021`` / ``\u22120.004`` (a true minus sign, U+2212), zero as ``+0.000``."""
    value = 0.0 if round(value, decimals) == 0 else value
    return f"{value:+.{decimals}f}".replace("-", MINUS)


def delta_text(metric: str, entry: Mapping[str, Any], confidence: float) -> str:
    """``ROC-AUC +0.021 (95% CI +0.012 to +0.030)``."""
    low, high = entry["delta_ci"]
    d = decimals(entry["delta"], low, high)
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


def _check_pairs(models: Sequence[str], baseline: str | None, candidate: str | None,
                 pairs: Iterable[Sequence[str]] | None) -> list[tuple[str, str]]:
    if pairs is None:
        if baseline is None or candidate is None:
            raise ReportInputError("name the models to compare: baseline and candidate, or pairs")
        pairs = [(baseline, candidate)]
    elif baseline is not None or candidate is not None:
        raise ReportInputError("give either baseline and candidate or pairs, not both")
    checked: list[tuple[str, str]] = []
    for pair in pairs:
        if isinstance(pair, str) or len(pair) != 2:
            raise ReportInputError(f"every pair must be (baseline, candidate), got {pair!r}")
        for role, name in zip(("baseline", "candidate"), pair, strict=True):
            if name not in models:
                raise ReportInputError(f"{role} {name!r} is not one of the models: {', '.join(map(repr, models))}")
        if pair[0] == pair[1]:
            raise ReportInputError(f"baseline and candidate must be two different models, both are {pair[0]!r}")
        if tuple(pair) in checked:
            raise ReportInputError(f"the pair {tuple(pair)!r} is given twice")
        checked.append((pair[0], pair[1]))
    if not checked:
        raise ReportInputError("pairs must name at least one (baseline, candidate) pair")
    return checked


def _pair(metrics: Mapping[str, Mapping[str, Any]], replicates: Mapping[str, Mapping[str, np.ndarray]],
          baseline: str, candidate: str, confidence: float) -> dict[str, Any]:
    """One comparison: the differences candidate - baseline with their bootstrap intervals, and the verdict."""
    old, new = replicates[baseline], replicates[candidate]
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
    return {"baseline": baseline, "candidate": candidate, "comparison": comparison,
            "verdict": _verdict(comparison, baseline, candidate, confidence)}


def compare(labels: Any, scores_by_model: Mapping[str, Any], *, baseline: str | None = None,
            candidate: str | None = None, pairs: Iterable[Sequence[str]] | None = None,
            thresholds: Iterable[float] = DEFAULT_THRESHOLDS, n_bootstrap: int = 1000, seed: int = 0,
            confidence: float = 0.95, target_recall: float = 0.8, top_k: float = 0.05,
            calibration_bins: int = 10, calibration_strategy: str = "quantile") -> dict[str, Any]:
    """Every number of the report, as a JSON-ready dict (plain floats, ints, strings and lists).

    ``labels``: 0/1 per held-out row. ``scores_by_model``: name -> probability of class 1 per row, same rows
    in the same order. What is compared: ``baseline`` (old) against ``candidate`` (new), or instead ``pairs``,
    several (baseline, candidate) pairs of those names, the first one the headline. Models in no pair are
    measured and plotted, but not compared. A row is flagged positive when its score >= threshold. Raises
    ReportInputError on inputs that cannot be compared.

    The result holds every pair under ``comparisons`` (a list of ``baseline``, ``candidate``, ``comparison``,
    ``verdict``) and the headline's four keys at the top level too. All pairs share one bootstrap (the same
    resampled rows for every model), so a pair's numbers do not depend on which other pairs are asked for.
    """
    if not isinstance(scores_by_model, Mapping) or len(scores_by_model) < 2:
        raise ReportInputError("scores_by_model must map at least two model names to their scores")
    for name in scores_by_model:
        if not isinstance(name, str) or not name.strip():
            raise ReportInputError(f"model names must be non-empty strings, got {name!r}")
    pairs = _check_pairs(list(scores_by_model), baseline, candidate, pairs)
    thresholds = _check_settings(thresholds, n_bootstrap, confidence, target_recall, top_k, calibration_bins,
                                 calibration_strategy)
    y = _check_labels(labels)
    scores = {name: _check_scores(name, values, y.size) for name, values in scores_by_model.items()}
    compared = list(dict.fromkeys(name for pair in pairs for name in pair))  # in order of first mention
    models = [*compared, *(name for name in scores if name not in compared)]

    metrics = {name: _model_metrics(y, scores[name], thresholds, target_recall, top_k, calibration_bins,
                                    calibration_strategy) for name in models}
    replicates = dict(zip(compared, _bootstrap(y, [scores[name] for name in compared], n_bootstrap, seed),
                          strict=True))
    comparisons = [_pair(metrics, replicates, old, new, confidence) for old, new in pairs]
    headline = comparisons[0]
    n_pos = int(y.sum())
    score_range = _score_range(scores.values())
    return {
        "schema": SCHEMA,
        "baseline": headline["baseline"],
        "candidate": headline["candidate"],
        "models": models,
        "data": {"rows": int(y.size), "positives": n_pos, "negatives": int(y.size - n_pos),
                 "prevalence": n_pos / y.size},
        "settings": {
            "flag_rule": "a row is flagged positive when its score >= threshold",
            "thresholds": thresholds, "target_recall": target_recall, "top_k_fraction": top_k,
            "calibration": {"n_bins": calibration_bins, "strategy": calibration_strategy},
            "bootstrap": {"resamples": n_bootstrap, "seed": seed, "confidence": confidence,
                          "method": "paired stratified bootstrap (the same resampled rows for every compared "
                                    "model, resampled within each class), percentile interval of new - old"},
        },
        "metrics": metrics,
        "comparison": headline["comparison"],
        "verdict": headline["verdict"],
        "comparisons": comparisons,
        "curves": {name: _curves(y, scores[name], score_range) for name in models},
    }
