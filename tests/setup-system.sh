#!/usr/bin/env bash
# Installs the Debian packages that the browser, interop and benchmark tests drive,
# only when they are missing, so a fresh machine (CI) gets them and a warm one skips apt.
set -euo pipefail
need=()
command -v chromium    >/dev/null 2>&1 || need+=(chromium)
command -v firefox-esr >/dev/null 2>&1 || need+=(firefox-esr)
command -v rtpengine   >/dev/null 2>&1 || need+=(rtpengine-daemon)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing Debian packages: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${need[@]}"
fi
