#!/usr/bin/env bash
# Make `debian:bookworm-slim` available to podman without a registry: debootstrap a minimal
# bookworm from Debian's package mirror and import it under the name a real build pulls.
# Does nothing when the engine already has the image (or can pull it: Docker with a registry).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
engine="$here/engine"
image="docker.io/library/debian:bookworm-slim"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if "$engine" image inspect "$image" >/dev/null 2>&1 || "$engine" image inspect debian:bookworm-slim >/dev/null 2>&1; then
  exit 0
fi
if "$engine" --version 2>/dev/null | grep -qi docker; then
  exec "$engine" pull debian:bookworm-slim
fi
command -v debootstrap >/dev/null || { echo "debootstrap is needed to build the base image: apt-get install debootstrap" >&2; exit 1; }

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
echo "building $image with debootstrap from $mirror ..."
debootstrap --variant=minbase bookworm "$root/rootfs" "$mirror" >"$root/debootstrap.log" 2>&1 \
  || { tail -20 "$root/debootstrap.log" >&2; exit 1; }
# The same package sources and apt settings as Docker Hub's debian:bookworm-slim.
rm -f "$root/rootfs/etc/apt/sources.list"
cat >"$root/rootfs/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
rm -rf "$root/rootfs/var/cache/apt/archives/"*.deb "$root/rootfs/var/lib/apt/lists/"*
tar -C "$root/rootfs" -c . | "$engine" import --quiet - "$image" >/dev/null
echo "imported $image"
