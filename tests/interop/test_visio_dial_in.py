"""Phone dial-in to Visio rooms (issue 4) through the real bridge and livekit-server.

A dispatch rule maps a number and its PIN to `visio:UUID`. The caller can start the meeting
alone (Visio's own telephony needs someone on the web first), and the Visio room's lobby holds
the caller until a Visio host admits them. Visio's backend (Django, Postgres, Redis, Keycloak)
cannot run here: its lobby endpoints are played by the loopback stand-in of
tests/unit/test_visio_lobby.py, which reproduces suitenumerique/meet's request and response
shapes; LiveKit, the bridge, the phone (baresip) and the Visio user (LiveKit's SDK) are real.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.media.audio.tone import tone_amplitude
from tests.gateway_process import RunningGateway, running_gateway
from tests.interop.baresip import Baresip
from tests.interop.livekit_fixtures import RunningLiveKit
from tests.interop.livekit_sdk import visio_user
from tests.interop.sipp_tools import wait_until
from tests.interop.test_visio_bridge import PHONE_HZ, PHONE_NUMBER, VISIO_HZ, participants
from tests.unit.test_visio_lobby import FakeVisio, serve_fake_visio

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(90),
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]

NUMBER = "0140506070"
PIN = "24681357"


@pytest.fixture
async def backend() -> AsyncIterator[tuple[FakeVisio, str]]:
    async with serve_fake_visio() as served:
        yield served


@pytest.fixture
def gateway(
    tmp_path: Path, livekit_server: RunningLiveKit, backend: tuple[FakeVisio, str]
) -> Iterator[RunningGateway]:
    config = (
        f'[visio]\nurl = "{livekit_server.url}"\napi_key = "{livekit_server.api_key}"\n'
        f'api_secret = "{livekit_server.api_secret}"\nbackend_url = "{backend[1]}"\n'
    )
    with running_gateway(tmp_path, config) as running:
        yield running


@pytest.fixture
async def phone(tmp_path: Path) -> AsyncIterator[Baresip]:
    async with Baresip(tmp_path, tone_hz=PHONE_HZ, user=PHONE_NUMBER) as running:
        yield running


def dispatched_visio_room(
    gateway: RunningGateway, backend: tuple[FakeVisio, str], access_level: str
) -> str:
    """A new Visio room with ACCESS_LEVEL in Visio's backend, NUMBER and PIN dispatched to it."""
    visio_room = str(uuid.uuid4())
    backend[0].rooms[visio_room] = access_level
    status, body = gateway.admin(
        "POST",
        "/api/v1/sip/dispatch",
        {"number": NUMBER, "room": f"visio:{visio_room}", "pin": PIN},
    )
    assert status == 201, body
    return visio_room


async def call_with_pin(gateway: RunningGateway, phone: Baresip) -> None:
    await phone.dial(f"sip:{NUMBER}@127.0.0.1:{gateway.sip_port}")
    await phone.wait_event("CALL_ESTABLISHED", timeout=10)
    await asyncio.sleep(1)  # the PIN prompt plays
    await phone.send_digits(PIN + "#")


async def test_a_phone_caller_starts_a_visio_meeting_nobody_has_opened(
    gateway: RunningGateway,
    livekit_server: RunningLiveKit,
    phone: Baresip,
    backend: tuple[FakeVisio, str],
) -> None:
    visio_room = dispatched_visio_room(gateway, backend, "public")
    await call_with_pin(gateway, phone)
    local = f"visio-{visio_room}"
    await wait_until(
        lambda: (
            gateway.admin("GET", f"/api/v1/rooms/{local}")[0] == 200
            and any(p["origin"] == "sip" for p in participants(gateway, local))
        ),
        15,
        "the caller never entered the Visio room's room here",
    )
    # Nobody was in the Visio meeting; a Visio user arrives and finds the caller there.
    async with visio_user(livekit_server, visio_room, "fanny-sub", "Fanny Leroy") as fanny:
        await fanny.publish_tone(VISIO_HZ)
        caller = await fanny.wait_participant(lambda p: p.name == "Phone ••• 42", timeout=15)
        assert caller.attributes.get("rondpoint.origin") == "sip"
        assert abs(await fanny.dominant_frequency(caller.identity, 1.0) - PHONE_HZ) <= 10
        await asyncio.sleep(1.5)
        await phone.hangup()
        await phone.wait_event("CALL_CLOSED", timeout=10)
        await fanny.wait_gone(caller.identity, timeout=15)
    samples, rate = phone.recording("dec")

    windows = [samples[i : i + rate // 2] for i in range(0, len(samples) - rate // 2, rate // 4)]
    assert max(tone_amplitude(w, VISIO_HZ, rate) for w in windows) > 1000, "no Visio heard"


async def test_the_visio_lobby_holds_a_phone_caller_until_a_host_admits_it(
    gateway: RunningGateway,
    livekit_server: RunningLiveKit,
    phone: Baresip,
    backend: tuple[FakeVisio, str],
) -> None:
    fake, _ = backend
    visio_room = dispatched_visio_room(gateway, backend, "trusted")  # the gateway is not logged in
    async with visio_user(
        livekit_server, visio_room, "gilles-sub", "Gilles Host", room_admin=True
    ) as host:
        await host.publish_tone(VISIO_HZ)
        await call_with_pin(gateway, phone)
        await wait_until(lambda: fake.waiting(visio_room), 15, "the caller never asked to enter")
        [waiting] = fake.waiting(visio_room)
        assert fake.entries[(visio_room, waiting)].username == "Phone ••• 42"
        await asyncio.sleep(4)  # still polling (Visio forgets callers silent for 3 s)
        assert fake.waiting(visio_room) == [waiting]
        assert not [p for p in host.participants().values() if p.name == "Phone ••• 42"]

        fake.decide(visio_room, waiting, allow=True)  # what the host's "admit" does
        caller = await host.wait_participant(lambda p: p.name == "Phone ••• 42", timeout=15)
        assert abs(await host.dominant_frequency(caller.identity, 1.0) - PHONE_HZ) <= 10
        await phone.hangup()
        await phone.wait_event("CALL_CLOSED", timeout=10)


async def test_a_phone_caller_denied_by_the_visio_lobby_is_hung_up(
    gateway: RunningGateway,
    livekit_server: RunningLiveKit,
    phone: Baresip,
    backend: tuple[FakeVisio, str],
) -> None:
    fake, _ = backend
    visio_room = dispatched_visio_room(gateway, backend, "restricted")
    async with visio_user(livekit_server, visio_room, "hugo-sub", "Hugo Host") as host:
        await call_with_pin(gateway, phone)
        await wait_until(lambda: fake.waiting(visio_room), 15, "the caller never asked to enter")
        fake.decide(visio_room, fake.waiting(visio_room)[0], allow=False)
        await phone.wait_event("CALL_CLOSED", timeout=20)
        await asyncio.sleep(1)
        assert not [p for p in host.participants().values() if p.name == "Phone ••• 42"]
