"""Two real gateways, fr.test and de.test, over HTTPS: a room on each linked by `rondpoint link`
becomes one meeting (people, names, origins, chat, mute, removal), unlinking ends it on both
sides, and a restart of one side brings nobody twice."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest

from spec.conformance.orsclient import OrsClient, OrsError
from tests.federation.harness import PartnerGateway, Partners, Person, target, wait_until

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
    peer_once(partners, fr, de)
    peer_once(partners, de, fr)
    shown = fr.cli("link", room, target(de, room))
    assert shown.returncode == 0, shown.stderr
    partners.wait_link_state(fr, room, de, room, "connected")
    partners.wait_link_state(de, room, fr, room, "connected")
    return room


def peer_once(partners: Partners, a: PartnerGateway, b: PartnerGateway) -> None:
    """``a`` allow-lists ``b`` server-wide, unless it already has."""
    listed = a.expect("GET", "/api/v1/federation/peers")
    peers = listed.get("peers", listed) if isinstance(listed, dict) else listed
    if not any(p.get("name") == b.name for p in peers):
        partners.peer_add(a, b)


def people(gateway: Any, room: str) -> list[tuple[str, str, str]]:
    return sorted((p["name"], p["origin"], p["origin_address"]) for p in gateway.participants(room))


async def next_matching(client: OrsClient, kind: str, check: Any, timeout: float = 20) -> dict:
    async with asyncio.timeout(timeout):
        while True:
            event = await client.next_event(kind, timeout=timeout)
            if check(event):
                return event


@contextlib.asynccontextmanager
async def marie_and_hans(
    partners: Partners, room: str
) -> AsyncIterator[tuple[OrsClient, OrsClient]]:
    """Marie, a host on fr, and Hans, a host on de, in the linked ``room``."""
    marie = await partners["fr"].join(room, "Marie", role="host")
    try:
        hans = await partners["de"].join(room, "Hans", role="host")
        try:
            yield marie, hans
        finally:
            await hans.close()
    finally:
        await marie.close()


async def shown_as(client: OrsClient, name: str, timeout: float = 20) -> dict:
    """The participant named ``name`` as the client was shown it (in ``joined`` or since)."""
    async with asyncio.timeout(timeout):
        while True:
            for message in client.received:
                people = message.get("participants", []) if message["type"] == "joined" else []
                if message["type"] == "participant_joined":
                    people = [message["participant"]]
                for participant in people:
                    if participant["name"] == name:
                        return participant
            await asyncio.sleep(0.1)


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


def test_reactions_cross_both_ways_bounded_and_named_by_the_receivers_ids(
    partners: Partners,
) -> None:
    """ORS 8.18 and 14.5: a reaction on fr reaches de's clients as ``reaction`` (9.19) under de's
    id of the mirrored person, and the other way; a flood of 30 arrives as the sender's room let
    it through (its limit of 10, 8.18), never more, and in order before what follows it."""
    room = linked_pair(partners)

    async def scenario() -> None:
        async with marie_and_hans(partners, room) as (marie, hans):
            hans_on_fr = await shown_as(marie, "Hans")
            marie_there = (await shown_as(hans, "Marie"))["id"]
            hans_here = hans_on_fr["id"]
            assert hans_on_fr["origin"] == "federation:de.test"

            await marie.request({"type": "reaction", "emoji": "👏"})
            seen = await next_matching(hans, "reaction", lambda e: e["emoji"] == "👏")
            assert seen["participant_id"] == marie_there
            assert isinstance(seen["at"], int)
            await hans.request({"type": "reaction", "emoji": "❤️"})
            seen = await next_matching(marie, "reaction", lambda e: e["emoji"] == "❤️")
            assert seen["participant_id"] == hans_here

            # a flood of 30 from Marie: what fr accepted crosses, nothing more
            accepted = 0
            for _ in range(30):
                try:
                    await marie.request({"type": "reaction", "emoji": "🙏"})
                    accepted += 1
                except OrsError as refused:
                    assert refused.code == "rate_limited"
            assert 1 <= accepted < 30
            await marie.request({"type": "chat", "text": "fin des applaudissements"})
            await next_matching(
                hans, "chat", lambda e: e["message"]["text"] == "fin des applaudissements"
            )
            crossed = [
                e for e in hans.received if e.get("type") == "reaction" and e.get("emoji") == "🙏"
            ]
            assert len(crossed) == accepted
            assert {e["participant_id"] for e in crossed} == {marie_there}
            # de never sends Marie's reactions back to fr: fr's clients saw each one once
            await asyncio.sleep(1)
            echoed = [
                e for e in marie.received if e.get("type") == "reaction" and e.get("emoji") == "🙏"
            ]
            assert len(echoed) == accepted

    asyncio.run(scenario())


def test_a_host_on_fr_lowers_a_raised_hand_from_de_at_its_home(partners: Partners) -> None:
    """ORS 14.7: Hans raises his hand on de; Marie, a host on fr, lowers it: fr sends
    ``lower_hand`` and de lowers it, so Hans himself sees it down, on both gateways. Nobody on fr
    may raise it."""
    fr, de = partners["fr"], partners["de"]
    room = linked_pair(partners)

    def hand_of(gateway: Any, name: str) -> Any:
        found = [p for p in gateway.participants(room) if p["name"] == name]
        return found[0]["hand_raised_at"] if found else "absent"

    async def scenario() -> None:
        async with marie_and_hans(partners, room) as (marie, hans):
            hans_here = (await shown_as(marie, "Hans"))["id"]
            await hans.request({"type": "hand", "raised": True})
            await asyncio.to_thread(
                wait_until, lambda: hand_of(fr, "Hans") not in (None, "absent"), 20, "hand on fr"
            )
            with pytest.raises(OrsError) as refused:
                await marie.request({"type": "hand", "raised": True, "participant_id": hans_here})
            assert refused.value.code == "forbidden"
            await marie.request({"type": "hand", "raised": False, "participant_id": hans_here})
            lowered = await next_matching(
                hans,
                "participant_updated",
                lambda e: (
                    e["participant"]["name"] == "Hans"
                    and e["participant"]["hand_raised_at"] is None
                ),
            )
            assert lowered["participant"]["origin"] == "ors"  # his own, at home
            assert hand_of(de, "Hans") is None
            await asyncio.sleep(1)  # de's next upsert of Hans reached fr: still down there
            assert hand_of(fr, "Hans") is None

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


def test_a_host_mute_on_fr_shows_on_both_sides(partners: Partners, loopback_ice: None) -> None:
    fr, de = partners["fr"], partners["de"]
    room = linked_pair(partners)

    def hans_mic(gateway: Any) -> dict[str, Any]:
        for participant in gateway.participants(room):
            if participant["name"] == "Hans" and participant["tracks"]:
                return dict(participant["tracks"][0])
        return {}

    async def scenario() -> None:
        marie = await fr.join(room, "Marie", role="host")
        hans = await Person.join(de, room, "Hans", frequency=440)
        try:
            mic = await asyncio.to_thread(wait_until, lambda: hans_mic(fr), 20, "Hans's mic on fr")
            assert mic["muted"] is False
            await marie.request({"type": "mute", "track_id": mic["id"], "muted": True})
            await asyncio.to_thread(
                wait_until, lambda: hans_mic(de).get("muted"), 20, "Hans muted on de"
            )
            await asyncio.to_thread(
                wait_until, lambda: hans_mic(fr).get("muted"), 20, "Hans muted on fr"
            )
        finally:
            await marie.close()
            await hans.leave()

    asyncio.run(scenario())


def test_a_link_de_did_not_consent_to_is_refused_and_changes_nothing_there(
    partners: Partners,
) -> None:
    fr, de = partners["fr"], partners["de"]
    room, elsewhere = fresh_room("cabinet"), fresh_room("autre")
    fr.create_room(room)
    de.create_room(room)
    de.create_room(elsewhere)
    peer_once(partners, fr, de)
    de.admin("DELETE", f"/api/v1/federation/peers/{fr.name}")
    partners.peer_add(de, fr, rooms=[elsewhere])
    try:
        partners.link(fr, room, de, room)
        refused = partners.wait_link_state(fr, room, de, room, "refused")
        assert "not allowed" in refused["detail"], refused
        assert de.room_show(room)["links"] == [] and de.participants(room) == []
    finally:
        de.admin("DELETE", f"/api/v1/federation/peers/{fr.name}")
        partners.peer_add(de, fr)


def test_each_side_hears_the_other(partners: Partners, loopback_ice: None) -> None:
    fr, de = partners["fr"], partners["de"]
    room = linked_pair(partners)

    def remote_id(gateway: Any, name: str) -> str:
        for participant in gateway.participants(room):
            if participant["name"] == name and participant["tracks"]:
                return str(participant["id"])
        return ""

    async def scenario() -> None:
        marie = await Person.join(fr, room, "Marie", frequency=440)
        hans = await Person.join(de, room, "Hans", frequency=660)
        try:
            hans_on_fr = await asyncio.to_thread(
                wait_until, lambda: remote_id(fr, "Hans"), 20, "Hans's mic on fr"
            )
            marie_on_de = await asyncio.to_thread(
                wait_until, lambda: remote_id(de, "Marie"), 20, "Marie's mic on de"
            )
            await marie.wait_hearing(hans_on_fr, 660)
            await hans.wait_hearing(marie_on_de, 440)
            status = fr.link_status(room, target(de, room))
            assert status["packets_in"] > 0 and status["packets_out"] > 0, status
        finally:
            await marie.leave()
            await hans.leave()

    asyncio.run(scenario())


def test_deleting_the_room_on_fr_removes_the_link_on_de(partners: Partners) -> None:
    fr, de = partners["fr"], partners["de"]
    room = linked_pair(partners)
    fr.expect("DELETE", f"/api/v1/rooms/{room}", status=204)
    wait_until(lambda: de.links(room) == [], 20, "de forgets the link", last=lambda: de.links(room))


def test_a_removed_peer_s_links_fail(partners: Partners) -> None:
    fr, de = partners["fr"], partners["de"]
    room = linked_pair(partners)
    fr.expect("DELETE", f"/api/v1/federation/peers/{de.name}", status=204)
    try:
        failed = partners.wait_link_state(fr, room, de, room, "failed")
        assert failed["detail"] == "not a federation peer any more"
        refused = fr.admin("POST", f"/api/v1/rooms/{room}/links", {"target": target(de, room)})
        assert refused[0] == 400 and "rondpoint peer add de.test" in refused[1]["detail"]
    finally:
        peer_once(partners, fr, de)
