"""Registration to a trunk: refresh before expiry, back off on failure (RFC 3261 section 10)."""

from __future__ import annotations

import asyncio
from typing import Any

from protocols.sip.message import Request, make_response
from protocols.sip.registration import BACKOFF_MAX, BACKOFF_START, Registration, refresh_delay
from protocols.sip.store import Trunk


class FakeTransport:
    kind = "udp"

    def __init__(self) -> None:
        self.sent: list[Request] = []

    def send_request(self, request: Request, destination: Any) -> None:
        self.sent.append(request)


class FakeService:
    def via(self, transport: Any) -> str:
        return f"SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK{len(transport.sent)};rport"

    def contact(self, transport: Any) -> str:
        return "<sip:rondpoint@127.0.0.1:5060>"


def test_refresh_comes_well_before_expiry() -> None:
    assert refresh_delay(3600) == 2880
    assert refresh_delay(120) == 90
    assert abs(refresh_delay(3) - 2.4) < 1e-9


async def test_a_refusal_backs_off_doubling_up_to_ten_minutes() -> None:
    transport = FakeTransport()
    registration = Registration(
        FakeService(),  # type: ignore[arg-type]
        transport,  # type: ignore[arg-type]
        Trunk("operateur", "127.0.0.1:5070", username="gw", password="pw", register=True),
    )
    registration.start()
    delays = []
    for _ in range(7):
        registration.response(make_response(transport.sent[-1], 403, "Forbidden"))
        assert registration.status.startswith("failed")
        assert registration._handle is not None
        delays.append(round(registration._handle.when() - asyncio.get_running_loop().time()))
        registration.send()
    assert delays == [30, 60, 120, 240, 480, 600, 600]
    assert BACKOFF_START == 30 and BACKOFF_MAX == 600
    registration.response(make_response(transport.sent[-1], 200))
    assert registration.status == "registered"
    registration.stop()


async def test_credentials_refused_twice_for_one_nonce_stop_the_retry_loop() -> None:
    transport = FakeTransport()
    registration = Registration(
        FakeService(),  # type: ignore[arg-type]
        transport,  # type: ignore[arg-type]
        Trunk("operateur", "127.0.0.1:5070", username="gw", password="wrong", register=True),
    )
    registration.start()
    for _ in range(2):
        challenge = make_response(transport.sent[-1], 401)
        challenge.headers.add("WWW-Authenticate", 'Digest realm="t", nonce="abc", qop="auth"')
        registration.response(challenge)
    assert len(transport.sent) == 2  # one answer to the challenge, not a loop
    assert registration.status == "failed: authentication refused (401)"
    registration.stop()
