"""The inference handler: load the booster, decode the request, predict, encode the scores.

The toolkit's decoders and encoders (``decoder.decode``: ``np.genfromtxt`` for CSV, ``json.loads`` for JSON;
``encoder.encode``: ``np.savetxt`` for CSV), a ``DMatrix`` per request and ``Booster.predict`` as AWS's
XGBoost container predicts (``validate_features=False``)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import xgboost
from sagemaker_inference import decoder, default_inference_handler, encoder

#: What containers/xgboost's train writes (xgboost_container.model_files.MODEL_FILE), so both serve one file.
MODEL_FILE = "xgboost-model.ubj"


class XGBoostInferenceHandler(default_inference_handler.DefaultInferenceHandler):
    """The four default functions of the toolkit's contract; a user's ``code/inference.py`` would override them."""

    def default_model_fn(self, model_dir: str, context: Any = None) -> xgboost.Booster:
        booster = xgboost.Booster()
        booster.load_model(os.path.join(model_dir, MODEL_FILE))
        return booster

    def default_input_fn(self, input_data: Any, content_type: str, context: Any = None) -> xgboost.DMatrix:
        # genfromtxt reads a one-row CSV body as a 1-D array: a row is what the client meant.
        return xgboost.DMatrix(np.atleast_2d(decoder.decode(input_data, content_type)))

    def default_predict_fn(self, data: xgboost.DMatrix, model: xgboost.Booster, context: Any = None) -> np.ndarray:
        return model.predict(data, validate_features=False)

    def default_output_fn(self, prediction: np.ndarray, accept: str, context: Any = None) -> Any:
        return encoder.encode(prediction, accept)
