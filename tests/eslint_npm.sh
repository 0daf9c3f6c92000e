#!/usr/bin/env bash
# Installs ESLint, its recommended rules (@eslint/js) and the list of browser and Node globals
# (globals) from the npm registry for `make lint`, only when the pinned versions are not already
# there (tests/npm_pinned.sh):
#   .cache/npm-eslint/ESLINT-GLOBALS/node_modules     (its parent folder is printed on stdout)
# eslint.config.js requires the two packages through NODE_PATH, which the Makefile points there.
# Any failure exits non-zero: a missing linter must fail `make lint`, never skip it. ESLint 9 runs
# on Node 18.18 and later (Debian 12's own nodejs is 18.19). Override with ESLINT_VERSION and
# GLOBALS_VERSION.
set -euo pipefail

ESLINT_VERSION="${ESLINT_VERSION:-9.39.5}"
GLOBALS_VERSION="${GLOBALS_VERSION:-17.15.0}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

bash "$ROOT/tests/npm_pinned.sh" "$ROOT/.cache/npm-eslint/$ESLINT_VERSION-$GLOBALS_VERSION" \
    "eslint@$ESLINT_VERSION" "@eslint/js@$ESLINT_VERSION" "globals@$GLOBALS_VERSION"
