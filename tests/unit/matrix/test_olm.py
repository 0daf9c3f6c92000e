"""Olm devices of ghosts (protocols/matrix/olm.py): keys published, sessions opened, to-device
events encrypted and decrypted both ways, every refusal; against a small in-memory homeserver
playing the `/keys/*` and `/sendToDevice` endpoints (the real Synapse is in
tests/matrix/test_e2ee_keys.py)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from typing import Any

import pytest

from protocols.matrix.client import MatrixError
from protocols.matrix.olm import (
    OLM_ALGORITHM,
    OlmDevice,
    OlmError,
    PeerDevice,
    canonical_json,
    load_device,
    parse_device_keys,
    pickle_key,
    save_device,
)

PICKLE_KEY = b"p" * 32


class FakeKeyServer:
    """The homeserver's key endpoints, as the application service masquerading as a device."""

    def __init__(self) -> None:
        self.device_keys: dict[tuple[str, str], dict[str, Any]] = {}
        self.one_time: dict[tuple[str, str], dict[str, Any]] = {}
        self.fallback: dict[tuple[str, str], dict[str, Any]] = {}
        self.inbox: list[dict[str, Any]] = []
        self.calls: list[tuple[str, str | None, str | None]] = []
        self.devices: set[tuple[str, str]] = set()

    async def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        as_user: str | None = None,
        device_id: str | None = None,
        query: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        body = json.loads(json.dumps(body or {}))
        if path.endswith("/login"):
            self.devices.add((body["identifier"]["user"], body["device_id"]))
            return {"device_id": body["device_id"]}
        if "/devices/" in path:
            if (as_user, path.rsplit("/", 1)[1]) not in self.devices:
                raise MatrixError(404, "M_NOT_FOUND", "no such device")
            return {}
        assert as_user is not None and device_id is not None
        self.calls.append((path, as_user, device_id))
        me = (as_user, device_id)
        if path.endswith("/keys/upload"):
            if "device_keys" in body:
                self.device_keys[me] = body["device_keys"]
            for key_id, key in body.get("one_time_keys", {}).items():
                assert key_id not in self.one_time.setdefault(me, {})
                self.one_time[me][key_id] = key
            self.fallback.setdefault(me, {}).update(body.get("fallback_keys", {}))
            return {"one_time_key_counts": {"signed_curve25519": len(self.one_time.get(me, {}))}}
        if path.endswith("/keys/query"):
            answer: dict[str, dict[str, Any]] = {}
            for user in body["device_keys"]:
                for (u, d), keys in self.device_keys.items():
                    if u == user:
                        answer.setdefault(user, {})[d] = keys
            return {"device_keys": answer, "failures": {}}
        if path.endswith("/keys/claim"):
            claimed: dict[str, dict[str, Any]] = {}
            for user, devices in body["one_time_keys"].items():
                for device in devices:
                    keys = self.one_time.get((user, device)) or self.fallback.get((user, device))
                    if keys:
                        key_id = next(iter(keys))
                        key = (
                            keys.pop(key_id)
                            if keys is self.one_time.get((user, device))
                            else keys[key_id]
                        )
                        claimed.setdefault(user, {})[device] = {key_id: key}
            return {"one_time_keys": claimed, "failures": {}}
        if "/sendToDevice/" in path:
            event_type = path.split("/sendToDevice/")[1].split("/")[0]
            for user, devices in body["messages"].items():
                for device, content in devices.items():
                    self.inbox.append(
                        {
                            "type": event_type,
                            "sender": as_user,
                            "to_user_id": user,
                            "to_device_id": device,
                            "content": content,
                        }
                    )
            return {}
        raise AssertionError(path)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _two_devices(
    server: FakeKeyServer,
) -> tuple[OlmDevice, OlmDevice, PeerDevice, PeerDevice]:
    ghost = OlmDevice("@rondpoint_p:hs.test", "RONDPOINT")
    anna = OlmDevice("@anna:hs.test", "ANNADEVICE")
    assert await ghost.upload_keys(server) == 25
    await anna.upload_keys(server)
    anna_devices = await ghost.query_devices(server, ["@anna:hs.test"])
    ghost_devices = await anna.query_devices(server, ["@rondpoint_p:hs.test"])
    return (
        ghost,
        anna,
        anna_devices["@anna:hs.test"]["ANNADEVICE"],
        ghost_devices["@rondpoint_p:hs.test"]["RONDPOINT"],
    )


def test_keys_are_published_signed_through_the_ghost_device() -> None:
    server = FakeKeyServer()
    ghost = OlmDevice("@rondpoint_p:hs.test", "RONDPOINT")
    run(ghost.upload_keys(server))
    assert {c[1:] for c in server.calls} == {("@rondpoint_p:hs.test", "RONDPOINT")}
    keys = server.device_keys[("@rondpoint_p:hs.test", "RONDPOINT")]
    assert keys["algorithms"][0] == OLM_ALGORITHM
    assert parse_device_keys("@rondpoint_p:hs.test", "RONDPOINT", keys) is not None
    assert len(server.one_time[("@rondpoint_p:hs.test", "RONDPOINT")]) == 25
    assert len(server.fallback[("@rondpoint_p:hs.test", "RONDPOINT")]) == 1
    # a second upload only tops the one-time keys up
    server.one_time[("@rondpoint_p:hs.test", "RONDPOINT")].popitem()
    assert run(ghost.upload_keys(server)) == 25
    assert canonical_json({"b": 1, "a": "é", "signatures": {}}) == '{"a":"é","b":1}'.encode()


def test_device_keys_failing_their_checks_are_left_out() -> None:
    anna = OlmDevice("@anna:hs.test", "ANNADEVICE")
    keys = anna.device_keys()
    assert parse_device_keys("@anna:hs.test", "ANNADEVICE", keys) is not None
    assert parse_device_keys("@anna:hs.test", "OTHER", keys) is None
    assert parse_device_keys("@bob:hs.test", "ANNADEVICE", keys) is None
    forged = json.loads(json.dumps(keys))
    forged["keys"]["curve25519:ANNADEVICE"] = OlmDevice("@x:y", "X").curve25519
    assert parse_device_keys("@anna:hs.test", "ANNADEVICE", forged) is None
    assert parse_device_keys("@anna:hs.test", "ANNADEVICE", {**keys, "algorithms": []}) is None
    assert parse_device_keys("@anna:hs.test", "ANNADEVICE", "garbage") is None


def test_to_device_events_both_ways_pre_key_then_normal_messages() -> None:
    async def scenario() -> None:
        server = FakeKeyServer()
        ghost, anna, anna_device, ghost_device = await _two_devices(server)
        left = await anna.send_encrypted(
            server, "io.element.call.encryption_keys", {ghost_device: {"n": 1}}, "t1"
        )
        assert left == []
        first = server.inbox.pop()
        assert first["type"] == "m.room.encrypted"
        assert first["content"]["ciphertext"][ghost.curve25519]["type"] == 0
        assert ghost.one_time_keys_used == 0
        got = ghost.decrypt(first)
        assert ghost.one_time_keys_used == 1
        assert await ghost.upload_keys(server) == 25  # topped up again
        assert (got.type, got.content, got.sender, got.sender_device) == (
            "io.element.call.encryption_keys",
            {"n": 1},
            "@anna:hs.test",
            "ANNADEVICE",
        )
        assert await ghost.sender_device(server, got) == anna_device
        # the ghost answers on the session Anna opened: a normal message, no claim
        claims_before = sum("claim" in c[0] for c in server.calls)
        await ghost.send_encrypted(
            server, "io.element.call.encryption_keys", {anna_device: {"n": 2}}, "t2"
        )
        assert sum("claim" in c[0] for c in server.calls) == claims_before
        answer = server.inbox.pop()
        assert answer["content"]["ciphertext"][anna.curve25519]["type"] == 1
        assert anna.decrypt(answer).content == {"n": 2}
        await anna.send_encrypted(server, "x.test", {ghost_device: {"n": 3}}, "t3")
        assert ghost.decrypt(server.inbox.pop()).content == {"n": 3}

    run(scenario())


def test_sessions_survive_a_pickle_and_a_wrong_pickle_key_is_refused() -> None:
    async def scenario() -> None:
        server = FakeKeyServer()
        ghost, anna, anna_device, ghost_device = await _two_devices(server)
        await anna.send_encrypted(server, "x.test", {ghost_device: {"n": 1}}, "t1")
        ghost.decrypt(server.inbox.pop())
        text = ghost.pickle(PICKLE_KEY)
        again = OlmDevice.from_pickle(ghost.user_id, ghost.device_id, text, PICKLE_KEY)
        assert again.curve25519 == ghost.curve25519 and again.device_keys_published
        await anna.send_encrypted(server, "x.test", {ghost_device: {"n": 2}}, "t2")
        assert again.decrypt(server.inbox.pop()).content == {"n": 2}
        with pytest.raises(OlmError, match="cannot be read"):
            OlmDevice.from_pickle(ghost.user_id, ghost.device_id, text, b"q" * 32)
        with pytest.raises(OlmError):
            OlmDevice.from_pickle(ghost.user_id, ghost.device_id, "not json", PICKLE_KEY)

    run(scenario())


def _encrypted(server: FakeKeyServer) -> dict[str, Any]:
    return server.inbox.pop()


def test_garbage_and_misdirected_messages_raise_olm_error() -> None:
    async def scenario() -> None:
        server = FakeKeyServer()
        ghost, anna, anna_device, ghost_device = await _two_devices(server)
        await anna.send_encrypted(server, "x.test", {ghost_device: {"n": 1}}, "t1")
        good = _encrypted(server)
        mine = good["content"]["ciphertext"][ghost.curve25519]
        bad_events = [
            {},
            {"type": "m.room.encrypted", "sender": "@anna:hs.test", "content": "x"},
            {**good, "content": {**good["content"], "algorithm": "m.megolm.v1.aes-sha2"}},
            {**good, "content": {**good["content"], "ciphertext": {"other": mine}}},
            {
                **good,
                "content": {
                    **good["content"],
                    "ciphertext": {ghost.curve25519: {"type": 0, "body": "!!"}},
                },
            },
            {
                **good,
                "content": {
                    **good["content"],
                    "ciphertext": {ghost.curve25519: {"type": 1, "body": "AAAA"}},
                },
            },
            {
                **good,
                "content": {
                    **good["content"],
                    "ciphertext": {ghost.curve25519: {"type": 7, "body": mine["body"]}},
                },
            },
            {**good, "content": {**good["content"], "sender_key": "notakey"}},
        ]
        for event in bad_events:
            with pytest.raises(OlmError):
                ghost.decrypt(event)
        # after all that, the real message still opens the session, once (no replay)
        assert ghost.decrypt(good).content == {"n": 1}
        with pytest.raises(OlmError):
            ghost.decrypt(good)
        # an event whose sender is not the payload's
        await anna.send_encrypted(server, "x.test", {ghost_device: {"n": 1}}, "t1")
        with pytest.raises(OlmError, match="sender"):
            ghost.decrypt({**_encrypted(server), "sender": "@mallory:hs.test"})
        # a message for another user of the same device keys is refused
        stranger = OlmDevice.from_pickle(
            "@rondpoint_q:hs.test", "RONDPOINT", ghost.pickle(PICKLE_KEY), PICKLE_KEY
        )
        await anna.send_encrypted(server, "x.test", {ghost_device: {"n": 2}}, "t2")
        with pytest.raises(OlmError, match="another user"):
            stranger.decrypt(_encrypted(server))
        # a sender whose claimed ed25519 key is not its device's is refused by sender_device
        await anna.send_encrypted(server, "x.test", {ghost_device: {"n": 3}}, "t3")
        got = ghost.decrypt(_encrypted(server))
        forged = type(got)(
            got.sender, got.sender_key, got.sender_device, ghost.ed25519, got.type, got.content
        )
        with pytest.raises(OlmError, match="do not match"):
            await ghost.sender_device(server, forged)
        # matrix-js-sdk's Rust crypto names no sender_device: found by the sender key
        unnamed = type(got)(
            got.sender, got.sender_key, None, got.sender_ed25519, got.type, got.content
        )
        assert (await ghost.sender_device(server, unnamed)).device_id == "ANNADEVICE"
        unknown = type(got)(
            got.sender, got.sender_key, "NOSUCH", got.sender_ed25519, got.type, got.content
        )
        with pytest.raises(OlmError, match="no device of"):
            await ghost.sender_device(server, unknown)

    run(scenario())


def test_a_device_without_keys_to_claim_is_left_out() -> None:
    async def scenario() -> None:
        server = FakeKeyServer()
        ghost = OlmDevice("@rondpoint_p:hs.test", "RONDPOINT")
        await ghost.upload_keys(server)
        lonely = OlmDevice("@lonely:hs.test", "L")
        server.device_keys[("@lonely:hs.test", "L")] = lonely.device_keys()  # no one-time keys
        devices = await ghost.query_devices(server, ["@lonely:hs.test", "@nobody:hs.test"])
        device = devices["@lonely:hs.test"]["L"]
        assert await ghost.send_encrypted(server, "x.test", {device: {}}, "t") == [device]
        assert server.inbox == []
        with pytest.raises(OlmError, match="no Olm session"):
            ghost.encrypt(device, "x.test", {})

    run(scenario())


def test_ciphertext_body_is_unpadded_base64() -> None:
    async def scenario() -> None:
        server = FakeKeyServer()
        ghost, anna, anna_device, _ = await _two_devices(server)
        await ghost.send_encrypted(server, "x.test", {anna_device: {"k": "v" * 7}}, "t")
        body = server.inbox[0]["content"]["ciphertext"][anna.curve25519]["body"]
        assert "=" not in body and base64.b64decode(body + "=" * (-len(body) % 4))

    run(scenario())


def test_devices_are_kept_in_the_store_and_a_lost_pickle_makes_a_new_one() -> None:
    from gateway.store import open_store
    from protocols.matrix.plugin import plugin
    from protocols.matrix.store import MatrixStore

    store = MatrixStore(open_store(":memory:", [plugin]))
    key = pickle_key("as-token")
    assert key == pickle_key("as-token") != pickle_key("other-token") and len(key) == 32
    first = load_device(store, "@rondpoint_p:hs.test", "RONDPOINT", key)
    save_device(store, first, key)
    text = store.device_pickle("@rondpoint_p:hs.test", "RONDPOINT")
    assert text is not None and first.curve25519 not in text  # the account is encrypted
    again = load_device(store, "@rondpoint_p:hs.test", "RONDPOINT", key)
    assert again.curve25519 == first.curve25519
    other = load_device(store, "@rondpoint_p:hs.test", "RONDPOINT", pickle_key("other-token"))
    assert other.curve25519 != first.curve25519


def test_a_wedged_session_is_started_anew_with_a_dummy_event() -> None:
    async def scenario() -> None:
        server = FakeKeyServer()
        ghost, anna, anna_device, ghost_device = await _two_devices(server)
        await anna.send_encrypted(server, "x.test", {ghost_device: {"n": 1}}, "t1")
        ghost.decrypt(server.inbox.pop())
        await ghost.send_encrypted(server, "x.test", {anna_device: {"n": 2}}, "t2")
        anna.decrypt(server.inbox.pop())
        ghost.sessions.clear()  # the ghost lost its sessions (an old pickle)
        await anna.send_encrypted(server, "x.test", {ghost_device: {"n": 3}}, "t3")
        with pytest.raises(OlmError, match="start anew"):
            ghost.decrypt(server.inbox.pop())
        assert await ghost.start_anew(server, anna_device, "t4")
        dummy = server.inbox.pop()
        assert dummy["content"]["ciphertext"][anna.curve25519]["type"] == 0
        assert anna.decrypt(dummy).type == "m.dummy"
        # Anna's newest session is the new one: her next message opens for the ghost
        await anna.send_encrypted(server, "x.test", {ghost_device: {"n": 4}}, "t5")
        assert ghost.decrypt(server.inbox.pop()).content == {"n": 4}

    run(scenario())


def test_mangled_ciphertexts_only_ever_raise_olm_error() -> None:
    import random

    async def scenario() -> None:
        server = FakeKeyServer()
        ghost, anna, anna_device, ghost_device = await _two_devices(server)
        events = []
        for n in range(3):
            await anna.send_encrypted(server, "x.test", {ghost_device: {"n": n}}, f"t{n}")
            events.append(server.inbox.pop())
        rng = random.Random(3)
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        for _ in range(300):
            event = json.loads(json.dumps(rng.choice(events)))
            mine = event["content"]["ciphertext"][ghost.curve25519]
            body = list(mine["body"])
            for _ in range(rng.randrange(1, 4)):
                body[rng.randrange(len(body))] = rng.choice(alphabet)
            mine["body"] = "".join(body[: rng.randrange(1, len(body) + 1)])
            mine["type"] = rng.choice([0, 1, mine["type"]])
            with contextlib.suppress(OlmError):
                ghost.decrypt(event)
        # the genuine messages still open afterwards
        assert [ghost.decrypt(e).content for e in events] == [{"n": 0}, {"n": 1}, {"n": 2}]

    run(scenario())
