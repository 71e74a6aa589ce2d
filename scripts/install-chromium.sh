#!/usr/bin/env bash
# Installs Debian's chromium for the HTML report test (tests/Report/ReportBrowserTests.cs), which drives it
# through Microsoft.Playwright with ExecutablePath set; Playwright's own browser downloads are never used.
# Does nothing when chromium is already on PATH. Needs root (or sudo) and an apt source that has chromium.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    echo "chromium: $(chromium --version 2>/dev/null || echo present)"
    exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo="sudo"
    else
        echo "install-chromium: not root and no sudo; the browser test will skip" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
echo "chromium: $(chromium --version)"
