#!/usr/bin/env bash
# Installs the system packages the test suite needs from Debian's packages: podman with runc and buildah and
# debootstrap (the local base image) for the container group, and g++ for training's native lookup operator.
# Does nothing when they are already there. Needs root.
set -euo pipefail

packages=(podman buildah runc debootstrap uidmap fuse-overlayfs slirp4netns g++)
missing=()
for package in "${packages[@]}"; do
    dpkg-query --show --showformat='${db:Status-Status}' "${package}" 2>/dev/null | grep -qx installed || missing+=("${package}")
done
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-container-tools.sh: error: installing ${missing[*]} needs root" >&2
    exit 2
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q "${missing[@]}"
