#!/usr/bin/env bash
# System dependency of tests/test_jupyterlab_ui.py: Debian's Chromium at /usr/bin/chromium
# (SRLIB_CHROMIUM names another path). The Python side (jupyterlab, playwright) comes with
# `pip install -e ".[dev]"`; Playwright drives this Chromium, so `playwright install` (which
# downloads a browser) is never needed.
#
#   Chromium there          nothing to do.
#   root                    installs Debian's chromium package with apt-get.
#   not root, CI unset      installs nothing and says so in one line: the browser test is
#                           then skipped (its reason says how to enable it); `make test` goes on.
#   CI=true                 a Chromium that cannot be installed is an error (exit 1): CI runs
#                           as root and must run the browser test, never skip it.
set -euo pipefail

CHROMIUM=${SRLIB_CHROMIUM:-/usr/bin/chromium}
ci=${CI:-}
case "${ci,,}" in  # CI=true or 1, any case (tests/test_jupyterlab_ui.py reads it the same way)
    true | 1) ci=1 ;;
    *) ci=0 ;;
esac

if [ -x "$CHROMIUM" ]; then
    echo "chromium: $CHROMIUM is installed"
    exit 0
fi

# Without root (or apt-get) nothing can be installed here: outside CI, the browser test is
# skipped. $1: why nothing is installed; $2: how to enable the test.
missing() {
    if [ "$ci" -eq 1 ]; then
        echo "chromium: $CHROMIUM is missing and $1; with CI=true the browser test must run:" \
             "$2" >&2
        exit 1
    fi
    echo "chromium: $CHROMIUM is missing and $1, so the JupyterLab browser test will be" \
         "skipped; to enable it: $2"
    exit 0
}

if [ "$(id -u)" -ne 0 ]; then
    missing "installing it needs root" \
            "sudo apt-get install chromium (or: sudo bash scripts/install_browser_test_deps.sh)"
fi
if ! command -v apt-get >/dev/null 2>&1; then
    missing "apt-get is not available" \
            "install Chromium with your system's package manager (SRLIB_CHROMIUM=its path)"
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
