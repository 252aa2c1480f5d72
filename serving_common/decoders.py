"""Request body -> Python data, one decoder per media type (JSON, JSON Lines, CSV, NPY).

Decoders only parse; turning the parsed data into a model's input is the handler's job
(``arrays.to_matrix`` for numeric models). Request data is never unpickled.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from .content_types import CSV, JSON, JSONLINES, NPY, MediaType
from .errors import BadRequest, UnsupportedMediaType


def _text(body: bytes, media: MediaType) -> str:
    codec = media.text_codec()
    try:
        return body.decode(codec)
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the body is not valid {media.charset}: byte {exc.start} cannot be decoded") from None


def _json_bytes(body: bytes, media: MediaType) -> bytes | str:
    # orjson reads UTF-8 bytes directly; any other declared charset is decoded first.
    return body if media.text_codec() == "utf-8" else _text(body, media)


#: Deepest nesting of JSON arrays and objects a request may have: far more than any model reads (records
#: nest a few levels, rows two), far less than what recursive code (Python's limit: 1,000 frames) survives.
MAX_JSON_DEPTH = 64


def _too_deep(text: bytes | str, value: Any, where: str = "") -> None:
    """400 when ``value`` (parsed from ``text``) nests deeper than ``MAX_JSON_DEPTH``.

    Why by hand: orjson's own limit (1,024 levels) is above what recursive code downstream survives, and
    cannot be set. The walk is iterative and runs only when ``text`` holds more than ``MAX_JSON_DEPTH``
    brackets (a C-speed count): a single record or row never pays it.
    """
    if isinstance(text, bytes):
        brackets = text.count(b"{") + text.count(b"[")
    else:
        brackets = text.count("{") + text.count("[")
    if brackets <= MAX_JSON_DEPTH or not isinstance(value, dict | list):
        return
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise BadRequest(f"JSON{where} nests arrays and objects deeper than {MAX_JSON_DEPTH} levels")
        for child in node.values() if type(node) is dict else node:
            if type(child) is dict or type(child) is list:
                stack.append((child, depth + 1))


def decode_json(body: bytes, media: MediaType) -> Any:
    """One JSON document. NaN/Infinity are not JSON and are rejected; so is nesting deeper than ``MAX_JSON_DEPTH``."""
    text = _json_bytes(body, media)
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"invalid JSON: {exc}") from None
    _too_deep(text, value)
    return value


def decode_jsonlines(body: bytes, media: MediaType) -> list[Any]:
    """One JSON document per line; blank lines (batch transform adds them) are skipped."""
    text = _text(body, media)
    values = []
    for number, line in enumerate(text.split("\n"), start=1):  # not splitlines: U+2028 is valid in JSON
        if line.strip():
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise BadRequest(f"invalid JSON on line {number}: {exc}") from None
            _too_deep(line, value, f" on line {number}")
            values.append(value)
    return values


def decode_csv(body: bytes, media: MediaType) -> list[list[str]]:
    """Rows of strings, no header; blank lines are skipped. Quoted fields follow RFC 4180."""
    text = _text(body, media)
    try:
        # Read the text as a stream (not split into lines first) so that a quoted field keeps its newlines.
        return [row for row in csv.reader(io.StringIO(text, newline=""), strict=True)
                if len(row) > 1 or (row and row[0].strip())]
    except csv.Error as exc:
        raise BadRequest(f"invalid CSV: {exc}") from None


def decode_npy(body: bytes, media: MediaType) -> np.ndarray:
    """A NumPy .npy array; object arrays (which need pickle) are refused."""
    try:
        array = np.load(io.BytesIO(body), allow_pickle=False)
    except ValueError as exc:
        raise BadRequest(f"invalid NPY payload: {exc}") from None
    except Exception as exc:  # numpy raises several types for truncated or foreign data
        raise BadRequest(f"invalid NPY payload: {type(exc).__name__}: {exc}") from None
    if not isinstance(array, np.ndarray):  # np.load also opens .npz archives
        raise BadRequest("invalid NPY payload: an .npz archive, not a single .npy array")
    return array


DECODERS: dict[str, Callable[[bytes, MediaType], Any]] = {
    JSON: decode_json,
    JSONLINES: decode_jsonlines,
    CSV: decode_csv,
    NPY: decode_npy,
}


def decode(body: bytes, media: MediaType) -> Any:
    """Parse ``body`` as ``media``; 400 for an empty body, 415 for a type without a decoder."""
    if not body or not body.strip():
        raise BadRequest("the request body is empty")
    try:
        decoder = DECODERS[media.essence]
    except KeyError:
        raise UnsupportedMediaType(f"no decoder for {media.essence!r}") from None
    return decoder(body, media)
