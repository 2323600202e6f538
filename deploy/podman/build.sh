#!/usr/bin/env bash
# Builds the serving image with podman where no image registry can be reached: from the local Debian base
# image (base-image.sh), with the host's CA bundle ($PIP_CERT, else $SSL_CERT_FILE, else the system bundle)
# handed to pip as a build secret. Elsewhere a plain `docker build -t lutnet .` does the same.
#
# Usage: deploy/podman/build.sh [--target demo] [--tag TAG] [CONTEXT]
#   Without --target it builds the default (last) stage, the serving image, as `docker build` does.
#   CONTEXT defaults to the repository root; the demo target bakes CONTEXT/models (see the README).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
target=
tag=
context="$(cd "${here}/../.." && pwd)"
while [ "$#" -gt 0 ]; do
    case "$1" in
        --target) target="$2"; shift 2 ;;
        --tag) tag="$2"; shift 2 ;;
        -h|--help) sed -n '2,9s/^# \{0,1\}//p' "$0"; exit 0 ;;
        -*) echo "build.sh: error: unknown option '$1'; expected --target, --tag or a context directory" >&2; exit 2 ;;
        *) context="$1"; shift ;;
    esac
done
tag="${tag:-localhost/lutnet:${target:-latest}}"
target_option=()
if [ -n "${target}" ]; then
    target_option=(--target "${target}")
fi

base_image="$("${here}/base-image.sh")"
secret=()
# Without either variable the system bundle serves: it trusts what the host trusts, proxy or not.
ca_bundle="${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}"
if [ -n "${ca_bundle}" ] && [ -s "${ca_bundle}" ]; then
    secret=(--secret "id=pip_cert,src=${ca_bundle}")
fi

# --format docker keeps HEALTHCHECK (the OCI image format has no field for it).
podman build --pull=never --isolation chroot --format docker \
    "${secret[@]}" \
    --build-arg "BASE_IMAGE=${base_image}" \
    "${target_option[@]}" --tag "${tag}" \
    --file "${context}/Dockerfile" "${context}"
