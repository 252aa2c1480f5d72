#!/usr/bin/env bash
# The main job, from a fresh checkout: set up the machine, build the images, then train, deploy and compare
# through the SageMaker SDK's local mode (local_test/run_pipeline.py). Extra arguments go to it
# (e.g. ./run.sh --out report/ --orders 50000).
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh
./build.sh
exec .venv/bin/python -m local_test.run_pipeline "$@"
