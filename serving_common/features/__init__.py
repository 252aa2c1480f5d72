"""Feature logic of the preprocess model: fitted in the preprocess image, applied in process by every
image (a fused model, docs/fused.md): reading records, the feature spec, the fitted transform.

- ``records``: read training data (JSON Lines, JSON arrays, CSV, gzip'ed or not) and flatten records.
- ``spec``: which fields are numeric / categorical / the label, and how they are encoded.
- ``features``: the one transform used at training and serving time, saved to / loaded from a model dir.
- ``fast_transform``: the fitted transform as plain tables: a numpy-only record -> row path, saved with
  the model (``fast_transform.npz``) so that serving never imports scikit-learn, scipy or joblib.
- ``compiler``: derives those tables from a fitted scikit-learn ColumnTransformer (training time).
- ``user_code``: script mode for feature code (``extract`` / ``build_transformer``), kept with the model.

Serving imports ``features`` and what it imports: none of these but ``compiler`` (fitting only) may import
scikit-learn, scipy, joblib or pandas at module level (tests/unit/preprocess/test_user_code.py checks it).
"""
