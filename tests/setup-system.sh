#!/usr/bin/env bash
# Installs the Debian packages that the browser, interop and benchmark tests drive,
# only when they are missing, so a fresh machine (CI) gets them and a warm one skips apt.
set -euo pipefail
need=()
command -v chromium    >/dev/null 2>&1 || need+=(chromium)
command -v firefox-esr >/dev/null 2>&1 || need+=(firefox-esr)
command -v rtpengine   >/dev/null 2>&1 || need+=(rtpengine-daemon)
# SIPp drives the SIP scenarios and the SIP benchmark (tests/interop/sipp/, bench/sip_load.py).
command -v sipp        >/dev/null 2>&1 || need+=(sip-tester)
# A real softphone for the SIP interop tests (tests/interop/test_baresip.py).
command -v baresip     >/dev/null 2>&1 || need+=(baresip)
# SIP scanners for the attack tests (tests/interop/test_sipvicious.py).
command -v svwar       >/dev/null 2>&1 || need+=(sipvicious)
# A DNS server for the RFC 3263 dial-out test (tests/interop/test_sip_dial_out.py), which starts
# its own on 127.0.0.1; dnsmasq-base is the binary alone, without Debian's service on port 53.
[ -x /usr/sbin/dnsmasq ] || need+=(dnsmasq-base)
# The relay's optional native fast path (setup.py): a C compiler and the libsrtp2 headers.
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
[ -e /usr/include/srtp2/srtp.h ] || need+=(libsrtp2-dev)
# nginx (with openssl for its throwaway certificate) as the reverse proxy of docs/deploy.md, in
# tests/browser/test_reverse_proxy.py, which starts its own nginx on loopback.
new_nginx=0
[ -x /usr/sbin/nginx ] || { need+=(nginx); new_nginx=1; }
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# coturn (a real TURN server) for tests/interop/test_turn_coturn.py and tests/netlab/test_firewalls.py,
# which start their own turnserver on a test address; Debian's service is not left running.
new_coturn=0
command -v turnserver >/dev/null 2>&1 || { need+=(coturn); new_coturn=1; }
# certutil, to make the NetLab Chromium trust the test TURN server's certificate as a CA.
command -v certutil >/dev/null 2>&1 || need+=(libnss3-tools)
# iptables cuts the network between two partner gateways in tests/federation/test_e2e_faults.py.
command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || need+=(iptables)
# npm installs livekit-client, LiveKit's JavaScript SDK, for tests/browser/test_visio_livekit_client.py,
# and ESLint for `make lint` (tests/eslint_npm.sh); Node (nodejs, which npm brings) runs tests/js.
command -v npm >/dev/null 2>&1 || need+=(npm)
"${PYTHON:-python3}" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null || need+=(python3-dev)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing Debian packages: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${need[@]}"
fi
# Debian starts the nginx it installs, with its default site on port 80 of every interface:
# the test runs its own nginx, so the service installed just now is stopped and disabled.
if [ "$new_nginx" = 1 ] && [ -d /run/systemd/system ]; then
    systemctl disable --now nginx || true
fi
# Debian enables coturn.service (it then listens on 3478 of every interface): the tests run their own.
if [ "$new_coturn" = 1 ] && [ -d /run/systemd/system ]; then
    systemctl disable --now coturn || true
fi
# A real LiveKit server for the LiveKit / Visio interop tests (tests/interop/test_livekit_signal.py),
# built from the Go module proxy into .cache/ only when missing; a failed build fails the setup.
bash "$(dirname "$0")/livekit_server.sh" >/dev/null
# livekit-client from the npm registry into .cache/ (a pinned version), only when missing.
bash "$(dirname "$0")/livekit_client_npm.sh" >/dev/null
# Synapse (the Matrix homeserver) from PyPI into its own venv under .cache/, for tests/matrix/.
bash "$(dirname "$0")/synapse.sh" >/dev/null
# matrix-js-sdk from the npm registry into .cache/ (a pinned version), for tests/matrix/js/.
bash "$(dirname "$0")/matrix_js.sh" >/dev/null
