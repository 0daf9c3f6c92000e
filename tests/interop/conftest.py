"""Fixtures shared by the interop tests: a real livekit-server (tests/interop/livekit_fixtures.py)."""

from tests.interop.livekit_fixtures import livekit_server

__all__ = ["livekit_server"]
