#!/usr/bin/env bash
# Installs livekit-client (LiveKit's JavaScript SDK, the one Visio's web app is built on) from the
# npm registry for tests/browser/test_visio_livekit_client.py, only when the pinned version is not
# already there. The test serves its UMD bundle (global `LivekitClient`) to headless Chromium.
#   .cache/npm-livekit/VERSION/node_modules/livekit-client/dist/livekit-client.umd.js
# (printed on stdout at the end). The folder is under the repo's ignored .cache/; an install goes
# to a temporary sibling first and is moved in place whole, so a half-done one is never used.
# Any failure exits non-zero: a missing client must fail `make test`, never skip the test.
# (npm may warn that one of livekit-client's dependencies wants a newer Node: only the browser
# bundle is used, Node never runs it.) Override with LIVEKIT_CLIENT_VERSION=X.Y.Z.
set -euo pipefail

LIVEKIT_CLIENT_VERSION="${LIVEKIT_CLIENT_VERSION:-2.23.0}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT_DIR="$ROOT/.cache/npm-livekit/$LIVEKIT_CLIENT_VERSION"
BUNDLE="$OUT_DIR/node_modules/livekit-client/dist/livekit-client.umd.js"

if [ -s "$BUNDLE" ]; then
    echo "$BUNDLE"
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "livekit_client_npm.sh: the npm command is missing; it is needed to install livekit-client" >&2
    exit 1
fi

mkdir -p "$(dirname "$OUT_DIR")"
WORK="$(mktemp -d "$OUT_DIR.tmp.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
echo "livekit_client_npm.sh: installing livekit-client@$LIVEKIT_CLIENT_VERSION from npm" >&2
npm install --prefix "$WORK" "livekit-client@$LIVEKIT_CLIENT_VERSION" \
    --no-audit --no-fund --no-save --no-package-lock --loglevel=error \
    --cache "$ROOT/.cache/npm" >&2
installed="$(sed -n 's/^[[:space:]]*"version": "\(.*\)",$/\1/p' \
    "$WORK/node_modules/livekit-client/package.json" | head -n1)"
if [ "$installed" != "$LIVEKIT_CLIENT_VERSION" ]; then
    echo "livekit_client_npm.sh: npm installed livekit-client $installed, not $LIVEKIT_CLIENT_VERSION" >&2
    exit 1
fi
if [ ! -s "$WORK/node_modules/livekit-client/dist/livekit-client.umd.js" ]; then
    echo "livekit_client_npm.sh: livekit-client $installed has no dist/livekit-client.umd.js" >&2
    exit 1
fi
rm -rf "$OUT_DIR"
mv "$WORK" "$OUT_DIR"
echo "$BUNDLE"
