#!/usr/bin/env bash
# A Debian bookworm base image with python3 (3.11) and venv, for building logpx where no container
# registry can be reached: debootstrap (minbase) from Debian's packages, imported into the engine.
#   docker/base-image.sh podman|docker [IMAGE]      default IMAGE: localhost/logpx-base:bookworm
set -euo pipefail
engine=${1:?usage: docker/base-image.sh podman|docker [IMAGE]}
image=${2:-localhost/logpx-base:bookworm}
command -v debootstrap >/dev/null || { echo "debootstrap is not installed (Debian: apt-get install debootstrap)" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" \
    "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >/dev/null
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | $engine import - "$image" >/dev/null
echo "$image"
