"""The gateway registers to a trunk provider (SIPp as the registrar): digest, refresh before expiry."""

from __future__ import annotations

import asyncio

import pytest

from tests.gateway_process import RunningGateway
from tests.interop.test_sip_dial_in import SCENARIOS
from tests.interop.test_sip_dial_out import callee, wait_for

pytestmark = pytest.mark.interop


async def test_registration_answers_the_challenge_and_refreshes_before_expiry(
    gateway: RunningGateway,
) -> None:
    registrar, port = await callee("-sf", str(SCENARIOS / "registrar.xml"))
    status, trunk = gateway.admin(
        "POST",
        "/api/v1/sip/trunks",
        {
            "name": "operateur",
            "address": f"127.0.0.1:{port}",
            "username": "gw-ministere",
            "password": "s3cret-trunk",
            "register": True,
        },
    )
    assert status == 201 and trunk["password_set"] and "password" not in trunk

    def registered() -> bool:
        [shown] = gateway.admin("GET", "/api/v1/sip/trunks")[1]["trunks"]
        return shown["registration"] == "registered"

    await wait_for(registered, 10, "the trunk to be registered")
    # the registrar granted 3 s and ends only after the refresh it expects
    output, _ = await asyncio.wait_for(registrar.communicate(), 15)
    assert registrar.returncode == 0, output.decode(errors="replace")[-1500:]
    assert registered()
    assert "s3cret-trunk" not in gateway.log_text()
    assert gateway.admin("DELETE", "/api/v1/sip/trunks/operateur")[0] == 204
