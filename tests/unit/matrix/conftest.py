"""Fixtures the Matrix unit tests share: a recording homeserver (which vouches for one OpenID
token, Anna's), a gateway serving the Matrix plugin against it, and a check that no secret of
theirs reaches a log line."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.unit.matrix.recording_homeserver import RecordingHomeserver
from tests.unit.matrix.served_gateway import AS_TOKEN, HS_TOKEN, LIVEKIT_SECRET, Served, served

ANNA = "@anna:hs.test"
OPENID = "openid-token-of-anna-0123456789"
"""The OpenID token the homeserver vouches for, as Anna's."""
FORGED = "forged-openid-token-9876543210"
"""An OpenID token the homeserver knows nothing of."""
SECRETS = (OPENID, FORGED, LIVEKIT_SECRET, AS_TOKEN, HS_TOKEN)


@pytest.fixture
async def homeserver() -> AsyncIterator[RecordingHomeserver]:
    stub = await RecordingHomeserver(openid_users={OPENID: ANNA}).start()
    yield stub
    await stub.close()


@pytest.fixture
async def gateway(tmp_path: Path, homeserver: RecordingHomeserver) -> AsyncIterator[Served]:
    async with served(tmp_path, homeserver) as running:
        yield running


@pytest.fixture
def no_secret_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fails the test when a log line holds a token or secret of the fixtures above."""
    caplog.set_level(logging.DEBUG)
    yield
    for record in caplog.records:
        text = record.getMessage()
        assert not any(secret in text for secret in SECRETS), text
