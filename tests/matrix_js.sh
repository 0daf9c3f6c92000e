#!/usr/bin/env bash
# Installs matrix-js-sdk (the Matrix client library Element Web and Element Call are built on) from
# the npm registry for the Matrix interop tests, only when the pinned version is not already there.
# tests/matrix/js/*.mjs are Node drivers that import it (MatrixRTC memberships as Element Call
# sends them, Olm to-device keys):
#   .cache/npm-matrix/VERSION/node_modules     (its parent folder is printed on stdout at the end)
# The folder is under the repo's ignored .cache/; an install goes to a temporary sibling first and
# is moved in place whole, so a half-done one is never used.
# Any failure exits non-zero: a missing client must fail `make test`, never skip the tests.
# (matrix-js-sdk asks for Node >= 22 in its engines; the drivers polyfill the few newer built-ins
# they meet on Node 20, see tests/matrix/js/rtc_member.mjs.) Override with MATRIX_JS_SDK_VERSION.
set -euo pipefail

MATRIX_JS_SDK_VERSION="${MATRIX_JS_SDK_VERSION:-43.0.0}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT_DIR="$ROOT/.cache/npm-matrix/$MATRIX_JS_SDK_VERSION"
PACKAGE="$OUT_DIR/node_modules/matrix-js-sdk/package.json"

if [ -s "$PACKAGE" ]; then
    echo "$OUT_DIR"
    exit 0
fi
for tool in npm node; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "matrix_js.sh: the $tool command is missing; it is needed for matrix-js-sdk" >&2
        exit 1
    fi
done

mkdir -p "$(dirname "$OUT_DIR")"
WORK="$(mktemp -d "$OUT_DIR.tmp.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
echo "matrix_js.sh: installing matrix-js-sdk@$MATRIX_JS_SDK_VERSION from npm" >&2
# A package.json of type module, so the drivers' imports resolve from this folder.
echo '{"name": "rondpoint-matrix-test-peers", "private": true, "type": "module"}' >"$WORK/package.json"
npm install --prefix "$WORK" "matrix-js-sdk@$MATRIX_JS_SDK_VERSION" \
    --no-audit --no-fund --no-save --no-package-lock --loglevel=error --engine-strict=false \
    --cache "$ROOT/.cache/npm" >&2
installed="$(node -e 'console.log(require(process.argv[1]).version)' "$WORK/node_modules/matrix-js-sdk/package.json")"
if [ "$installed" != "$MATRIX_JS_SDK_VERSION" ]; then
    echo "matrix_js.sh: npm installed matrix-js-sdk $installed, not $MATRIX_JS_SDK_VERSION" >&2
    exit 1
fi
rm -rf "$OUT_DIR"
mv "$WORK" "$OUT_DIR"
echo "$OUT_DIR"
