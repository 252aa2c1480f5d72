#!/usr/bin/env bash
# Fill wheelhouse/<name>/ with every wheel the image <name> installs (its pinned requirements) and
# wheelhouse/serving_common/ with this checkout's serving_common, so `docker build` installs offline.
# Cached: the download is skipped while the requirements files are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
name="$1"
req="containers/$name/requirements.txt"
dest="wheelhouse/$name"
[ -f "$req" ] || { echo "no $req" >&2; exit 1; }
mkdir -p "$dest"
# The other requirements files (containers/<name>/requirements-*.txt: opt-in extras such as xgboost's Parquet
# support, and what a build stage alone installs, such as xgboost's C compiler) are downloaded too, so that
# no build needs the network; the serving image installs only requirements.txt.
shopt -s nullglob
reqs=("$req" "containers/$name"/requirements-*.txt)
shopt -u nullglob
req_args=()
for r in "${reqs[@]}"; do req_args+=(-r "$r"); done

PY="${PYTHON:-python3}"
stamp="$dest/.requirements.sha256"
digest="$(cat "${reqs[@]}" requirements/serving.txt | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$digest" ]; then
  echo "[wheelhouse] downloading wheels for $name"
  rm -f "$dest"/*.whl
  # Wheels only, for the images' CPython 3.11 on x86_64 glibc (Debian bookworm).
  "$PY" -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
    --python-version 3.11 --implementation cp --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_12_x86_64 \
    --platform any \
    "${req_args[@]}" -d "$dest" 2> >(grep -v "Location 'file" >&2)
  echo "$digest" >"$stamp"
fi
echo "[wheelhouse] $dest: $(ls "$dest"/*.whl | wc -l) wheels"

# serving_common changes with every commit: rebuild its wheel each time (a couple of seconds), into its
# own folder so that the image layer of the third-party packages stays cached. A fixed timestamp makes
# the wheel byte-identical while the code is unchanged.
local_dest="wheelhouse/serving_common"
mkdir -p "$local_dest"
rm -f "$local_dest"/*.whl
SOURCE_DATE_EPOCH=315532800 "$PY" -m pip wheel --quiet --disable-pip-version-check --no-deps \
  -w "$local_dest" . >/dev/null
rm -rf build serving_common.egg-info
