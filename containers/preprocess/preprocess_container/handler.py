"""Serving for the preprocess image: caller's records in, feature rows out."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from serving_common import encoders
from serving_common.content_types import CSV, JSON, JSONLINES, NPY, MediaType
from serving_common.errors import BadRequest
from serving_common.features.features import FittedFeatures
from serving_common.features.requests import decoded_records, renumber, transform
from serving_common.handler import Handler, RequestContext
from serving_common.settings import OUTPUT_LABEL

log = logging.getLogger("preprocess")


class PreprocessHandler(Handler):
    """Records in, feature rows out; ``settings.output_label`` (SMKIT_OUTPUT_LABEL) writes the label first,
    ``settings.record_errors`` (SMKIT_RECORD_ERRORS) says what a bad record does to a batch."""

    content_types = (JSON, JSONLINES, CSV)
    accepts = (CSV, JSON, JSONLINES, NPY)
    default_accept = JSON

    @property
    def output_label(self) -> bool:
        return self.settings.output_label

    @property
    def errors_in_line(self) -> bool:
        return self.settings.record_errors == "line"

    def load(self, model_dir: Path) -> FittedFeatures:
        features = FittedFeatures.load(model_dir)
        if self.output_label and not features.spec.label:
            raise ValueError(f"{OUTPUT_LABEL}=true but the model was trained without a label")
        # SMKIT_MAX_MISSING_FIELDS / SMKIT_UNKNOWN_FIELDS override the rules the model was trained with
        rules = features.record_rules.overridden(self.settings.record_overrides)
        features.set_record_checks(rules, features.known_fields)
        log.info("record checks: max_missing_fields=%s, unknown_fields=%s", "all but one"
                 if rules.max_missing_fields is None else rules.max_missing_fields, rules.unknown_fields)
        return features

    def decode(self, body: bytes, media_type: MediaType, context: RequestContext) -> Any:
        return decoded_records(super().decode(body, media_type, context), media_type)

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
                results.append({"error": renumber(exc.message, index)})
        return results

    def _transform(self, model: FittedFeatures, data: Any) -> np.ndarray:
        return transform(model, data, output_label=self.output_label)

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
