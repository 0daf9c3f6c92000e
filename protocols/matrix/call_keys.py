"""MatrixRTC media keys: the `io.element.call.encryption_keys` to-device events Element Call's
members send each other (Olm-encrypted), as matrix-js-sdk 43 builds and checks them
(src/matrixrtc/ToDeviceKeyTransport.ts, RTCEncryptionManager.ts), the key rings they feed, and
`CallEncryption`, which runs it all for the ghosts of one room's call.

Content: `{"keys": {"index": 0..255, "key": base64}, "room_id", "member": {"id": membershipID,
"claimed_device_id"}, "session": {"call_id": "", "application": "m.call", "scope": "m.room"},
"sent_ts": ms}`. A key belongs to the LiveKit participant `{sender}:{claimed_device_id}` (the
identity of a legacy session membership); the sender is the Olm-authenticated one. A member's key
is 16 random bytes; a new key takes the next index (mod 256): matrix-js-sdk rotates when a member
leaves (or joins after the key is 10 s old) and starts using the new key 1 s after sending it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.tasks import TaskSet
from protocols.matrix.client import MatrixError
from protocols.matrix.frame_crypto import KEY_RING_SIZE, FrameCryptor, KeyRing
from protocols.matrix.olm import (
    DecryptedEvent,
    DevicePickles,
    MatrixRequests,
    OlmDevice,
    OlmError,
    ensure_device,
    load_device,
    save_device,
)

log = logging.getLogger(__name__)

CALL_KEYS_EVENT = "io.element.call.encryption_keys"
KEY_BYTES = 16
MAX_KEY_BYTES = 128
SESSION = {"call_id": "", "application": "m.call", "scope": "m.room"}


class CallKeyError(ValueError):
    """A call key event that matrix-js-sdk would not accept either."""


@dataclass(frozen=True)
class CallKey:
    """One member's media key at one index."""

    user_id: str
    device_id: str
    member_id: str
    room_id: str
    index: int
    key: bytes
    sent_ts: int | None = None

    @property
    def identity(self) -> str:
        """The LiveKit participant whose frames this key decrypts."""
        return f"{self.user_id}:{self.device_id}"


def new_key() -> bytes:
    """A fresh media key, as matrix-js-sdk makes them."""
    return secrets.token_bytes(KEY_BYTES)


def build_content(
    room_id: str, device_id: str, member_id: str, key: bytes, index: int, now_ms: int | None = None
) -> dict[str, Any]:
    """The event content our device sends its key in (ToDeviceKeyTransport.sendKey)."""
    if not 0 <= index < KEY_RING_SIZE:
        raise CallKeyError("key index out of range")
    return {
        "keys": {"index": index, "key": base64.b64encode(key).decode()},
        "room_id": room_id,
        "member": {"claimed_device_id": device_id, "id": member_id},
        "session": dict(SESSION),
        "sent_ts": int(time.time() * 1000) if now_ms is None else now_ms,
    }


def _decode_key(text: str) -> bytes:
    text = text.replace("-", "+").replace("_", "/")  # js-sdk's decodeBase64 takes base64url too
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as error:
        raise CallKeyError("key is not base64") from error


def parse_content(sender: str, content: Any, room_id: str | None = None) -> CallKey:
    """The key `sender` sent in `content`; CallKeyError when matrix-js-sdk would drop it (and
    when its index or size is out of range, or it is for another room than `room_id`)."""
    if not isinstance(content, dict):
        raise CallKeyError("content is not an object")
    event_room = content.get("room_id")
    if not isinstance(event_room, str) or not event_room:
        raise CallKeyError("no room_id")
    if room_id is not None and event_room != room_id:
        raise CallKeyError("key for another room")
    keys = content.get("keys")
    if not isinstance(keys, dict) or not isinstance(keys.get("key"), str) or not keys["key"]:
        raise CallKeyError("missing keys field")
    index = keys.get("index")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < KEY_RING_SIZE:
        raise CallKeyError("key index missing or out of range")
    member = content.get("member")
    if not isinstance(member, dict):
        raise CallKeyError("missing member")
    device_id = member.get("claimed_device_id")
    if not isinstance(device_id, str) or not device_id:
        raise CallKeyError("missing claimed_device_id")
    key = _decode_key(keys["key"])
    if not 0 < len(key) <= MAX_KEY_BYTES:
        raise CallKeyError("key size out of range")
    member_id = member.get("id")
    if not isinstance(member_id, str) or not member_id:
        member_id = f"{sender}:{device_id}"
    sent_ts = content.get("sent_ts")
    return CallKey(
        sender,
        device_id,
        member_id,
        event_room,
        index,
        key,
        sent_ts if isinstance(sent_ts, int) and not isinstance(sent_ts, bool) else None,
    )


@dataclass
class CallKeyRings:
    """The members' media keys of one call, by LiveKit identity, each ring ready to decrypt
    frames (`cryptor`). A member's key replaces the one it had at the same index."""

    sif_trailer: bytes = b""
    _cryptors: dict[str, FrameCryptor] = field(default_factory=dict)

    def add(self, key: CallKey) -> str:
        """Takes `key` in; returns the LiveKit identity it is for."""
        self.cryptor_for(key.identity).keys.set_key(key.key, key.index)
        return key.identity

    def cryptor(self, identity: str) -> FrameCryptor | None:
        """The identity's FrameCryptor once a key of it came in."""
        return self._cryptors.get(identity)

    def cryptor_for(self, identity: str) -> FrameCryptor:
        """The identity's FrameCryptor, made (keyless: its frames are dropped until its key
        comes in) when there is none yet; for a track that arrives before its member's key."""
        cryptor = self._cryptors.get(identity)
        if cryptor is None:
            cryptor = FrameCryptor(KeyRing(), sif_trailer=self.sif_trailer)
            self._cryptors[identity] = cryptor
        return cryptor

    def identities(self) -> list[str]:
        return list(self._cryptors)

    def forget(self, identity: str) -> None:
        self._cryptors.pop(identity, None)

    def set_sif_trailer(self, trailer: bytes) -> None:
        self.sif_trailer = trailer
        for cryptor in self._cryptors.values():
            cryptor.sif_trailer = trailer


@dataclass
class OwnCallKey:
    """The media key one of our ghost devices encrypts with, and its rotation (next index)."""

    room_id: str
    device_id: str
    member_id: str
    key: bytes = field(default_factory=new_key)
    index: int = 0

    def rotate(self) -> None:
        self.key = new_key()
        self.index = (self.index + 1) % KEY_RING_SIZE

    def content(self, now_ms: int | None = None) -> dict[str, Any]:
        return build_content(
            self.room_id, self.device_id, self.member_id, self.key, self.index, now_ms
        )


@dataclass
class _Ghost:
    device: OlmDevice
    own: OwnCallKey
    cryptor: FrameCryptor
    created: float
    shared_with: set[tuple[str, str]] = field(default_factory=set)


class CallEncryption:
    """The end-to-end encryption of one Matrix room's call, for the ghosts in it.

    - `add_ghost`: the ghost's Olm device (created at the homeserver when missing, loaded from
      or saved to the store, keys uploaded) and its media key; returns the FrameCryptor that
      encrypts the ghost's frames.
    - `on_to_device`: a to-device event for one of our ghosts' devices: decrypted, the sender's
      device checked, a call key for this room taken into `rings` (the members' keys, by
      LiveKit identity, that decrypt their frames).
    - `members_changed`: the call's other members (user, device) as they are now; as
      matrix-js-sdk's RTCEncryptionManager does, a ghost sends its key to new members (or, when
      its key is older than `rotation_grace` seconds, makes a new one for everyone), makes a new
      key for everyone when a member left, and encrypts with a new key `use_key_delay` seconds
      after sending it.
    Failures (homeserver, Olm, malformed keys) are logged, never raised.
    """

    def __init__(
        self,
        client: MatrixRequests,
        store: DevicePickles,
        pickle_key: bytes,
        room_id: str,
        *,
        device_id: str = "RONDPOINT",
        use_key_delay: float = 1.0,
        rotation_grace: float = 10.0,
    ) -> None:
        self.client = client
        self.store = store
        self.pickle_key = pickle_key
        self.room_id = room_id
        self.device_id = device_id
        self.use_key_delay = use_key_delay
        self.rotation_grace = rotation_grace
        self.rings = CallKeyRings()
        self.members: set[tuple[str, str]] = set()
        self._ghosts: dict[str, _Ghost] = {}
        self._tasks = TaskSet()
        self.on_decrypted: Callable[[OlmDevice, DecryptedEvent], Awaitable[None]] | None = None
        """Gets the other Olm-decrypted to-device events of our ghosts' devices (room keys)."""

    async def add_ghost(self, user_id: str) -> FrameCryptor:
        ghost = self._ghosts.get(user_id)
        if ghost is not None:
            return ghost.cryptor
        await ensure_device(self.client, user_id, self.device_id)
        device = load_device(self.store, user_id, self.device_id, self.pickle_key)
        try:
            await device.upload_keys(self.client)
        finally:
            save_device(self.store, device, self.pickle_key)
        own = OwnCallKey(self.room_id, self.device_id, f"{user_id}:{self.device_id}")
        cryptor = FrameCryptor(KeyRing())
        cryptor.keys.set_key(own.key, own.index)
        ghost = _Ghost(device, own, cryptor, time.monotonic())
        self._ghosts[user_id] = ghost
        await self._share(ghost, self.members)
        return cryptor

    def remove_ghost(self, user_id: str) -> None:
        self._ghosts.pop(user_id, None)

    def device(self, user_id: str) -> OlmDevice | None:
        """A ghost's Olm device, once added."""
        ghost = self._ghosts.get(user_id)
        return ghost.device if ghost else None

    def cryptor(self, user_id: str) -> FrameCryptor | None:
        """The FrameCryptor of a ghost's own frames."""
        ghost = self._ghosts.get(user_id)
        return ghost.cryptor if ghost else None

    async def on_to_device(self, event: dict[str, Any]) -> CallKey | None:
        """Takes in a to-device event of the application service's transactions; the call key
        it brought for this room, if any."""
        ghost = self._ghosts.get(str(event.get("to_user_id")))
        if ghost is None or event.get("to_device_id") != self.device_id:
            return None
        if event.get("type") != "m.room.encrypted":
            if event.get("type") == CALL_KEYS_EVENT:
                log.info("ignored a call key sent in clear by %s", event.get("sender"))
            return None
        device = ghost.device
        try:
            decrypted = device.decrypt(event)
        except OlmError as error:
            log.info("to-device event from %s not decrypted: %s", event.get("sender"), error)
            return None
        finally:
            save_device(self.store, device, self.pickle_key)
        if decrypted.type != CALL_KEYS_EVENT:
            if self.on_decrypted is not None:
                await self.on_decrypted(device, decrypted)
            try:
                await self._top_up(device)
            except MatrixError as error:
                log.info("one-time keys of %s not topped up: %s", device.user_id, error)
            return None
        try:
            sender = await device.sender_device(self.client, decrypted)
            key = parse_content(decrypted.sender, decrypted.content, self.room_id)
            await self._top_up(device)
        except (OlmError, CallKeyError, MatrixError) as error:
            log.info("call key from %s refused: %s", decrypted.sender, error)
            return None
        if key.device_id != sender.device_id:
            log.info("call key from %s names another device than its own", decrypted.sender)
            return None
        self.rings.add(key)
        return key

    async def _top_up(self, device: OlmDevice) -> None:
        if device.one_time_keys_used:
            device.one_time_keys_used = 0
            await device.upload_keys(self.client)
            save_device(self.store, device, self.pickle_key)

    async def members_changed(self, members: set[tuple[str, str]]) -> None:
        """The call's other members (user id, device id) now; shares and rotates our keys."""
        members = {m for m in members if m[0] not in self._ghosts}
        self.members = members
        for ghost in list(self._ghosts.values()):
            left = ghost.shared_with - members
            joined = members - ghost.shared_with
            ghost.shared_with &= members
            if left or (joined and time.monotonic() - ghost.created >= self.rotation_grace):
                self._rotate(ghost)
                await self._share(ghost, members)
            elif joined:
                await self._share(ghost, joined)

    def _rotate(self, ghost: _Ghost) -> None:
        ghost.own.rotate()
        ghost.created = time.monotonic()
        ghost.shared_with = set()
        ghost.cryptor.keys.set_key(ghost.own.key, ghost.own.index, make_current=False)
        index = ghost.own.index

        async def use_later() -> None:
            await asyncio.sleep(self.use_key_delay)
            if ghost.own.index == index:
                ghost.cryptor.keys.current_index = index

        self._tasks.spawn(use_later())

    async def _share(self, ghost: _Ghost, targets: set[tuple[str, str]]) -> None:
        if not targets:
            return
        device = ghost.device
        try:
            known = await device.query_devices(self.client, sorted({u for u, _ in targets}))
            peers = {}
            for user_id, device_id in targets:
                peer = known.get(user_id, {}).get(device_id)
                if peer is None:
                    log.info("no keys for device %s of %s: our key not sent", device_id, user_id)
                    continue
                peers[peer] = ghost.own.content()
            left_out = await device.send_encrypted(
                self.client, CALL_KEYS_EVENT, peers, secrets.token_hex(12)
            )
        except MatrixError as error:
            log.warning("sending call keys of %s failed: %s", device.user_id, error)
            return
        finally:
            save_device(self.store, device, self.pickle_key)
        sent = {(p.user_id, p.device_id) for p in peers if p not in left_out}
        ghost.shared_with |= sent
        for peer in left_out:
            log.info("no Olm session with %s %s: our key not sent", peer.user_id, peer.device_id)

    async def close(self) -> None:
        await self._tasks.cancel()
