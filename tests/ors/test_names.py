"""Display names are sanitised where they enter (spec 7.1), on a real gateway process: ANSI escapes,
bidi overrides and a lone surrogate sent by an ORS client never reach the room, the admin API or
the operator's terminal (``rondpoint room show``)."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator

import jwt
import pytest

from spec.conformance.orsclient import OrsClient, OrsError, anonymous_token
from tests.gateway_process import RunningGateway

HOSTILE = "\x1b[31mEvil\u202e\ud800"
"""An ANSI colour escape, a right-to-left override and a lone surrogate (sent as JSON "\\ud800")."""
CLEANED = "[31mEvil\ufffd"


def listed_names(gateway: RunningGateway, room: str) -> list[str]:
    status, body = gateway.admin("GET", f"/api/v1/rooms/{room}")
    assert status == 200, body
    return [p["name"] for p in body["participants"]]


def room_show(gateway: RunningGateway, room: str, *url: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(gateway.config_path), *url]
        + ["room", "show", room],
        capture_output=True,
        timeout=30,
    )


async def test_a_hostile_join_name_is_listed_clean(gateway: RunningGateway) -> None:
    gateway.create_room("noms")
    client = await OrsClient.connect(gateway.base_url, "noms")
    try:
        joined = await client.join(gateway.token("noms", "eve"), HOSTILE)
        assert joined["participant"]["name"] == CLEANED
        assert listed_names(gateway, "noms") == [CLEANED]
        shown = room_show(gateway, "noms")
        assert shown.returncode == 0, shown.stderr
        assert b"\x1b" not in shown.stdout and "\u202e".encode() not in shown.stdout
        assert CLEANED.encode() in shown.stdout
    finally:
        await client.close()


async def test_a_new_name_is_cleaned_too(gateway: RunningGateway) -> None:
    gateway.create_room("renomme")
    client = await OrsClient.connect(gateway.base_url, "renomme")
    try:
        await client.join(gateway.token("renomme", "bob"), "Bob")
        await client.request({"type": "update", "name": "\x1b]0;pwned\x07Bob\u2066 \t Martin"})
        updated = await client.next_event("participant_updated")
        assert updated["participant"]["name"] == "]0;pwnedBob Martin"
        assert listed_names(gateway, "renomme") == ["]0;pwnedBob Martin"]
    finally:
        await client.close()


async def test_a_name_with_nothing_displayable_is_refused(gateway: RunningGateway) -> None:
    gateway.create_room("vide")
    client = await OrsClient.connect(gateway.base_url, "vide")
    try:
        with pytest.raises(OrsError) as error:
            await client.join(gateway.token("vide", "ghost"), "\u202e\u2066\x1b\u200d")
    finally:
        await client.close()
    assert (error.value.code, error.value.problem.get("field")) == ("invalid_message", "/name")
    assert listed_names(gateway, "vide") == []


async def test_the_anonymous_token_endpoint_cleans_the_name(gateway: RunningGateway) -> None:
    gateway.create_room("publique")
    minted = await anonymous_token(gateway.base_url, "publique", "\x1b[2JAnne\u202e")
    assert minted["status"] == 201, minted
    claims = jwt.decode(minted["token"], options={"verify_signature": False})
    assert claims["name"] == "[2JAnne"
    empty = await anonymous_token(gateway.base_url, "publique", "\u202e\u2067")
    assert (empty["status"], empty["code"]) == (400, "invalid_message")


def test_the_admin_api_mints_tokens_with_clean_names(gateway: RunningGateway) -> None:
    gateway.create_room("jetons")
    status, body = gateway.admin(
        "POST", "/api/v1/rooms/jetons/tokens", {"identity": "x", "name": "\x1b[1mChef\u202d"}
    )
    assert status == 201, body
    assert jwt.decode(body["token"], options={"verify_signature": False})["name"] == "[1mChef"


@pytest.fixture
def older_gateway() -> Iterator[str]:
    """An admin API on loopback that answers names as they were stored before this fix: raw."""
    room = {
        "id": "ancienne",
        "server": "old.example",
        "policy": {"pin": False, "lobby": False},
        "links": [],
        "participants": [
            {
                "id": "p_1",
                "name": HOSTILE + "\x9b2J",
                "origin": "ors",
                "role": "member",
                "state": "joined",
                "tracks": [],
            }
        ],
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = json.dumps(room).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_room_show_escapes_names_stored_raw(gateway: RunningGateway, older_gateway: str) -> None:
    shown = room_show(gateway, "ancienne", "--url", older_gateway)
    assert shown.returncode == 0, shown.stderr
    assert b"\x1b" not in shown.stdout and b"\xc2\x9b" not in shown.stdout
    assert b"\\u001b[31mEvil\\u202e\\ud800\\u009b2J" in shown.stdout
