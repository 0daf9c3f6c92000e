"""Names reserved for the gateway's own rooms (visio-UUID, where a Visio meeting's phone callers land)
cannot be made by a visitor or an operator: nobody becomes host of a room others are sent to."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid

import pytest

from tests.gateway_process import RunningGateway

pytestmark = pytest.mark.interop


def anonymous_token(gateway: RunningGateway, room: str) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{gateway.base_url}/ors/v1/rooms/{room}/tokens",
        data=json.dumps({"name": "Squatter"}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_a_visitor_cannot_pre_create_the_room_of_a_visio_meetings_callers(
    gateway: RunningGateway,
) -> None:
    room = f"visio-{uuid.uuid4()}"
    status, problem = anonymous_token(gateway, room)
    assert (status, problem["code"]) == (403, "forbidden")
    assert "reserved" in problem["detail"]
    assert gateway.admin("GET", f"/api/v1/rooms/{room}")[0] == 404


def test_the_admin_api_cannot_make_one_either(gateway: RunningGateway) -> None:
    room = f"visio-{uuid.uuid4()}"
    status, problem = gateway.admin("POST", "/api/v1/rooms", {"id": room})
    assert (status, problem["code"], problem["field"]) == (403, "forbidden", "/id")
    assert gateway.admin("GET", f"/api/v1/rooms/{room}")[0] == 404


def test_other_names_starting_with_visio_stay_ordinary_rooms(gateway: RunningGateway) -> None:
    status, grant = anonymous_token(gateway, "visio-team-weekly")
    assert (status, grant["role"]) == (201, "host")
