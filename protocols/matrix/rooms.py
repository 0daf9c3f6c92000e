"""How a Matrix call's LiveKit room and its members' LiveKit identities are named (MSC4195, as
element-hq/lk-jwt-service names them), so that our focus token service, lk-jwt-service and the
bridge meet in one LiveKit room per Matrix call.

- Room: lk-jwt-service 0.4.3 and later name the LiveKit room of a Matrix room's call slot (Element
  Call's is ``m.call#ROOM``) ``unpadded_base64(SHA-256(json([room_id, slot_id])))``, from
  ``/sfu/get`` and ``/get_token`` alike; up to 0.3 ``/sfu/get`` used the Matrix room id itself.
  ``[matrix] livekit_room_names`` says which: ``"hashed"`` (the default) or ``"room_id"``.
- Identity: ``/sfu/get`` gives ``{user_id}:{device_id}`` (protocols/matrix/ids.py);
  ``/get_token`` gives ``unpadded_base64(SHA-256(json([user_id, device_id, member_id])))``, which
  matrix-js-sdk computes as the ``rtcBackendIdentity`` of an ``m.rtc.member`` membership.

The JSON is Go's ``json.Marshal`` of a string list (no spaces; ``<``, ``>``, ``&``, U+2028 and
U+2029 escaped as ``\\u00XX``), so the hashes equal lk-jwt-service's for every input.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any, Protocol

CALL_SLOT = "m.call#ROOM"
"""The slot of an ``m.call`` application's room-wide call: the one the bridge joins."""
ROOM_NAMINGS = ("hashed", "room_id")
_GO_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


class _RoomNaming(Protocol):
    livekit_room_names: str


def go_json_strings(values: list[str]) -> bytes:
    """``json.Marshal`` of a Go ``[]string``, byte for byte."""
    text = json.dumps(values, ensure_ascii=False, separators=(",", ":"))
    for raw, escaped in _GO_ESCAPES.items():
        text = text.replace(raw, escaped)
    return text.encode()


def _digest(values: list[str]) -> str:
    digest = hashlib.sha256(go_json_strings(values)).digest()
    return base64.b64encode(digest).decode().rstrip("=")


def hashed_room_name(matrix_room_id: str, slot_id: str = CALL_SLOT) -> str:
    """lk-jwt-service's LiveKit room of a Matrix room's call slot."""
    return _digest([matrix_room_id, slot_id])


def livekit_room_name(config: _RoomNaming, matrix_room_id: str, slot_id: str = CALL_SLOT) -> str:
    """The LiveKit room of a Matrix room's call slot under ``config.livekit_room_names``: the
    hash, or (``"room_id"``) the Matrix room id for the ``m.call#ROOM`` slot."""
    if config.livekit_room_names == "room_id" and slot_id == CALL_SLOT:
        return matrix_room_id
    return hashed_room_name(matrix_room_id, slot_id)


def hashed_identity(user_id: str, device_id: str, member_id: str) -> str:
    """The LiveKit identity ``/get_token`` gives a MatrixRTC member (its rtcBackendIdentity)."""
    return _digest([user_id, device_id, member_id])


def hashed_identity_of_membership(sender: str, content: Mapping[str, Any]) -> str | None:
    """The identity ``/get_token`` gives the member of a call.member state event (SENDER's
    CONTENT) when its client asks with matrix-js-sdk's member id for it (``membershipID``, else
    ``{sender}:{device_id}``); None for an ended or malformed membership."""
    device_id = content.get("device_id")
    if not isinstance(device_id, str) or not device_id:
        return None
    member_id = content.get("membershipID")
    if not isinstance(member_id, str) or not member_id:
        member_id = f"{sender}:{device_id}"
    return hashed_identity(sender, device_id, member_id)
