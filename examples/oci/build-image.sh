#!/usr/bin/env bash
# Builds the greeter example image without a registry: compiles greeter.c into one static binary, packs
# it as the only file of a root filesystem tarball and turns that into an image with `docker import`.
#
#   examples/oci/build-image.sh [image]        # default image: nex-examples/greeter:latest
#
# Needs gcc with static glibc (Debian: gcc libc6-dev) and a Docker engine.
set -euo pipefail
image="${1:-nex-examples/greeter:latest}"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/rootfs"
gcc -static -O2 -s -o "$work/rootfs/greeter" "$here/greeter.c"
tar -C "$work/rootfs" --owner=0 --group=0 -cf "$work/rootfs.tar" .
docker import --change 'CMD ["/greeter"]' "$work/rootfs.tar" "$image" >/dev/null
echo "$image"
