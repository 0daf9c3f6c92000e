"""The Matrix bridge through faults, with real peers: Synapse killed and restarted mid-call (a
person here leaves while it is down), then livekit-server killed and restarted. The bridge comes
back by itself with everyone once on both sides, and no ghost membership is left behind for the
person who left."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from spec.conformance.orsclient import OrsClient
from spec.conformance.webrtc import WebRtcPeer
from tests.gateway_process import RunningGateway
from tests.interop.sipp_tools import wait_until
from tests.matrix.conftest import MatrixStack, element_call_user, focus_url
from tests.matrix.jsclient import JsClient
from tests.matrix.meeting import ANNA_HZ, CALL_MEMBER, participants
from tests.matrix.page import LiveKitBrowser
from tests.matrix.synapse import wait_for

pytestmark = [
    pytest.mark.interop,
    pytest.mark.browser,
    pytest.mark.timeout(240),
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]

BRUNO_HZ = 440.0
CARL_HZ = 880.0


@contextlib.asynccontextmanager
async def person_here(
    gateway: RunningGateway, room: str, sub: str, name: str, frequency: float
) -> AsyncIterator[OrsClient]:
    client = await OrsClient.connect(gateway.base_url, room)
    peer = WebRtcPeer(client)
    try:
        await client.join(gateway.token(room, sub, name))
        await peer.publish(frequency=frequency)
        yield client
    finally:
        await peer.close()
        await client.close()


def names_here(gateway: RunningGateway, room: str) -> list[str]:
    return sorted(p["name"] for p in participants(gateway, room))


async def test_the_bridge_recovers_from_synapse_and_livekit_restarts(
    matrix_stack_restartable: MatrixStack,
    matrix_js: Callable[..., Awaitable[JsClient]],
    livekit_pages: LiveKitBrowser,
) -> None:
    stack = matrix_stack_restartable
    gateway = stack.gateway
    olga, anna, room, matrix_room = await stack.olga_and_anna("kreishaus")
    anna_call = await element_call_user(
        anna,
        matrix_room,
        matrix_js=matrix_js,
        livekit_pages=livekit_pages,
        device_id="ANNAJS",
        frequency=ANNA_HZ,
        video=True,
    )
    js, page = anna_call.js, anna_call.page
    prefix = stack.ghost_prefix()

    async def ghost_contents() -> dict[str, dict[str, Any] | None]:
        """Our ghosts' call.member contents in the room state, by state key."""
        state = await olga.state(matrix_room)
        return {
            e["state_key"]: e["content"]
            for e in state
            if e["type"] == CALL_MEMBER and e["state_key"].startswith(f"_{prefix}")
        }

    async def active_ghosts() -> int:
        return sum(1 for content in (await ghost_contents()).values() if content)

    async with person_here(gateway, room, "carl", "Carl Weber", CARL_HZ):
        bruno_client = await OrsClient.connect(gateway.base_url, room)
        bruno_peer = WebRtcPeer(bruno_client)
        await bruno_client.join(gateway.token(room, "bruno", "Bruno Petit"))
        await bruno_peer.publish(frequency=BRUNO_HZ)
        bruno = await page.wait_participant(lambda p: p["name"] == "Bruno Petit", timeout=30)
        carl = await page.wait_participant(lambda p: p["name"] == "Carl Weber", timeout=30)
        bruno_key = f"_{bruno['identity'].rsplit(':', 1)[0]}_RONDPOINT_m.call"

        async def two() -> bool:
            return await active_ghosts() == 2

        await wait_for(two, "two ghost memberships", 30)

        # Synapse dies; Bruno leaves while it is down; it comes back after the delayed leaves
        # (8 s) are overdue.
        stack.synapse.kill()
        await bruno_peer.close()
        await bruno_client.close()
        await wait_until(
            lambda: "Bruno Petit" not in names_here(gateway, room), 10, "Bruno still listed"
        )
        await page.wait_gone(bruno["identity"], timeout=20)
        await asyncio.sleep(9)
        await stack.synapse.arestart()

        async def carl_back_bruno_gone() -> bool:
            contents = await ghost_contents()
            active = [key for key, content in contents.items() if content]
            return len(active) == 1 and active[0] != bruno_key and not contents.get(bruno_key)

        await wait_for(carl_back_bruno_gone, "Carl's membership back and Bruno's ended", 60)
        await wait_until(
            lambda: names_here(gateway, room) == ["Anna Schmidt", "Carl Weber"],
            20,
            f"not everyone once: {names_here(gateway, room)}",
        )
        assert abs(await page.dominant_frequency(carl["identity"], 1.0) - CARL_HZ) <= 10

        async def js_sees_carl_only() -> bool:
            memberships = (await js.command("memberships", room=matrix_room))["memberships"]
            ours = [
                m["rtc_backend_identity"] for m in memberships if m["user_id"].startswith(prefix)
            ]
            return ours == [carl["identity"]]

        await wait_for(js_sees_carl_only, "matrix-js-sdk to see Carl's ghost only", 30)

        # livekit-server dies and comes back; Anna's page rejoins with a new token.
        stack.livekit.kill()
        await page.leave()
        await wait_until(
            lambda: (
                gateway.admin("GET", f"/api/v1/rooms/{room}/links")[1]["links"][0]["status"][
                    "state"
                ]
                != "connected"
            ),
            20,
            "the link did not notice livekit-server's death",
        )
        await stack.livekit.arestart()
        answer = await js.command("sfu_get", room=matrix_room, focus_url=focus_url(gateway))
        page = await livekit_pages.open("anna-again")
        await page.connect(answer["body"]["url"], answer["body"]["jwt"])
        await page.publish(frequency=ANNA_HZ, video=True)
        carl_again = await page.wait_participant(carl["identity"], timeout=40)
        assert carl_again["name"] == "Carl Weber"
        assert abs(await page.dominant_frequency(carl["identity"], 1.0) - CARL_HZ) <= 10
        await wait_until(
            lambda: names_here(gateway, room) == ["Anna Schmidt", "Carl Weber"],
            30,
            f"not everyone once after LiveKit's restart: {names_here(gateway, room)}",
        )
        names = [p["name"] for p in await page.participants()]
        assert names.count("Carl Weber") == 1, names
        assert await active_ghosts() == 1
