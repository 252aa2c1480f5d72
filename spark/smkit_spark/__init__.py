"""The preprocess model on Spark: apply a fitted model (``write_features``, ``transform``) and fit one
(``fit_model``) with the preprocess image's own transform code, on Arrow batches. See docs/spark.md."""

from .apply import FeatureRun, RecordError, transform, write_features
from .fit import FEATURE_TOLERANCE, FitError, fit_model
from .model import ModelFiles, read_model

__all__ = ["FEATURE_TOLERANCE", "FeatureRun", "FitError", "ModelFiles", "RecordError", "fit_model", "read_model",
           "transform", "write_features"]
