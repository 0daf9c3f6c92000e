#!/usr/bin/env bash
# Builds livekit-server (github.com/livekit/livekit-server, the LiveKit SFU) from the Go module proxy
# for the LiveKit interop tests, only when the cached binary is missing.
#
# `go install MODULE@VERSION` refuses livekit-server because its go.mod has replace directives
# (pion webrtc, dtls and ice point at livekit's forks), so this builds it through a throwaway
# wrapper module, made in a temporary folder and deleted after, that requires livekit-server at
# LIVEKIT_SERVER_VERSION and repeats those replace lines, read from livekit-server's own go.mod.
# The module cache, the build cache and the binary all live under the repo's ignored .cache/:
#   .cache/go/                                  GOPATH, GOMODCACHE, GOCACHE
#   .cache/livekit-server/VERSION/livekit-server the binary (printed on stdout at the end)
# Any failure exits non-zero: a missing LiveKit peer must fail `make test`, never skip tests.
#
# Version: v1.13.5 is the newest release whose whole dependency graph the module proxy serves
# here. From v1.13.6 on, the replace lines point at livekit's forks (github.com/livekit/webrtc-pion,
# github.com/livekit/ice, github.com/livekit/dtls, "-warp" versions), which the proxy refuses
# (403 "This module version is not available"); v1.13.5 has no replace directive and builds
# against upstream pion. The replace handling below stays for a later version whose forks are
# served. Override with LIVEKIT_SERVER_VERSION=vX.Y.Z.
set -euo pipefail

LIVEKIT_SERVER_VERSION="${LIVEKIT_SERVER_VERSION:-v1.13.5}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT_DIR="$ROOT/.cache/livekit-server/$LIVEKIT_SERVER_VERSION"
BIN="$OUT_DIR/livekit-server"

if [ -x "$BIN" ]; then
    echo "$BIN"
    exit 0
fi

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
    export PATH="$PATH:/usr/local/go/bin"
fi
if ! command -v go >/dev/null 2>&1; then
    echo "livekit_server.sh: the go command is missing; it is needed to build livekit-server" >&2
    exit 1
fi

export GOPATH="$ROOT/.cache/go"
export GOMODCACHE="$GOPATH/pkg/mod"
export GOCACHE="$GOPATH/build-cache"
# -modcacherw keeps the module cache deletable with a plain rm -rf .cache.
export GOFLAGS="-mod=mod -modcacherw -buildvcs=false"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export CGO_ENABLED="${CGO_ENABLED:-0}"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

started=$(date +%s)
echo "livekit_server.sh: building livekit-server $LIVEKIT_SERVER_VERSION (from scratch this takes minutes)" >&2
cd "$WORK"
go mod init rondpoint.invalid/livekit-server-build >/dev/null 2>&1
go mod edit -require="github.com/livekit/livekit-server@$LIVEKIT_SERVER_VERSION"

# livekit-server's own go.mod, from the module cache: repeat its replace directives here.
upstream_mod="$(go mod download -json "github.com/livekit/livekit-server@$LIVEKIT_SERVER_VERSION" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
if [ -z "$upstream_mod" ] || [ ! -f "$upstream_mod" ]; then
    echo "livekit_server.sh: could not download the go.mod of livekit-server $LIVEKIT_SERVER_VERSION" >&2
    exit 1
fi
go_version="$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$upstream_mod" | head -n1)"
[ -n "$go_version" ] && go mod edit -go="$go_version"
replaces=0
while IFS= read -r line; do
    # `replace OLD [VERSION] => NEW VERSION`, one per line (livekit-server uses no replace block).
    spec="${line#replace }"
    old="${spec%%=>*}"
    new="${spec#*=>}"
    old="$(echo "$old" | xargs | tr ' ' '@')"
    new="$(echo "$new" | xargs | tr ' ' '@')"
    go mod edit -replace="$old=$new"
    replaces=$((replaces + 1))
done < <(grep -E '^replace [^(]' "$upstream_mod" || true)
if grep -qE '^replace \($' "$upstream_mod"; then
    echo "livekit_server.sh: livekit-server's go.mod has a replace block, which this script does not parse" >&2
    exit 1
fi
echo "livekit_server.sh: repeated $replaces replace directive(s) from livekit-server's go.mod" >&2

go build -trimpath -o "$WORK/livekit-server" github.com/livekit/livekit-server/cmd/server
"$WORK/livekit-server" --version >&2
mkdir -p "$OUT_DIR"
mv "$WORK/livekit-server" "$BIN"
echo "livekit_server.sh: built $BIN in $(($(date +%s) - started)) s" >&2
echo "$BIN"
