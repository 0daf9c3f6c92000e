"""Errors as RFC 9457 problem details, the same object over HTTP and inside the ORS WebSocket."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.rooms import RoomError
from gateway.tokens import TokenError

TITLES = {
    "invalid_json": "Message is not valid JSON",
    "unknown_type": "Unknown message type",
    "invalid_message": "Invalid message",
    "message_too_large": "Message too large",
    "not_joined": "Not joined",
    "already_joined": "Already joined",
    "token_invalid": "Invalid token",
    "token_expired": "Token expired",
    "token_wrong_room": "Token is for another room",
    "forbidden": "Forbidden",
    "room_not_found": "Room not found",
    "room_exists": "Room already exists",
    "invalid_room_name": "Invalid room name",
    "room_full": "Room is full",
    "removed": "Removed from the room",
    "participant_not_found": "Participant not found",
    "track_not_found": "Track not found",
    "invalid_state": "Invalid state",
    "negotiation_failed": "Media negotiation failed",
    "rate_limited": "Too many requests",
    "pin_required": "PIN required",
    "pin_incorrect": "Incorrect PIN",
    "unauthorized": "Unauthorized",
    "not_found": "Not found",
    "method_not_allowed": "Method not allowed",
    "unsupported_media_type": "Unsupported media type",
    "internal": "Internal error",
    "signature_invalid": "Invalid signature",
    "peer_not_allowed": "Peer not allowed",
    "key_unknown": "Unknown signing key",
    "wrong_audience": "Wrong audience",
    "signature_expired": "Signature expired",
    "replayed_request": "Replayed request",
    "link_not_found": "Link not found",
    "too_many_links": "Too many links",
    "too_many_hosts": "Too many hosts",
}


@dataclass
class Problem(Exception):
    code: str
    detail: str
    status: int = 400
    field: str | None = None
    retry_after: int | None = None
    """Seconds the caller should wait before trying again (a Retry-After header), for 429."""

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"urn:ors:error:{self.code}",
            "title": TITLES.get(self.code, self.code.replace("_", " ").capitalize()),
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if self.field is not None:
            body["field"] = self.field
        return body

    @classmethod
    def of(cls, error: RoomError | TokenError) -> Problem:
        """The problem for a refusal of the room model or the token verifier."""
        return cls(error.code, error.detail, error.status)

    def response(self) -> web.Response:
        headers = None if self.retry_after is None else {"Retry-After": str(self.retry_after)}
        return web.Response(
            status=self.status,
            text=json.dumps(self.to_json()),
            content_type="application/problem+json",
            headers=headers,
        )


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or a problem saying why not."""
    try:
        body = await request.json()
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        raise Problem("invalid_json", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise Problem("invalid_message", "the body is a JSON object", field="")
    return body
