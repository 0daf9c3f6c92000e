"""The Matrix test harness itself: a real Synapse answers, its users meet in a room, matrix-js-sdk
joins a MatrixRTC session the way Element Call does, and a Chromium page with livekit-client is
heard at its tone's frequency by a LiveKit subscriber. Few and fast: the harness's own checks."""

from __future__ import annotations

import pytest

from tests.matrix.synapse import RunningSynapse, wait_for

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]


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
