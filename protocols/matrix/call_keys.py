"""MatrixRTC media keys: the `io.element.call.encryption_keys` to-device events Element Call's
members send each other (Olm-encrypted), as matrix-js-sdk 43 builds and checks them
(src/matrixrtc/ToDeviceKeyTransport.ts, RTCEncryptionManager.ts), and the key rings they feed.

Content: `{"keys": {"index": 0..255, "key": base64}, "room_id", "member": {"id": membershipID,
"claimed_device_id"}, "session": {"call_id": "", "application": "m.call", "scope": "m.room"},
"sent_ts": ms}`. A key belongs to the LiveKit participant `{sender}:{claimed_device_id}` (the
identity of a legacy session membership); the sender is the Olm-authenticated one. A member's key
is 16 random bytes; a new key takes the next index (mod 256): matrix-js-sdk rotates when a member
leaves (or joins after the key is 10 s old) and starts using the new key 1 s after sending it.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from protocols.matrix.frame_crypto import KEY_RING_SIZE, FrameCryptor, KeyRing

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
        cryptor = self._cryptors.get(key.identity)
        if cryptor is None:
            cryptor = FrameCryptor(KeyRing(), sif_trailer=self.sif_trailer)
            self._cryptors[key.identity] = cryptor
        cryptor.keys.set_key(key.key, key.index)
        return key.identity

    def cryptor(self, identity: str) -> FrameCryptor | None:
        return self._cryptors.get(identity)

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
