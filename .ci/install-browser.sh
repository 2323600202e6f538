#!/usr/bin/env bash
# Installs Debian's chromium for the dashboard's browser test (tests/service/test_dashboard_browser.py), which
# Playwright drives through its executable path (Playwright's own browser download is not used). Does nothing
# when it is already there. Needs root.
set -euo pipefail
exec bash "$(dirname "$0")/apt-install.sh" --no-install-recommends chromium
