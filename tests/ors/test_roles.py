"""Hosts by identity, co-hosts, the lobby told whether a host is present, admit all (ORS 2.4,
8.15, 8.16, 9.2, 9.18), driven from outside against a real gateway with a lobby room."""

from __future__ import annotations

import pytest

from gateway.ors import schemas
from spec.conformance.orsclient import OrsClient, OrsError
from tests.gateway_process import RunningGateway

pytestmark = pytest.mark.interop


async def client(
    gateway: RunningGateway, room: str, identity: str, role: str = "guest"
) -> tuple[OrsClient, dict]:
    ors = await OrsClient.connect(gateway.base_url, room)
    reply = await ors.join(gateway.token(room, identity, identity.capitalize(), role))
    return ors, reply


def hosts(gateway: RunningGateway, room: str) -> list[str]:
    status, body = gateway.admin("GET", f"/api/v1/rooms/{room}")
    assert status == 200
    return list(body["hosts"])


async def close(*clients: OrsClient) -> None:
    for ors in clients:
        for message in ors.received:
            schemas.validate("server", message)
        await ors.close()


async def test_the_lobby_is_told_when_the_last_host_leaves_and_comes_back(
    gateway: RunningGateway,
) -> None:
    gateway.create_room("told-lobby", lobby=True)
    host, _ = await client(gateway, "told-lobby", "host", "host")
    guest, waiting = await client(gateway, "told-lobby", "guest")
    assert (waiting["type"], waiting["hosts_present"]) == ("lobby", True)
    await host.request({"type": "leave"})
    assert (await guest.next_event("lobby_status"))["hosts_present"] is False
    late, waiting = await client(gateway, "told-lobby", "late")
    assert (waiting["type"], waiting["hosts_present"]) == ("lobby", False)
    # the host comes back with a guest token: its identity is the room's host
    back, joined = await client(gateway, "told-lobby", "host", "guest")
    assert (joined["type"], joined["participant"]["role"]) == ("joined", "host")
    for ors in (guest, late):
        assert (await ors.next_event("lobby_status"))["hosts_present"] is True
    assert hosts(gateway, "told-lobby") == ["host"]
    await close(host, guest, late, back)


async def test_admit_all_lets_everyone_in(gateway: RunningGateway) -> None:
    gateway.create_room("admit-all", lobby=True)
    host, _ = await client(gateway, "admit-all", "host", "host")
    waiting = [(await client(gateway, "admit-all", f"guest{n}"))[0] for n in range(3)]
    with pytest.raises(OrsError) as error:
        await waiting[0].request({"type": "admit_all"})
    assert error.value.code == "invalid_state"  # a guest in the lobby cannot
    await host.request({"type": "admit_all"})
    for ors in waiting:
        joined = await ors.next_event("joined")
        assert "reply_to" not in joined and joined["participant"]["state"] == "joined"
    with pytest.raises(OrsError) as error:
        await waiting[0].request({"type": "admit_all"})
    assert error.value.code == "forbidden"  # an admitted guest is no host
    await host.request({"type": "admit_all"})  # nobody waits: ok, nothing happens
    await close(host, *waiting)


async def test_a_co_host_sees_the_lobby_and_a_removed_host_is_no_longer_one(
    gateway: RunningGateway,
) -> None:
    gateway.create_room("co-host", lobby=True)
    host, _ = await client(gateway, "co-host", "host", "host")
    other, joined = await client(gateway, "co-host", "other", "host")
    other_id = joined["participant"]["id"]
    member, joined = await client(gateway, "co-host", "member", "member")
    member_id = joined["participant"]["id"]
    with pytest.raises(OrsError) as error:  # in the lobby: admit it first
        await host.request({"type": "set_role", "participant_id": member_id, "role": "host"})
    assert error.value.code == "invalid_state"
    await host.request({"type": "admit", "participant_id": member_id})
    await member.next_event("joined")
    waiting, _ = await client(gateway, "co-host", "waiting")
    await host.request({"type": "set_role", "participant_id": member_id, "role": "host"})
    assert (await member.next_event("participant_updated"))["participant"]["role"] == "host"
    seen = await member.next_event("participant_joined")
    while seen["participant"]["state"] != "lobby":
        seen = await member.next_event("participant_joined")
    assert seen["participant"]["name"] == "Waiting"  # a new host sees the lobby
    assert hosts(gateway, "co-host") == ["host", "other", "member"]
    await host.request({"type": "remove", "participant_id": other_id})
    assert hosts(gateway, "co-host") == ["host", "member"]
    await close(host, other, member, waiting)


async def test_a_flood_of_set_role_is_rate_limited(gateway: RunningGateway) -> None:
    gateway.create_room("role-flood")
    host, _ = await client(gateway, "role-flood", "host", "host")
    guest, joined = await client(gateway, "role-flood", "guest")
    guest_id = joined["participant"]["id"]
    codes = []
    for n in range(14):
        role = "host" if n % 2 == 0 else "member"
        try:
            await host.request({"type": "set_role", "participant_id": guest_id, "role": role})
            codes.append("ok")
        except OrsError as error:
            codes.append(error.code)
    assert codes[:10] == ["ok"] * 10 and "rate_limited" in codes[10:]
    await close(host, guest)
