"""Black-box conformance of resumption (spec/ors-v1.md section 6.6): a participant whose connection
drops is kept for the grace and taken back by a `join` with its `resume_token`, unseen by the
others; a resume that cannot happen is an ordinary join. Skipped on a server without `resume`."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import aiohttp
import pytest

from spec.conformance.orsclient import Message, OrsClient, OrsError, anonymous_token
from spec.conformance.test_conformance import _finish, _own_id, check_server_messages
from spec.conformance.webrtc import WebRtcPeer

pytestmark = pytest.mark.interop

LONGEST_GRACE = 30
"""A server that keeps a participant longer than this is not waited for (the test is skipped)."""


@pytest.fixture
async def resuming(ors_url: str) -> None:
    async with aiohttp.ClientSession() as http, http.get(ors_url + "/.well-known/ors") as response:
        document = await response.json()
    if "resume" not in document["capabilities"]:
        pytest.skip("the server does not resume sessions (no capability 'resume')")


class Person:
    """One identity of the room: its anonymous token, its current session and `joined`."""

    def __init__(self, ors_url: str, room: str, name: str) -> None:
        self.ors_url, self.room, self.name = ors_url, room, name
        self.token = ""
        self.client: OrsClient | None = None
        self.joined: Message = {}

    async def join(self, resume: str | None = None, token: str | None = None) -> Message:
        if not self.token:
            grant = await anonymous_token(self.ors_url, self.room, self.name)
            assert grant["status"] == 201, grant
            self.token = grant["token"]
        self.client = await OrsClient.connect(self.ors_url, self.room)
        self.joined = await self.client.join(token or self.token, resume=resume)
        return self.joined

    @property
    def id(self) -> str:
        return str(self.joined["participant"]["id"])

    @property
    def session(self) -> OrsClient:
        assert self.client is not None
        return self.client


async def people(ors_url: str, room: str, *names: str) -> list[Person]:
    """The first creates the room anonymously and so hosts it (4.3); the others are guests."""
    found = []
    for name in names:
        person = Person(ors_url, room, name)
        await person.join()
        assert person.joined["type"] == "joined"
        found.append(person)
    return found


async def one_dropped(ors_url: str, room: str) -> tuple[Person, Person]:
    """Alice and Bob; Alice's connection drops, and Bob sees her reconnecting."""
    alice, bob = await people(ors_url, room, "Alice", "Bob")
    await alice.session.drop()
    await reconnecting(bob.session, alice.id, True)
    return alice, bob


async def reconnecting(witness: OrsClient, participant_id: str, value: bool) -> Message:
    """The witness's next `participant_updated` about PARTICIPANT_ID with that `reconnecting`."""
    while True:
        update = (await witness.next_event("participant_updated"))["participant"]
        if update["id"] == participant_id and update.get("reconnecting", False) is value:
            return dict(update)


async def settled(*clients: OrsClient) -> None:
    """Every event sent before now has reached these clients (a ping answers after them, 6.3)."""
    for client in clients:
        assert (await client.request({"type": "ping"}))["type"] == "pong"


def comings_and_goings(client: OrsClient, participant_id: str, since: int = 0) -> list[str]:
    """The participant's joins and leaves CLIENT saw, from its SINCE-th message on."""
    return [
        m["type"]
        for m in client.received[since:]
        if (m["type"] == "participant_left" and m["participant_id"] == participant_id)
        or (m["type"] == "participant_joined" and m["participant"]["id"] == participant_id)
    ]


async def test_joined_gives_a_resume_token_and_its_grace(
    resuming: None, ors_url: str, ors_room: str
) -> None:
    (alice,) = await people(ors_url, ors_room, "Alice")
    token, grace = alice.joined["resume_token"], alice.joined["resume_grace"]
    assert isinstance(token, str) and len(token) >= 22  # 128 bits at least, in base64
    assert isinstance(grace, int) and grace >= 1
    assert alice.joined["participant"]["reconnecting"] is False
    assert "resumed" not in alice.joined  # the join asked nothing
    await _finish(alice.session)


async def test_a_dropped_host_resumes_unseen_with_its_id_role_and_hand(
    resuming: None, ors_url: str, ors_room: str
) -> None:
    host, bob = await people(ors_url, ors_room, "Host", "Bob")
    await host.session.request({"type": "hand", "raised": True})
    await host.session.request({"type": "chat", "text": "avant la coupure", "to": bob.id})
    raised = (await reconnecting(bob.session, host.id, False))["hand_raised_at"]
    before = host.joined
    await host.session.drop()

    seen = await reconnecting(bob.session, host.id, True)
    assert (seen["role"], seen["state"], seen["hand_raised_at"]) == ("host", "joined", raised)
    dropped = host.session
    back = await host.join(resume=before["resume_token"])
    assert back["type"] == "joined" and back["resumed"] is True
    me = back["participant"]
    assert (me["id"], me["role"], me["joined_at"]) == (
        before["participant"]["id"],
        "host",
        before["participant"]["joined_at"],
    )
    assert me["hand_raised_at"] == raised and me["reconnecting"] is False
    assert back["resume_token"] != before["resume_token"]  # a new one, each time
    assert [p["id"] for p in back["participants"]] == [bob.id]
    assert [m["text"] for m in back["chat"]] == ["avant la coupure"]  # its own, kept by its id
    assert (await reconnecting(bob.session, host.id, False))["role"] == "host"

    # still the host: it moderates, and bob never saw it leave or come
    await host.session.request({"type": "hand", "raised": False})
    await settled(bob.session, host.session)
    assert comings_and_goings(bob.session, host.id) == []
    check_server_messages(dropped)
    await _finish(bob.session, host.session)


async def test_a_page_that_goes_away_is_kept_and_a_client_done_with_1000_leaves_at_once(
    resuming: None, ors_url: str, ors_room: str
) -> None:
    alice, bob, carol = await people(ors_url, ors_room, "Alice", "Bob", "Carol")
    await settled(alice.session)
    before = len(alice.session.received)
    await bob.session.ws.close(code=1001)  # what a browser sends when its page goes
    await reconnecting(alice.session, bob.id, True)
    await carol.session.ws.close(code=1000)  # normal closure: the client is done
    left = await alice.session.next_event("participant_left")
    assert (left["participant_id"], left["reason"]) == (carol.id, "disconnected")
    assert (await bob.join(resume=bob.joined["resume_token"]))["resumed"] is True
    await settled(alice.session)
    assert comings_and_goings(alice.session, bob.id, before) == []
    updates = [m for m in alice.session.received if m["type"] == "participant_updated"]
    assert {m["participant"]["id"] for m in updates} == {bob.id}
    await _finish(alice.session, bob.session, carol.session)


async def test_a_resume_before_the_server_saw_the_old_socket_end_replaces_it_quietly(
    resuming: None, ors_url: str, ors_room: str
) -> None:
    alice, bob = await people(ors_url, ors_room, "Alice", "Bob")
    old = alice.session
    back = await alice.join(resume=alice.joined["resume_token"])
    assert (back["resumed"], back["participant"]["id"]) == (True, _own_id(old))
    assert (await old.next_event("left"))["reason"] == "replaced"
    await asyncio.wait_for(old.closed.wait(), 10)
    await bob.session.request({"type": "chat", "text": "toujours là ?"})
    assert (await alice.session.next_event("chat"))["message"]["text"] == "toujours là ?"
    await settled(bob.session)
    assert comings_and_goings(bob.session, alice.id) == []
    assert not any(m["type"] == "participant_updated" for m in bob.session.received)
    await _finish(old, bob.session, alice.session)


async def test_a_used_resume_token_makes_a_new_participant_and_the_kept_one_leaves(
    resuming: None, ors_url: str, ors_room: str
) -> None:
    alice, bob = await people(ors_url, ors_room, "Alice", "Bob")
    first = alice.joined["resume_token"]
    await alice.session.drop()
    assert (await alice.join(resume=first))["resumed"] is True
    kept_id = alice.id
    await alice.session.drop()
    await reconnecting(bob.session, kept_id, True)

    again = await alice.join(resume=first)  # already used: an ordinary join
    assert again["type"] == "joined" and again["resumed"] is False
    assert again["participant"]["id"] != kept_id
    left = await bob.session.next_event("participant_left")
    assert (left["participant_id"], left["reason"]) == (kept_id, "disconnected")
    came = await bob.session.next_event("participant_joined")
    assert came["participant"]["id"] == again["participant"]["id"]
    await _finish(bob.session, alice.session)


async def test_a_stolen_resume_token_with_another_identity_takes_nobody_over(
    resuming: None, ors_url: str, ors_room: str
) -> None:
    alice, bob = await one_dropped(ors_url, ors_room)
    stolen = alice.joined["resume_token"]

    mallory = Person(ors_url, ors_room, "Mallory")
    joined = await mallory.join(resume=stolen)
    assert joined["resumed"] is False and joined["participant"]["name"] == "Mallory"
    assert joined["participant"]["id"] != alice.id and joined["participant"]["role"] == "guest"
    kept = next(p for p in joined["participants"] if p["id"] == alice.id)
    assert kept["reconnecting"] is True  # alice is still kept, and still hers
    assert (await alice.join(resume=stolen))["resumed"] is True
    await settled(bob.session)
    assert comings_and_goings(bob.session, alice.id) == []
    await _finish(bob.session, mallory.session, alice.session)


async def test_a_guessed_or_malformed_resume_token_never_resumes(
    resuming: None, ors_url: str, ors_room: str
) -> None:
    alice, bob = await one_dropped(ors_url, ors_room)
    kept_id = alice.id

    # malformed: refused by the schema (6.5), and nothing changes
    probe = await OrsClient.connect(ors_url, ors_room)
    for resume, field in ((42, "/resume"), ("", "/resume")):
        with pytest.raises(OrsError) as refused:
            await probe.request({"type": "join", "token": alice.token, "resume": resume})
        assert (refused.value.code, refused.value.problem.get("field")) == (
            "invalid_message",
            field,
        )
    await settled(bob.session)
    assert comings_and_goings(bob.session, kept_id) == []

    # guessed, with alice's own join token: an ordinary join, which replaces the kept one
    joined = await probe.join(alice.token, resume=secrets.token_urlsafe(32))
    assert joined["resumed"] is False and joined["participant"]["id"] != kept_id
    left = await bob.session.next_event("participant_left")
    assert (left["participant_id"], left["reason"]) == (kept_id, "disconnected")
    await _finish(bob.session, probe)


async def test_after_the_grace_the_participant_leaves_and_a_resume_is_a_join(
    resuming: None, ors_url: str, ors_room: str
) -> None:
    alice, bob = await one_dropped(ors_url, ors_room)
    seen_at = asyncio.get_running_loop().time()
    grace = alice.joined["resume_grace"]
    if grace > LONGEST_GRACE:
        pytest.skip(f"the server keeps a participant {grace} s, too long to wait here")
    left = await bob.session.next_event("participant_left", timeout=grace + 10)
    assert (left["participant_id"], left["reason"]) == (alice.id, "disconnected")
    assert asyncio.get_running_loop().time() - seen_at >= grace - 1

    old: dict[str, Any] = alice.joined
    again = await alice.join(resume=old["resume_token"])
    assert again["resumed"] is False and again["participant"]["id"] != old["participant"]["id"]
    came = await bob.session.next_event("participant_joined")
    assert came["participant"]["id"] == again["participant"]["id"]
    await _finish(bob.session, alice.session)


# media after a resume ------------------------------------------------------------------------
ALICE_BEFORE, ALICE_AFTER, BOB_HZ = 523.0, 659.0, 392.0


async def hears(peer: WebRtcPeer, track_id: str, frequency: float) -> None:
    """PEER receives TRACK_ID, a tone at FREQUENCY (answering the subscribe offers that come)."""
    async with asyncio.timeout(30):
        while True:
            heard = peer.received.get(track_id)
            if heard is not None and heard.frames >= 60 and abs(heard.frequency() - frequency) < 15:
                return
            while not peer.client.events.empty():
                message = await peer.client.next_event()
                if message["type"] == "offer":
                    await peer.accept_offer(message)
            await asyncio.sleep(0.1)


async def test_media_flows_both_ways_again_after_a_resume(
    resuming: None, ors_url: str, ors_room: str
) -> None:
    alice, bob = await people(ors_url, ors_room, "Alice", "Bob")
    alice_peer, bob_peer = WebRtcPeer(alice.session), WebRtcPeer(bob.session)
    peers = [alice_peer, bob_peer]
    try:
        [old_track] = (await alice_peer.publish(frequency=ALICE_BEFORE))["tracks"]
        [bob_track] = (await bob_peer.publish(frequency=BOB_HZ))["tracks"]
        await hears(bob_peer, old_track["id"], ALICE_BEFORE)
        await hears(alice_peer, bob_track["id"], BOB_HZ)

        # the signalling drops; the peer connections go on, and the track stays while they do
        await alice.session.drop()
        await reconnecting(bob.session, alice.id, True)
        frames = bob_peer.received[old_track["id"]].frames
        async with asyncio.timeout(10):
            while bob_peer.received[old_track["id"]].frames < frames + 25:
                await asyncio.sleep(0.1)
        await alice_peer.close()  # the page is reloaded: its connections go too

        back = await alice.join(resume=alice.joined["resume_token"])
        assert back["resumed"] is True
        assert [t["id"] for t in back["participant"]["tracks"]] == [old_track["id"]]
        # new peer connections: the server offers bob's track on a new subscribe connection
        alice_peer = WebRtcPeer(alice.session)
        peers.append(alice_peer)
        await hears(alice_peer, bob_track["id"], BOB_HZ)

        # the first publish offer replaces the old track: bob hears the new one
        [new_track] = (await alice_peer.publish(frequency=ALICE_AFTER))["tracks"]
        assert new_track["id"] != old_track["id"]
        gone = await bob.session.next_event("track_unpublished")
        assert (gone["track_id"], gone["participant_id"]) == (old_track["id"], alice.id)
        came = await bob.session.next_event("track_published")
        assert (came["track"]["id"], came["track"]["participant_id"]) == (new_track["id"], alice.id)
        await hears(bob_peer, new_track["id"], ALICE_AFTER)
        await settled(bob.session)
        assert comings_and_goings(bob.session, alice.id) == []
    finally:
        for peer in peers:
            await peer.close()
    await _finish(bob.session, alice.session)
