#!/bin/sh
# Compile forest_eval.c to the shared library that xgboost_container/forest.py loads:
#   compile.sh PYTHON DIR      (PYTHON: an interpreter with the ziglang wheel installed; DIR: where
#                               libforest.so goes: the package folder, or the image build's /opt/package-extra)
# zig's C compiler comes as a wheel (ziglang, pinned in requirements-build.txt), so the image's build stage
# and the dev venv compile with the same compiler, offline, with no system toolchain; the serving image
# gets only the library. The target names the architecture alone, so the code runs on any CPU of it
# (no -march=native).
set -eu
python="$1"
output="$2/libforest.so"
"$python" -m ziglang cc -std=c11 -O3 -Wall -Wextra -Werror -shared -fPIC -target "$(uname -m)-linux-gnu" \
  -o "$output" "$(dirname "$0")/forest_eval.c"
