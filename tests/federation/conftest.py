"""Fixtures of the federation end-to-end tests: the partner gateways of one test module
(tests/federation/harness.py), their logs kept in test-artifacts/federation/, and aiortc's ICE
candidates kept on loopback."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import aioice.ice
import pytest

from tests.federation.harness import Partners, partner_gateways

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "federation"


@pytest.fixture(scope="module")
def partners(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Partners]:
    """The gateways the module names in ``GATEWAYS`` (default fr, de, be), shared by its tests,
    with its ``FEDERATION_CONFIG`` (more keys of their ``[federation]`` table)."""
    shorts = tuple(getattr(request.module, "GATEWAYS", ("fr", "de", "be")))
    config = str(getattr(request.module, "FEDERATION_CONFIG", ""))
    module = request.module.__name__.rsplit(".", 1)[-1]
    with partner_gateways(Path(tmp_path_factory.mktemp("partners")), shorts, config) as running:
        try:
            yield running
        finally:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            for short, gateway in running.gateways.items():
                if gateway.log_path.exists():
                    shutil.copyfile(gateway.log_path, ARTIFACTS / f"{module}-{short}.log")


@pytest.fixture
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    """aioice skips 127.0.0.1 when it gathers; the tests' WebRTC clients stay on loopback."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda *_, **__: ["127.0.0.1"])
