#!/usr/bin/env bash
# apt-install.sh [--no-install-recommends] PACKAGE...: installs those of Debian's PACKAGEs that are missing, and does
# nothing when all are there. Needs root only when something is missing.
set -euo pipefail

options=()
if [ "${1:-}" = "--no-install-recommends" ]; then
    options+=("$1")
    shift
fi
missing=()
for package in "$@"; do
    dpkg-query --show --showformat='${db:Status-Status}' "${package}" 2>/dev/null | grep -qx installed || missing+=("${package}")
done
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "apt-install.sh: error: installing ${missing[*]} needs root" >&2
    exit 2
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q "${options[@]}" "${missing[@]}"
