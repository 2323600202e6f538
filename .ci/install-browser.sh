#!/usr/bin/env bash
# Installs Debian's chromium for the dashboard's browser test (tests/service/test_dashboard_browser.py), which
# Playwright drives through its executable path (Playwright's own browser download is not used). Does nothing
# when it is already there. Needs root.
set -euo pipefail

if dpkg-query --show --showformat='${db:Status-Status}' chromium 2>/dev/null | grep -qx installed; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-browser.sh: error: installing chromium needs root" >&2
    exit 2
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends chromium
