"""What the contract suite (tests/contract) needs to know about the {{name}} image: its ``DESCRIPTOR``.

``numeric_rows`` (tests/contract/descriptor.py) fits an image that trains on label-first CSV rows of numbers
and takes such rows as CSV, JSON, JSON Lines and NPY; an image with other data writes its own
``ImageDescriptor(...)`` (training data, request bodies, a body of the wrong shape, a large body).
"""

from __future__ import annotations

import numpy as np

from descriptor import numeric_rows

FEATURES = 4

DESCRIPTOR = numeric_rows(
    "{{name}}",
    features=FEATURES,
    hyperparameters={"l2": "0.01"},
    label=lambda x: x @ np.arange(1.0, FEATURES + 1) + 0.5,  # the example's least-squares target
    channels={"train": 300},
)
