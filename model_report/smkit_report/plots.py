"""The report's plots (matplotlib, no display needed), each returned as a base64 PNG."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from smkit_report.comparison import round_up

# Okabe-Ito: distinguishable with every common colour-vision deficiency. Baseline blue, candidate vermilion.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")


def model_colours(result: Mapping[str, Any]) -> dict[str, str]:
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


def plot_roc(result: Mapping[str, Any], colours: Mapping[str, str]) -> str:
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


def plot_pr(result: Mapping[str, Any], colours: Mapping[str, str]) -> str:
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
    ax.set_ylim(0, round_up(settled * 1.1) if zoomed else 1.01)
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


def plot_calibration(result: Mapping[str, Any], colours: Mapping[str, str]) -> str:
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
    reach = round_up(reach * 1.05)
    top.set_xlim(0, reach)
    top.set_ylim(0, reach * 1.01)
    strategy = result["settings"]["calibration"]["strategy"]
    _style(top, "Calibration (reliability)", "",
           f"Fraction of positives ({'equal-count' if strategy == 'quantile' else 'equal-width'} bins)")
    top.legend(loc="upper left", fontsize=10, frameon=True, framealpha=0.9, edgecolor="none")
    bottom.set_yscale("log")
    _style(bottom, "", "Predicted probability (bin mean above)", "Rows")
    return _png(figure)


def plot_distributions(result: Mapping[str, Any], colours: Mapping[str, str]) -> str:
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


def plot_thresholds(result: Mapping[str, Any], colours: Mapping[str, str]) -> str:
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
