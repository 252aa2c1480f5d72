#!/usr/bin/env bash
# Make a new framework container from the template (templates/container/):
#
#   ./new-container.sh NAME        NAME: lower-case letters, digits and _, starting with a letter
#
# containers/NAME/ then builds, trains, serves and passes the contract suite as it is (its example is a
# least-squares linear model on CSV), and build.sh, setup.sh, ruff, pytest and CI find it with no edit
# outside that folder. Replace the example with your framework in these files:
#   requirements.txt            your framework's packages, pinned
#   NAME_container/handler.py   load(model_dir) and predict(model, data) (decode/encode if the defaults do not fit)
#   NAME_container/train.py     HYPERPARAMETERS and train(job), which writes the model into job.model_dir
#   contract.py                 training data and request bodies for the contract suite
#   tests/                      unit tests of your code (host-side test dependencies: tests/requirements.txt)
# Optional: native/compile.sh PYTHON DIR (native code, compiled into the package by setup.sh and in the image
# by a build.Dockerfile of yours), build.Dockerfile / image.Dockerfile (see containers/Dockerfile).
set -euo pipefail
cd "$(dirname "$0")"

name="${1:-}"
if ! [[ "$name" =~ ^[a-z][a-z0-9_]*$ ]]; then
  sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
dest="containers/$name"
[ ! -e "$dest" ] || { echo "$dest exists already" >&2; exit 1; }

template=templates/container
while IFS= read -r -d '' file; do
  relative="${file#"$template"/}"
  target="$dest/${relative//\{\{name\}\}/$name}"
  mkdir -p "$(dirname "$target")"
  sed "s/{{name}}/$name/g" "$file" >"$target"
  chmod --reference="$file" "$target"
done < <(find "$template" -type f ! -path '*/__pycache__/*' -print0)
# Where the package's name sorts among the first-party imports depends on NAME: let ruff place it.
if [ -x .venv/bin/ruff ]; then
  .venv/bin/ruff check --quiet --fix --select I "$dest" || true
fi
echo "made $dest: ./build.sh $name && .venv/bin/pytest $dest && SMKIT_CONTRACT_IMAGES=$name .venv/bin/pytest tests/contract"
