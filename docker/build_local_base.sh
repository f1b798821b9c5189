#!/usr/bin/env bash
# A local base image for machines that cannot pull python:3.11-slim or nvidia/cuda: Debian bookworm (minbase) with
# Debian's Python 3.11 (python3, python3-venv) and CA certificates, built with debootstrap and imported into podman.
# Both Dockerfiles build from it with --build-arg BASE_IMAGE=... / CUDA_RUNTIME_IMAGE=... (`make docker-test` does).
#
#   sudo docker/build_local_base.sh [TAG]          # default TAG: localdebian:bookworm; about a minute
#
# Needs root, debootstrap and podman. The root filesystem is assembled under $TMPDIR (default /tmp) and removed
# afterwards; set DEBIAN_MIRROR to use another mirror. Heavy steps run at nice 19 / idle I/O priority so that the
# build never starves other work on the machine.
set -euo pipefail

TAG="${1:-localdebian:bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
LOW=(nice -n 19)
if command -v ionice >/dev/null; then LOW+=(ionice -c3); fi

for tool in debootstrap podman; do
    if ! command -v "$tool" >/dev/null; then
        echo "build_local_base.sh: $tool is not installed (apt-get install $tool)" >&2
        exit 2
    fi
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/clicktal-rootfs.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

"${LOW[@]}" debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$WORK/rootfs" "$MIRROR"
# what an image does not need: downloaded packages and package lists (the Dockerfiles run apt-get update)
rm -rf "$WORK"/rootfs/var/cache/apt/archives/*.deb "$WORK"/rootfs/var/lib/apt/lists/*
"${LOW[@]}" tar -C "$WORK/rootfs" -c . | "${LOW[@]}" podman import --change 'CMD ["/bin/bash"]' - "$TAG"
echo "built $TAG: $(podman image inspect --format '{{.Size}}' "$TAG") bytes"
