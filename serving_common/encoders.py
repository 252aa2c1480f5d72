"""Prediction -> response body, one encoder per media type (JSON, JSON Lines, CSV, NPY).

Responses never carry media-type parameters (no ``; charset=``): the next container of a pipeline
must be able to read the Content-Type as it is. Numbers are written so that they round-trip exactly.

Line-oriented bodies (CSV, JSON Lines) end with their line terminator, every line including the last:
batch transform joins the responses of its mini-batches as they are (``AssembleWith=None``), and a body
without a final newline would run its last row into the next response's first one.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import orjson

from .content_types import CSV, JSON, JSONLINES, NPY
from .errors import ModelError, NotAcceptable

_ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def check_finite(array: np.ndarray, what: str = "the model's output") -> None:
    """500 when a float output holds NaN or infinity: JSON and CSV consumers cannot read them."""
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = np.argwhere(~np.isfinite(array))[0]
        raise ModelError(f"{what} is not finite at index {tuple(int(i) for i in bad)}")


def _as_array(prediction: Any) -> np.ndarray:
    array = prediction if isinstance(prediction, np.ndarray) else np.asarray(prediction)
    check_finite(array)
    return array


def _non_finite(value: Any) -> bool:
    """Whether a (nested) value holds NaN or infinity, which orjson would silently write as ``null``."""
    if isinstance(value, float | np.floating):
        return not math.isfinite(value)
    if isinstance(value, np.ndarray):
        return value.dtype.kind == "f" and not np.isfinite(value).all()
    if isinstance(value, dict):
        return any(_non_finite(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(_non_finite(item) for item in value)
    return False


def _dumps(value: Any) -> bytes:
    encoded = orjson.dumps(value, option=_ORJSON_OPTIONS)
    if b"null" in encoded and _non_finite(value):  # the slow check only when a null could be a NaN
        raise ModelError("the model's output is not finite (NaN or infinity)")
    return encoded


def encode_json(prediction: Any) -> bytes:
    if isinstance(prediction, np.ndarray):
        check_finite(prediction)
    return _dumps(prediction)


def _rows(prediction: Any) -> list[Any]:
    if isinstance(prediction, np.ndarray):
        check_finite(prediction)
        return prediction.tolist()
    return list(prediction)


def lines(values: Iterable[bytes]) -> bytes:
    """Lines as one body, each one (the last too) ended by ``\\n``: the one way every line-oriented
    response is assembled (see the module's docstring)."""
    return b"".join(value + b"\n" for value in values)


def encode_jsonlines(prediction: Any) -> bytes:
    """One JSON value per row of ``prediction``, each line ended by ``\\n``."""
    return lines(_dumps(row) for row in _rows(prediction))


def _csv_cell(value: Any) -> str:
    if isinstance(value, float | np.floating):
        if not math.isfinite(value):
            raise ModelError(f"the model's output is not finite: {value}")
        # shortest text that parses back to the same number, spelled as orjson spells it in encode_csv's
        # fast path (the same bytes either way); numpy scalars as numpy prints them
        return orjson.dumps(float(value)).decode() if isinstance(value, float) else str(value)
    if isinstance(value, list | tuple | dict):
        raise ModelError("CSV output must be 1-D or 2-D")
    if isinstance(value, str):
        if any(ch in value for ch in ',"\n\r'):
            return '"' + value.replace('"', '""') + '"'
        return value
    return str(value)


def encode_csv(prediction: Any) -> bytes:
    """A 1-D output is one value per line; a 2-D output one row per line, each ended by ``\\n``. No header."""
    if isinstance(prediction, np.ndarray) and prediction.dtype.kind == "f" and prediction.ndim in (1, 2):
        # The common case, without the per-cell type dispatch: orjson writes each float (float32 values
        # widened exactly) as the shortest text that parses back to the same double, ~5x faster than repr.
        check_finite(prediction)
        if prediction.ndim == 1:
            body = orjson.dumps(prediction.tolist())[1:-1].replace(b",", b"\n")
        else:
            body = orjson.dumps(prediction.tolist())[2:-2].replace(b"],[", b"\n")
        return body + b"\n" if body else body
    return lines((",".join(map(_csv_cell, row)) if isinstance(row, list | tuple) else _csv_cell(row)).encode()
                 for row in _rows(prediction))


def encode_npy(prediction: Any) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, _as_array(prediction), allow_pickle=False)
    return buffer.getvalue()


ENCODERS: dict[str, Callable[[Any], bytes]] = {
    JSON: encode_json,
    JSONLINES: encode_jsonlines,
    CSV: encode_csv,
    NPY: encode_npy,
}


def encode(prediction: Any, accept: str) -> bytes:
    """Serialize ``prediction`` as ``accept`` (an essence such as ``text/csv``)."""
    try:
        encoder = ENCODERS[accept]
    except KeyError:
        raise NotAcceptable(f"no encoder for {accept!r}") from None
    return encoder(prediction)
