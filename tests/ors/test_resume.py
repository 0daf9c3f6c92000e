"""Resumption (ORS 6.6) against real gateways, where the operator's settings matter: the bounds on
participants kept while they reconnect, the lobby, a host's removal, a grace of 0, a restart."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from spec.conformance.orsclient import Message, OrsClient, OrsError
from tests.gateway_process import RunningGateway, running_gateway
from tests.ors.test_room_abuse import next_matching, wait_for
from tests.ors.test_session import assert_all_valid, joined_client, participants

pytestmark = pytest.mark.interop

GRACE = 2
"""Seconds the gateways of these tests keep a participant whose connection dropped."""
SHORT_GRACE = f"[rooms]\nreconnect_grace = {GRACE}\n"
LONG_GRACE = "[rooms]\nreconnect_grace = 60\n"
"""For tests that show something happens at once, long before the grace would end."""


async def resumed(
    gateway: RunningGateway, room: str, identity: str, client: OrsClient
) -> tuple[OrsClient, Message]:
    """CLIENT, joined as IDENTITY, drops its connection and resumes on a new one."""
    await client.drop()
    back = await OrsClient.connect(gateway.base_url, room)
    token = gateway.token(room, identity, identity.capitalize())
    joined = await back.join(token, resume=client.received[0]["resume_token"])
    assert joined["resumed"] is True
    return back, joined


def metrics(gateway: RunningGateway) -> str:
    with urllib.request.urlopen(gateway.base_url + "/metrics", timeout=5) as response:
        return response.read().decode()


def kept(gateway: RunningGateway, room: str) -> list[str]:
    """The names of the room's participants kept while they reconnect (admin API)."""
    return sorted(p["name"] for p in participants(gateway, room) if p["reconnecting"])


async def test_many_sockets_dropped_at_once_keep_no_more_than_the_bounds(tmp_path: Path) -> None:
    # a grace long enough that none ends before the counts below are read
    bounds = "[rooms]\nreconnect_grace = 6\nmax_reconnecting = 3\n"
    bounds += "[limits]\nreconnecting_participants = 5\n"
    with running_gateway(tmp_path, extra_config=bounds) as gateway:
        gateway.create_room("salle-a")
        gateway.create_room("salle-b")
        witness = await joined_client(gateway, "salle-a", "witness")
        crowd_a = [await joined_client(gateway, "salle-a", f"a{n}") for n in range(6)]
        crowd_b = [await joined_client(gateway, "salle-b", f"b{n}") for n in range(4)]
        ids = {c.received[0]["participant"]["id"] for c in crowd_a}
        await asyncio.gather(*(c.drop() for c in crowd_a))
        await asyncio.gather(*(c.drop() for c in crowd_b))

        # the room keeps three (the others leave at once), the server two more from salle-b
        def told(kind: str) -> set[str]:
            return {
                m.get("participant_id") or m["participant"]["id"]
                for m in witness.received
                if m["type"] == kind
            }

        await wait_for(lambda: len(told("participant_updated") | told("participant_left")) == 6)
        assert len(told("participant_updated")) == 3 and len(told("participant_left")) == 3
        assert told("participant_left") <= ids
        assert {m["reason"] for m in witness.received if m["type"] == "participant_left"} == {
            "disconnected"
        }
        assert len(kept(gateway, "salle-a")) == 3
        await wait_for(lambda: len(kept(gateway, "salle-b")) == 2, timeout=5)
        assert len(participants(gateway, "salle-b")) == 2
        assert "\nrondpoint_participants_reconnecting 5.0\n" in metrics(gateway)

        # and none of them longer than the grace
        await wait_for(lambda: kept(gateway, "salle-a") == [], timeout=20)
        await wait_for(lambda: participants(gateway, "salle-b") == [], timeout=20)
        assert [p["name"] for p in participants(gateway, "salle-a")] == ["Witness"]
        assert_all_valid(witness)
        await witness.close()


async def test_a_participant_in_the_lobby_is_not_kept(tmp_path: Path) -> None:
    with running_gateway(tmp_path, extra_config=LONG_GRACE) as gateway:
        gateway.create_room("antichambre", lobby=True)
        host = await joined_client(gateway, "antichambre", "host", role="host")
        guest = await OrsClient.connect(gateway.base_url, "antichambre")
        waiting = await guest.join(gateway.token("antichambre", "guest", "Guest", role="guest"))
        assert waiting["type"] == "lobby" and "resume_token" not in waiting
        await next_matching(host, "participant_joined", lambda m: True)
        await guest.drop()
        left = await host.next_event("participant_left", timeout=10)  # at once, not in 60 s
        assert (left["participant_id"], left["reason"]) == (
            waiting["participant"]["id"],
            "disconnected",
        )
        assert not any(m["type"] == "participant_updated" for m in host.received)
        await host.close()


async def test_a_kept_participant_a_host_removes_cannot_resume(tmp_path: Path) -> None:
    with running_gateway(tmp_path, extra_config=LONG_GRACE) as gateway:
        gateway.create_room("salle")
        host = await joined_client(gateway, "salle", "host", role="host")
        token = gateway.token("salle", "bob", "Bob")
        bob = await OrsClient.connect(gateway.base_url, "salle")
        joined = await bob.join(token)
        bob_id = joined["participant"]["id"]
        await bob.drop()
        await next_matching(host, "participant_updated", lambda m: m["participant"]["reconnecting"])
        await host.request({"type": "remove", "participant_id": bob_id})
        left = await host.next_event("participant_left")
        assert (left["participant_id"], left["reason"]) == (bob_id, "removed")
        again = await OrsClient.connect(gateway.base_url, "salle")
        with pytest.raises(OrsError) as refused:
            await again.join(token, resume=joined["resume_token"])
        assert refused.value.code == "removed"
        assert [p["name"] for p in participants(gateway, "salle")] == ["Host"]
        for client in (host, again):
            await client.close()


async def test_with_no_grace_a_dropped_participant_leaves_at_once_and_nothing_resumes(
    tmp_path: Path,
) -> None:
    with running_gateway(tmp_path, extra_config="[rooms]\nreconnect_grace = 0\n") as gateway:
        async with (
            aiohttp.ClientSession() as http,
            http.get(gateway.base_url + "/.well-known/ors") as response,
        ):
            assert "resume" not in (await response.json())["capabilities"]
        gateway.create_room("salle")
        witness = await joined_client(gateway, "salle", "witness")
        alice = await joined_client(gateway, "salle", "alice")
        first: Message = alice.received[0]
        assert "resume_token" not in first and "resume_grace" not in first
        await alice.drop()
        left = await witness.next_event("participant_left")
        assert left["reason"] == "disconnected"
        again = await OrsClient.connect(gateway.base_url, "salle")
        joined = await again.join(gateway.token("salle", "alice", "Alice"), resume="anything")
        assert joined["resumed"] is False
        for client in (witness, again):
            await client.close()


async def test_after_a_restart_a_resume_is_a_join_and_the_host_is_host_again(
    tmp_path: Path,
) -> None:
    with running_gateway(tmp_path, extra_config=LONG_GRACE) as gateway:
        gateway.create_room("salle")
        host_token = gateway.token("salle", "alice", "Alice", role="host")
        alice = await OrsClient.connect(gateway.base_url, "salle")
        before = await alice.join(host_token)
        await alice.drop()
        gateway.restart()  # the kept participant is lost with the process's memory
        assert participants(gateway, "salle") == []
        # a member's token of the same identity: the room's host identity is a host (2.4)
        again = await OrsClient.connect(gateway.base_url, "salle")
        joined = await again.join(
            gateway.token("salle", "alice", "Alice"), resume=before["resume_token"]
        )
        assert joined["resumed"] is False and joined["participant"]["role"] == "host"
        assert joined["participant"]["id"] != before["participant"]["id"]
        assert [p["name"] for p in participants(gateway, "salle")] == ["Alice"]
        assert_all_valid(alice, again)
        await again.close()


async def test_a_gateway_that_stops_closes_with_service_restart_and_no_left(
    tmp_path: Path,
) -> None:
    """Its clients are to come back (6.7), not to show that the meeting ended (`left`)."""
    with running_gateway(tmp_path, extra_config=LONG_GRACE) as gateway:
        gateway.create_room("salle")
        alice = await joined_client(gateway, "salle", "alice")
        await asyncio.to_thread(gateway.restart)
        await asyncio.wait_for(alice.closed.wait(), timeout=5)
        assert alice.ws.close_code == 1012
        assert [m for m in alice.received if m["type"] == "left"] == []
        again = await joined_client(gateway, "salle", "alice")  # the room is still there
        assert [p["name"] for p in participants(gateway, "salle")] == ["Alice"]
        await alice.close()
        await again.close()


async def test_the_resume_token_is_never_logged(tmp_path: Path) -> None:
    with running_gateway(tmp_path, extra_config=SHORT_GRACE) as gateway:
        gateway.create_room("salle")
        alice = await joined_client(gateway, "salle", "alice")
        back, second = await resumed(gateway, "salle", "alice", alice)
        await back.drop()
        await wait_for(lambda: participants(gateway, "salle") == [], timeout=GRACE + 10)
        log = gateway.log_text()
        assert "participant resumed" in log
        for secret in (alice.received[0]["resume_token"], second["resume_token"]):
            assert secret not in log
        lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        assert {line["msg"] for line in lines} >= {"participant reconnecting", "participant left"}


async def test_a_resume_does_not_refill_the_rate_limits(tmp_path: Path) -> None:
    with running_gateway(tmp_path, extra_config=LONG_GRACE) as gateway:
        gateway.create_room("salle")
        alice = await joined_client(gateway, "salle", "alice")
        for n in range(10):  # the burst of renames (8.9)
            await alice.request({"type": "update", "name": f"Alice {n}"})
        back, joined = await resumed(gateway, "salle", "alice", alice)
        assert joined["participant"]["name"] == "Alice 9"  # not the join's token's name
        refused = 0
        for n in range(10):  # a new session would allow ten more at once; this one does not
            try:
                await back.request({"type": "update", "name": f"Alice again {n}"})
            except OrsError as error:
                assert error.code == "rate_limited"
                refused += 1
        assert refused >= 5
        await back.close()
