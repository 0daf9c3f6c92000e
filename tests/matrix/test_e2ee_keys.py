"""MatrixRTC media keys between a ghost's Olm device and matrix-js-sdk's Rust crypto, through a
real Synapse.

Synapse (tests/synapse.sh) runs with an application service whose transactions this test
receives itself (to-device events of MSC2409 included), since the gateway does not yet route them
to an OlmDevice. The ghost is registered as the application service, its device RONDPOINT is
created by an `m.login.application_service` login (olm.ensure_device), and its keys are uploaded
with MSC3202 device masquerading (protocols/matrix/olm.py through matrix/client.MatrixClient).

Anna runs matrix-js-sdk 43 with its Rust crypto in Node (tests/matrix/js/e2ee_keys.mjs): her
`ToDeviceKeyTransport` (the key transport of js-sdk's RTCEncryptionManager) sends her call key
Olm-encrypted to the ghost's device; the application service receives it, our OlmDevice decrypts
it, checks her device's keys and reads her key. The ghost sends its key back on the session Anna
opened, and to Bruno, another matrix-js-sdk user it has no session with (a one-time key claimed);
both their transports accept it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.store import open_store
from protocols.matrix.call_keys import (
    CALL_KEYS_EVENT,
    CallEncryption,
    CallKeyRings,
    OwnCallKey,
    parse_content,
)
from protocols.matrix.client import MatrixClient
from protocols.matrix.frame_crypto import FrameCryptor, KeyRing
from protocols.matrix.olm import OlmDevice, ensure_device
from protocols.matrix.plugin import plugin
from protocols.matrix.store import MatrixStore
from tests.gateway_process import free_port
from tests.matrix.jsclient import JsClient, js_client
from tests.matrix.synapse import SERVER_NAME, RunningSynapse, running_synapse

pytestmark = [pytest.mark.interop, pytest.mark.timeout(240)]

GHOST_LOCALPART = "rondpoint_p__e2ee"
GHOST = f"@{GHOST_LOCALPART}:{SERVER_NAME}"
DEVICE = "RONDPOINT"
PICKLE_KEY = secrets.token_bytes(32)


class ToDeviceInbox:
    """The application service's transactions endpoint, keeping the to-device events."""

    def __init__(self, hs_token: str) -> None:
        self.hs_token = hs_token
        self.events: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()

    async def transaction(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.hs_token}":
            return web.json_response({"errcode": "M_FORBIDDEN", "error": "no"}, status=403)
        body = await request.json()
        found = body.get("de.sorunome.msc2409.to_device") or body.get("to_device") or []
        self.events.extend(found)
        if found:
            self.arrived.set()
        return web.json_response({})

    async def ok(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def wait(self, event_type: str, timeout: float = 30.0) -> dict[str, Any]:
        async def first() -> dict[str, Any]:
            while True:
                for event in self.events:
                    if event.get("type") == event_type and event.get("to_device_id") == DEVICE:
                        self.events.remove(event)
                        return event
                self.arrived.clear()
                await self.arrived.wait()

        return await asyncio.wait_for(first(), timeout)


@contextlib.asynccontextmanager
async def appservice(inbox: ToDeviceInbox, port: int) -> AsyncIterator[None]:
    app = web.Application()
    for prefix in ("/_matrix/app/v1", ""):
        app.router.add_put(prefix + "/transactions/{txn}", inbox.transaction)
        app.router.add_get(prefix + "/users/{user}", inbox.ok)
        app.router.add_post(prefix + "/ping", inbox.ok)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield
    finally:
        await runner.cleanup()


def registration(path: Path, port: int, as_token: str, hs_token: str) -> Path:
    server = SERVER_NAME.replace(".", r"\.")
    path.write_text(
        "id: e2ee-test\n"
        f"url: http://127.0.0.1:{port}\n"
        f"as_token: {as_token}\n"
        f"hs_token: {hs_token}\n"
        "sender_localpart: e2eebot\n"
        "rate_limited: false\n"
        "receive_ephemeral: true\n"
        "de.sorunome.msc2409.push_ephemeral: true\n"
        "org.matrix.msc3202: true\n"
        "namespaces:\n"
        f"  users: [{{exclusive: true, regex: '@rondpoint_.*:{server}'}}]\n"
        "  aliases: []\n"
        "  rooms: []\n"
    )
    return path


async def js_user(js: JsClient, user: Any, room_id: str) -> dict[str, Any]:
    keys: dict[str, Any] = await js.command(
        "login",
        timeout=60,
        homeserver_url=user.homeserver_url,
        user_id=user.user_id,
        access_token=user.access_token,
        device_id=user.device_id,
    )
    await js.command("listen", room_id=room_id, member_id=f"{user.user_id}:{user.device_id}")
    return keys


async def send_key_to_ghost(js: JsClient, user: Any, room_id: str) -> bytes:
    """USER sends a fresh media key (index 0) to the ghost's device through matrix-js-sdk's
    MatrixRTC key transport; the key."""
    key = secrets.token_bytes(16)
    await js.command(
        "send_key",
        timeout=60,
        room_id=room_id,
        member_id=f"{user.user_id}:{user.device_id}",
        key=base64.b64encode(key).decode(),
        index=0,
        targets=[{"user_id": GHOST, "device_id": DEVICE}],
    )
    return key


@contextlib.asynccontextmanager
async def homeserver(
    tmp_path: Path, synapse_python: Path
) -> AsyncIterator[tuple[RunningSynapse, MatrixClient, ToDeviceInbox]]:
    """Synapse with our test application service registered, its client, its to-device inbox."""
    as_token, hs_token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    port = free_port()
    inbox = ToDeviceInbox(hs_token)
    reg = registration(tmp_path / "registration.yaml", port, as_token, hs_token)
    async with appservice(inbox, port), contextlib.AsyncExitStack() as stack:
        synapse = await asyncio.to_thread(
            stack.enter_context, running_synapse(tmp_path, synapse_python, app_service_files=[reg])
        )
        client = MatrixClient(synapse.url, as_token, f"@e2eebot:{SERVER_NAME}")
        stack.push_async_callback(client.close)
        yield synapse, client, inbox


async def test_call_keys_both_ways_with_matrix_js_sdk(synapse_python: Path, tmp_path: Path) -> None:
    async with homeserver(tmp_path, synapse_python) as (synapse, client, inbox):
        # The ghost, its device (an application-service login creates it) and its keys.
        await client.register(GHOST_LOCALPART)
        await ensure_device(client, GHOST, DEVICE)
        await ensure_device(client, GHOST, DEVICE)  # known now: no second login
        devices = await client.request("GET", "/_matrix/client/v3/devices", as_user=GHOST)
        assert [d["device_id"] for d in devices["devices"]] == [DEVICE]
        ghost = OlmDevice(GHOST, DEVICE)
        assert await ghost.upload_keys(client) == 25
        # the device survives a restart of ours: the pickle holds account and sessions
        ghost = OlmDevice.from_pickle(GHOST, DEVICE, ghost.pickle(PICKLE_KEY), PICKLE_KEY)

        anna = await synapse.register_user("anna", "anna-password")
        bruno = await synapse.register_user("bruno", "bruno-password")
        room = await anna.create_room("E2EE call", encrypted=True, invite=[GHOST, bruno.user_id])
        await client.join(room, as_user=GHOST)

        async with (
            js_client(tmp_path / "anna-js.log", "e2ee_keys.mjs") as anna_js,
            js_client(tmp_path / "bruno-js.log", "e2ee_keys.mjs") as bruno_js,
        ):
            anna_keys = await js_user(anna_js, anna, room)
            await js_user(bruno_js, bruno, room)
            # Anna's crypto sees the ghost's device with the keys we uploaded as it
            seen = await anna_js.command("devices", user_id=GHOST)
            assert seen == [
                {"device_id": DEVICE, "curve25519": ghost.curve25519, "ed25519": ghost.ed25519}
            ]

            # Anna -> ghost, through matrix-js-sdk's MatrixRTC key transport.
            anna_key = await send_key_to_ghost(anna_js, anna, room)
            event = await inbox.wait("m.room.encrypted")
            assert event["sender"] == anna.user_id
            decrypted = ghost.decrypt(event)
            assert decrypted.type == CALL_KEYS_EVENT
            device = await ghost.sender_device(client, decrypted)
            assert (device.device_id, device.curve25519) == (
                anna.device_id,
                anna_keys["curve25519"],
            )
            key = parse_content(decrypted.sender, decrypted.content, room)
            assert (key.key, key.index, key.identity) == (
                anna_key,
                0,
                f"{anna.user_id}:{anna.device_id}",
            )
            rings = CallKeyRings()
            assert rings.add(key) == f"{anna.user_id}:{anna.device_id}"
            # Anna's session used one of the ghost's one-time keys: topped up again
            assert ghost.one_time_keys_used == 1
            assert await ghost.upload_keys(client) == 25
            # and the session outlives a restart of ours
            ghost = OlmDevice.from_pickle(GHOST, DEVICE, ghost.pickle(PICKLE_KEY), PICKLE_KEY)

            # ghost -> Anna (on her session) and Bruno (a session we open).
            own = OwnCallKey(room, DEVICE, f"{GHOST}:{DEVICE}")
            anna_device = (await ghost.query_devices(client, [anna.user_id]))[anna.user_id][
                anna.device_id
            ]
            bruno_device = (await ghost.query_devices(client, [bruno.user_id]))[bruno.user_id][
                bruno.device_id
            ]
            left_out = await ghost.send_encrypted(
                client,
                CALL_KEYS_EVENT,
                {anna_device: own.content(), bruno_device: own.content()},
                secrets.token_hex(8),
            )
            assert left_out == []
            expected = {
                "user_id": GHOST,
                "device_id": DEVICE,
                "member_id": f"{GHOST}:{DEVICE}",
                "key": base64.b64encode(own.key).decode(),
                "index": 0,
            }
            for js in (anna_js, bruno_js):
                got = await js.wait_event("key", timeout=30)
                assert {k: got[k] for k in expected} == expected

            # A rotated key goes out as a normal Olm message now that both sessions work.
            own.rotate()
            await ghost.send_encrypted(
                client, CALL_KEYS_EVENT, {anna_device: own.content()}, secrets.token_hex(8)
            )
            got = await anna_js.wait_event("key", lambda e: e["index"] == 1, timeout=30)
            assert got["key"] == base64.b64encode(own.key).decode()


async def test_call_encryption_with_matrix_js_sdk(synapse_python: Path, tmp_path: Path) -> None:
    """CallEncryption (what the link is to run) against the same peers: the ghost's key reaches
    Anna when she is in the call, hers reaches the ring that decrypts her frames, Bruno joining
    soon after gets the same key, and Anna leaving makes a new one (index 1) for Bruno."""
    async with homeserver(tmp_path, synapse_python) as (synapse, client, inbox):
        await client.register(GHOST_LOCALPART)
        store = MatrixStore(open_store(":memory:", [plugin]))
        encryption = CallEncryption(client, store, PICKLE_KEY, "", use_key_delay=0)
        anna = await synapse.register_user("anna", "anna-password")
        bruno = await synapse.register_user("bruno", "bruno-password")
        room = await anna.create_room("E2EE call", encrypted=True, invite=[GHOST, bruno.user_id])
        encryption.room_id = room
        await client.join(room, as_user=GHOST)
        ghost_cryptor = await encryption.add_ghost(GHOST)

        async with (
            js_client(tmp_path / "anna-js.log", "e2ee_keys.mjs") as anna_js,
            js_client(tmp_path / "bruno-js.log", "e2ee_keys.mjs") as bruno_js,
        ):
            await js_user(anna_js, anna, room)
            await js_user(bruno_js, bruno, room)
            anna_member = (anna.user_id, anna.device_id)
            bruno_member = (bruno.user_id, bruno.device_id)
            await encryption.members_changed({anna_member})
            got = await anna_js.wait_event("key", timeout=30)
            first = base64.b64decode(got["key"])
            assert (got["user_id"], got["device_id"], got["index"]) == (GHOST, DEVICE, 0)
            opener = FrameCryptor(KeyRing())
            opener.keys.set_key(first, 0)
            sealed = ghost_cryptor.encrypt_frame(b"\xf8ghost", "opus", False, 1, 960)
            assert opener.decrypt_frame(sealed, "opus", False) == b"\xf8ghost"

            anna_key = await send_key_to_ghost(anna_js, anna, room)
            key = await encryption.on_to_device(await inbox.wait("m.room.encrypted"))
            assert key is not None and key.key == anna_key
            anna_frames = FrameCryptor(KeyRing())
            anna_frames.keys.set_key(anna_key, 0)
            ring = encryption.rings.cryptor(f"{anna.user_id}:{anna.device_id}")
            assert ring is not None
            frame = anna_frames.encrypt_frame(b"\xf8anna", "opus", False, 2, 960)
            assert ring.decrypt_frame(frame, "opus", False) == b"\xf8anna"

            await encryption.members_changed({anna_member, bruno_member})
            got = await bruno_js.wait_event("key", timeout=30)
            assert base64.b64decode(got["key"]) == first and got["index"] == 0
            await encryption.members_changed({bruno_member})
            got = await bruno_js.wait_event("key", lambda e: e["index"] == 1, timeout=30)
            assert base64.b64decode(got["key"]) != first
            assert store.device_pickle(GHOST, DEVICE) is not None
            await encryption.close()
