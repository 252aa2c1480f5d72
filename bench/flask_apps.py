"""The classic bring-your-own serving style for comparison: flask apps run by gunicorn (sync or gthread).

    gunicorn -w 2 -k sync --chdir bench flask_apps:echo_app
    BENCH_MODEL_DIR=DIR gunicorn -w 2 -k sync --chdir bench 'flask_apps:preprocess_app()'
    BENCH_MODEL_FILE=FILE gunicorn -w 2 -k sync --chdir bench 'flask_apps:xgboost_app()'
    BENCH_MODEL_DIR=DIR gunicorn -w 2 -k sync --chdir bench 'flask_apps:torch_app()'
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from flask import Flask, Response, request

from serving_common import encoders

ROOT = Path(__file__).resolve().parent.parent


def _with_ping(app: Flask) -> Flask:
    @app.get("/ping")
    def ping() -> Response:
        return Response(b"", status=200, mimetype="text/plain")

    return app


def _echo() -> Flask:
    app = _with_ping(Flask("echo"))

    @app.post("/invocations")
    def invocations() -> Response:
        return Response(request.get_data(), status=200, mimetype=request.mimetype or "text/csv")

    return app


def preprocess_app() -> Flask:
    """The plain scikit-learn path, as bring-your-own examples write it: per request, the records go into a
    pandas DataFrame (``json_normalize`` flattens them), its columns into the fitted ColumnTransformer.

    The model directory (``BENCH_MODEL_DIR``) is the one the preprocess image's ``train`` wrote; the
    CSV encoding is serving_common's, so the response bytes equal the image's. ``preprocess_container``
    is imported from containers/preprocess, or from ``BENCH_PREPROCESS_CODE`` (a directory holding it).
    """
    sys.path.insert(0, os.environ.get("BENCH_PREPROCESS_CODE") or str(ROOT / "containers" / "preprocess"))
    import numpy as np
    import pandas as pd

    from serving_common.features.features import FittedFeatures

    features = FittedFeatures.load(os.environ["BENCH_MODEL_DIR"])
    transformer, spec = features.transformer, features.spec
    app = _with_ping(Flask("preprocess"))

    @app.post("/invocations")
    def invocations() -> Response:
        data = json.loads(request.get_data())
        records = data if isinstance(data, list) else data.get("instances", [data])
        frame = pd.json_normalize(records).reindex(columns=spec.input_columns)
        frame[spec.numeric] = frame[spec.numeric].astype("float64")
        frame[spec.categorical] = frame[spec.categorical].astype(object).map(
            lambda v: np.nan if pd.isna(v) else str(v))
        matrix = np.asarray(transformer.transform(frame.to_numpy(dtype=object)), dtype=np.float64)
        return Response(encoders.encode_csv(matrix), status=200, mimetype="text/csv")

    return app


def xgboost_app() -> Flask:
    """The plain XGBoost path, as bring-your-own examples write it: per request, the CSV body goes through
    ``pandas.read_csv`` into a numpy array and into ``XGBClassifier.predict_proba``; the positive class's
    column comes back, one score per line.

    The model file (``BENCH_MODEL_FILE``) is the booster the XGBoost image trained, loaded with
    ``XGBClassifier().load_model``. ``BENCH_THREADS`` sets ``n_jobs`` (unset: XGBoost's default, every CPU);
    the benchmark gives it the image's share (CPUs / workers). The CSV encoding is serving_common's, so the
    response bytes can equal the image's.
    """
    import io

    import numpy as np
    import pandas as pd
    import xgboost
    threads = int(os.environ.get("BENCH_THREADS") or 0) or None
    model = xgboost.XGBClassifier(n_jobs=threads)
    model.load_model(bytearray(Path(os.environ["BENCH_MODEL_FILE"]).read_bytes()))
    model.set_params(n_jobs=threads)
    app = _with_ping(Flask("xgboost"))

    @app.post("/invocations")
    def invocations() -> Response:
        rows = pd.read_csv(io.BytesIO(request.get_data()), header=None).to_numpy(dtype=np.float64)
        scores = model.predict_proba(rows)[:, 1]
        return Response(encoders.encode_csv(scores), status=200, mimetype="text/csv")

    return app


def torch_app() -> Flask:
    """The plain PyTorch path, as bring-your-own examples write it: per request, the CSV body goes through
    ``numpy.loadtxt`` into a float32 tensor and the TorchScript model (``BENCH_MODEL_DIR/model.pt``, loaded
    with ``torch.jit.load``, eval mode) under ``torch.no_grad``; one score per line. ``BENCH_THREADS`` sets
    torch's threads (the benchmark gives it the image's share: CPUs / workers)."""
    import io

    import numpy as np
    import torch
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS") or 1))
    model = torch.jit.load(str(Path(os.environ["BENCH_MODEL_DIR"]) / "model.pt")).eval()
    app = _with_ping(Flask("torch"))

    @app.post("/invocations")
    def invocations() -> Response:
        rows = np.loadtxt(io.BytesIO(request.get_data()), delimiter=",", ndmin=2, dtype=np.float32)
        with torch.no_grad():
            scores = model(torch.from_numpy(rows)).numpy()
        return Response(encoders.encode_csv(scores), status=200, mimetype="text/csv")

    return app


echo_app = _echo()
