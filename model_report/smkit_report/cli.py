"""The command line: ``smkit-report compare [NAME=]OLD.csv [NAME=]NEW.csv --labels LABELS.csv --out DIR``.

More score files and ``--pair OLD NEW`` (repeated) compare several pairs in one report, the first the headline:
``smkit-report compare a=A.csv b=B.csv c=C.csv --pair a b --pair b c --labels L.csv --out DIR``.

Exit codes: 0 written, 2 inputs that cannot be compared (the message says which and why) or bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from smkit_report.comparison import DEFAULT_THRESHOLDS, ReportInputError, compare
from smkit_report.page import write_report
from smkit_report.score_files import read_column


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
    parser = argparse.ArgumentParser(prog="smkit-report", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    command = commands.add_parser(
        "compare", help="compare models' scores on the same labelled rows",
        description="Compare two models' scores (or several pairs of models, --pair) on the same labelled rows: "
                    "a verdict per pair on stdout, model_comparison.html and model_comparison.json in --out.")
    command.add_argument("score_files", type=_model_file, nargs="*", metavar="[NAME=]SCORES.csv",
                         help="CSV of one model's scores on the same rows, the old model first, then the new one "
                              "(NAME defaults to the file name)")
    command.add_argument("--scores", type=_model_file, action="append", default=[], metavar="NAME=PATH",
                         help="the same as a positional SCORES.csv")
    command.add_argument("--labels", type=Path, required=True, help="CSV of the held-out labels (0/1)")
    command.add_argument("--out", type=Path, required=True, help="folder for the HTML and JSON")
    command.add_argument("--baseline", help="the old model's NAME (default: the first scores file)")
    command.add_argument("--candidate", help="the new model's NAME (default: the second scores file)")
    command.add_argument("--pair", nargs=2, action="append", metavar=("OLD", "NEW"),
                         help="compare model NEW with model OLD (names as above); repeat it for several pairs in "
                              "one report, the first the headline (instead of --baseline/--candidate)")
    command.add_argument("--label-column", help="column name or index in the labels CSV (when it has several)")
    command.add_argument("--score-column", help="column name or index in the scores CSVs (when they have several)")
    command.add_argument("--title", help="report title (default: 'Model comparison: NEW vs OLD')")
    command.add_argument("--description", help="what the held-out set is (default: the labels file)")
    command.add_argument("--thresholds", type=_thresholds, default=list(DEFAULT_THRESHOLDS),
                         help="comma-separated thresholds (default 0.1,...,0.9)")
    command.add_argument("--target-recall", type=float, default=0.8)
    command.add_argument("--top-k", type=float, default=0.05, help="share of rows flagged at the top-k point")
    command.add_argument("--n-bootstrap", type=int, default=1000)
    command.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    return _compare(command, args)


def _compare(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    models = [*args.score_files, *args.scores]
    if len(models) < 2:
        parser.error("give the scores at least twice: the old and the new model")
    names = [name for name, _ in models]
    if len(set(names)) != len(names):
        parser.error(f"model names must differ, got {', '.join(names)}")
    if args.pair and (args.baseline or args.candidate):
        parser.error("give either --pair or --baseline/--candidate")
    pairs = args.pair or [(args.baseline or names[0], args.candidate or names[1])]
    try:
        labels = read_column(args.labels, args.label_column)
        scores = {name: read_column(path, args.score_column) for name, path in models}
        result = compare(labels, scores, pairs=pairs, thresholds=args.thresholds, n_bootstrap=args.n_bootstrap,
                         seed=args.seed, target_recall=args.target_recall, top_k=args.top_k)
    except ReportInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    title = args.title or "Model comparison: " + "; ".join(f"{new} vs {old}" for old, new in pairs)
    html_path, json_path = write_report(result, args.out, title, args.description or f"held-out set {args.labels}")
    for pair in result["comparisons"]:
        print(pair["verdict"]["sentence"])
    print(f"report: {html_path}\nnumbers: {json_path}")
    return 0
