#!/usr/bin/env bash
# The machine's packages the test suite needs beside Python and Java (make test runs this first):
#   podman + runc  the container engine the image tests build and run with (no daemon needed;
#                  a running Docker engine replaces both)
#   debootstrap    builds the image's Debian base from Debian's packages (no container registry)
#   chromium       the browser the HTML report is opened in (Playwright drives Debian's build)
# Installs what is missing with apt-get when it can (root and apt-get present); otherwise stops at
# once with one message that lists every missing package and the command that installs them.
set -u
need=()
docker_engine=0
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then docker_engine=1; fi
for tool in podman runc; do
  ((docker_engine)) || command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
# debootstrap is only needed where the base image cannot be pulled (podman without a registry).
((docker_engine)) || command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
((${#need[@]})) || exit 0

install="apt-get install -y ${need[*]}"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && [ -z "${ECOM_NO_SYSTEM_INSTALL:-}" ]; then
  echo "installing the test suite's system packages: ${need[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q "${need[@]}" >/dev/null 2>&1; then
    apt-get update -q >/dev/null && apt-get install -y -q "${need[@]}" >/dev/null || {
      echo "error: apt-get could not install ${need[*]}; run: apt-get update && $install" >&2
      exit 1
    }
  fi
  exit 0
fi
{
  echo "error: the test suite needs these system packages, not installed here: ${need[*]}"
  if command -v apt-get >/dev/null 2>&1; then
    echo "  install them with: sudo $install"
  else
    echo "  install them with your package manager (Debian/Ubuntu: $install)"
  fi
  echo "  (a running Docker engine replaces podman, runc and debootstrap)"
} >&2
exit 1
