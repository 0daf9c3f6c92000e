"""Fixtures shared by the interop tests: a real livekit-server (tests/interop/livekit_fixtures.py),
module-scoped and shared (`livekit_server`), or a test's own that it may kill and restart
(`livekit_server_restartable`); `loopback_only` keeps aioice's candidates on 127.0.0.1."""

from tests.interop.livekit_fixtures import livekit_server, livekit_server_restartable
from tests.interop.livekit_peers import loopback_only

__all__ = ["livekit_server", "livekit_server_restartable", "loopback_only"]
