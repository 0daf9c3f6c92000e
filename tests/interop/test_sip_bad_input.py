"""Bad input and attacks at the gateway level: every RFC 4475 invalid message during a
call, refused offers (488), a BYE for an unknown dialog (481), a missing ACK, an INVITE flood.

Each checks the RFC's answer on the wire and that the rest keeps working: /healthz, the call in
progress, a call from another address.
"""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocols.sip.call import CALLS_PER_UNTRUSTED_ADDRESS
from tests.gateway_process import RunningGateway, running_gateway
from tests.interop.sipp_tools import PCAPS, phones, run_sipp, wait_until
from tests.unit.sip.test_torture_rfc4475 import INVALID

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not PCAPS.exists(), reason="Debian sip-tester (SIPp pcaps) not installed"),
]

TORTURE = Path(__file__).resolve().parent.parent / "unit" / "sip" / "torture"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """A gateway of this module's own: the flood must not rate-limit other modules' calls."""
    with running_gateway(Path(tmp_path_factory.mktemp("gateway"))) as running:
        yield running


def _healthy(gateway: RunningGateway) -> bool:
    with urllib.request.urlopen(gateway.base_url + "/healthz", timeout=5) as response:
        return response.status == 200


def _send_and_listen(port: int, data: bytes, wait: float) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(wait)
        sock.sendto(data, ("127.0.0.1", port))
        try:
            return sock.recv(65535)
        except TimeoutError:
            return None


async def test_rfc4475_invalid_messages_during_a_call(gateway: RunningGateway) -> None:
    """Each invalid message is answered with its status (400, 505 for badvers) or dropped; the
    gateway stays up and a call in progress goes on to its normal end."""
    gateway.create_room("salle-robuste")
    call = asyncio.create_task(
        run_sipp(gateway.sip_port, "call.xml", "salle-robuste", "-d", "6000")
    )
    await wait_until(lambda: phones(gateway, "salle-robuste"), 10, "the call did not join")

    answers: dict[str, int | None] = {}
    for name in sorted(INVALID):
        data = (TORTURE / f"{name}.dat").read_bytes()
        reply = await asyncio.to_thread(_send_and_listen, gateway.sip_port, data, 0.3)
        answers[name] = int(reply.split(b" ", 2)[1]) if reply else None
        if reply is not None:
            assert reply.startswith(b"SIP/2.0 "), (name, reply[:200])
            call_id = next(
                line for line in data.split(b"\r\n") if line.lower().startswith(b"call-id")
            )
            assert call_id.split(b":", 1)[1].strip() in reply, (name, reply)
    for name, status in answers.items():
        assert status in (None, INVALID[name]), (name, status)
    # responses (scalarlg, bigcode) are never answered; requests with readable fields are
    assert answers["scalarlg"] is None and answers["bigcode"] is None
    assert answers["badvers"] == 505
    assert sum(status is not None for status in answers.values()) >= 15, answers
    assert await asyncio.to_thread(_healthy, gateway)

    run = await call
    run.assert_passed()
    await wait_until(lambda: not phones(gateway, "salle-robuste"), 5, "the call did not end")
    assert "Traceback" not in gateway.log_text()


@pytest.mark.parametrize("scenario", ["sdp_malformed.xml", "sdp_no_codec.xml"])
async def test_refused_offers_get_488(gateway: RunningGateway, scenario: str) -> None:
    room = "salle-" + scenario.removesuffix(".xml").replace("_", "-")
    gateway.create_room(room)
    run = await run_sipp(gateway.sip_port, scenario, room)
    run.assert_passed()
    assert "SIP/2.0 200" not in run.messages
    assert phones(gateway, room) == []


async def test_bye_for_an_unknown_dialog_gets_481(gateway: RunningGateway) -> None:
    run = await run_sipp(gateway.sip_port, "bye_unknown.xml", "salle-inconnue")
    run.assert_passed()


async def test_a_missing_ack_ends_the_call_after_64_t1(gateway: RunningGateway) -> None:
    """The 200 is retransmitted until 64*T1 (32 s), then the gateway sends BYE and the phone
    leaves the room (RFC 3261 13.3.1.4)."""
    gateway.create_room("salle-sans-ack")
    started = time.monotonic()
    call = asyncio.create_task(run_sipp(gateway.sip_port, "no_ack.xml", "salle-sans-ack"))
    await wait_until(lambda: phones(gateway, "salle-sans-ack"), 10, "the call did not join")
    run = await call
    run.assert_passed()  # passes only if the gateway's BYE came within SIPp's 45 s
    elapsed = time.monotonic() - started
    assert 30 <= elapsed <= 40, elapsed
    assert run.messages.count("SIP/2.0 200 OK") >= 5, "the 200 was not retransmitted"
    assert phones(gateway, "salle-sans-ack") == []


async def test_an_invite_flood_is_rate_limited_and_other_callers_get_through(
    gateway: RunningGateway,
) -> None:
    """300 INVITEs in 2 s from 127.0.0.1: some are left unanswered; meanwhile a phone on
    127.0.0.2 dials in, joins and hangs up normally."""
    gateway.create_room("salle-inondee")
    flood = asyncio.create_task(
        run_sipp(
            gateway.sip_port,
            "flood_invite.xml",
            "salle-inondee",
            "-r",
            "150",
            "-nr",
            "-l",
            "400",
            calls=300,
            timeout=12,
        )
    )
    await asyncio.sleep(0.7)  # the flood is under way
    normal = await run_sipp(
        gateway.sip_port, "call.xml", "salle-inondee", "-d", "2000", local_ip="127.0.0.2"
    )
    normal.assert_passed()
    assert "SIP/2.0 200 OK" in normal.messages
    flooded = await flood
    answered = _answered_calls(flooded.messages)
    assert 0 < len(answered) < 300, f"{len(answered)} of 300 INVITEs answered"
    assert await asyncio.to_thread(_healthy, gateway)
    # INVITEs whose CANCEL the rate limit dropped were answered: never more than the cap per address
    assert len(phones(gateway, "salle-inondee")) <= CALLS_PER_UNTRUSTED_ADDRESS


def _answered_calls(messages: str) -> set[str]:
    """Call-IDs of the calls that got any response in a SIPp message trace."""
    answered = set()
    for block in messages.split("-----------------------------------------------"):
        if "message received" not in block:
            continue
        head = block.split("bytes :", 1)[-1].lstrip()
        if head.startswith("SIP/2.0"):
            for line in head.splitlines():
                if line.lower().startswith("call-id:"):
                    answered.add(line.split(":", 1)[1].strip())
    return answered
