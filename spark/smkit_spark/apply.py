"""Apply a fitted preprocess model on Spark: orders in, label + features out (CSV and Parquet).

Executors run the preprocess image's compiled fast transform on Arrow batches (``mapInArrow``): one call
per batch of up to ``spark.sql.execution.arrow.maxRecordsPerBatch`` records, never a row-at-a-time UDF,
never scikit-learn. A batch goes column by column (:mod:`.columnar`) when that path can prove it gives the
per-record result; otherwise through the image's own batch-transform step (``PreprocessHandler.predict``:
its record reading, the model's feature code and its record checks). Both end in the image's ``encode``:
the CSV lines are the bytes the image's batch transform writes with ``SMKIT_OUTPUT_LABEL=true`` (label
first, no header); Parquet holds the same float64 values (label first, then one column per output column
of ``features.json``: what the XGBoost image reads).

Input: a DataFrame (each row is a record; struct columns are nested objects), or a path of JSON Lines
(read as text, one JSON document per ``\\n``-separated line, blank lines skipped, as the image splits a
JSON Lines request; parsed on the executors) or of Parquet.

Bad records (invalid JSON, a value the transform cannot read, a missing label) follow the image's batch
transform: by default the job fails naming the record and the reason (:class:`RecordError`); with
``errors="aside"`` every bad record is written to an errors output with its reason instead, and the
features hold the good ones. A bad record is never dropped silently.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa

from .columnar import Columnar
from .model import ModelFiles, read_model
from .runtime import CSV, BadRequest, PreprocessHandler, Settings, ship_runtime

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["ERRORS", "FORMATS", "FeatureRun", "RecordError", "transform", "write_features"]

ERRORS = ("fail", "aside")
FORMATS = ("csv", "parquet")
CSV_COLUMN = "_csv"
ERROR_COLUMN, RECORD_COLUMN, SOURCE_COLUMN = "_error", "_record", "_source"
_MARKER = "smkit-spark bad record: "
_RECORD_TEXT = 300  # characters of a bad record quoted in a failure message


class RecordError(ValueError):
    """A record cannot be transformed (the job failed on it, as the image's batch transform does)."""


# --------------------------------------------------------------------------------------------------
# executors


def _handler(label: bool) -> PreprocessHandler:
    """The image's handler in batch-transform mode: SMKIT_OUTPUT_LABEL=``label``, SMKIT_RECORD_ERRORS=fail."""
    handler = PreprocessHandler()
    handler.settings = Settings(output_label=label, record_errors="fail")  # never the executor's environment
    return handler


def _decode_lines(lines: Sequence[str | None], files: Sequence[str | None]) -> tuple[list[Any], list[str],
                                                                                  list[str | None]]:
    """JSON Lines text -> (records, their lines, their files): blank lines skipped, invalid JSON kept as a
    :class:`BadRequest` standing in for the record (it fails it)."""
    records: list[Any] = []
    texts: list[str] = []
    sources: list[str | None] = []
    for line, source in zip(lines, files, strict=True):
        if line is None or not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            value = BadRequest(f"invalid JSON: {exc}")
        else:
            if not isinstance(value, dict):
                value = BadRequest(f"not a JSON object but {type(value).__name__}")
        records.append(value)
        texts.append(line)
        sources.append(source)
    return records, texts, sources


def _csv_lines(body: bytes, n: int) -> pa.Array:
    """The ``n`` lines of a CSV response (each ended by its line break) as strings without it: the body's
    bytes less its line breaks, cut at them (no Python string per line)."""
    data = np.frombuffer(body, dtype=np.uint8)
    breaks = np.flatnonzero(data == 10)
    if len(breaks) != n or (n and breaks[-1] != len(data) - 1):
        raise RuntimeError(f"the CSV encoder wrote {len(breaks)} lines for {n} rows")  # never expected
    offsets = (np.concatenate([[0], breaks + 1]) - np.arange(n + 1)).astype(np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(np.delete(data, breaks)))


def _record_text(record: Any) -> str:
    return orjson.dumps(record, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def _one_record_reason(message: str) -> str:
    """A one-record transform says "record 0: <reason>": the reason alone."""
    return re.sub(r"^(record|row) 0: ", "", message)


def _transform_batch(handler: PreprocessHandler, model: Any, records: list[Any]) -> tuple[np.ndarray | None,
                                                                                          list[tuple[int, str]]]:
    """(rows of the good records in order, [(index, reason) of each bad record])."""
    if not any(isinstance(record, BadRequest) for record in records):
        try:
            return handler.predict(model, records, None), []
        except BadRequest:
            pass  # find every bad record, one at a time (what the image's line mode does)
    rows, bad = [], []
    for index, record in enumerate(records):
        if isinstance(record, BadRequest):
            bad.append((index, record.message))
            continue
        try:
            rows.append(handler.predict(model, [record], None))
        except BadRequest as exc:
            bad.append((index, _one_record_reason(exc.message)))
    return (np.concatenate(rows) if rows else None), bad


@dataclass(frozen=True)
class _Job:
    """What an executor needs: the broadcast model and the options (pickled with the function)."""

    model: Any  # Broadcast[ModelFiles]
    label: bool
    errors_aside: bool
    text_input: bool
    width: int  # label + features
    csv: bool
    values: bool  # the label and feature columns (not needed when only the CSV lines are written)


def _columnar(columnar: Columnar, batch: pa.RecordBatch, text_input: bool) -> np.ndarray | None:
    """The batch's rows by the columnar path, or None: the per-record path decides (see :mod:`.columnar`)."""
    if text_input:
        table = columnar.parse_json(batch.column("value"))
        return None if table is None else columnar.transform(table, from_json=True)
    return columnar.transform(batch, from_json=False)


def _run(job: _Job, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    model = job.model.value.load()
    handler = _handler(job.label)
    columnar = Columnar(model, job.label)
    for batch in batches:
        matrix = _columnar(columnar, batch, job.text_input) if batch.num_rows else None
        if matrix is not None:
            if len(matrix):
                yield _output_batch(job, handler, matrix, [], [], None, None)
            continue
        if job.text_input:
            columns = batch.to_pydict()
            records, texts, sources = _decode_lines(columns["value"], columns[SOURCE_COLUMN])
        else:
            records = batch.to_pylist()
            texts, sources = None, None
        if not records:
            continue
        matrix, bad = _transform_batch(handler, model, records)
        if bad and not job.errors_aside:
            index, reason = bad[0]
            text = texts[index] if texts is not None else _record_text(records[index])
            where = f"{sources[index]}: " if sources else ""
            quoted = text if len(text) <= _RECORD_TEXT else text[:_RECORD_TEXT] + "..."
            raise RecordError(f"{_MARKER}{where}record {quoted}: {reason}")
        yield _output_batch(job, handler, matrix, bad, records, texts, sources)


def _output_batch(job: _Job, handler: PreprocessHandler, matrix: np.ndarray | None, bad: list[tuple[int, str]],
                  records: list[Any], texts: list[str] | None, sources: list[str] | None) -> pa.RecordBatch:
    n_good = 0 if matrix is None else len(matrix)
    n = n_good + len(bad)
    arrays: list[pa.Array] = []
    if job.csv:
        lines = _csv_lines(handler.encode(matrix, CSV, None), n_good) if n_good else pa.array([], pa.string())
        arrays.append(pa.concat_arrays([lines, pa.nulls(len(bad), pa.string())]) if bad else lines)
    if job.values:
        values = matrix if matrix is not None else np.zeros((0, job.width))
        if bad:
            values = np.vstack([values, np.full((len(bad), job.width), np.nan)])
        mask = np.arange(n) >= n_good  # bad rows: null features
        for j in range(job.width):
            arrays.append(pa.array(values[:, j], type=pa.float64(), mask=mask if bad else None))
    if job.errors_aside:
        arrays.append(pa.array([None] * n_good + [reason for _, reason in bad], type=pa.string()))
        bad_texts = [texts[i] if texts is not None else _record_text(records[i]) for i, _ in bad]
        arrays.append(pa.array([None] * n_good + bad_texts, type=pa.string()))
        bad_sources = [sources[i] for i, _ in bad] if sources else [None] * len(bad)
        arrays.append(pa.array([None] * n_good + bad_sources, type=pa.string()))
    names = [f"c{i}" for i in range(len(arrays))]
    return pa.RecordBatch.from_arrays(arrays, names=names)


# --------------------------------------------------------------------------------------------------
# driver


def quote(name: str) -> str:
    """A column name as Spark SQL reads it literally (dots and backticks included)."""
    return "`" + name.replace("`", "``") + "`"


def _input_format(path: str, input_format: str | None) -> str:
    if input_format is not None:
        if input_format not in ("jsonl", "parquet"):
            raise ValueError(f"input_format must be 'jsonl' or 'parquet', got {input_format!r}")
        return input_format
    local = Path(path.removeprefix("file://"))
    if path.endswith(".parquet") or (local.is_dir() and any(local.rglob("*.parquet"))):
        return "parquet"
    return "jsonl"


def read_orders(spark: SparkSession, data: DataFrame | str | Path, input_format: str | None = None) -> tuple[
        DataFrame, bool]:
    """(DataFrame, whether it holds JSON Lines text) for a DataFrame or a path of JSON Lines / Parquet."""
    from pyspark.sql import DataFrame as SparkDataFrame
    from pyspark.sql import functions as F

    if isinstance(data, SparkDataFrame):
        return data, False
    path = str(data)
    if _input_format(path, input_format) == "parquet":
        return spark.read.parquet(path), False
    # lineSep "\n": lines split exactly as the image splits a JSON Lines request (not on "\r")
    text = spark.read.option("lineSep", "\n").text(path)
    return text.select("value", F.input_file_name().alias(SOURCE_COLUMN)), True


def transform(spark: SparkSession, model: ModelFiles | str | Path, data: DataFrame | str | Path, *,
              label: bool | None = None, errors: str = "fail", input_format: str | None = None,
              csv: bool = True, values: bool = True) -> DataFrame:
    """Label + features of ``data`` (lazy): columns ``_csv`` (with ``csv``: the image's CSV line), the
    label (named as in the model; with ``label``, default: when the model has one) and one float64 column
    per output column (with ``values``), and with ``errors="aside"`` ``_error``/``_record``/``_source``
    (null on good rows)."""
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType

    if errors not in ERRORS:
        raise ValueError(f"errors must be one of {ERRORS}, got {errors!r}")
    files = model if isinstance(model, ModelFiles) else read_model(model)
    if label is None:
        label = files.label is not None
    if label and files.label is None:
        raise ValueError("label=True but the model was trained without a label")
    names = ([files.label] if label else []) + list(files.output_columns)
    if label and files.label in files.output_columns:
        raise ValueError(f"the label {files.label!r} has the name of an output column: rename one")
    frame, text_input = read_orders(spark, data, input_format)
    ship_runtime(spark.sparkContext)
    fields = [StructField(CSV_COLUMN, StringType())] if csv else []
    if values:
        fields += [StructField(name, DoubleType()) for name in names]
    if not fields:
        raise ValueError("csv=False and values=False: nothing to return")
    if errors == "aside":
        fields += [StructField(name, StringType()) for name in (ERROR_COLUMN, RECORD_COLUMN, SOURCE_COLUMN)]
    job = _Job(spark.sparkContext.broadcast(files), label, errors == "aside", text_input, len(names), csv, values)
    schema = StructType([StructField(f"c{i}", f.dataType) for i, f in enumerate(fields)])
    result = frame.mapInArrow(functools.partial(_run, job), schema)
    return result.toDF(*[f.name for f in fields])


@dataclass(frozen=True)
class FeatureRun:
    """What :func:`write_features` wrote."""

    rows: int  # records written to the features
    failed: int  # records written to the errors output (errors="aside")
    outputs: dict[str, str]  # "csv" / "parquet" / "errors" -> path


def _bad_record(exc: Exception) -> RecordError | None:
    match = re.search(re.escape(_MARKER) + r"(.*)", str(exc))
    return RecordError(match.group(1).strip()) if match else None


def write_features(spark: SparkSession, model: ModelFiles | str | Path, data: DataFrame | str | Path,
                   output: str | Path, *, formats: Sequence[str] = FORMATS, errors: str = "fail",
                   errors_output: str | Path | None = None, label: bool | None = None,
                   input_format: str | None = None, mode: str = "errorifexists") -> FeatureRun:
    """Transform ``data`` and write ``<output>/csv`` (text files of the image's CSV lines) and/or
    ``<output>/parquet``; with ``errors="aside"`` bad records go to ``errors_output`` (default
    ``<output>/errors``) as JSON Lines ``{"_source", "_record", "_error"}``.

    Raises :class:`RecordError` naming the first bad record found (``errors="fail"``)."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise ValueError(f"formats must be some of {FORMATS}, got {list(formats)}")
    output = str(output).rstrip("/")
    frame = transform(spark, model, data, label=label, errors=errors, input_format=input_format,
                      csv="csv" in formats, values="parquet" in formats)  # (Spark cannot prune a UDF's columns)
    value_columns = [c for c in frame.columns if c not in (CSV_COLUMN, ERROR_COLUMN, RECORD_COLUMN, SOURCE_COLUMN)]
    outputs: dict[str, str] = {}
    passes = len(formats) + (errors == "aside")
    if passes > 1:
        frame = frame.persist(StorageLevel.MEMORY_AND_DISK)  # transform once, write several outputs
    try:
        good = frame.where(F.col(ERROR_COLUMN).isNull()) if errors == "aside" else frame
        if "csv" in formats:
            outputs["csv"] = f"{output}/csv"
            good.select(CSV_COLUMN).write.mode(mode).option("lineSep", "\n").text(outputs["csv"])
        if "parquet" in formats:
            outputs["parquet"] = f"{output}/parquet"
            good.select([F.col(quote(c)) for c in value_columns]).write.mode(mode).parquet(outputs["parquet"])
        failed = 0
        if errors == "aside":
            outputs["errors"] = str(errors_output or f"{output}/errors")
            bad = frame.where(F.col(ERROR_COLUMN).isNotNull()).select(SOURCE_COLUMN, RECORD_COLUMN, ERROR_COLUMN)
            bad.write.mode(mode).json(outputs["errors"])
            failed = spark.read.text(outputs["errors"]).count()  # one JSON object per line
        # counted from what was written (Parquet footers, or text lines): no second transform
        if "parquet" in outputs:
            rows = spark.read.parquet(outputs["parquet"]).count()
        else:
            rows = spark.read.option("lineSep", "\n").text(outputs["csv"]).count()
    except Exception as exc:
        cause = _bad_record(exc)
        if cause is not None:
            raise cause from None
        raise
    finally:
        if passes > 1:
            frame.unpersist()
    return FeatureRun(rows, failed, outputs)
