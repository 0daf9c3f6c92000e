"""Smoke test of bench/matrix_bridge.py's own pieces (the benchmark itself is not in make test:
`.venv/bin/python -m bench.matrix_bridge`, BENCHMARKS.md "Matrix bridge"): the E2EE options given
to LiveKit's SDK are the ones our frame decryptor assumes, media keys reach every sink once, and
the ratios are printed for the steps both runs have."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from bench import matrix_bridge as mb
from protocols.matrix import frame_crypto


def test_element_call_encryption_matches_our_frame_crypto() -> None:
    from livekit.rtc._proto import e2ee_pb2

    options = mb.element_call_encryption()
    keys = options.key_provider_options
    assert keys.shared_key is None  # per-participant keys, as Element Call's
    assert keys.ratchet_salt == frame_crypto.SALT
    assert keys.ratchet_window_size == frame_crypto.RATCHET_WINDOW
    assert keys.key_ring_size == frame_crypto.KEY_RING_SIZE
    assert keys.failure_tolerance == frame_crypto.FAILURE_TOLERANCE
    assert keys.key_derivation_function == e2ee_pb2.KeyDerivationFunction.HKDF
    assert options.encryption_type == e2ee_pb2.EncryptionType.GCM


class FakeJs:
    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events


def key_event(room: str, identity: str, key: bytes, index: int) -> dict[str, Any]:
    return {
        "event": "media_key",
        "room": room,
        "identity": identity,
        "key": base64.b64encode(key).decode(),
        "index": index,
    }


def test_media_keys_of_the_room_reach_every_sink_once() -> None:
    js = FakeJs(
        [
            key_event("!a:hs.test", "@anna:hs.test:DEV", b"k0", 0),
            {"event": "memberships", "room": "!a:hs.test", "memberships": []},
            key_event("!b:hs.test", "@bob:hs.test:DEV", b"other room", 0),
        ]
    )
    first: list[tuple[str, bytes, int]] = []
    second: list[tuple[str, bytes, int]] = []

    def sink(into: list[tuple[str, bytes, int]]) -> mb.KeySink:
        return lambda identity, key, index: into.append((identity, key, index))

    sinks = [sink(first), sink(second)]
    seen = mb.pass_keys(js, "!a:hs.test", sinks, 0)
    assert seen == 3
    js.events.append(key_event("!a:hs.test", "@rondpoint_x:hs.test:RONDPOINT", b"k1", 1))
    assert mb.pass_keys(js, "!a:hs.test", sinks, seen) == 4
    expected = [("@anna:hs.test:DEV", b"k0", 0), ("@rondpoint_x:hs.test:RONDPOINT", b"k1", 1)]
    assert first == second == expected


def test_ratios_of_gateway_cpu_per_participant(capsys: pytest.CaptureFixture[str]) -> None:
    def a_row(pp: float) -> dict[str, Any]:
        return {"users": 2, "media": "audio", "gateway_pp": pp}

    def b_row(pp: float) -> dict[str, Any]:
        return {"phones": 4, "gateway_pp": pp}

    mb.report_ratios(
        {
            "Matrix": ([a_row(2.0)], [b_row(1.0)]),
            "Matrix E2EE": ([a_row(3.0)], [b_row(0.0), {"phones": 0}]),
            "Visio": ([a_row(1.0)], []),
        }
    )
    out = capsys.readouterr().out
    assert "Matrix E2EE / Matrix, -> here, 2 users, audio: 1.50" in out
    assert "Matrix E2EE / Matrix, here ->, 4 phones: 0.00" in out
    assert "Matrix / Visio, -> here, 2 users, audio: 2.00" in out
    assert "Matrix / Visio, here ->" not in out
