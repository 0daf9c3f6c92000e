"""Three partner gateways linked pairwise in one room (fr-de, de-be, be-fr): everyone is listed
once on every gateway, everyone hears everyone, and nothing loops around the triangle (events
describe home participants only; each link carries its own side's tracks only)."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from tests.federation.harness import Partners, Person, target, wait_until

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

GATEWAYS = ("fr", "de", "be")
VOICES = {"fr": ("Anna", 440.0), "de": ("Dirk", 550.0), "be": ("Bart", 660.0)}
"""Who sits on each gateway, and the tone each publishes."""
SECONDS = 4.0
"""How long the link counters are watched."""
MAX_PACKETS_PER_SECOND = 120
"""What one link may carry one way with one home person's audio (50 packets/s of 20 ms Opus) and
its RTCP; a loop would make it grow each round."""


@pytest.fixture(scope="module")
def triangle(partners: Partners) -> str:
    """A room of the same name on each gateway, every pair of gateways peered and linked once."""
    room = f"triangle-{secrets.token_hex(3)}"
    for short in GATEWAYS:
        partners[short].create_room(room)
    for a in GATEWAYS:
        for b in GATEWAYS:
            if a != b:
                partners.peer_add(partners[a], partners[b])
    for a, b in (("fr", "de"), ("de", "be"), ("be", "fr")):
        partners.link_connected(partners[a], room, partners[b], room)
    return room


async def test_everyone_is_listed_once_everywhere_and_hears_everyone(
    partners: Partners, triangle: str, loopback_ice: None
) -> None:
    room = triangle
    people: dict[str, Person] = {}
    try:
        for short, (name, frequency) in VOICES.items():
            people[short] = await Person.join(partners[short], room, name, frequency)
        everyone = sorted(name for name, _ in VOICES.values())

        for short in GATEWAYS:
            gateway = partners[short]
            await asyncio.to_thread(
                wait_until,
                lambda g=gateway: g.names(room) == everyone,
                20,
                f"{gateway.name} to list {everyone} once each",
                last=lambda g=gateway: g.names(room),
            )
        for short in GATEWAYS:
            gateway = partners[short]
            listed = {p["name"]: p for p in gateway.participants(room)}
            for other, (name, _) in VOICES.items():
                expected = "ors" if other == short else f"federation:{partners[other].name}"
                assert listed[name]["origin"] == expected, (gateway.name, listed[name])
                if other != short:
                    assert listed[name]["role"] == "guest", (gateway.name, listed[name])
                    assert listed[name]["origin_address"] == "ors", (gateway.name, listed[name])

        for short, listener in people.items():
            ids = {p["name"]: p["id"] for p in partners[short].participants(room)}
            for other, (name, frequency) in VOICES.items():
                if other != short:
                    await listener.wait_hearing(ids[name], frequency)

        # A few seconds on: still three people everywhere, and every link carries one person's
        # audio one way (no packets going round).
        def counters() -> dict[tuple[str, str], int]:
            out = {}
            for short in GATEWAYS:
                for other in GATEWAYS:
                    if other != short:
                        status = partners[short].link_status(room, target(partners[other], room))
                        out[(short, other)] = int(status.get("packets_out", 0))
            return out

        before = await asyncio.to_thread(counters)
        await asyncio.sleep(SECONDS)
        after = await asyncio.to_thread(counters)
        for pair, sent in after.items():
            rate = (sent - before[pair]) / SECONDS
            assert 0 < rate <= MAX_PACKETS_PER_SECOND, f"link {pair}: {rate:.0f} packets/s"
        for short in GATEWAYS:
            assert partners[short].names(room) == everyone, partners[short].participants(room)
    finally:
        for person in people.values():
            await person.leave()

    for short in GATEWAYS:
        gateway = partners[short]
        await asyncio.to_thread(
            wait_until,
            lambda g=gateway: g.names(room) == [],
            20,
            f"{gateway.name} to list nobody once all left",
            last=lambda g=gateway: g.names(room),
        )
