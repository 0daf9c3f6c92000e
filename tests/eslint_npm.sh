#!/usr/bin/env bash
# Installs ESLint, its recommended rules (@eslint/js) and the list of browser and Node globals
# (globals) from the npm registry for `make lint`, only when the pinned versions are not already
# there:
#   .cache/npm-eslint/ESLINT-GLOBALS/node_modules     (its parent folder is printed on stdout)
# eslint.config.js requires the two packages through NODE_PATH, which the Makefile points there.
# The folder is under the repo's ignored .cache/; an install goes to a temporary sibling first and
# is moved in place whole, so a half-done one is never used. Any failure exits non-zero: a missing
# linter must fail `make lint`, never skip it. ESLint 9 runs on Node 18.18 and later (Debian 12's
# own nodejs is 18.19). Override with ESLINT_VERSION and GLOBALS_VERSION.
set -euo pipefail

ESLINT_VERSION="${ESLINT_VERSION:-9.39.5}"
GLOBALS_VERSION="${GLOBALS_VERSION:-17.15.0}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT_DIR="$ROOT/.cache/npm-eslint/$ESLINT_VERSION-$GLOBALS_VERSION"

if [ -x "$OUT_DIR/node_modules/.bin/eslint" ] && [ -s "$OUT_DIR/node_modules/globals/package.json" ]; then
    echo "$OUT_DIR"
    exit 0
fi
for tool in npm node; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "eslint_npm.sh: the $tool command is missing; it is needed for ESLint (make system-deps)" >&2
        exit 1
    fi
done

mkdir -p "$(dirname "$OUT_DIR")"
WORK="$(mktemp -d "$OUT_DIR.tmp.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
echo "eslint_npm.sh: installing eslint@$ESLINT_VERSION, @eslint/js@$ESLINT_VERSION, globals@$GLOBALS_VERSION from npm" >&2
npm install --prefix "$WORK" "eslint@$ESLINT_VERSION" "@eslint/js@$ESLINT_VERSION" "globals@$GLOBALS_VERSION" \
    --no-audit --no-fund --no-save --no-package-lock --loglevel=error \
    --cache "$ROOT/.cache/npm" >&2
for package in eslint @eslint/js globals; do
    want="$ESLINT_VERSION"
    [ "$package" = globals ] && want="$GLOBALS_VERSION"
    installed="$(node -e 'console.log(require(process.argv[1]).version)' "$WORK/node_modules/$package/package.json")"
    if [ "$installed" != "$want" ]; then
        echo "eslint_npm.sh: npm installed $package $installed, not $want" >&2
        exit 1
    fi
done
rm -rf "$OUT_DIR"
mv "$WORK" "$OUT_DIR"
echo "$OUT_DIR"
