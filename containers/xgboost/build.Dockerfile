# The XGBoost image's own build-stage steps (spliced into ../Dockerfile by build.sh; /opt/venv holds
# requirements.txt already).
# The optional fast path's forest evaluator (native/forest_eval.c; native/README.md), compiled by zig's C
# compiler from the ziglang wheel in a venv of this stage only: the serving image gets the ~12 KB library
# (via /opt/package-extra), not the compiler.
COPY containers/xgboost/requirements-build.txt /src/containers/xgboost/requirements-build.txt
RUN python3 -m venv /opt/build-venv \
    && /opt/build-venv/bin/pip install --find-links /wheels -r /src/containers/xgboost/requirements-build.txt
COPY containers/xgboost/native /src/containers/xgboost/native
RUN /src/containers/xgboost/native/compile.sh /opt/build-venv/bin/python /opt/package-extra
# Parquet training data needs pyarrow (~170 MB installed: past the image-size budget), so it is opt-in:
# `--build-arg WITH_PARQUET=true`, with the pyarrow wheel in wheelhouse/xgboost (requirements-parquet.txt).
# Declared here so the layers above stay cached whatever its value.
ARG WITH_PARQUET=false
COPY containers/xgboost/requirements-parquet.txt /src/containers/xgboost/requirements-parquet.txt
RUN if [ "$WITH_PARQUET" = true ]; then \
        /opt/venv/bin/pip install --find-links /wheels -r /src/containers/xgboost/requirements-parquet.txt || { \
            echo "WITH_PARQUET=true: pyarrow is not in wheelhouse/xgboost; download the wheels of" \
                 "containers/xgboost/requirements-parquet.txt there first" >&2; exit 1; }; \
        find /opt/venv/lib -path '*/pyarrow/*' \( -name tests -o -name include \) -type d -prune -exec rm -rf {} +; \
    elif [ "$WITH_PARQUET" != false ]; then \
        echo "WITH_PARQUET must be true or false, not '$WITH_PARQUET'" >&2; exit 1; \
    fi
