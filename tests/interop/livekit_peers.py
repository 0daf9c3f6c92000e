"""Peers for the LiveKit interop tests: tokens for the test server, an SDK room and one of our
participants, each closed when the block ends; `loopback_only` keeps aioice on 127.0.0.1."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aioice.ice
import pytest
from livekit import rtc

from protocols.livekit.rtc import LiveKitParticipant
from protocols.livekit.tokens import VideoGrant, mint_token
from tests.interop.livekit_fixtures import RunningLiveKit


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # aioice skips 127.0.0.1 when it gathers; the tests stay on loopback.
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda *_, **__: ["127.0.0.1"])


def token(lk: RunningLiveKit, room: str, identity: str, name: str) -> str:
    return mint_token(
        lk.api_key, lk.api_secret, identity=identity, name=name, grant=VideoGrant.join(room)
    )


@contextlib.asynccontextmanager
async def sdk_room(lk: RunningLiveKit, room: str, identity: str) -> AsyncIterator[rtc.Room]:
    sdk = rtc.Room()
    await sdk.connect(lk.url, token(lk, room, identity, identity.title()))
    try:
        yield sdk
    finally:
        await sdk.disconnect()


@contextlib.asynccontextmanager
async def our_participant(
    lk: RunningLiveKit, room: str, identity: str
) -> AsyncIterator[LiveKitParticipant]:
    ours = await LiveKitParticipant.connect(lk.url, token(lk, room, identity, "Rondpoint"))
    try:
        yield ours
    finally:
        await ours.close()
