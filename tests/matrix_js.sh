#!/usr/bin/env bash
# Installs matrix-js-sdk (the Matrix client library Element Web and Element Call are built on) from
# the npm registry for the Matrix interop tests, only when the pinned version is not already there
# (tests/npm_pinned.sh). tests/matrix/js/*.mjs are Node drivers that import it (MatrixRTC
# memberships as Element Call sends them, Olm to-device keys):
#   .cache/npm-matrix/VERSION/node_modules     (its parent folder is printed on stdout at the end)
# Any failure exits non-zero: a missing client must fail `make test`, never skip the tests.
# (matrix-js-sdk asks for Node >= 22 in its engines; the drivers polyfill the few newer built-ins
# they meet on Node 20, see tests/matrix/js/rtc_member.mjs.) Override with MATRIX_JS_SDK_VERSION.
set -euo pipefail

MATRIX_JS_SDK_VERSION="${MATRIX_JS_SDK_VERSION:-43.0.0}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

bash "$ROOT/tests/npm_pinned.sh" "$ROOT/.cache/npm-matrix/$MATRIX_JS_SDK_VERSION" \
    "matrix-js-sdk@$MATRIX_JS_SDK_VERSION"
