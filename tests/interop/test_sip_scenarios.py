"""SIPp scenarios against a real gateway: PIN by RFC 4733 DTMF, hold, session timers, CANCEL.

Each test checks what SIPp saw (exit code 0: every expected message came, with the checked
headers and SDP) and what the room became (the admin API's participant list).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest

from spec.conformance.orsclient import OrsClient
from tests.gateway_process import RunningGateway, running_gateway
from tests.interop.sipp_tools import (
    PCAPS,
    SippRun,
    participants,
    phones,
    run_sipp,
    wait_until,
)

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not PCAPS.exists(), reason="Debian sip-tester (SIPp pcaps) not installed"),
]


def _log_count(gateway: RunningGateway, text: str) -> int:
    return gateway.log_text().count(text)


async def _joined_phone(
    gateway: RunningGateway, room: str, timeout: float, call: asyncio.Task[SippRun]
) -> dict:
    try:
        found = await wait_until(lambda: phones(gateway, room), timeout)
    except AssertionError:
        details = (await call).explain() if call.done() else "SIPp still running"
        raise AssertionError(f"no phone joined '{room}' within {timeout} s: {details}") from None
    assert isinstance(found, list) and len(found) == 1, found
    return found[0]


async def test_pin_rooms_by_rfc4733_dtmf(gateway: RunningGateway) -> None:
    """Right PIN joins; a wrong PIN gets the retry prompt and a second, right, try joins; three
    wrong PINs get the goodbye prompt and a BYE from the gateway. The three calls run at once."""
    for room in ("pin-right", "pin-retry", "pin-wrong"):
        gateway.create_room(room, pin="2468")
    failures_before = _log_count(gateway, "SIP room PIN failed")

    right = asyncio.create_task(run_sipp(gateway.sip_port, "pin_right.xml", "pin-right"))
    retry = asyncio.create_task(run_sipp(gateway.sip_port, "pin_retry.xml", "pin-retry"))
    wrong = asyncio.create_task(
        run_sipp(gateway.sip_port, "pin_wrong.xml", "pin-wrong", timeout=60)
    )

    phone = await _joined_phone(gateway, "pin-right", 15, right)
    assert (phone["name"], phone["origin"], phone["state"]) == ("Phone ••• 42", "sip", "joined")
    phone = await _joined_phone(gateway, "pin-retry", 25, retry)
    assert (phone["origin"], phone["state"]) == ("sip", "joined")

    for task in (right, retry, wrong):
        (await task).assert_passed()  # pin_wrong.xml passes only if the gateway sent the BYE
    assert phones(gateway, "pin-wrong") == []
    assert participants(gateway, "pin-right") == participants(gateway, "pin-retry") == []
    # one failure for pin-retry, three for pin-wrong: each logged (fail2ban can count them)
    assert _log_count(gateway, "SIP room PIN failed") - failures_before == 4
    log = gateway.log_text()
    assert log.count('"prompt": "wrong-pin"') >= 4, "the caller did not hear the retry prompt"
    assert '"prompt": "goodbye"' in log


async def test_hold_and_resume_by_reinvite(gateway: RunningGateway) -> None:
    """a=sendonly is answered a=recvonly, a=sendrecv again sendrecv; the phone stays in the room."""
    gateway.create_room("salle-attente")
    call = asyncio.create_task(run_sipp(gateway.sip_port, "hold.xml", "salle-attente"))
    phone = await _joined_phone(gateway, "salle-attente", 10, call)
    # held at +1 s, resumed at +3 s, BYE at +6 s: the phone must be there all along
    for _ in range(20):
        await asyncio.sleep(0.25)
        present = await asyncio.to_thread(phones, gateway, "salle-attente")
        assert [p["id"] for p in present] == [phone["id"]], "the phone left the room on hold"
    run = await call
    run.assert_passed()
    answers = re.findall(r"o=rondpoint \d+ (\d+) ", run.messages)
    assert len(answers) == 3 and int(answers[0]) < int(answers[1]) < int(answers[2]), answers
    await wait_until(lambda: not phones(gateway, "salle-attente"), 5, "BYE did not remove it")


@pytest.mark.parametrize("refresher", ["uac", "uas"])
async def test_session_timer_headers_and_refresh(gateway: RunningGateway, refresher: str) -> None:
    """Session-Expires: 90 with either refresher is kept in the 200 with Require: timer; a
    refresh by the phone (UPDATE) is answered with the interval again, and the call goes on."""
    room = f"minuteur-{refresher}"
    gateway.create_room(room)
    run = await run_sipp(gateway.sip_port, f"session_timer_{refresher}.xml", room)
    run.assert_passed()
    assert phones(gateway, room) == []


async def test_cancel_before_answer(gateway: RunningGateway) -> None:
    """CANCEL while ringing: 200 for the CANCEL, 487 for the INVITE, never an answer or a join."""
    gateway.create_room("salle-annulee")
    run = await run_sipp(gateway.sip_port, "cancel.xml", "salle-annulee")
    run.assert_passed()
    assert " 487 Request Terminated" in run.messages
    assert "SIP/2.0 200" not in run.messages.split("CANCEL sip:")[0]
    await asyncio.sleep(0.5)  # after the 0.3 s answer delay: still nobody
    assert participants(gateway, "salle-annulee") == []


@pytest.fixture(scope="module")
def small_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    with running_gateway(
        tmp_path_factory.mktemp("small"), extra_config="[rooms]\nmax_participants = 1\n"
    ) as running:
        yield running


async def test_a_phone_calling_a_full_room_hears_goodbye_and_gets_bye(
    small_gateway: RunningGateway,
) -> None:
    small_gateway.create_room("complet")
    member = await OrsClient.connect(small_gateway.base_url, "complet")
    await member.join(small_gateway.token("complet", "seul", "Seul"))
    try:
        (await run_sipp(small_gateway.sip_port, "room_full.xml", "complet")).assert_passed()
    finally:
        await member.close()
    assert phones(small_gateway, "complet") == []
    log = small_gateway.log_text()
    assert "phone refused by the room" in log
    assert "Traceback" not in log and '"level": "error"' not in log
