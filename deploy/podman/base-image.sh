#!/usr/bin/env bash
# Builds a local stand-in for the official slim Python image where no image registry can be reached:
# Debian minbase + python3 + python3-venv from the Debian mirror apt already uses, imported into podman.
#
# Usage: deploy/podman/base-image.sh [TAG]        (default TAG: localhost/lutnet-base:<codename>)
# Prints the tag. Does nothing when the tag exists; the root file system tarball is cached under
# $LUTNET_BASE_CACHE (default /var/tmp/lutnet-base) because debootstrap takes minutes.
set -euo pipefail

codename="$(. /etc/os-release && echo "${VERSION_CODENAME}")"
tag="${1:-localhost/lutnet-base:${codename}}"
cache="${LUTNET_BASE_CACHE:-/var/tmp/lutnet-base}"
tarball="${cache}/${codename}-python3.tar"

# The host's own Debian mirror: the first URI of a source that serves the codename's main suite
# (one-line sources.list or deb822 .sources), so this works wherever apt works.
debian_mirror() {
    local from_list from_sources
    from_list="$(grep -hsE "^deb\s+(\[[^]]*\]\s+)?\S+\s+${codename}\s" /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        | awk '{for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}')"
    from_sources="$(awk -v suite="${codename}" '
        /^URIs:/ {uri = $2}
        /^Suites:/ {for (i = 2; i <= NF; i++) if ($i == suite) {print uri; exit}}
        /^$/ {uri = ""}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
    echo "${from_list:-${from_sources}}"
}

if podman image exists "${tag}"; then
    echo "${tag}"
    exit 0
fi

if [ ! -s "${tarball}" ]; then
    mirror="$(debian_mirror)"
    if [ -z "${mirror}" ]; then
        echo "base-image.sh: error: no Debian mirror for '${codename}' found in /etc/apt/sources.list*" >&2
        exit 2
    fi
    mkdir -p "${cache}"
    rootfs="$(mktemp -d "${cache}/rootfs.XXXXXX")"
    trap 'rm -rf "${rootfs}" "${tarball}.partial"' EXIT
    echo "base-image.sh: debootstrap ${codename} from ${mirror} (minutes)" >&2
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        "${codename}" "${rootfs}" "${mirror}" >&2
    # Like the official slim images: no package lists, caches or docs in the layer.
    rm -rf "${rootfs}"/var/lib/apt/lists/* "${rootfs}"/var/cache/apt/*.bin "${rootfs}"/var/cache/apt/archives/*.deb \
        "${rootfs}"/usr/share/doc/* "${rootfs}"/usr/share/man/* "${rootfs}"/usr/share/info/* \
        "${rootfs}"/usr/share/locale/*
    tar --numeric-owner -C "${rootfs}" -cf "${tarball}.partial" .
    mv "${tarball}.partial" "${tarball}"
fi

podman import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' \
    "${tarball}" "${tag}" >&2
echo "${tag}"
