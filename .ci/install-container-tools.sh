#!/usr/bin/env bash
# Installs what the container test group needs (podman with runc and buildah, debootstrap for the local
# base image) from Debian's packages; does nothing when they are already there. Needs root.
set -euo pipefail

packages=(podman buildah runc debootstrap uidmap fuse-overlayfs slirp4netns)
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
