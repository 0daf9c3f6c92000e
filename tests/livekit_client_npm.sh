#!/usr/bin/env bash
# Installs livekit-client (LiveKit's JavaScript SDK, the one Visio's web app is built on) from the
# npm registry for tests/browser/test_visio_livekit_client.py, only when the pinned version is not
# already there (tests/npm_pinned.sh). The test serves its UMD bundle (global `LivekitClient`) to
# headless Chromium:
#   .cache/npm-livekit/VERSION/node_modules/livekit-client/dist/livekit-client.umd.js
# (printed on stdout at the end). Any failure exits non-zero: a missing client must fail
# `make test`, never skip the test. (npm may warn that one of livekit-client's dependencies wants a
# newer Node: only the browser bundle is used, Node never runs it.) Override with
# LIVEKIT_CLIENT_VERSION=X.Y.Z.
set -euo pipefail

LIVEKIT_CLIENT_VERSION="${LIVEKIT_CLIENT_VERSION:-2.23.0}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

out="$(bash "$ROOT/tests/npm_pinned.sh" "$ROOT/.cache/npm-livekit/$LIVEKIT_CLIENT_VERSION" \
    "livekit-client@$LIVEKIT_CLIENT_VERSION")"
BUNDLE="$out/node_modules/livekit-client/dist/livekit-client.umd.js"
if [ ! -s "$BUNDLE" ]; then
    echo "livekit_client_npm.sh: livekit-client $LIVEKIT_CLIENT_VERSION has no dist/livekit-client.umd.js" >&2
    exit 1
fi
echo "$BUNDLE"
