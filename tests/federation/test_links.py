"""Two real gateways, fr.test and de.test, over HTTPS: a room on each linked by `rondpoint link`
becomes one meeting (people, names, origins, chat, mute, removal), unlinking ends it on both
sides, and a restart of one side brings nobody twice."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest

from spec.conformance.orsclient import OrsClient
from tests.federation.harness import Partners, target, wait_until

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

GATEWAYS = ("fr", "de")
FEDERATION_CONFIG = "heartbeat_seconds = 2\ngrace_seconds = 2"


def fresh_room(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def linked_pair(partners: Partners) -> str:
    """A room of the same name on fr and de, peers of each other, linked from fr."""
    fr, de = partners["fr"], partners["de"]
    room = fresh_room("salon")
    fr.create_room(room)
    de.create_room(room)
    for a, b in ((fr, de), (de, fr)):
        if a.admin("GET", "/api/v1/federation/peers")[1].get("peers", []) == [] or not any(
            p.get("name") == b.name
            for p in a.admin("GET", "/api/v1/federation/peers")[1].get("peers", [])
        ):
            partners.peer_add(a, b)
    shown = fr.cli("link", room, target(de, room))
    assert shown.returncode == 0, shown.stderr
    partners.wait_link_state(fr, room, de, room, "connected")
    partners.wait_link_state(de, room, fr, room, "connected")
    return room


def people(gateway: Any, room: str) -> list[tuple[str, str, str]]:
    return sorted((p["name"], p["origin"], p["origin_address"]) for p in gateway.participants(room))


async def next_matching(client: OrsClient, kind: str, check: Any, timeout: float = 20) -> dict:
    async with asyncio.timeout(timeout):
        while True:
            event = await client.next_event(kind, timeout=timeout)
            if check(event):
                return event


def test_two_rooms_become_one_meeting(partners: Partners) -> None:
    fr, de = partners["fr"], partners["de"]
    room = linked_pair(partners)

    async def scenario() -> None:
        marie = await fr.join(room, "Marie", role="host")
        hans = await de.join(room, "Hans", role="host")
        try:
            wait = 20
            await asyncio.to_thread(
                wait_until,
                lambda: (
                    people(fr, room)
                    == [("Hans", "federation:de.test", "ors"), ("Marie", "ors", "")]
                ),
                wait,
                "fr shows Hans from de",
                last=lambda: people(fr, room),
            )
            await asyncio.to_thread(
                wait_until,
                lambda: (
                    people(de, room)
                    == [("Hans", "ors", ""), ("Marie", "federation:fr.test", "ors")]
                ),
                wait,
                "de shows Marie from fr",
                last=lambda: people(de, room),
            )
            # Marie's client sees Hans with his origin.
            joined = await next_matching(
                marie, "participant_joined", lambda e: e["participant"]["name"] == "Hans"
            )
            assert joined["participant"]["origin"] == "federation:de.test"
            hans_here = joined["participant"]["id"]

            # Chat both ways.
            await marie.request({"type": "chat", "text": "bonjour"})
            said = await next_matching(hans, "chat", lambda e: e["message"]["text"] == "bonjour")
            assert said["message"]["from_name"] == "Marie"
            await hans.request({"type": "chat", "text": "guten Tag"})
            said = await next_matching(marie, "chat", lambda e: e["message"]["text"] == "guten Tag")
            assert said["message"]["from"] == hans_here

            # Remove on fr: Hans leaves fr's room only.
            await marie.request({"type": "remove", "participant_id": hans_here})
            await asyncio.to_thread(
                wait_until,
                lambda: [n for n, _, _ in people(fr, room)] == ["Marie"],
                wait,
                "Hans out of fr's room",
            )
            await asyncio.sleep(1)
            assert [n for n, _, _ in people(de, room)] == ["Hans", "Marie"]
            assert [n for n, _, _ in people(fr, room)] == ["Marie"]
        finally:
            await marie.close()
            await hans.close()

    asyncio.run(scenario())


def test_unlink_on_fr_removes_the_link_on_de(partners: Partners) -> None:
    fr, de = partners["fr"], partners["de"]
    room = linked_pair(partners)
    assert [link["target"] for link in de.links(room)] == [target(fr, room)]
    partners.unlink(fr, room, de, room)
    wait_until(lambda: de.links(room) == [], 20, "de forgets the link", last=lambda: de.links(room))
    assert fr.links(room) == []


def test_a_restart_of_de_brings_nobody_twice(partners: Partners) -> None:
    fr, de = partners["fr"], partners["de"]
    room = linked_pair(partners)

    async def scenario() -> None:
        marie = await fr.join(room, "Marie")
        hans = await de.join(room, "Hans")
        try:
            await asyncio.to_thread(
                wait_until, lambda: len(fr.participants(room)) == 2, 20, "Hans on fr"
            )
            await hans.close()
            de.kill9()
            de.restart()
            partners.wait_link_state(de, room, fr, room, "connected")
            partners.wait_link_state(fr, room, de, room, "connected")
            hans = await de.join(room, "Hans")
            await asyncio.to_thread(
                wait_until,
                lambda: [n for n, _, _ in people(de, room)] == ["Hans", "Marie"],
                20,
                "de shows Marie once after its restart",
                last=lambda: people(de, room),
            )
            await asyncio.to_thread(
                wait_until,
                lambda: [n for n, _, _ in people(fr, room)] == ["Hans", "Marie"],
                20,
                "fr shows Hans once after de's restart",
                last=lambda: people(fr, room),
            )
            await asyncio.sleep(3)
            assert [n for n, _, _ in people(de, room)] == ["Hans", "Marie"]
            assert [n for n, _, _ in people(fr, room)] == ["Hans", "Marie"]
        finally:
            await marie.close()
            await hans.close()

    asyncio.run(scenario())
