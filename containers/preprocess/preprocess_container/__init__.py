"""The preprocess container: fitting (``train``) and serving (``handler``) of the feature transform.

The feature logic itself (records, spec, the fitted transform, its numpy-only fast path, record checks,
feature code) lives in ``serving_common.features``, where every model image can apply a fitted transform
in process (fused models, docs/fused.md).
"""
