"""``spark-submit spark/submit.py apply|fit ...``: the library calls with arguments.

    spark-submit --master local[2] spark/submit.py apply --model model.tar.gz --input orders/ --output features/
    spark-submit --master yarn spark/submit.py fit --input s3://bucket/orders/ --output model.tar.gz --label default
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from .apply import ERRORS, FORMATS, RecordError, write_features
from .fit import FitError, fit_model


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [name.strip() for name in text.split(",") if name.strip()]


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="smkit_spark", description=__doc__.splitlines()[0])
    commands = top.add_subparsers(dest="command", required=True)
    apply = commands.add_parser("apply", help="label + features of orders through a fitted preprocess model")
    apply.add_argument("--model", required=True, help="model.tar.gz or model folder of the preprocess image")
    apply.add_argument("--input", required=True, help="JSON Lines or Parquet orders (file or folder)")
    apply.add_argument("--input-format", choices=("jsonl", "parquet"), help="default: by name (.parquet) or jsonl")
    apply.add_argument("--output", required=True, help="folder: <output>/csv, <output>/parquet")
    apply.add_argument("--formats", default=",".join(FORMATS), help="csv,parquet (default both)")
    apply.add_argument("--errors", choices=ERRORS, default="fail",
                       help="fail: the job fails naming the first bad record; aside: bad records to --errors-output")
    apply.add_argument("--errors-output", help="default <output>/errors (JSON Lines)")
    apply.add_argument("--no-label", action="store_true", help="features only (default: label first when the "
                       "model has one)")
    apply.add_argument("--mode", default="errorifexists", help="Spark save mode (overwrite, errorifexists, ...)")
    fit = commands.add_parser("fit", help="fit a preprocess model on Spark (exact statistics)")
    fit.add_argument("--input", required=True)
    fit.add_argument("--input-format", choices=("jsonl", "parquet"))
    fit.add_argument("--output", required=True, help="model folder or model.tar.gz")
    fit.add_argument("--label")
    fit.add_argument("--numeric")
    fit.add_argument("--categorical")
    fit.add_argument("--drop", default="")
    fit.add_argument("--numeric-impute", default="median", choices=("mean", "median", "constant0"))
    fit.add_argument("--scale", default="true", choices=("true", "false"))
    fit.add_argument("--categorical-encoding", default="onehot", choices=("onehot", "ordinal"))
    fit.add_argument("--min-frequency", type=float, help="rarer categories are grouped as infrequent: a count "
                     "(>= 1) or a fraction of the records (< 1)")
    fit.add_argument("--max-categories", type=int, help="at most this many outputs per categorical field "
                     "(the rarest grouped as infrequent)")
    fit.add_argument("--code", help="feature-code module defining extract(record)")
    fit.add_argument("--max-missing-fields", type=int, help="input fields a record may miss at serving "
                     "(default: all but one)")
    fit.add_argument("--unknown-fields", default="warn", choices=("error", "warn", "ignore"),
                     help="a record field the model does not know, at serving")
    top.add_argument("--master", help="default: spark-submit's --master, else local[*]")
    return top


def _frequency(value: float | None) -> int | float | None:
    """--min-frequency as the image reads it: a whole number is a count, else a fraction."""
    return int(value) if value is not None and value >= 1 and value.is_integer() else value


def main(argv: Sequence[str] | None = None) -> int:
    from pyspark.sql import SparkSession

    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    builder = SparkSession.builder.appName(f"smkit-spark-{args.command}")
    if args.master:
        builder = builder.master(args.master)
    spark = builder.getOrCreate()
    try:
        if args.command == "apply":
            run = write_features(spark, args.model, args.input, args.output, formats=_names(args.formats) or [],
                                 errors=args.errors, errors_output=args.errors_output,
                                 label=False if args.no_label else None, input_format=args.input_format,
                                 mode=args.mode)
            print(f"wrote {run.rows} rows, {run.failed} bad records: {json.dumps(run.outputs)}")
        else:
            fitted = fit_model(spark, args.input, args.output, label=args.label, numeric=_names(args.numeric),
                               categorical=_names(args.categorical), drop=_names(args.drop) or [], code=args.code,
                               input_format=args.input_format, numeric_impute=args.numeric_impute,
                               scale=args.scale == "true", categorical_encoding=args.categorical_encoding,
                               max_missing_fields=args.max_missing_fields, unknown_fields=args.unknown_fields,
                               max_categories=args.max_categories, min_frequency=_frequency(args.min_frequency))
            print(f"wrote {args.output}: {fitted!r}")
    except (RecordError, FitError, ValueError, FileNotFoundError) as exc:
        print(f"smkit_spark {args.command}: {exc}", file=sys.stderr)
        return 2
    finally:
        spark.stop()
    return 0
