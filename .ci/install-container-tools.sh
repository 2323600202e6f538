#!/usr/bin/env bash
# Installs the system packages the test suite needs from Debian's packages: podman with runc and buildah and
# debootstrap (the local base image) for the container group, and g++ for training's native lookup operator.
# Does nothing when they are already there. Needs root.
set -euo pipefail
exec bash "$(dirname "$0")/apt-install.sh" podman buildah runc debootstrap uidmap fuse-overlayfs slirp4netns g++
