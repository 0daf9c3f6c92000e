"""Megolm for the chat of an encrypted Matrix room (Matrix spec, "End-to-End Encryption",
m.megolm.v1.aes-sha2), with vodozemac doing the cryptography, on the ghosts' Olm devices
(protocols/matrix/olm.py).

`RoomChatEncryption`, one per linked encrypted room:

- members' room keys: an Olm-decrypted `m.room_key` to-device event (`take_room_key`) becomes an
  inbound group session of this room once the Olm sender key is proven to be one of the sender's
  devices (`OlmDevice.sender_device`); a key for another room is left alone, one for a session
  another device already gave is refused;
- members' messages: `decrypt` turns an `m.room.encrypted` room event into its inner event when
  the session is known, its sender is the one who shared the session, its room is this room and
  its message index was not seen in another event (replays refused). An event whose session is
  not known yet waits (at most `MAX_PENDING` events, `PENDING_SECONDS`) for its key, which
  releases it (`take_room_key` returns the events it decrypts);
- our messages: `encrypt` gives an `m.room.encrypted` content for a ghost's message with the
  ghost's own outbound group session, after sending its key (Olm, `m.room_key`) to every device of
  the room's joined members that has not had it. The session is replaced after
  `ROTATION_MESSAGES` messages or `ROTATION_SECONDS`, and when a device that had it is no longer
  one of the members' devices (someone left).

Inbound sessions are kept in memory, at most `MAX_SESSIONS` (oldest forgotten): the ghosts leave
the room when the link stops and members' clients make a new session when someone leaves, so a
gateway starting again receives new keys; outbound sessions are made anew as well.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import vodozemac

from protocols.matrix.olm import (
    MEGOLM_ALGORITHM,
    DecryptedEvent,
    MatrixRequests,
    OlmDevice,
    PeerDevice,
)

log = logging.getLogger(__name__)

ROOM_KEY_EVENT = "m.room_key"
MAX_SESSIONS = 500
MAX_PENDING = 100
PENDING_SECONDS = 60.0
MAX_SEEN_INDEXES = 10_000
ROTATION_MESSAGES = 100
ROTATION_SECONDS = 7 * 24 * 3600.0
MAX_CIPHERTEXT = 64 * 1024


class MegolmError(Exception):
    """A room key or an encrypted event that cannot be used; the text never holds key material."""


@dataclass
class _Inbound:
    session: vodozemac.InboundGroupSession
    sender: str
    sender_key: str
    device_id: str


@dataclass
class _Outbound:
    session: vodozemac.GroupSession = field(default_factory=vodozemac.GroupSession)
    created: float = field(default_factory=time.monotonic)
    shared_with: set[tuple[str, str]] = field(default_factory=set)


@dataclass
class _Pending:
    event: dict[str, Any]
    session_id: str
    arrived: float


class RoomChatEncryption:
    """The Megolm sessions of one encrypted room's chat; see the module docstring."""

    def __init__(self, client: MatrixRequests, room_id: str) -> None:
        self.client = client
        self.room_id = room_id
        self._inbound: OrderedDict[str, _Inbound] = OrderedDict()
        self._seen: OrderedDict[tuple[str, int], str] = OrderedDict()
        self._pending: deque[_Pending] = deque()
        self._outbound: dict[str, _Outbound] = {}
        self._sharing = asyncio.Lock()

    # members' keys and messages -----------------------------------------------------------

    async def take_room_key(self, device: OlmDevice, event: DecryptedEvent) -> list[dict[str, Any]]:
        """Takes in an Olm-decrypted to-device event received by our `device`: a room key of
        this room is kept; returns the waiting events it now decrypts. MegolmError when the key
        is refused; OlmError / MatrixError when its sender's device cannot be checked."""
        if event.type != ROOM_KEY_EVENT:
            return []
        content = event.content
        if content.get("algorithm") != MEGOLM_ALGORITHM:
            raise MegolmError(
                f"unsupported room key algorithm {str(content.get('algorithm'))[:80]!r}"
            )
        if content.get("room_id") != self.room_id:
            return []  # another room's key (another link's, or none of ours)
        session_id, session_key = content.get("session_id"), content.get("session_key")
        if not isinstance(session_id, str) or not isinstance(session_key, str):
            raise MegolmError("room key without session_id or session_key")
        try:
            session = vodozemac.InboundGroupSession(vodozemac.SessionKey(session_key))
        except (ValueError, TypeError) as error:
            raise MegolmError("the room key cannot be read") from error
        if session.session_id != session_id:
            raise MegolmError("the room key is not the session it names")
        sender = await device.sender_device(self.client, event)
        known = self._inbound.get(session_id)
        if known is not None:
            if known.sender_key != event.sender_key or known.sender != event.sender:
                raise MegolmError(f"session already given by another device than {event.sender}'s")
            if known.session.first_known_index <= session.first_known_index:
                return self._release(session_id)
        self._inbound[session_id] = _Inbound(
            session, event.sender, event.sender_key, sender.device_id
        )
        self._inbound.move_to_end(session_id)
        while len(self._inbound) > MAX_SESSIONS:
            self._inbound.popitem(last=False)
        return self._release(session_id)

    def decrypt(self, event: dict[str, Any], now: float | None = None) -> dict[str, Any] | None:
        """The inner event (`type`, `content`, with the outer `sender`, `event_id`, `room_id`,
        `origin_server_ts`) of an `m.room.encrypted` room event of this room; None when its
        session is not known yet (it waits for its key); MegolmError when it is refused."""
        content = event.get("content")
        if not isinstance(content, dict) or content.get("algorithm") != MEGOLM_ALGORITHM:
            raise MegolmError("not a Megolm-encrypted event")
        session_id, ciphertext = content.get("session_id"), content.get("ciphertext")
        if not isinstance(session_id, str) or not isinstance(ciphertext, str):
            raise MegolmError("encrypted event without session_id or ciphertext")
        if len(ciphertext) > MAX_CIPHERTEXT:
            raise MegolmError("ciphertext too large")
        if event.get("room_id") != self.room_id:
            raise MegolmError("event of another room")
        inbound = self._inbound.get(session_id)
        if inbound is None:
            self._wait(event, session_id, time.monotonic() if now is None else now)
            return None
        return self._decrypt(event, inbound, ciphertext)

    def _decrypt(self, event: dict[str, Any], inbound: _Inbound, ciphertext: str) -> dict[str, Any]:
        if event.get("sender") != inbound.sender:
            raise MegolmError("the event's sender is not the one who shared its session")
        try:
            decrypted = inbound.session.decrypt(vodozemac.MegolmMessage.from_base64(ciphertext))
        except (ValueError, TypeError) as error:
            raise MegolmError("the event does not decrypt with its session") from error
        event_id = str(event.get("event_id", ""))
        seen = (inbound.session.session_id, decrypted.message_index)
        if self._seen.setdefault(seen, event_id) != event_id:
            raise MegolmError("message index already used by another event (replay)")
        self._seen.move_to_end(seen)
        while len(self._seen) > MAX_SEEN_INDEXES:
            self._seen.popitem(last=False)
        try:
            payload = json.loads(decrypted.plaintext)
        except ValueError as error:
            raise MegolmError("the decrypted payload is not JSON") from error
        if not isinstance(payload, dict):
            raise MegolmError("the decrypted payload is not an object")
        if payload.get("room_id") != self.room_id:
            raise MegolmError("the decrypted payload is for another room")
        kind, inner = payload.get("type"), payload.get("content")
        if not isinstance(kind, str) or not isinstance(inner, dict):
            raise MegolmError("the decrypted payload lacks type or content")
        outer: dict[str, Any] = {
            key: event[key] for key in ("sender", "event_id", "origin_server_ts") if key in event
        }
        return {**outer, "room_id": self.room_id, "type": kind, "content": inner}

    def _wait(self, event: dict[str, Any], session_id: str, now: float) -> None:
        self._expire(now)
        if len(self._pending) >= MAX_PENDING:
            dropped = self._pending.popleft()
            log.debug(
                "encrypted event %s dropped: too many wait for their key",
                dropped.event.get("event_id"),
            )
        self._pending.append(_Pending(event, session_id, now))

    def _expire(self, now: float) -> None:
        while self._pending and now - self._pending[0].arrived > PENDING_SECONDS:
            dropped = self._pending.popleft()
            log.debug(
                "encrypted event %s dropped: its key did not come", dropped.event.get("event_id")
            )

    def _release(self, session_id: str) -> list[dict[str, Any]]:
        self._expire(time.monotonic())
        waiting = [p for p in self._pending if p.session_id == session_id]
        if not waiting:
            return []
        self._pending = deque(p for p in self._pending if p.session_id != session_id)
        released = []
        for pending in waiting:
            try:
                released.append(self.decrypt(pending.event))
            except MegolmError as error:
                log.info("encrypted event from %s refused: %s", pending.event.get("sender"), error)
        return [event for event in released if event is not None]

    # our messages -----------------------------------------------------------------------------

    async def encrypt(
        self,
        device: OlmDevice,
        members: list[str],
        event_type: str,
        content: dict[str, Any],
        now: float | None = None,
    ) -> dict[str, Any]:
        """The `m.room.encrypted` content of the ghost's (`device`'s) event, its session key sent
        first to the devices of `members` (the room's joined users, ours left out) that lack it.
        MatrixError when the homeserver fails."""
        async with self._sharing:  # one session per ghost, its key shared before it is used
            return await self._encrypt(device, members, event_type, content, now)

    async def _encrypt(
        self,
        device: OlmDevice,
        members: list[str],
        event_type: str,
        content: dict[str, Any],
        now: float | None,
    ) -> dict[str, Any]:
        now = time.monotonic() if now is None else now
        devices = await self._devices(device, members)
        outbound = self._outbound.get(device.user_id)
        if outbound is None or self._expired(outbound, devices, now):
            outbound = _Outbound(created=now)
            self._outbound[device.user_id] = outbound
        await self._share(
            device,
            outbound,
            [d for d in devices.values() if (d.user_id, d.device_id) not in outbound.shared_with],
        )
        payload = {"type": event_type, "content": content, "room_id": self.room_id}
        message = outbound.session.encrypt(json.dumps(payload).encode())
        return {
            "algorithm": MEGOLM_ALGORITHM,
            "sender_key": device.curve25519,
            "device_id": device.device_id,
            "session_id": outbound.session.session_id,
            "ciphertext": message.to_base64(),
        }

    def forget_ghost(self, user_id: str) -> None:
        """The ghost left: its outbound session is not used again."""
        self._outbound.pop(user_id, None)

    @staticmethod
    def _expired(
        outbound: _Outbound, devices: dict[tuple[str, str], PeerDevice], now: float
    ) -> bool:
        return (
            outbound.session.message_index >= ROTATION_MESSAGES
            or now - outbound.created >= ROTATION_SECONDS
            or not outbound.shared_with <= set(devices)
        )

    async def _devices(
        self, device: OlmDevice, members: list[str]
    ) -> dict[tuple[str, str], PeerDevice]:
        if not members:
            return {}
        found = await device.query_devices(self.client, sorted(set(members)))
        return {
            (peer.user_id, peer.device_id): peer
            for devices in found.values()
            for peer in devices.values()
        }

    async def _share(self, device: OlmDevice, outbound: _Outbound, peers: list[PeerDevice]) -> None:
        if not peers:
            return
        content = {
            "algorithm": MEGOLM_ALGORITHM,
            "room_id": self.room_id,
            "session_id": outbound.session.session_id,
            "session_key": outbound.session.session_key.to_base64(),
        }
        left_out = await device.send_encrypted(
            self.client, ROOM_KEY_EVENT, dict.fromkeys(peers, content), secrets.token_hex(12)
        )
        for peer in left_out:
            log.info(
                "no Olm session with %s %s: our room key not sent", peer.user_id, peer.device_id
            )
        outbound.shared_with |= {(p.user_id, p.device_id) for p in peers if p not in left_out}
