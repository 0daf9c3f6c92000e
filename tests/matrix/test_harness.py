"""The Matrix test harness itself: a real Synapse answers, its users meet in a room, matrix-js-sdk
joins a MatrixRTC session the way Element Call does, and a Chromium page with livekit-client is
heard at its tone's frequency by a LiveKit subscriber. Few and fast: the harness's own checks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import jwt
import pytest

from protocols.livekit.tokens import VideoGrant, mint_token
from protocols.matrix.rooms import hashed_room_name
from tests.interop.livekit_fixtures import RunningLiveKit
from tests.interop.livekit_sdk import visio_user
from tests.matrix.conftest import MatrixStack, element_call_user
from tests.matrix.jsclient import JsClient
from tests.matrix.page import LiveKitBrowser
from tests.matrix.synapse import MatrixApiError, MatrixUser, RunningSynapse, wait_for

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]

PAGE_HZ = 440.0
LISTENER_HZ = 660.0
RTC_NOTIFICATION = "org.matrix.msc4075.rtc.notification"


async def test_two_users_meet_in_a_room(synapse: RunningSynapse) -> None:
    anna = await synapse.register_user("anna", "anna-password")
    bert = await synapse.register_user("bert", "bert-password")
    assert anna.user_id == "@anna:hs.test"
    await anna.set_display_name("Anna Schmidt")
    room = await anna.create_room("Kaffee", invite=[bert.user_id])
    assert await bert.join(room) == room
    await bert.send_text(room, "hallo Anna")

    async def heard() -> bool:
        return ("@bert:hs.test", "hallo Anna") in await anna.texts(room)

    await wait_for(heard, "Anna to read Bert's message")
    members = await bert.members(room)
    assert members == {"@anna:hs.test": "Anna Schmidt", "@bert:hs.test": "bert"}
    token = await bert.openid_token()
    assert token["matrix_server_name"] == "hs.test"


async def test_matrix_js_sdk_joins_a_call_as_element_call_does(
    synapse: RunningSynapse, matrix_js: Callable[..., Awaitable[JsClient]]
) -> None:
    carla = await synapse.register_user("carla", "carla-password")
    dora = await synapse.register_user("dora", "dora-password")
    room = await dora.create_room("Call", invite=[carla.user_id])
    focus_url = "http://127.0.0.1:9/matrix"
    js = await matrix_js("carla")
    login = await js.command(
        "login",
        homeserver_url=synapse.url,
        user_id=carla.user_id,
        password="carla-password",
        device_id="CARLAJS",
    )
    assert login == {"user_id": carla.user_id, "device_id": "CARLAJS"}
    assert (await js.command("join", room=room))["room_id"] == room
    joined = await js.command("rtc_join", room=room, focus_url=focus_url)
    assert joined["membership"]["rtc_backend_identity"] == f"{carla.user_id}:CARLAJS"

    async def seen_by_dora() -> dict[str, Any] | None:
        return (await dora.call_memberships(room)).get(f"_{carla.user_id}_CARLAJS_m.call")

    content = await wait_for(seen_by_dora, "Carla's call membership in Dora's room state")
    assert content["application"] == "m.call"
    assert content["call_id"] == ""
    assert content["scope"] == "m.room"
    assert content["device_id"] == "CARLAJS"
    assert content["membershipID"] == f"{carla.user_id}:CARLAJS"
    assert content["m.call.intent"] == "video"
    assert content["focus_active"] == {"type": "livekit", "focus_selection": "multi_sfu"}
    assert content["foci_preferred"][0] == {
        "type": "livekit",
        "livekit_service_url": focus_url,
        "livekit_alias": room,
    }
    await dora.send_text(room, "bonjour Carla")
    await js.wait_event("message", lambda e: e["content"].get("body") == "bonjour Carla")
    await js.command("rtc_leave", room=room)

    async def gone() -> bool:
        return f"_{carla.user_id}_CARLAJS_m.call" not in await dora.call_memberships(room)

    await wait_for(gone, "Carla's membership to end")


async def test_a_page_tone_is_heard_at_its_frequency(
    livekit: RunningLiveKit, livekit_pages: LiveKitBrowser
) -> None:
    room = "!harness-tone"
    identity = "@erik:hs.test:ERIKPAGE"
    grant = VideoGrant.join(room)
    jwt = mint_token(
        livekit.api_key, livekit.api_secret, identity=identity, grant=grant, name="Erik"
    )
    page = await livekit_pages.open("erik")
    await page.connect(livekit.url, jwt)
    await page.publish(frequency=PAGE_HZ, video=True)
    async with visio_user(livekit, room, "listener", "Listener") as listener:
        await listener.wait_participant(identity)
        assert abs(await listener.dominant_frequency(identity, 1.0) - PAGE_HZ) <= 10
        assert await listener.video_frames(identity, 1.0) > 0
        await listener.publish_tone(LISTENER_HZ)
        assert abs(await page.dominant_frequency("listener") - LISTENER_HZ) <= 10


async def test_the_gateway_is_synapses_application_service(matrix_stack: MatrixStack) -> None:
    synapse = matrix_stack.synapse
    bot = MatrixUser(synapse.url, matrix_stack.bot_user_id, matrix_stack.as_token, "")
    # Synapse accepted our registration YAML and reaches our routes with the hs_token.
    ping = await bot.request(
        "POST", "/_matrix/client/v1/appservice/rondpoint/ping", {"transaction_id": "harness"}
    )
    assert isinstance(ping["duration_ms"], int)
    with pytest.raises(MatrixApiError) as refused:
        await synapse.register_user("rondpoint_squatter", "squatter-password")
    assert refused.value.errcode == "M_EXCLUSIVE"


async def test_an_element_call_user_gets_its_token_from_our_focus_and_is_heard(
    matrix_stack: MatrixStack,
    matrix_js: Callable[..., Awaitable[JsClient]],
    livekit_pages: LiveKitBrowser,
) -> None:
    synapse = matrix_stack.synapse
    fiona = await synapse.register_user("fiona", "fiona-password")
    room = await fiona.create_room("Focus")  # room version 12: its id has no ':server'
    assert ":" not in room
    js = await matrix_js("fiona")
    await js.command(
        "login",
        homeserver_url=synapse.url,
        user_id=fiona.user_id,
        password="fiona-password",
        device_id="FIONAJS",
    )
    transports = (await js.command("rtc_transports"))["transports"]
    assert transports == [{"type": "livekit", "livekit_service_url": matrix_stack.focus_url}]
    answer = await js.command("sfu_get", room=room)
    assert answer["status"] == 200, answer
    assert answer["body"]["url"] == matrix_stack.livekit.url
    claims = jwt.decode(answer["body"]["jwt"], options={"verify_signature": False})
    assert claims["sub"] == f"{fiona.user_id}:FIONAJS"
    assert claims["video"]["room"] == hashed_room_name(room)

    # The whole Element Call stand-in: membership, focus token, livekit-client page.
    ec = await element_call_user(
        fiona,
        room,
        matrix_js=matrix_js,
        livekit_pages=livekit_pages,
        device_id="FIONAEC",
        frequency=PAGE_HZ,
        notification="ring",
    )
    assert ec.identity == f"{fiona.user_id}:FIONAEC"
    async with visio_user(
        matrix_stack.livekit, hashed_room_name(room), "listener", "Listener"
    ) as listener:
        await listener.wait_participant(ec.identity)
        assert abs(await listener.dominant_frequency(ec.identity, 1.0) - PAGE_HZ) <= 10
    ring = [e for e in await fiona.messages(room) if e["type"] == RTC_NOTIFICATION]
    assert ring and ring[-1]["content"]["notification_type"] == "ring"
    await ec.leave()


async def test_a_restarted_synapse_keeps_its_users_and_its_appservice(
    matrix_stack_restartable: MatrixStack,
) -> None:
    stack = matrix_stack_restartable
    gina = await stack.synapse.register_user("gina", "gina-password")
    room = await gina.create_room("Before")
    port = stack.synapse.port
    stack.synapse.kill()
    await stack.synapse.arestart()
    assert stack.synapse.port == port and stack.synapse.restarts == 1
    assert (await gina.members(room)) == {gina.user_id: "gina"}
    bot = MatrixUser(stack.synapse.url, stack.bot_user_id, stack.as_token, "")
    await bot.request(
        "POST", "/_matrix/client/v1/appservice/rondpoint/ping", {"transaction_id": "after"}
    )
