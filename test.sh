#!/usr/bin/env bash
# The test command: set up (idempotent), lint, build every image, run the whole suite.
# Extra arguments go to pytest (e.g. ./test.sh -k contract). Set SKIP_BUILD=1 to reuse built images.
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh
.venv/bin/ruff check .
[ "${SKIP_BUILD:-0}" = 1 ] || ./build.sh
# CI=true makes every Docker test a hard requirement (no skips when the engine is missing).
exec .venv/bin/pytest -ra "$@"
