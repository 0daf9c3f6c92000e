#!/usr/bin/env bash
# Installs pinned npm packages into a folder of the repo's ignored .cache/, only when they are not
# already there at those versions, for the test peers and tools that come from the npm registry
# (livekit_client_npm.sh, matrix_js.sh, eslint_npm.sh):
#   bash tests/npm_pinned.sh OUT_DIR NAME@VERSION...     (prints OUT_DIR at the end)
# OUT_DIR/node_modules then holds them. An install goes to a temporary sibling first and is moved
# in place whole, so a half-done one is never used; OUT_DIR gets a package.json of type module, so
# scripts there import them as ES modules. Any failure exits non-zero: a missing package must fail
# `make test`, never skip a test. Node's engines fields are not enforced (matrix-js-sdk asks for a
# newer Node than Debian's; its callers say why that is fine).
set -euo pipefail

OUT_DIR="$1"
shift
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

version_of() { # the version of the package NAME installed under DIR, or nothing
    local manifest="$1/node_modules/$2/package.json"
    [ -s "$manifest" ] && node -e 'console.log(require(process.argv[1]).version)' "$manifest"
}

for tool in npm node; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "npm_pinned.sh: the $tool command is missing; it is needed for $* (make system-deps)" >&2
        exit 1
    fi
done
missing=0
for pinned in "$@"; do
    [ "$(version_of "$OUT_DIR" "${pinned%@*}" || true)" = "${pinned##*@}" ] || missing=1
done
if [ "$missing" = 0 ]; then
    echo "$OUT_DIR"
    exit 0
fi

mkdir -p "$(dirname "$OUT_DIR")"
WORK="$(mktemp -d "$OUT_DIR.tmp.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
echo "npm_pinned.sh: installing $* from npm" >&2
echo '{"name": "rondpoint-test-peers", "private": true, "type": "module"}' >"$WORK/package.json"
npm install --prefix "$WORK" "$@" \
    --no-audit --no-fund --no-save --no-package-lock --loglevel=error --engine-strict=false \
    --cache "$ROOT/.cache/npm" >&2
for pinned in "$@"; do
    installed="$(version_of "$WORK" "${pinned%@*}" || true)"
    if [ "$installed" != "${pinned##*@}" ]; then
        echo "npm_pinned.sh: npm installed ${pinned%@*} '$installed', not ${pinned##*@}" >&2
        exit 1
    fi
done
rm -rf "$OUT_DIR"
mv "$WORK" "$OUT_DIR"
echo "$OUT_DIR"
