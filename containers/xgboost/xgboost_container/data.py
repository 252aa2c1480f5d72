"""Training data of a channel -> features and labels, by content type: CSV, LIBSVM, Parquet (gzip too).

CSV is SageMaker XGBoost's layout: label in the first column, no header (what the preprocess
container's batch transform writes). LIBSVM: ``label index:value ...`` per line (indices from 0 or 1, as
written). Parquet: the first column is the label.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse

from serving_common.content_types import CSV, LIBSVM, parse
from serving_common.training.environment import Channel
from serving_common.training.harness import TrainingError

from . import libsvm

log = logging.getLogger("xgboost_container")

PARQUET = "application/x-parquet"
_BY_SUFFIX = {".csv": CSV, ".libsvm": LIBSVM, ".svm": LIBSVM, ".parquet": PARQUET}


@dataclass
class Dataset:
    features: np.ndarray | scipy.sparse.csr_matrix
    labels: np.ndarray

    @property
    def rows(self) -> int:
        return self.labels.shape[0]

    @property
    def columns(self) -> int:
        return self.features.shape[1]


def content_type_of(channel: Channel, path: Path) -> str:
    """The channel's ContentType (inputdataconfig.json), else the file's suffix, else CSV."""
    if channel.content_type:
        essence = parse(channel.content_type).essence
        return {"application/x-libsvm": LIBSVM, "application/parquet": PARQUET}.get(essence, essence)
    suffixes = [s for s in path.suffixes if s != ".gz"]
    return _BY_SUFFIX.get(suffixes[-1] if suffixes else "", CSV)


def _text(path: Path) -> str:
    if path.suffix == ".gz":
        try:
            with gzip.open(path) as stream:
                raw = stream.read()
        except (OSError, EOFError) as exc:  # gzip.BadGzipFile, a truncated stream
            raise TrainingError(f"{path.name}: not a readable gzip file ({exc})") from None
    else:
        raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")  # a leading byte-order mark (Excel, Windows tools) is dropped
    except UnicodeDecodeError as exc:
        raise TrainingError(f"{path.name}: not UTF-8 text (byte {exc.start})") from None


def _read_csv(path: Path) -> Dataset:
    text = _text(path)
    if not text.strip():  # an empty part file: loadtxt would only warn about it
        return Dataset(np.zeros((0, 0)), np.zeros(0))
    try:  # numpy's C parser first; the csv module (missing cells, precise errors) only when it refuses
        table = np.loadtxt(io.StringIO(text), delimiter=",", ndmin=2, dtype=np.float64)
    except ValueError:
        table = _read_csv_slowly(path, text)
    if table.size == 0:
        return Dataset(np.zeros((0, 0)), np.zeros(0))
    if table.shape[1] < 2:
        raise TrainingError(f"{path.name}: CSV needs the label and at least one feature per line")
    return Dataset(table[:, 1:], table[:, 0])


def _read_csv_slowly(path: Path, text: str) -> np.ndarray:
    rows = []
    width = None
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not "".join(row).strip():
            continue
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise TrainingError(f"{path.name}, line {number}: {len(row)} columns, the first line has {width}")
        try:
            rows.append([float(cell) if cell.strip() else np.nan for cell in row])
        except ValueError:
            bad = next(cell for cell in row if cell.strip() and not _is_float(cell))
            raise TrainingError(f"{path.name}, line {number}: {bad[:40]!r} is not a number "
                                "(CSV training data has no header: label first, then features)") from None
    return np.array(rows, dtype=np.float64).reshape(len(rows), width or 0)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_libsvm(path: Path) -> Dataset:
    try:
        parsed = libsvm.parse(_text(path), labels=True)
    except libsvm.LibsvmError as exc:
        where = f", line {exc.line}" if exc.line is not None else ""
        raise TrainingError(f"{path.name}{where}: {exc.problem}") from None
    return Dataset(parsed.matrix, parsed.labels)


def _read_parquet(path: Path) -> Dataset:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise TrainingError(f"{path.name}: Parquet needs pyarrow, which this image was built without "
                            "(build it with --build-arg WITH_PARQUET=true)") from None
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:  # pyarrow.ArrowInvalid is a ValueError
        raise TrainingError(f"{path.name}: not a readable Parquet file ({exc})") from None
    if table.num_columns < 2:
        raise TrainingError(f"{path.name}: Parquet needs the label column and at least one feature")
    columns = []
    for name, column in zip(table.column_names, table.columns, strict=True):
        try:
            columns.append(np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64))
        except (TypeError, ValueError):
            raise TrainingError(f"{path.name}: column {name!r} ({column.type}) is not numeric") from None
    return Dataset(np.column_stack(columns[1:]), columns[0])


_READERS = {CSV: _read_csv, LIBSVM: _read_libsvm, PARQUET: _read_parquet}


def _stack(parts: Sequence[Dataset]) -> Dataset:
    parts = [part for part in parts if part.rows]
    if not parts:
        return Dataset(np.zeros((0, 0)), np.zeros(0))
    width = max(part.columns for part in parts)
    sparse = [isinstance(part.features, scipy.sparse.spmatrix) for part in parts]
    if any(sparse) and not all(sparse):
        # A dense zero is a value, an absent LIBSVM entry is missing: stacking them would blur the two.
        raise TrainingError("the channel mixes LIBSVM files with CSV or Parquet files; use one format per channel")
    if all(sparse):
        matrices = [scipy.sparse.csr_matrix(part.features) for part in parts]
        matrices = [m if m.shape[1] == width else scipy.sparse.hstack(
            [m, scipy.sparse.csr_matrix((m.shape[0], width - m.shape[1]))]).tocsr() for m in matrices]
        features = scipy.sparse.vstack(matrices).tocsr()
    else:
        widths = {part.columns for part in parts}
        if len(widths) > 1:
            raise TrainingError(f"files of the channel have different numbers of features: {sorted(widths)}")
        features = np.vstack([part.features for part in parts])
    return Dataset(features, np.concatenate([part.labels for part in parts]))


def load_channel(channel: Channel, rank: int = 0, hosts: int = 1) -> Dataset:
    """The channel's data as seen by host ``rank`` of ``hosts``.

    FullyReplicated channels (every host has every file) are shared out by file, round-robin by rank;
    ShardedByS3Key channels already hold this host's share and are read whole.
    """
    files = channel.data_files()
    if hosts > 1 and channel.distribution == "FullyReplicated":
        files = files[rank::hosts]
    parts = []
    for path in files:
        kind = content_type_of(channel, path)
        reader = _READERS.get(kind)
        if reader is None:
            raise TrainingError(f"channel {channel.name}: content type {kind!r} is not supported "
                                f"(use {', '.join(_READERS)})")
        parts.append(reader(path))
    data = _stack(parts)
    if data.rows and not np.isfinite(data.labels).all():
        raise TrainingError(f"channel {channel.name}: labels must be finite numbers (missing label?)")
    log.info("channel %s: %d rows, %d features from %d files (host %d of %d)", channel.name, data.rows,
             data.columns, len(files), rank + 1, hosts)
    return data
