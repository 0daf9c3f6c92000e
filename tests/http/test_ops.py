"""Operations endpoints, JSON logs, discovery and the anonymous token endpoint's PIN and rate limit."""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.gateway_process import RunningGateway

pytestmark = pytest.mark.interop


def get(gateway: RunningGateway, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(gateway.base_url + path, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def post(gateway: RunningGateway, path: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        gateway.base_url + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_health_and_readiness(gateway: RunningGateway) -> None:
    assert get(gateway, "/healthz") == (200, '{"status": "ok"}')
    status, body = get(gateway, "/readyz")
    assert status == 200 and json.loads(body)["media_port"] == gateway.media_port


def test_metrics_expose_rooms_participants_and_relay_counters(gateway: RunningGateway) -> None:
    status, body = get(gateway, "/metrics")
    assert status == 200
    for name in (
        "rondpoint_rooms",
        "rondpoint_participants",
        "rondpoint_participants_reconnecting",
        "rondpoint_tracks",
        "rondpoint_relay_packets_forwarded_total",
        "rondpoint_relay_bytes_forwarded_total",
        "rondpoint_relay_packets_lost_total",
        "rondpoint_relay_nacks_total",
        "rondpoint_relay_keyframe_requests_total",
        "rondpoint_relay_congestion_pauses_total",
        "rondpoint_relay_layer_downgrades_total",
        "rondpoint_relay_subscriber_bandwidth_bits_count",
        "rondpoint_relay_tcp_connections",
        "rondpoint_relay_tcp_refused_total",
        "rondpoint_relay_tcp_frames_dropped_total",
    ):
        assert f"\n{name}" in body, name


def test_logs_are_one_json_object_per_line(gateway: RunningGateway) -> None:
    lines = [line for line in gateway.log_text().splitlines() if line.startswith("{")]
    assert lines, "no JSON log line yet"
    for line in lines:
        entry = json.loads(line)
        assert {"ts", "level", "logger", "msg"} <= entry.keys()


def test_discovery_names_the_server(gateway: RunningGateway) -> None:
    status, body = get(gateway, "/.well-known/ors")
    document = json.loads(body)
    assert status == 200 and document["server"] == "test.rondpoint.local"
    assert document["api_base"] == gateway.base_url + "/ors/v1"


def test_pin_room_needs_the_right_pin(gateway: RunningGateway) -> None:
    gateway.create_room("pin-room", pin="482916")
    assert (
        post(gateway, "/ors/v1/rooms/pin-room/tokens", {"name": "Léa"})[1]["code"] == "pin_required"
    )
    status, problem = post(
        gateway, "/ors/v1/rooms/pin-room/tokens", {"name": "Léa", "pin": "000000"}
    )
    assert (status, problem["code"]) == (403, "pin_incorrect")
    assert "482916" not in json.dumps(problem) and "482916" not in gateway.log_text()
    status, grant = post(gateway, "/ors/v1/rooms/pin-room/tokens", {"name": "Léa", "pin": "482916"})
    assert status == 201 and grant["role"] == "guest"


def test_anonymous_requests_are_rate_limited(gateway: RunningGateway) -> None:
    statuses = [
        post(gateway, "/ors/v1/rooms/limit-room/tokens", {"name": "X", "pin": "1"})[0]
        for _ in range(40)
    ]
    assert 429 in statuses
    request = urllib.request.Request(
        gateway.base_url + "/ors/v1/rooms/limit-room/tokens",
        data=b'{"name": "X"}',
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 429
    assert json.loads(refused.value.read())["code"] == "rate_limited"
    # how long to wait: one more token is earned every 2 s at 30 a minute
    assert 1 <= int(refused.value.headers["Retry-After"]) <= 2


def test_admin_api_refuses_without_the_admin_token(gateway: RunningGateway) -> None:
    status, body = get(gateway, "/api/v1/rooms")
    assert status == 401 and json.loads(body)["code"] == "unauthorized"
