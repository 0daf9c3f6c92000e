"""Attacker input is refused as such, never with a 500 or an ERROR traceback."""

from __future__ import annotations

import json
import urllib.request

import pytest

from spec.conformance.orsclient import OrsClient
from tests.gateway_process import RunningGateway

DEPTHS = [900, 2000, 20_000]  # below CPython's recursion limit (1,000), and above it


def _nested(depth: int, kind: str) -> str:
    if kind == "array":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


def _post(gateway: RunningGateway, path: str, body: str, admin: bool = False) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if admin:
        headers["Authorization"] = f"Bearer {gateway.admin_token}"
    request = urllib.request.Request(
        gateway.base_url + path, data=body.encode(), method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _assert_no_error_logged(gateway: RunningGateway) -> None:
    log = gateway.log_text()
    assert "Traceback" not in log
    assert '"level": "error"' not in log


@pytest.mark.parametrize("kind", ["array", "object"])
@pytest.mark.parametrize("depth", DEPTHS)
def test_deeply_nested_json_bodies_are_400(gateway: RunningGateway, depth: int, kind: str) -> None:
    gateway.create_room(f"deep-{kind}-{depth}")
    deep = _nested(depth, kind)
    for path, body, admin in [
        (f"/ors/v1/rooms/deep-{kind}-{depth}/tokens", deep, False),
        (f"/ors/v1/rooms/deep-{kind}-{depth}/tokens", f'{{"name": "N", "pin": {deep}}}', False),
        ("/api/v1/rooms", deep, True),
        ("/api/v1/rooms", f'{{"id": "deep-room", "lobby": {deep}}}', True),
    ]:
        status, problem = _post(gateway, path, body, admin)
        assert status == 400, (path, problem)
        assert problem["code"] in ("invalid_json", "invalid_message"), (path, problem)
    _assert_no_error_logged(gateway)


@pytest.mark.parametrize("kind", ["array", "object"])
async def test_deeply_nested_websocket_messages_are_errors_and_the_session_lives(
    gateway: RunningGateway, kind: str
) -> None:
    gateway.create_room(f"deep-ws-{kind}")
    client = await OrsClient.connect(gateway.base_url, f"deep-ws-{kind}")
    try:
        for depth in DEPTHS:
            deep = _nested(depth, kind)
            for text in [deep, f'{{"type": "ping", "id": "p", "extra": {deep}}}']:
                if len(text) > 60_000:
                    continue  # beyond the message limit: message_too_large, tested elsewhere
                await client.send_raw(text)
                # members a client may add are ignored (3.2): a ping that parses gets its pong
                reply = await client.next_event("error", "pong")
                if reply["type"] == "error":
                    assert reply["problem"]["code"] in ("invalid_json", "invalid_message"), depth
        assert (await client.request({"type": "ping"}))["type"] == "pong"
        joined = await client.join(gateway.token(f"deep-ws-{kind}", "deep", "Deep"))
        deep = _nested(2000, kind)
        await client.send_raw(f'{{"type": "chat", "id": "c", "text": {deep}}}')
        error = await client.next_event("error")
        assert error["problem"]["code"] in ("invalid_json", "invalid_message")
        assert joined["type"] == "joined"
        assert (await client.request({"type": "ping"}))["type"] == "pong"
    finally:
        await client.close()
    _assert_no_error_logged(gateway)
