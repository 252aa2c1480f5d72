"""Compare models on the same held-out set (two, or several pairs in one report): a JSON of the numbers and an
HTML report to look at.

    python -m smkit_report compare old.csv new.csv --labels labels.csv --out DIR
    smkit-report compare old=old.csv new=new.csv --labels labels.csv --label-column label --out DIR
    smkit-report compare a=a.csv b=b.csv c=c.csv --pair a b --pair b c --labels labels.csv --out DIR

API::

    result = compare(labels, {"old": old_scores, "new": new_scores}, baseline="old", candidate="new")
    result = compare(labels, {"a": a, "b": b, "c": c}, pairs=[("a", "b"), ("b", "c")])  # first pair: headline
    html_path, json_path = write_report(result, Path("out"), "Risk model, week 12 vs 11", "2,000 held-out orders")

Modules: ``comparison`` (the numbers: metrics, paired bootstrap, verdict), ``plots``, ``page`` (HTML and JSON
files), ``score_files`` (CSV input), ``cli``.
"""

from smkit_report.comparison import SCHEMA, ReportInputError, compare
from smkit_report.page import render_html, write_report
from smkit_report.score_files import read_column

__all__ = ["SCHEMA", "ReportInputError", "compare", "read_column", "render_html", "write_report"]
