"""End-to-end encryption wired into the Matrix bridge: the LiveKit half's packet transforms
(protocols/livekit/bridge.py), the encrypted call's media (protocols/matrix/e2ee.py) and the link
in an encrypted room (protocols/matrix/link.py), on fakes (a key server, a homeserver, a router)."""

from __future__ import annotations

import asyncio
import base64
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.store import open_store
from protocols.livekit.bridge import BridgeSettings, LiveKitBridge, TransformedSink
from protocols.matrix.call_keys import CALL_KEYS_EVENT, CallEncryption, build_content
from protocols.matrix.e2ee import UNAVAILABLE, CallMedia, announcement, call_members
from protocols.matrix.frame_crypto import FrameCryptor, KeyRing
from protocols.matrix.link import MatrixLink
from protocols.matrix.membership import CALL_MEMBER, is_active
from protocols.matrix.olm import OlmDevice, pickle_key
from protocols.matrix.plugin import plugin
from protocols.matrix.rooms import hashed_identity
from protocols.matrix.store import MatrixStore
from tests.unit.matrix.fake_homeserver import FakeHomeserver
from tests.unit.matrix.link_fakes import (
    BOT,
    OPEN_CALLS,
    FakeBridge,
    FakeService,
    gateway_here,
    ghost_of,
    join_here,
    key_of,
    notices,
    until,
)
from tests.unit.matrix.test_olm import FakeKeyServer

ROOM = "!call:hs.test"
ANNA, ANNA_DEVICE = "@anna:hs.test", "ANNADEVICE"
ANNA_IDENTITY = f"{ANNA}:{ANNA_DEVICE}"
GHOST = "@rondpoint_bea:hs.test"
GHOST_IDENTITY = f"{GHOST}:RONDPOINT"
SSRC, RTX_SSRC = 0x1234, 0x5678


def rtp(sequence: int, payload: bytes, ssrc: int = SSRC, pt: int = 111) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, sequence, 960 * sequence, ssrc) + payload


class RecordingSink:
    def __init__(self) -> None:
        self.rtp: list[bytes] = []
        self.rtcp: list[bytes] = []

    def send_rtp(self, packet: bytes) -> None:
        self.rtp.append(packet)

    def send_rtcp(self, packet: bytes) -> None:
        self.rtcp.append(packet)


# --- the LiveKit half's transforms --------------------------------------------------------------


def test_a_transformed_sink_sends_only_its_stream_each_packet_transformed_once() -> None:
    sink = RecordingSink()
    transformed: list[bytes] = []

    def transform(packet: bytes) -> list[bytes]:
        transformed.append(packet)
        return [packet + b"!"]

    out = TransformedSink(sink, SSRC, transform)
    assert not hasattr(out, "egress")  # never taken over by the native fast path
    for sequence in (1, 2, 3):
        out.send_rtp(rtp(sequence, b"x"))
    out.send_rtp(rtp(9, b"rtx", ssrc=RTX_SSRC))  # another stream: never leaves
    out.send_rtp(rtp(2, b"x"))  # a retransmission: what was sent, not transformed again
    out.send_rtp(rtp(0xFFF0, b"old"))  # too old to have been kept: dropped
    out.send_rtcp(b"rtcp")
    assert len(transformed) == 3
    assert sink.rtp == [rtp(1, b"x!"), rtp(2, b"x!"), rtp(3, b"x!"), rtp(2, b"x!")]
    assert sink.rtcp == [b"rtcp"]
    # sequence numbers wrap
    out2 = TransformedSink(sink, SSRC, transform)
    sink.rtp.clear()
    out2.send_rtp(rtp(0xFFFF, b"a"))
    out2.send_rtp(rtp(0, b"b"))
    assert sink.rtp == [rtp(0xFFFF, b"a!"), rtp(0, b"b!")]


class _Transforms:
    encryption = 2

    def __init__(self) -> None:
        self.trailer = b""

    def incoming(self, identity: str, codec: str) -> Any:
        return lambda packet: [packet[:12] + packet[12:].upper()]

    def outgoing(self, identity: str, codec: str) -> Any:
        return None

    def set_sif_trailer(self, trailer: bytes) -> None:
        self.trailer = trailer


def test_incoming_media_packets_go_through_their_transform_and_rtx_is_dropped() -> None:
    received: list[tuple[str, bytes]] = []
    router = SimpleNamespace(
        on_rtp=lambda sid, packet: received.append((sid, packet)),
        speakers=SimpleNamespace(on_audio_level=lambda *a: None),
    )
    gateway = SimpleNamespace(relay=SimpleNamespace(router=lambda room_id: router))
    settings = BridgeSettings(
        "ws://127.0.0.1:1", "k", "s", "lk", "bridge", "t", 2, media=_Transforms()
    )
    bridge = LiveKitBridge(gateway, "here", settings, SimpleNamespace())  # type: ignore[arg-type]
    bridge._incoming["TR_a"] = (SSRC, settings.media.incoming("x", "opus"))  # type: ignore[union-attr]
    bridge._on_remote_rtp("TR_a", rtp(1, b"frame"))
    bridge._on_remote_rtp("TR_a", rtp(2, b"plain", ssrc=RTX_SSRC))
    bridge._on_remote_rtp("TR_other", rtp(1, b"refused track"))  # no transform: not bridged
    assert received == [("TR_a", rtp(1, b"FRAME"))]


# --- the encrypted call's media -----------------------------------------------------------------


def media_on(server: FakeKeyServer, told: list[str]) -> CallMedia:
    store = MatrixStore(open_store(":memory:", [plugin]))
    keys = CallEncryption(server, store, pickle_key("as-token"), ROOM, use_key_delay=0)
    return CallMedia(keys, told.append)


def test_members_are_read_from_call_memberships() -> None:
    members = {
        f"_{ANNA}_{ANNA_DEVICE}_m.call": ANNA,
        "not-a-membership-key": "@x:hs.test",
        f"_{ANNA}_OTHER_m.call": "@mallory:hs.test",  # names another user than its sender
    }
    assert call_members(members) == {(ANNA, ANNA_DEVICE)}
    assert announcement(2, "here") == (
        "Rondpoint bridges this call for 2 people from here; it decrypts media to do so"
    )


def test_call_media_decrypts_members_and_encrypts_ghosts_frames() -> None:
    async def scenario() -> None:
        server = FakeKeyServer()
        told: list[str] = []
        media = media_on(server, told)
        anna = OlmDevice(ANNA, ANNA_DEVICE)
        await anna.upload_keys(server)

        # A member's track arriving before her key: dropped, then opened once the key came.
        decrypt = media.incoming(ANNA_IDENTITY, "opus")
        assert decrypt is not None
        anna_frames = FrameCryptor(KeyRing())
        anna_key = bytes(range(16))
        anna_frames.keys.set_key(anna_key, 0)
        sealed = anna_frames.encrypt_frame(b"\xf8voice", "opus", False, SSRC, 960)
        assert decrypt(rtp(1, sealed)) == []

        # The ghost: nothing published before its key, then its key shared with Anna.
        assert media.outgoing(GHOST_IDENTITY, "opus") is None and not media.ready(GHOST)
        await media.add_ghost(GHOST)
        assert media.ready(GHOST)
        await media.members_changed({f"_{ANNA}_{ANNA_DEVICE}_m.call": ANNA})
        (to_anna,) = [e for e in server.inbox if e["to_user_id"] == ANNA]
        server.inbox.remove(to_anna)
        ghost_key = anna.decrypt(to_anna)
        assert ghost_key.type == CALL_KEYS_EVENT

        peer = (await anna.query_devices(server, [GHOST]))[GHOST]["RONDPOINT"]
        content = build_content(ROOM, ANNA_DEVICE, ANNA_IDENTITY, anna_key, 0)
        await anna.send_encrypted(server, CALL_KEYS_EVENT, {peer: content}, "t1")
        await media.on_to_device(server.inbox.pop())
        assert decrypt(rtp(2, sealed)) == [rtp(2, b"\xf8voice")]

        encrypt = media.outgoing(GHOST_IDENTITY, "opus")
        assert encrypt is not None
        (out,) = encrypt(rtp(3, b"\xf8ours"))
        opener = FrameCryptor(KeyRing())
        opener.keys.set_key(base64.b64decode(ghost_key.content["keys"]["key"]), 0)
        assert opener.decrypt_frame(out[12:], "opus", False) == b"\xf8ours"

        # A codec the frame encryption here does not do: not bridged, said once.
        assert media.incoming(ANNA_IDENTITY, "H264") is None
        assert media.outgoing(GHOST_IDENTITY, "H264") is None
        assert len(told) == 1 and told[0].startswith(UNAVAILABLE)

        media.set_sif_trailer(b"sif")
        cryptor = media.keys.rings.cryptor(ANNA_IDENTITY)
        assert cryptor is not None and cryptor.sif_trailer == b"sif"
        await media.close()

    asyncio.run(scenario())


# --- the link in an encrypted room --------------------------------------------------------------


class _Homeserver(FakeHomeserver):
    """The fake homeserver, its key endpoints those of a FakeKeyServer."""

    def __init__(self) -> None:
        super().__init__()
        self.keys = FakeKeyServer()

    async def request(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        if "/rooms/" in path:
            return await super().request(method, path, body, **kw)
        return await self.keys.request(method, path, body, **kw)


@pytest.fixture
async def linked(tmp_path: Path) -> AsyncIterator[tuple[MatrixLink, _Homeserver, FakeService]]:
    """A link to ROOM (Anna in it, calls open to everyone, not encrypted yet) with a fake
    LiveKit half, not started."""
    gateway = gateway_here(tmp_path)
    homeserver = _Homeserver()
    room = homeserver.room(ROOM, invited=(BOT,))
    room.joined.add(ANNA)
    homeserver._set_state(ROOM, "m.room.power_levels", "", dict(OPEN_CALLS), ANNA)
    service = FakeService(homeserver, MatrixStore(gateway.store))
    link = MatrixLink(
        gateway,
        service,  # type: ignore[arg-type]
        "here",
        ROOM,
        bridge_factory=FakeBridge,  # type: ignore[arg-type]
    )
    try:
        yield link, homeserver, service
    finally:
        await link.stop()
        service.consumer.cancel()


def encrypt_room(homeserver: FakeHomeserver) -> None:
    homeserver._set_state(ROOM, "m.room.encryption", "", {"algorithm": "m.megolm"}, ANNA)


async def test_an_encrypted_rooms_link_gives_ghosts_keys_takes_members_in_and_announces(
    linked: tuple[MatrixLink, _Homeserver, FakeService],
) -> None:
    link, homeserver, service = linked
    keys = homeserver.keys
    encrypt_room(homeserver)
    anna = OlmDevice(ANNA, ANNA_DEVICE)
    await anna.upload_keys(keys)
    await link.start()
    bea = join_here(link.gateway, "Bea")
    ghost = ghost_of(bea)
    await until(lambda: is_active(homeserver.content(ROOM, CALL_MEMBER, key_of(ghost)) or {}))
    assert (ghost, "RONDPOINT") in keys.device_keys  # its device came before its membership
    assert link.media is not None and link.media.ready(ghost)
    participant = link.gateway.rooms.get("here").participants[bea.id]
    assert FakeBridge.made[-1].policy.wants_mirror(participant)
    assert FakeBridge.made[-1].settings.media is link.media
    await until(lambda: any("decrypts media" in n for n in notices(homeserver)))

    # Anna joins the call: the ghost sends her its key; hers, sent to the ghost, comes in.
    homeserver._set_state(
        ROOM, CALL_MEMBER, f"_{ANNA}_{ANNA_DEVICE}_m.call", {"application": "m.call",
        "call_id": "", "scope": "m.room", "device_id": ANNA_DEVICE, "expires": 14400000,
        "membershipID": "anna-member", "focus_active": {"type": "livekit"},
        "foci_preferred": []}, ANNA,
    )  # fmt: skip
    await until(lambda: any(e["to_user_id"] == ANNA for e in keys.inbox))
    peer = (await anna.query_devices(keys, [ghost]))[ghost]["RONDPOINT"]
    content = build_content(ROOM, ANNA_DEVICE, ANNA_IDENTITY, bytes(16), 0)
    await anna.send_encrypted(keys, CALL_KEYS_EVENT, {peer: content}, "t1")
    (event,) = [e for e in keys.inbox if e["to_user_id"] == ghost]
    for handler in service.to_device_listeners:
        await handler({**event, "to_user_id": "@someone_else:hs.test"})  # not this link's
    assert link.media.keys.rings.cryptor(ANNA_IDENTITY) is None
    for handler in service.to_device_listeners:
        await handler(event)
    assert link.media.keys.rings.cryptor(ANNA_IDENTITY) is not None
    # her track, under the hashed identity /get_token gives her, opens with her key
    hashed = hashed_identity(ANNA, ANNA_DEVICE, "anna-member")
    assert link.member_identity(hashed) == ANNA_IDENTITY
    decrypt = link.media.incoming(hashed, "opus")
    assert decrypt is not None
    frames = FrameCryptor(KeyRing())
    frames.keys.set_key(bytes(16), 0)
    sealed = frames.encrypt_frame(b"\xf8hi", "opus", False, SSRC, 960)
    assert decrypt(rtp(5, sealed)) == [rtp(5, b"\xf8hi")]
    assert sum("decrypts media" in n for n in notices(homeserver)) == 1


async def test_a_room_encrypted_mid_call_is_entered_again_with_encryption(
    linked: tuple[MatrixLink, _Homeserver, FakeService],
) -> None:
    link, homeserver, _ = linked
    await link.start()
    bea = join_here(link.gateway, "Bea")
    ghost = ghost_of(bea)
    await until(lambda: is_active(homeserver.content(ROOM, CALL_MEMBER, key_of(ghost)) or {}))
    assert link.media is None and FakeBridge.made[-1].settings.media is None
    encrypt_room(homeserver)
    await until(lambda: link.media is not None and link.media.ready(ghost))
    assert FakeBridge.made[-1].settings.media is link.media
    await until(lambda: is_active(homeserver.content(ROOM, CALL_MEMBER, key_of(ghost)) or {}))
    assert (ghost, "RONDPOINT") in homeserver.keys.device_keys
