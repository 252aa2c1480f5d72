#!/usr/bin/env bash
# One-time (idempotent) machine setup for building, testing and running the images on Debian:
# system packages, a running Docker engine, the local Debian base image, the dev venv (.venv) and each
# container's native code (if any) compiled for it.
set -euo pipefail
cd "$(dirname "$0")"

log() { echo "[setup] $*"; }

# docker.io: the engine; debootstrap: the base image; docker-registry: the push test's local registry;
# wrk/httperf: the benchmarks' load generators; docker-compose: the SageMaker SDK's local mode;
# build-essential/python3-dev: sagemaker-training's C extension (dev venv only, for the golden tests);
# openjdk-17-jre-headless: the JVM PySpark runs on (spark/, its tests and bench/spark.py).
PACKAGES=(docker.io debootstrap docker-registry wrk httperf docker-compose build-essential python3-dev
          openjdk-17-jre-headless)
missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

scripts/start_docker.sh
scripts/make_base_image.sh

PY="${PYTHON:-python3}"
shopt -s nullglob
# Each container may add host-side requirements of its own: requirements-build.txt (the tools its
# native/compile.sh needs) and tests/requirements.txt (what its unit tests in containers/<name>/tests need).
container_reqs=(containers/*/requirements-build.txt containers/*/tests/requirements.txt)
stamp=.venv/.requirements.sha256
digest="$(cat requirements/*.txt "${container_reqs[@]}" pyproject.toml contract_kit/pyproject.toml local_test/pyproject.toml \
  model_report/pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$digest" ]; then
  log "creating the dev venv .venv"
  "$PY" -m venv .venv
  req_args=(-r requirements/bench.txt)
  for r in "${container_reqs[@]}"; do req_args+=(-r "$r"); done
  .venv/bin/pip install --quiet --disable-pip-version-check "${req_args[@]}" 2> >(grep -v "Location 'file" >&2)
  .venv/bin/pip install --quiet --disable-pip-version-check --no-deps -e . 2> >(grep -v "Location 'file" >&2)
  # The contract kit (contract_kit/: stdlib only, installs on its own too): `smkit-contract IMAGE ...`
  .venv/bin/pip install --quiet --disable-pip-version-check --no-deps -e ./contract_kit 2> >(grep -v "Location 'file" >&2)
  # The SDK helpers users import (local_test), importable from any folder (local_test/pyproject.toml).
  .venv/bin/pip install --quiet --disable-pip-version-check --no-deps -e local_test 2> >(grep -v "Location 'file" >&2)
  # The model comparison report (model_report/, installs on its own too): `smkit-report compare OLD NEW ...`
  .venv/bin/pip install --quiet --disable-pip-version-check --no-deps -e ./model_report 2> >(grep -v "Location 'file" >&2)
  echo "$digest" >"$stamp"
fi
# A container's optional native code (containers/<name>/native/compile.sh PYTHON DIR, e.g. XGBoost's forest
# evaluator), compiled into its package for the unit tests on the host (each image compiles its own);
# again only when a source is newer than the libraries already there.
for compile in containers/*/native/compile.sh; do
  name="$(basename "$(dirname "$(dirname "$compile")")")"
  package="containers/$name/${name}_container"
  libraries=("$package"/*.so)
  for source in "$(dirname "$compile")"/*; do
    if ((${#libraries[@]} == 0)) || [ "$source" -nt "${libraries[0]}" ]; then
      log "compiling the native code of $name (into $package)"
      "$compile" .venv/bin/python "$package"
      break
    fi
  done
done
shopt -u nullglob
log "ready: docker $(docker version -f '{{.Server.Version}}'), base image, .venv"
