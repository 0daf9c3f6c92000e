"""The end-to-end encrypted media of one encrypted Matrix room's call, as the bridge carries it.

`CallMedia` joins the building blocks (call_keys.CallEncryption: the ghosts' Olm devices and
media keys, the members' keys by LiveKit identity; frame_crypto: LiveKit's frame format) to the
LiveKit half (protocols/livekit/bridge.py's ``MediaTransforms``):

- a remote member's track is decrypted with the key ring of its member, ``{user}:{device}``
  (its LiveKit identity, or what ``member_identity`` says a hashed identity stands for; frames
  are dropped until the member's key arrives);
- a ghost's track is encrypted with the ghost's own key (``{ghost}:RONDPOINT``), which the
  ghost sends every member of the call over Olm (and rotates as matrix-js-sdk does);
- a codec other than Opus or VP8 cannot be encrypted or decrypted here: its track is not
  bridged and the room is told once (``on_unavailable``).

The link feeds it: each ghost before its membership (`add_ghost`), the to-device events for its
ghosts (`on_to_device`), the call's members after every change (`members_changed`), LiveKit's
SIF trailer (`set_sif_trailer`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from livekit.protocol import models

from protocols.livekit.bridge import PacketTransform
from protocols.matrix import ids
from protocols.matrix.call_keys import CallEncryption
from protocols.matrix.frame_crypto import packet_cryptor
from protocols.matrix.membership import CALL_MEMBER, member_of

log = logging.getLogger(__name__)

UNAVAILABLE = "E2EE unavailable for this codec"


def unavailable_notice(codec: str) -> str:
    return f"{UNAVAILABLE} ({codec}): that track is not bridged"


def announcement(people: int, room_here: str) -> str:
    """The notice by which the bridge declares itself a participant of an encrypted call."""
    who = "1 person" if people == 1 else f"{people} people"
    return f"Rondpoint bridges this call for {who} from {room_here}; it decrypts media to do so"


def call_members(members: Mapping[str, str]) -> set[tuple[str, str]]:
    """(user, device) of call memberships given as state key -> user id."""
    found = set()
    for state_key, user_id in members.items():
        member = member_of({"type": CALL_MEMBER, "state_key": state_key, "sender": user_id})
        if member is not None:
            found.add(member)
    return found


class CallMedia:
    """The ``MediaTransforms`` of an encrypted room's call, and its keys; see the module."""

    encryption = models.Encryption.GCM

    def __init__(
        self,
        keys: CallEncryption,
        on_unavailable: Callable[[str], None],
        member_identity: Callable[[str], str] = lambda identity: identity,
    ) -> None:
        self.keys = keys
        self.on_unavailable = on_unavailable
        self.member_identity = member_identity
        self._told: set[str] = set()
        self._members_lock = asyncio.Lock()

    # --- MediaTransforms ----------------------------------------------------------------------

    def incoming(self, identity: str, codec: str) -> PacketTransform | None:
        ring = self.keys.rings.cryptor_for(self.member_identity(identity))
        cryptor = packet_cryptor(codec, ring, encrypt=False)
        if cryptor is None:
            self._unavailable(codec)
            return None
        return cryptor.process

    def outgoing(self, identity: str, codec: str) -> PacketTransform | None:
        split = ids.split_identity(identity)
        own = self.keys.cryptor(split[0]) if split is not None else None
        if own is None:
            return None  # the ghost's key is not made yet: published once it is
        cryptor = packet_cryptor(codec, own, encrypt=True)
        if cryptor is None:
            self._unavailable(codec)
            return None
        return cryptor.process

    def _unavailable(self, codec: str) -> None:
        if codec.lower() not in self._told:
            self._told.add(codec.lower())
            self.on_unavailable(unavailable_notice(codec))

    # --- what the link feeds --------------------------------------------------------------------

    def ready(self, user_id: str) -> bool:
        """Whether the ghost's device and key are in place (its media may be published)."""
        return self.keys.cryptor(user_id) is not None

    async def add_ghost(self, user_id: str) -> None:
        """The ghost's Olm device and media key (MatrixError when the homeserver fails)."""
        await self.keys.add_ghost(user_id)

    def remove_ghost(self, user_id: str) -> None:
        self.keys.remove_ghost(user_id)

    async def on_to_device(self, event: dict[str, Any]) -> None:
        await self.keys.on_to_device(event)

    async def members_changed(self, members: Mapping[str, str]) -> None:
        """The call's memberships now (state key -> user id, ours included: left out here)."""
        async with self._members_lock:
            await self.keys.members_changed(call_members(members))

    def set_sif_trailer(self, trailer: bytes) -> None:
        self.keys.rings.set_sif_trailer(trailer)

    async def close(self) -> None:
        await self.keys.close()
