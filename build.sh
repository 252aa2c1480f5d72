#!/usr/bin/env bash
# Build, tag and (optionally) push the container images.
#
#   ./build.sh                          build every image under containers/
#   ./build.sh preprocess xgboost       build the ones named
#   ./build.sh --list                   print the names of every image (one a line) and build nothing
#   ./build.sh --push --registry ACCOUNT.dkr.ecr.REGION.amazonaws.com [NAME...]
#
# Each image is tagged <prefix><name>:<version> (VERSION file) and <prefix><name>:<git-sha>.
# Options: --base-image IMAGE (default: the local base made by scripts/make_base_image.sh if present,
# else the recipe's debian:bookworm-slim), --prefix P (default smkit-), --no-cache,
# --build-arg NAME=VALUE (repeatable, e.g. WITH_PARQUET=true for xgboost; pair it with another --prefix).
set -euo pipefail
cd "$(dirname "$0")"

PREFIX="${IMAGE_PREFIX:-smkit-}"
LOCAL_BASE="smkit-base/bookworm-python3:local"
BASE_IMAGE="${BASE_IMAGE:-}"
PUSH=0
LIST=0
REGISTRY=""
NO_CACHE=()
BUILD_ARGS=()
NAMES=()

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while (($#)); do
  case "$1" in
    --push) PUSH=1 ;;
    --list) LIST=1 ;;
    --registry) REGISTRY="${2:?--registry needs a value}"; shift ;;
    --base-image) BASE_IMAGE="${2:?--base-image needs a value}"; shift ;;
    --prefix) PREFIX="${2?}"; shift ;;
    --no-cache) NO_CACHE=(--no-cache) ;;
    --build-arg) BUILD_ARGS+=(--build-arg "${2:?--build-arg needs NAME=VALUE}"); shift ;;
    -h|--help) usage 0 ;;
    -*) echo "unknown option $1" >&2; usage 2 ;;
    *) NAMES+=("$1") ;;
  esac
  shift
done

if ((PUSH)) && [ -z "$REGISTRY" ]; then
  echo "--push needs --registry HOST (e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com)" >&2
  exit 2
fi

# An image is a folder containers/<name>/ with a requirements.txt and a <name>_container package; every
# image is built by the one recipe containers/Dockerfile (with the folder's own optional steps spliced in).
if ((${#NAMES[@]} == 0)); then
  for requirements in containers/*/requirements.txt; do
    NAMES+=("$(basename "$(dirname "$requirements")")")
  done
fi
for name in "${NAMES[@]}"; do
  [ -f "containers/$name/requirements.txt" ] && [ -d "containers/$name/${name}_container" ] || {
    echo "no such image: $name (no containers/$name/requirements.txt and ${name}_container/)" >&2; exit 2; }
done
if ((LIST)); then
  printf '%s\n' "${NAMES[@]}"
  exit 0
fi

if [ -z "$BASE_IMAGE" ] && docker image inspect "$LOCAL_BASE" >/dev/null 2>&1; then
  BASE_IMAGE="$LOCAL_BASE"
fi
BASE_ARGS=()
[ -n "$BASE_IMAGE" ] && BASE_ARGS=(--build-arg "BASE_IMAGE=$BASE_IMAGE")

VERSION="$(tr -d '[:space:]' <VERSION)"
SHA="$(git rev-parse --short=12 HEAD 2>/dev/null || echo nogit)"
if [ "$SHA" != nogit ] && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  SHA="$SHA-dirty"
fi

ecr_login() {
  # ECR needs a login (and the repository) first; other registries are assumed to be logged in.
  local registry="$1" repo="$2" region
  [[ "$registry" =~ ^[0-9]+\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com ]] || return 0
  region="${BASH_REMATCH[1]}"
  if ! command -v aws >/dev/null 2>&1; then
    echo "[build] no AWS CLI: assuming 'docker login $registry' was done already" >&2
    return 0
  fi
  aws ecr get-login-password --region "$region" | docker login --username AWS --password-stdin "$registry"
  aws ecr describe-repositories --region "$region" --repository-names "$repo" >/dev/null 2>&1 ||
    aws ecr create-repository --region "$region" --repository-name "$repo" >/dev/null
}

# The image's Dockerfile: the recipe with `{name}` (outside comments) replaced by the container's name and its own
# steps in place of its `# {build.Dockerfile}` and `# {image.Dockerfile}` lines (none where it has no such file).
dockerfile_of() {
  local name="$1" line
  while IFS= read -r line; do
    case "$line" in
      "# {build.Dockerfile}"|"# {image.Dockerfile}")
        local part="containers/$name/${line:3:-1}"
        if [ -f "$part" ]; then cat "$part"; fi ;;
      "#"*) printf '%s\n' "$line" ;;
      *) printf '%s\n' "${line//\{name\}/$name}" ;;
    esac
  done <containers/Dockerfile
}

CONTEXT_DIR="$(mktemp -d)"
trap 'rm -rf "$CONTEXT_DIR"' EXIT

mb() { docker image inspect -f '{{.Size}}' "$1" | awk '{printf "%.0f MB", $1/1e6}'; }

for name in "${NAMES[@]}"; do
  image="$PREFIX$name"
  echo "[build] $image:$VERSION and $image:$SHA (base: ${BASE_IMAGE:-Dockerfile default})"
  scripts/fill_wheelhouse.sh "$name"
  dockerfile_of "$name" >"$CONTEXT_DIR/Dockerfile"
  # The context is exactly what the Dockerfile uses: a tar stream, so no other image's wheels travel.
  # Compiled libraries of the dev venv stay out too: each image compiles its own.
  tar -c --exclude=__pycache__ --exclude='*.so' requirements "containers/$name" "wheelhouse/$name" \
      wheelhouse/serving_common -C "$CONTEXT_DIR" Dockerfile |
    docker build "${NO_CACHE[@]}" "${BASE_ARGS[@]}" "${BUILD_ARGS[@]}" -f Dockerfile \
      -t "$image:$VERSION" -t "$image:$SHA" --label "org.opencontainers.image.version=$VERSION" \
      --label "org.opencontainers.image.revision=$SHA" - | grep -v '^ ---> \|^Removing intermediate' || {
        echo "[build] $image failed" >&2; exit 1; }
  docker image inspect "$image:$VERSION" >/dev/null
  if ((PUSH)); then
    ecr_login "$REGISTRY" "$image"
    for tag in "$VERSION" "$SHA"; do
      docker tag "$image:$tag" "$REGISTRY/$image:$tag"
      docker push "$REGISTRY/$image:$tag" | tail -n 1
    done
  fi
done

echo "[build] image sizes:"
[ -n "$BASE_IMAGE" ] && docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && printf '  %-32s %s (base)\n' "$BASE_IMAGE" "$(mb "$BASE_IMAGE")"
for name in "${NAMES[@]}"; do
  printf '  %-32s %s\n' "$PREFIX$name:$VERSION" "$(mb "$PREFIX$name:$VERSION")"
done
