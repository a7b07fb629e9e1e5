#!/usr/bin/env bash
# System dependency of tests/test_jupyterlab_ui.py: Debian's Chromium at /usr/bin/chromium.
# The Python side (jupyterlab, playwright) comes with `pip install -e ".[dev]"`; Playwright
# drives this Chromium, so `playwright install` (which downloads a browser) is never needed.
# Does nothing when Chromium is already there; installing it needs root (apt-get).
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
    echo "chromium: $CHROMIUM is installed"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "chromium: $CHROMIUM is missing and installing it needs root. Run:" >&2
    echo "    sudo apt-get update && sudo apt-get install -y --no-install-recommends chromium" >&2
    echo "or: sudo bash $0" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium: $CHROMIUM is missing and apt-get is not available (not Debian/Ubuntu)." >&2
    echo "Install Chromium with your system's package manager so that $CHROMIUM exists." >&2
    exit 1
fi

echo "chromium: installing Debian's chromium package"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends chromium

if [ ! -x "$CHROMIUM" ]; then
    echo "chromium: apt-get finished but $CHROMIUM is still missing" >&2
    exit 1
fi
"$CHROMIUM" --version 2>/dev/null || true
