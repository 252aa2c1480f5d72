"""Feature logic of the preprocess container: reading records, the feature spec, the fitted transform.

- ``records``: read training data (JSON Lines, JSON arrays, CSV, gzip'ed or not) and flatten records.
- ``spec``: which fields are numeric / categorical / the label, and how they are encoded.
- ``features``: the one transform used at training and serving time, saved to / loaded from a model dir.
- ``fast_transform``: the fitted scikit-learn transform compiled into a DataFrame-free record -> row path.
"""
