"""Serving for the preprocess image: caller's records in, feature rows out."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from serving_common import encoders
from serving_common.content_types import CSV, JSON, JSONLINES, NPY, MediaType
from serving_common.errors import BadRequest
from serving_common.handler import Handler, RequestContext

from .features import FittedFeatures

log = logging.getLogger("preprocess")

# Batch transform for training data: write the label as the first CSV column (SageMaker XGBoost's layout).
OUTPUT_LABEL = "SMKIT_OUTPUT_LABEL"
# Batch transform: "fail" (default) fails a request on its first bad record, naming it; "line" writes an
# error object on that record's line instead, keeping output lines aligned with input lines.
RECORD_ERRORS = "SMKIT_RECORD_ERRORS"


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def _records(data: Any) -> list[Any]:
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


class Rows(list):
    """Headerless CSV rows, in the model's input column order."""


class PreprocessHandler(Handler):
    content_types = (JSON, JSONLINES, CSV)
    accepts = (CSV, JSON, JSONLINES, NPY)
    default_accept = JSON

    def __init__(self) -> None:
        self.output_label = _flag(OUTPUT_LABEL)
        self.errors_in_line = os.environ.get(RECORD_ERRORS, "fail").strip().lower() == "line"

    def load(self, model_dir: Path) -> FittedFeatures:
        features = FittedFeatures.load(model_dir)
        if self.output_label and not features.spec.label:
            raise ValueError(f"{OUTPUT_LABEL}=true but the model was trained without a label")
        # SMKIT_MAX_MISSING_FIELDS / SMKIT_UNKNOWN_FIELDS override the rules the model was trained with
        rules = features.record_rules.overridden()
        features.set_record_checks(rules, features.known_fields)
        log.info("record checks: max_missing_fields=%s, unknown_fields=%s", "all but one"
                 if rules.max_missing_fields is None else rules.max_missing_fields, rules.unknown_fields)
        return features

    def decode(self, body: bytes, media_type: MediaType, context: RequestContext) -> Any:
        data = super().decode(body, media_type, context)
        if media_type.essence == CSV:
            return Rows(data)
        records = data if media_type.essence == JSONLINES else _records(data)
        if not records:
            raise BadRequest("no records in the request")
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                raise BadRequest(f"record {index} is not a JSON object but {type(record).__name__}")
        return records

    def predict(self, model: FittedFeatures, data: Any, context: RequestContext) -> np.ndarray | list[Any]:
        try:
            return self._transform(model, data)
        except BadRequest:
            if not self.errors_in_line or len(data) < 2:
                raise
        # Batch transform, opted in: one error object on the line of each bad record, lines stay aligned.
        results: list[Any] = []
        for index, item in enumerate(data):
            try:
                results.append(self._transform(model, type(data)([item]))[0])
            except BadRequest as exc:
                results.append({"error": _renumber(exc.message, index)})
        return results

    def _transform(self, model: FittedFeatures, data: Any) -> np.ndarray:
        labels = None
        try:
            if isinstance(data, Rows):
                if self.output_label:
                    raise BadRequest("CSV input carries no label; send JSON records to output labels")
                if model.extracts:
                    raise BadRequest(f"this model's feature code ({model.code.original_name}) extracts fields from "
                                     "records: send JSON or JSON Lines records, not CSV rows")
                matrix = model.transform_rows(data)
            elif self.output_label:
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

    def encode(self, prediction: np.ndarray | list[Any], accept: str, context: RequestContext) -> bytes:
        if accept == JSON:
            return encoders.encode_json({"instances": prediction})
        if isinstance(prediction, list):  # rows and error objects mixed
            if accept == NPY:
                raise BadRequest("records failed and NPY cannot carry error objects: " +
                                 "; ".join(item["error"] for item in prediction if isinstance(item, dict)))
            # each row's encoding ends with its newline already; an error object gets one
            return b"".join(encoders.lines([encoders.encode_json(item)]) if isinstance(item, dict)
                            else encoders.encode(item[None, :], accept) for item in prediction)
        return encoders.encode(prediction, accept)


def _renumber(message: str, index: int) -> str:
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
