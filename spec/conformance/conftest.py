"""Options of the ORS conformance suite: point it at any implementation with --ors-url.

Without --ors-url (inside the Rondpoint repository) it starts a local Rondpoint gateway.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

LOCAL_RESUME_GRACE = 3
"""Seconds the local gateway keeps a participant whose connection dropped (spec 6.6)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ors", "ORS conformance")
    group.addoption("--ors-url", default=None, help="base URL of the ORS server under test")
    group.addoption(
        "--ors-room",
        default=None,
        help="a room on that server that anonymous visitors may join (no PIN, no lobby)",
    )


@pytest.fixture(scope="session")
def ors_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    url = request.config.getoption("--ors-url")
    if url:
        yield str(url).rstrip("/")
        return
    from tests.gateway_process import running_gateway

    # a short grace (6.6), so that the test that waits for it takes seconds
    with running_gateway(
        Path(tmp_path_factory.mktemp("ors-conformance")),
        extra_config=f"[rooms]\nreconnect_grace = {LOCAL_RESUME_GRACE}\n",
    ) as gateway:
        yield gateway.base_url


@pytest.fixture
def ors_room(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--ors-room") or f"conformance-{secrets.token_hex(4)}")
