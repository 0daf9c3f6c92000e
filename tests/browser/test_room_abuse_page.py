"""The web page under room abuses: it rejoins after a "too slow" close (spec 6.4), and a
host lets a removed participant back in from the people panel (spec 8.10, 8.11)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.browser.test_web_client import Opener, helene_hosts, new_room, wait_until
from tests.gateway_process import RunningGateway

pytestmark = [pytest.mark.browser, pytest.mark.interop, pytest.mark.timeout(90)]

ORS_SOCKET = re.compile(r".*/ors/v1/rooms/[^/]+/ws$")


def names_in_room(gateway: RunningGateway, room: str) -> list[str]:
    status, body = gateway.admin("GET", f"/api/v1/rooms/{room}")
    assert status == 200
    return sorted(p["name"] for p in body["participants"])


def test_the_page_rejoins_after_a_too_slow_close(
    open_participant: Opener, web_gateway: RunningGateway
) -> None:
    room = new_room("slow")
    web_gateway.create_room(room)
    token = web_gateway.token(room, "remi", "Rémi")
    remi = open_participant(room, "Rémi", token=token, autojoin=False)
    # the page's sockets meet a stand-in for the gateway, which closes the first one as the gateway
    # closes a session that fell behind (a browser cannot be made to stop reading its socket)
    joins: list[dict[str, Any]] = []
    sockets: list[Any] = []

    def stand_in(route: Any) -> None:
        sockets.append(route)

        def on_message(text: str | bytes) -> None:
            message = json.loads(text)
            if message["type"] == "join":
                joins.append(message)
                participant = {
                    "id": f"PA_{len(joins)}",
                    "name": "Rémi",
                    "origin": "ors",
                    "origin_address": "",
                    "role": "member",
                    "state": "joined",
                    "joined_at": 0,
                    "tracks": [],
                }
                room_wire = {
                    "id": room,
                    "server": "test",
                    "policy": {},
                    "links": [],
                    "created_at": 0,
                }
                reply = {"type": "joined", "reply_to": message["id"], "participant": participant}
                reply |= {"room": room_wire, "participants": [], "ice_servers": []}
                route.send(json.dumps(reply))

        route.on_message(on_message)

    remi.page.route_web_socket(ORS_SOCKET, stand_in)
    remi.wait_state("prejoin")
    remi.page.wait_for_function("() => document.getElementById('prejoin-form').onsubmit")
    remi.page.get_by_test_id("prejoin-name").fill("Rémi")
    remi.page.get_by_test_id("prejoin-join").click()
    wait_until(lambda: remi.id == "PA_1", 15, "the page to join")

    sockets[0].close(code=4008, reason="too slow")
    remi.page.wait_for_function(
        "() => document.getElementById('toasts').textContent.includes('reconnecting')",
        timeout=5_000,
    )
    wait_until(lambda: remi.id == "PA_2", 15, "the page to join again on a new socket")
    assert remi.state() == "room" and len(sockets) == 2
    assert [j["token"] for j in joins] == [token, token]


def test_a_host_lets_a_removed_participant_back_in(
    open_participant: Opener, web_gateway: RunningGateway
) -> None:
    room, host = helene_hosts(open_participant, web_gateway, "removed")
    token = web_gateway.token(room, "guest-gaspard", "Gaspard")
    guest = open_participant(room, "Gaspard", token=token)
    guest.wait_state("room")
    gid = guest.id
    wait_until(lambda: gid in {p["id"] for p in host.others()}, 10, "the host to see the guest")

    host.page.get_by_test_id("participants-toggle").click()
    host.page.get_by_test_id(f"remove-{gid}").click()
    host.page.get_by_test_id("confirm-ok").click()
    guest.wait_state("left")

    # the same token cannot come back; the page says why
    again = open_participant(room, "Gaspard", token=token)
    again.page.wait_for_function(
        "() => document.getElementById('prejoin-error').textContent.includes('removed')",
        timeout=15_000,
    )
    assert names_in_room(web_gateway, room) == ["Hélène"]

    let_back = host.page.get_by_test_id(f"let-back-{gid}")
    let_back.wait_for(state="visible", timeout=10_000)
    let_back.click()
    let_back.wait_for(state="detached", timeout=10_000)
    again.page.wait_for_function("() => document.getElementById('prejoin-form').onsubmit")
    again.page.get_by_test_id("prejoin-join").click()
    again.wait_state("room")
    wait_until(
        lambda: names_in_room(web_gateway, room) == ["Gaspard", "Hélène"], 10, "Gaspard back"
    )
