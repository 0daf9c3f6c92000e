#!/usr/bin/env bash
# Installs Synapse (the Matrix homeserver, PyPI `matrix-synapse`) for the Matrix interop tests
# (tests/matrix/), only when the pinned version is not already there, into its own virtual
# environment: Synapse is AGPL, so it only ever runs as a separate test process, never imported.
#   .cache/synapse/VERSION/venv/bin/python     (printed on stdout at the end)
# The folder is under the repo's ignored .cache/; an install goes to a temporary sibling first and
# is moved in place whole, so a half-done one is never used (the venv's scripts name their own
# folder, so the venv is created at its final path inside the temporary folder's move target:
# only `python -m synapse.app.homeserver` is used, never the console scripts).
# Any failure exits non-zero: a missing homeserver must fail `make test`, never skip tests.
# Override with SYNAPSE_VERSION=X.Y.Z; PYTHON picks the interpreter (default python3).
set -euo pipefail

SYNAPSE_VERSION="${SYNAPSE_VERSION:-1.163.2}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT_DIR="$ROOT/.cache/synapse/$SYNAPSE_VERSION"
VENV_PYTHON="$OUT_DIR/venv/bin/python"
PY="${PYTHON:-python3}"

if [ -x "$VENV_PYTHON" ] && [ -f "$OUT_DIR/installed" ]; then
    echo "$VENV_PYTHON"
    exit 0
fi
if ! "$PY" -c 'import venv' >/dev/null 2>&1; then
    echo "synapse.sh: $PY has no venv module; it is needed to install Synapse" >&2
    exit 1
fi

mkdir -p "$(dirname "$OUT_DIR")"
WORK="$(mktemp -d "$OUT_DIR.tmp.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
started=$(date +%s)
echo "synapse.sh: installing matrix-synapse==$SYNAPSE_VERSION from PyPI" >&2
"$PY" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --cache-dir "$ROOT/.cache/pip" "matrix-synapse==$SYNAPSE_VERSION" >&2
# (synapse.__version__ would add the git state of this repo, which holds .cache/)
installed="$("$WORK/venv/bin/python" -c \
    'import importlib.metadata as m; print(m.version("matrix-synapse"))')"
if [ "$installed" != "$SYNAPSE_VERSION" ]; then
    echo "synapse.sh: pip installed matrix-synapse $installed, not $SYNAPSE_VERSION" >&2
    exit 1
fi
echo "$installed" >"$WORK/installed"
rm -rf "$OUT_DIR"
mv "$WORK" "$OUT_DIR"
# A venv records its own path (pyvenv.cfg, bin/ scripts); `python -m` through bin/python works
# after the move because bin/python is a symlink to the base interpreter and site-packages is
# found relative to it.
"$VENV_PYTHON" -c 'import synapse.app.homeserver' >&2
echo "synapse.sh: matrix-synapse $installed ready in $(($(date +%s) - started)) s" >&2
echo "$VENV_PYTHON"
