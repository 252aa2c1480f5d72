"""Training data -> flat records.

A *record* is one JSON object (or one CSV row keyed by the header). Nested objects are flattened into
dotted field names (``{"customer": {"age": 3}}`` -> ``{"customer.age": 3}``) so that a field has one
name whether it came from nested JSON or from a CSV column called ``customer.age``.

Supported files (optionally gzip-compressed, ``.gz``): JSON Lines (``.jsonl``, ``.ndjson``, and
``.json`` holding one object per line), a JSON array of objects (``.json`` starting with ``[``) and CSV
with a header row (``.csv``). Files without an extension are sniffed: ``[`` -> JSON array, ``{`` -> JSON
objects. Hidden files and Hadoop/Spark bookkeeping (names starting with ``.`` or ``_`` such as
``_SUCCESS``, checksum files ``*.crc``) and other extensions are skipped and logged.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from serving_common.training.data_files import data_files as training_data_files
from serving_common.training.data_files import skip_reason

from .flatten import DuplicateField, has_objects
from .flatten import flatten as flatten_record

logger = logging.getLogger("preprocess")

__all__ = [
    "RecordError",
    "data_files",
    "flatten",
    "flatten_if_nested",
    "iter_training_files",
    "read_file",
    "read_training_files",
]

_JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson"})
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_SNIFF_CHARS = 4096


class RecordError(ValueError):
    """A record or a data file cannot be read as records."""


# --------------------------------------------------------------------------------------------------
# flattening


def flatten(record: Mapping) -> dict[str, Any]:
    """Flatten nested objects into dotted field names (:func:`serving_common.features.flatten.flatten`: lists
    and every other value kept as they are; an empty nested object contributes no field).

    Raises :class:`RecordError` when ``record`` is not a mapping, or when one field name arises twice
    (``{"a.b": 1, "a": {"b": 2}}``).
    """
    if not isinstance(record, Mapping):
        raise RecordError(f"a record must be a JSON object, got {type(record).__name__}")
    try:
        return flatten_record(record)
    except DuplicateField as exc:
        raise RecordError(f"{exc} in the record") from None


def flatten_if_nested(record: Mapping) -> Mapping:
    """``record`` itself when none of its values is an object (the common, cheap case), else flattened."""
    return flatten(record) if has_objects(record) else record


# --------------------------------------------------------------------------------------------------
# finding data files


def _kind(name: str) -> tuple[str | None, str]:
    """(reader kind or None to skip, reason) for a data file's name."""
    lower = name.lower()
    base = lower[:-3] if lower.endswith(".gz") else lower
    suffix = Path(base).suffix
    if suffix in _JSONL_SUFFIXES:
        return "jsonl", ""
    if suffix == ".json":
        return "json", ""
    if suffix == ".csv":
        return "csv", ""
    if suffix == "":
        return "sniff", ""
    return None, f"unsupported extension {suffix!r} (expected .jsonl, .ndjson, .json, .csv, maybe .gz)"


def data_files(directory: Path) -> list[tuple[Path, str]]:
    """The data files under ``directory`` (a directory tree or one file, selected as every container does:
    :func:`serving_common.training.data_files.data_files`) with their reader kind; skipped files are logged."""
    selected = []
    for path in training_data_files(directory, logger):
        kind, reason = _kind(path.name)
        if kind is None:
            logger.warning("skipping %s: %s", path, reason)
        else:
            selected.append((path, kind))
    return selected


# --------------------------------------------------------------------------------------------------
# reading


def _open_text(path: Path) -> IO[str]:
    # utf-8-sig: a UTF-8 byte order mark (Excel exports) is dropped; newline="" as the csv module needs.
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _first_char(path: Path) -> str:
    with _open_text(path) as f:
        while chunk := f.read(_SNIFF_CHARS):
            stripped = chunk.lstrip()
            if stripped:
                return stripped[0]
    return ""


def _object(value: Any, where: str, flat: bool = True) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RecordError(f"{where}: expected a JSON object, got {_json_type(value)}")
    if not flat:
        return value
    try:
        return flatten(value)
    except RecordError as exc:
        raise RecordError(f"{where}: {exc}") from None


def _json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


def _read_json_lines(path: Path, f: IO[str], flat: bool = True) -> list[dict[str, Any]]:
    records = []
    for number, line in enumerate(f, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RecordError(f"{path}: line {number}: invalid JSON: {exc.msg} (column {exc.colno})") from None
        records.append(_object(value, f"{path}: line {number}", flat))
    return records


def _read_json_array(path: Path, text: str, flat: bool = True) -> list[dict[str, Any]]:
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(f"{path}: line {exc.lineno}: invalid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(values, list):
        raise RecordError(f"{path}: expected a JSON array of objects, got {_json_type(values)}")
    return [_object(value, f"{path}: array element {index}", flat) for index, value in enumerate(values)]


def _read_json_stream(text: str) -> list[Any]:
    """Concatenated JSON values separated by whitespace (covers pretty-printed objects)."""
    decoder = json.JSONDecoder()
    values = []
    position = _WHITESPACE.match(text, 0).end()
    while position < len(text):
        value, position = decoder.raw_decode(text, position)
        values.append(value)
        position = _WHITESPACE.match(text, position).end()
    return values


def _read_json(path: Path, flat: bool = True) -> list[dict[str, Any]]:
    """A ``.json`` (or sniffed) file: a JSON array, JSON Lines, or (fallback) concatenated objects."""
    first = _first_char(path)
    if not first:
        return []
    if first == "[":
        with _open_text(path) as f:
            return _read_json_array(path, f.read(), flat)
    try:
        with _open_text(path) as f:  # streamed: JSON Lines files can be large
            return _read_json_lines(path, f, flat)
    except RecordError as line_error:
        # Not line-delimited: maybe pretty-printed objects one after another. If that fails too, the
        # per-line error (with its line number) is the better message.
        with _open_text(path) as f:
            text = f.read()
        try:
            values = _read_json_stream(text)
        except json.JSONDecodeError:
            raise line_error from None
        return [_object(value, f"{path}: object {index}", flat) for index, value in enumerate(values)]


def _read_csv(path: Path, f: IO[str]) -> list[dict[str, Any]]:
    reader = csv.reader(f, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            return []
        names = [name.strip() for name in header]
        for position, name in enumerate(names):
            if not name:
                raise RecordError(
                    f"{path}: the header has an empty column name at position {position} "
                    "(a pandas index written with to_csv(index=True)?)"
                )
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise RecordError(f"{path}: the header repeats column names {duplicates}")
        width = len(names)
        records = []
        for row in reader:
            if not row:  # blank line
                continue
            if len(row) > width:
                raise RecordError(f"{path}: line {reader.line_num}: {len(row)} fields but the header has {width}")
            record: dict[str, Any] = dict.fromkeys(names)  # short rows: trailing fields missing
            for name, value in zip(names, row, strict=False):  # rows may be short
                if value != "":
                    record[name] = value
            records.append(record)
        return records
    except csv.Error as exc:
        raise RecordError(f"{path}: line {reader.line_num}: invalid CSV: {exc}") from None


def read_file(path: Path, kind: str | None = None, *, flat: bool = True) -> list[dict[str, Any]]:
    """Flattened records of one data file; ``kind`` is "jsonl", "json", "csv" or "sniff" (default: by name).

    ``flat=False`` keeps JSON records as they are (nested), e.g. for feature code that expects records
    as they are sent at serving time; CSV records are flat either way.
    """
    path = Path(path)
    if kind is None:
        reason = skip_reason(Path(path.name))
        if reason is None:
            kind, reason = _kind(path.name)
        if kind is None:
            raise RecordError(f"{path}: cannot read this file: {reason}")
    try:
        if kind == "sniff":
            first = _first_char(path)
            if first in ("[", "{"):
                return _read_json(path, flat)
            if first == "":
                return []
            logger.warning("skipping %s: no extension and not JSON (starts with %r)", path, first)
            return []
        if kind == "json":
            return _read_json(path, flat)
        with _open_text(path) as f:
            if kind == "jsonl":
                return _read_json_lines(path, f, flat)
            if kind == "csv":
                return _read_csv(path, f)
        raise ValueError(f"unknown reader kind {kind!r}")
    except UnicodeDecodeError as exc:
        raise RecordError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except (gzip.BadGzipFile, EOFError) as exc:
        raise RecordError(f"{path}: corrupt gzip data: {exc}") from None


def iter_training_files(directory: Path, *, flat: bool = True) -> Iterator[tuple[Path, list[dict[str, Any]]]]:
    """(file, its records) for every data file under ``directory``, in :func:`data_files` order."""
    for path, kind in data_files(directory):
        yield path, read_file(path, kind, flat=flat)


def read_training_files(directory: Path, *, flat: bool = True) -> list[dict[str, Any]]:
    """Every record of every data file under ``directory`` (sorted by path), flattened (unless ``flat=False``)."""
    records: list[dict[str, Any]] = []
    n_files = 0
    for path, file_records in iter_training_files(directory, flat=flat):
        n_files += 1
        logger.info("read %d records from %s", len(file_records), path)
        records.extend(file_records)
    if n_files == 0:
        logger.warning("no data files found under %s", directory)
    return records
