#!/usr/bin/env bash
# Set up a fresh Debian 12 machine (as root) for polyarch: system packages, the Python package, binfmt handlers.
# Idempotent; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO dpkg --add-architecture arm64
$SUDO dpkg --add-architecture armhf
# A mirror in the middle of a sync can fail one index; the packages we need still resolve from the rest.
$SUDO apt-get update -q || $SUDO apt-get update -q || true
$SUDO apt-get install -y -q --no-install-recommends \
  runc qemu-user-static binfmt-support skopeo docker-registry buildah uidmap apache2-utils docker.io \
  ca-certificates curl dpkg-dev git openssl openssh-server openssh-client slirp4netns passt fuse-overlayfs \
  ceph-mon ceph-osd radosgw jq postgresql-15 chromium chromium-driver rpm db5.3-util golang-go >/dev/null
python3 -m pip install -q --disable-pip-version-check -e '.[test]'
if ! mountpoint -q /proc/sys/fs/binfmt_misc; then
  $SUDO mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || true
fi
if python3 -m polyarch --help | grep -q '^  binfmt'; then
  $SUDO python3 -m polyarch binfmt --install all >/dev/null
fi
