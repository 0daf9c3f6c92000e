"""Listeners coming and going on a partner: a track's demand across the border stops with its
last listener there and starts again with the next one, who hears it as soon as a first one did."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from tests.federation.harness import Partners, Person, wait_until

pytestmark = [pytest.mark.interop, pytest.mark.timeout(90)]

GATEWAYS = ("fr", "de")
ANNA_HZ = 440.0
PAUSE_SECONDS = 2.0
"""Between a listener's leaving and the next one's joining: the demand has gone by then."""


async def test_a_listener_after_the_last_one_left_hears_the_partner_again(
    partners: Partners, loopback_ice: None
) -> None:
    fr, de = partners["fr"], partners["de"]
    room = f"ecoute-{secrets.token_hex(3)}"
    fr.create_room(room)
    de.create_room(room)
    partners.peer_add(fr, de)
    partners.peer_add(de, fr)
    partners.link_connected(fr, room, de, room)

    anna = await Person.join(fr, room, "Anna", ANNA_HZ)
    try:
        for name in ("Dirk", "Dora", "Dieter"):
            listener = await Person.join(de, room, name, None)
            try:
                anna_on_de = {p["name"]: p["id"] for p in de.participants(room)}["Anna"]
                await listener.wait_hearing(anna_on_de, ANNA_HZ, timeout=10)
            finally:
                await listener.leave()
            await asyncio.to_thread(
                wait_until,
                lambda name=name: name not in fr.names(room),
                10,
                f"{name} to leave fr's room (nobody on de listens to Anna now)",
            )
            await asyncio.sleep(PAUSE_SECONDS)
    finally:
        await anna.leave()
