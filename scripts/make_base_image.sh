#!/usr/bin/env bash
# Make the local Debian bookworm base image (minbase + python3) with debootstrap and `docker import`.
# For machines that cannot pull from a registry. The mirror is read from the host's own apt sources.
# Idempotent: does nothing when the image already exists.
set -euo pipefail

TAG="${BASE_IMAGE_TAG:-smkit-base/bookworm-python3:local}"
SUITE=bookworm
# python3 is in the base so that image builds need no network at all; python3-venv builds the venvs.
INCLUDE=python3,python3-venv,ca-certificates

log() { echo "[make_base_image] $*"; }

if docker image inspect "$TAG" >/dev/null 2>&1; then
  log "$TAG already exists"
  exit 0
fi

mirror_from_apt_sources() {
  # deb822 (.sources) files first: the URIs of the stanza whose Suites names the plain suite.
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v suite="$SUITE" '
      /^[[:space:]]*$/ { if (uri != "" && ok) { print uri; exit } uri=""; ok=0; next }
      /^URIs:/ { uri=$2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) ok=1 }
      END { if (uri != "" && ok) print uri }' "$f"
  done
  # one-line format
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    awk -v suite="$SUITE" '$1 == "deb" && $3 == suite { print $2 }' | head -n 1
}

MIRROR="${DEBIAN_MIRROR:-$(mirror_from_apt_sources 2>/dev/null | head -n 1 || true)}"
if [ -z "$MIRROR" ]; then
  echo "no Debian $SUITE mirror found in the host's apt sources; set DEBIAN_MIRROR" >&2
  exit 1
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  log "installing debootstrap"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q debootstrap
fi

ROOT="$(mktemp -d /tmp/smkit-rootfs.XXXXXX)"
trap 'rm -rf "$ROOT"' EXIT
log "debootstrap --variant=minbase $SUITE from the host's mirror"
debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$ROOT" "$MIRROR" >/tmp/smkit-debootstrap.log 2>&1 || {
  tail -n 40 /tmp/smkit-debootstrap.log >&2
  exit 1
}
# Slim it like the public -slim images: no apt lists, caches, docs or man pages.
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/apt/archives/*.deb \
  "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* "$ROOT"/var/log/*.log

log "docker import as $TAG"
tar -C "$ROOT" -c . | docker import \
  -c 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'CMD ["bash"]' - "$TAG" >/dev/null
log "$TAG: $(docker image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}')"
