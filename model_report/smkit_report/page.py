"""The report's files: a self-contained HTML page (plots inline) and the JSON of every number."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from smkit_report.comparison import BOOTSTRAPPED, METRIC_NAMES, SCHEMA, decimals, percent, signed
from smkit_report.plots import (
    model_colours,
    plot_calibration,
    plot_distributions,
    plot_pr,
    plot_roc,
    plot_thresholds,
)

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


def _f(value: float, decimals: int = 3) -> str:
    return f"{value:.{decimals}f}"


def _model_header(pair: Mapping[str, Any] | None, colours: Mapping[str, str], name: str, colspan: int = 1) -> str:
    """A model's column head; ``pair``: the comparison whose old and new it names (none: no roles)."""
    roles = {} if pair is None else {pair["baseline"]: " (old)", pair["candidate"]: " (new)"}
    role = roles.get(name, "")
    span = f' colspan="{colspan}"' if colspan > 1 else ""
    return (f'<th{span}><span class="swatch" style="background:{colours[name]}"></span>'
            f"{html.escape(name)}{role}</th>")


def _only_pair(result: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The comparison when the report holds one (model tables then mark old and new), else None."""
    comparisons = result["comparisons"]
    return comparisons[0] if len(comparisons) == 1 else None


def _headline_table(result: Mapping[str, Any], colours: Mapping[str, str], pair: Mapping[str, Any]) -> str:
    base, cand = pair["baseline"], pair["candidate"]
    confidence = result["settings"]["bootstrap"]["confidence"]
    rows = []
    for m in BOOTSTRAPPED:
        entry = pair["comparison"][m]
        low, high = entry["delta_ci"]
        d = decimals(entry["delta"], low, high)
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
                              (f"recall when the top {percent(top)} are flagged", "top_k", "recall"),
                              (f"precision when the top {percent(top)} are flagged", "top_k", "precision")):
        a, b = old_ops[key][field], new_ops[key][field]
        rows.append(f'<tr><td class="metric">{label}</td><td>{_f(a, 4)}</td><td>{_f(b, 4)}</td>'
                    f"<td>{signed(b - a, 3)}</td><td>\u2014</td><td></td></tr>")
    return ('<table class="headline"><tr><th class="metric">metric</th>'
            f"{_model_header(pair, colours, base)}{_model_header(pair, colours, cand)}"
            f"<th>\u0394 new \u2212 old</th><th>{confidence:.0%} CI of \u0394</th><th></th></tr>"
            + "".join(rows) + "</table>")


def _threshold_table(result: Mapping[str, Any], colours: Mapping[str, str]) -> str:
    models = result["models"]
    head = ('<tr><th class="metric" rowspan="2">threshold</th>'
            + "".join(_model_header(_only_pair(result), colours, name, 4) for name in models) + "</tr><tr>"
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
                       ("top_k", f"flagging the top {percent(settings['top_k_fraction'])}")):
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


def _verdict_box(verdict: Mapping[str, Any]) -> str:
    css_class = {"better": "better", "worse": "worse"}.get(verdict["label"], "none")
    return (f'<div class="verdict {css_class}"><span class="tag">verdict: {html.escape(verdict["label"])}</span>\n'
            f'{html.escape(verdict["sentence"])}</div>')


def _comparisons(result: Mapping[str, Any], colours: Mapping[str, str]) -> str:
    """Each pair's verdict and table; with several pairs, each under its own heading."""
    pairs = result["comparisons"]
    parts = []
    for pair in pairs:
        if len(pairs) > 1:
            parts.append(f'<h2>{html.escape(pair["candidate"])} vs {html.escape(pair["baseline"])}</h2>')
        parts.append(_verdict_box(pair["verdict"]) + "\n" + _headline_table(result, colours, pair))
    return "\n".join(parts)


def _compared(result: Mapping[str, Any]) -> str:
    """``old: <b>A</b>, new: <b>B</b>``, or with several pairs ``compared: <b>B</b> vs <b>A</b>; ...``."""
    pairs = result["comparisons"]
    if len(pairs) == 1:
        return f"old: <b>{html.escape(pairs[0]['baseline'])}</b>, new:\n<b>{html.escape(pairs[0]['candidate'])}</b>"
    return "compared: " + "; ".join(f"<b>{html.escape(p['candidate'])}</b> vs <b>{html.escape(p['baseline'])}</b>"
                                    for p in pairs)


def render_html(result: Mapping[str, Any], title: str, description: str) -> str:
    """The self-contained HTML page of a ``compare`` result (plots inline as base64 PNG)."""
    colours = model_colours(result)
    data = result["data"]
    boot = result["settings"]["bootstrap"]
    plots = [
        (plot_roc(result, colours), "ROC curves", "Higher and further left is better; the inset zooms into "
                                                   "the low false-positive corner."),
        (plot_pr(result, colours), "Precision-recall curves", "Higher is better; the dashed line is a model "
                                                                "that guesses at the prevalence."),
        (plot_calibration(result, colours), "Calibration", "Points on the diagonal mean the scores are honest "
                                                            "probabilities; whiskers: 95% interval of each bin's "
                                                            "fraction (wide where a bin has few rows); bars count "
                                                            "the rows per bin (log scale)."),
        (plot_thresholds(result, colours), "Precision/recall vs threshold", "Where to set the threshold for the "
                                                                             "precision or recall you need."),
    ]
    figures = "".join(f'<figure><img alt="{alt}" src="data:image/png;base64,{png}">'
                      f"<figcaption>{caption}</figcaption></figure>" for png, alt, caption in plots)
    distributions = plot_distributions(result, colours)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{CSS}</style></head>
<body><main>
<h1>{html.escape(title)}</h1>
<p class="sub">{html.escape(description)} &middot; {data['rows']:,} rows, {data['positives']:,} positives
({data['prevalence']:.1%}) &middot; {_compared(result)}</p>
{_comparisons(result, colours)}
<p class="note">\u0394 and its {boot['confidence']:.0%} confidence interval: {boot['resamples']:,} paired bootstrap
resamples of the held-out rows (seed {boot['seed']}), the same rows scoring every model. A metric is clearly
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
