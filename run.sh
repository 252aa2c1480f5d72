#!/usr/bin/env bash
# The main job, from a fresh checkout: set up the machine, build the images, run the local smoke run.
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh
./build.sh
exec .venv/bin/python -m local_test.smoke "$@"
