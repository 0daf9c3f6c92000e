"""A phone call's session timer (RFC 4028) as the gateway runs it: with refresher=uas the gateway
sends the UPDATE at half the interval, adopts the interval of its 2xx, and sends BYE when a
refresh goes unanswered until the expiry (interval - min(32, interval/3)).

SIPp checks the headers on the wire (tests/interop/test_sip_scenarios.py); waiting the 45 s of
the shortest interval RFC 4028 allows would be too slow there, so the call is given a clock that
the tests move.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from protocols.sip.call import CallState, InboundCall
from protocols.sip.dialog import Dialog
from protocols.sip.message import Request, Response, make_response, parse_message
from tests.unit.sip.fake_clock import FakeClock


def _invite(session_expires: str) -> Request:
    lines = [
        "INVITE sip:salle@127.0.0.1:5060 SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKphone1;rport",
        "Max-Forwards: 70",
        'From: "Phone" <sip:0612345642@127.0.0.1:5070>;tag=phonetag',
        "To: <sip:salle@127.0.0.1:5060>",
        "Call-ID: timer-1@127.0.0.1",
        "CSeq: 1 INVITE",
        "Contact: <sip:0612345642@127.0.0.1:5070>",
        "Supported: timer",
        f"Session-Expires: {session_expires}",
        "Min-SE: 90",
        "Content-Length: 0",
    ]
    message = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


@dataclass
class FakeService:
    sent: list[Request] = field(default_factory=list)
    config: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(language="fr"))
    relay: SimpleNamespace = field(
        default_factory=lambda: SimpleNamespace(close_room=lambda room: None)
    )
    calls: dict = field(default_factory=dict)
    _pending: dict = field(default_factory=dict)
    ports: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(host="127.0.0.1"))

    def via(self, transport: object) -> str:
        return f"SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKgw{len(self.sent)};rport"

    def send_in_dialog(self, call: InboundCall, request: Request) -> None:
        self.sent.append(request)

    def forget(self, call: InboundCall) -> None:
        pass


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _answered_call(service: FakeService, session_expires: str, clock: FakeClock) -> InboundCall:
    invite = _invite(session_expires)
    call = InboundCall(
        service,  # type: ignore[arg-type]
        SimpleNamespace(kind="udp"),  # type: ignore[arg-type]
        invite,
        None,  # type: ignore[arg-type]
        ("127.0.0.1", 5070),
        clock,
    )
    headers = call.timer.answer_request(invite)
    assert isinstance(headers, list)
    response = call._response(200, "OK")
    response.headers.add("Contact", "<sip:rondpoint@127.0.0.1:5060>")
    for name, value in headers:
        response.headers.add(name, value)
    call.dialog = Dialog.as_uas(invite, response)
    call.state = CallState.ANSWERED
    call.timer.response_sent(clock.monotonic())
    call._schedule_session_timer()
    return call


def _delay(clock: FakeClock) -> float:
    """When the call's session timer wakes up next, from now."""
    [delay] = clock.pending()
    return delay


async def test_gateway_as_refresher_sends_update_at_half_the_interval(clock: FakeClock) -> None:
    service = FakeService()
    call = _answered_call(service, "90;refresher=uas", clock)
    assert call.timer.local_refresher and call.timer.interval == 90
    assert _delay(clock) == pytest.approx(45, abs=0.5)

    clock.advance(45)
    [update] = service.sent
    assert update.method == "UPDATE"
    assert update.headers.get("Call-ID") == "timer-1@127.0.0.1"
    assert update.headers.get("Session-Expires") == "90;refresher=uac"  # we send it: uac
    assert "timer" in (update.headers.get("Supported") or "")
    # next: the expiry, interval - min(32, interval / 3) = 60 s after the last refresh
    assert _delay(clock) == pytest.approx(15, abs=0.5)

    clock.now += 0.1
    ok: Response = make_response(update, 200)
    ok.headers.add("Session-Expires", "90;refresher=uac")
    call.response_received(ok)
    assert call.timer.refreshed_at == clock.now
    assert _delay(clock) == pytest.approx(45, abs=0.5)  # the next refresh, not a BYE
    assert call.state is CallState.ANSWERED
    call._end()


async def test_an_unanswered_refresh_ends_the_call_with_bye(clock: FakeClock) -> None:
    service = FakeService()
    call = _answered_call(service, "90;refresher=uas", clock)
    clock.advance(45)
    clock.advance(15)  # 60 s: the session expired without a 2xx to our refresh
    assert [r.method for r in service.sent] == ["UPDATE", "BYE"]
    assert call.state is CallState.ENDED


async def test_phone_as_refresher_the_gateway_only_waits_for_the_expiry(clock: FakeClock) -> None:
    service = FakeService()
    call = _answered_call(service, "90;refresher=uac", clock)
    assert not call.timer.local_refresher
    assert _delay(clock) == pytest.approx(60, abs=0.5)
    clock.now += 30
    call._session_timer()  # early wake-up: nothing to do
    assert service.sent == []
    call._end()
