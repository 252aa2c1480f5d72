"""Requests to a preprocess transform, one place for the preprocess image and fused models: the records of
a request body, the transform applied to them, and the 400s for records it cannot read."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from ..content_types import CSV, JSONLINES, MediaType
from ..errors import BadRequest
from .features import FittedFeatures


class Rows(list):
    """Headerless CSV rows, in the model's input column order."""


def request_records(data: Any) -> list[Any]:
    """A JSON body: one record, a list of records, or ``{"instances": [...]}`` (a wrapper with any other
    key, or whose ``instances`` is not a list, is a 400: it would otherwise be scored as a record)."""
    if isinstance(data, dict):
        if "instances" not in data:
            return [data]
        others = [key for key in data if key != "instances"]
        if others:
            raise BadRequest(f'the request wraps its records in {{"instances": [...]}} but also has '
                             f"{', '.join(map(repr, others[:5]))}: send {{\"instances\": [...]}} alone")
        if not isinstance(data["instances"], list):
            raise BadRequest(f'"instances" must be a list of records, got {type(data["instances"]).__name__}')
        return data["instances"]
    if isinstance(data, list):
        return data
    raise BadRequest(f"expected a JSON object, a list of objects or {{\"instances\": [...]}}, "
                     f"got {type(data).__name__}")


def decoded_records(data: Any, media_type: MediaType) -> Rows | list[Any]:
    """What a transform reads from a decoded body: CSV rows, or the JSON / JSON Lines records (each an object)."""
    if media_type.essence == CSV:
        return Rows(data)
    records = data if media_type.essence == JSONLINES else request_records(data)
    if not records:
        raise BadRequest("no records in the request")
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise BadRequest(f"record {index} is not a JSON object but {type(record).__name__}")
    return records


def transform(model: FittedFeatures, data: Rows | list[Any], *, output_label: bool = False) -> np.ndarray:
    """Feature rows of ``data`` (label first with ``output_label``); every unreadable record is a BadRequest."""
    labels = None
    try:
        if isinstance(data, Rows):
            if output_label:
                raise BadRequest("CSV input carries no label; send JSON records to output labels")
            if model.extracts:
                raise BadRequest(f"this model's feature code ({model.code.original_name}) extracts fields from "
                                 "records: send JSON or JSON Lines records, not CSV rows")
            matrix = model.transform_rows(data)
        elif output_label:
            matrix, values = model.transform_records_with_labels(data)
            labels = _label_column(values, model.spec.label)
        else:
            matrix = model.transform_records(data)
    except ValueError as exc:  # FeatureError and friends: the request cannot be interpreted
        raise BadRequest(str(exc)) from None
    if not np.isfinite(matrix).all():
        row, column = np.argwhere(~np.isfinite(matrix))[0]
        raise BadRequest(f"record {row}: feature {model.output_columns[column]!r} is not finite "
                         "(an input value is out of range)")
    if labels is not None:
        matrix = np.column_stack([labels, matrix])
    return matrix


def renumber(message: str, index: int) -> str:
    """Messages of a one-record transform say "record 0"/"row 0": give the record's place in the request."""
    return re.sub(r"^(record|row) 0\b", rf"\g<1> {index}", message)


def _label_column(values: list[Any], name: str) -> np.ndarray:
    labels = np.empty(len(values))
    for index, value in enumerate(values):
        try:
            labels[index] = float(value)  # booleans become 1.0/0.0
        except (TypeError, ValueError):
            labels[index] = np.nan
        if not np.isfinite(labels[index]):
            raise BadRequest(f"record {index}: label {name!r}={value!r} is not a finite number (0/1 for binary)")
    return labels
