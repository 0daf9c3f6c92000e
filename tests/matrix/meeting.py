"""What the Matrix bridge's end-to-end tests share about a meeting: the people here (an ORS
WebRTC client, a phone) and their tones, what the admin API lists in a room here, and the ghosts'
call memberships as matrix-js-sdk sees them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from spec.conformance.orsclient import OrsClient
from spec.conformance.webrtc import WebRtcPeer
from tests.gateway_process import RunningGateway
from tests.matrix.jsclient import JsClient

ANNA_HZ = 660.0
ORS_HZ = 440.0
PHONE_HZ = 1000.0
PHONE_NUMBER = "0140506042"
PHONE_NAME = "Phone ••• 42"
CALL_MEMBER = "org.matrix.msc3401.call.member"


def participants(gateway: RunningGateway, room: str) -> list[dict[str, Any]]:
    status, body = gateway.admin("GET", f"/api/v1/rooms/{room}")
    assert status == 200, body
    return list(body["participants"])


def listed(gateway: RunningGateway, room: str, name: str) -> list[dict[str, Any]]:
    return [p for p in participants(gateway, room) if p["name"] == name]


@contextlib.asynccontextmanager
async def bruno_here(
    gateway: RunningGateway, room: str
) -> AsyncIterator[tuple[OrsClient, WebRtcPeer]]:
    """Bruno Petit on an ORS WebRTC client here, publishing a tone."""
    host = await OrsClient.connect(gateway.base_url, room)
    peer = WebRtcPeer(host)
    try:
        joined = await host.join(gateway.token(room, "bruno", "Bruno Petit", role="host"))
        assert joined["type"] == "joined"
        await peer.publish(frequency=ORS_HZ)
        yield host, peer
    finally:
        await peer.close()
        await host.close()


async def ghost_memberships(js: JsClient, room: str, prefix: str) -> dict[str, dict[str, Any]]:
    """The call's memberships of our ghosts as matrix-js-sdk sees them, by user id."""
    memberships = (await js.command("memberships", room=room))["memberships"]
    return {m["user_id"]: m for m in memberships if m["user_id"].startswith(prefix)}


async def accept_offers_until(
    host: OrsClient, peer: WebRtcPeer, done: Callable[[], bool], message: str, timeout: float = 20
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not done():
        assert asyncio.get_running_loop().time() < deadline, message
        with contextlib.suppress(TimeoutError):
            await peer.accept_offer(await host.next_event("offer", timeout=0.5))
