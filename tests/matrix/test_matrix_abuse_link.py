"""Matrix links that cannot be bridged, against a real Synapse: each is refused with a reason
(here in the link's state, there in an m.notice when the bot is in the room), and nothing else
changes on either side."""

from __future__ import annotations

import secrets

import pytest

from spec.conformance.orsclient import OrsClient
from tests.matrix.conftest import MatrixStack
from tests.matrix.meeting import CALL_MEMBER, participants
from tests.matrix.synapse import wait_for

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]

FORBIDDEN = "this room does not allow Rondpoint's participants to join its call"


async def test_a_room_the_bot_is_not_invited_to_is_refused_and_nothing_changes(
    matrix_stack: MatrixStack,
) -> None:
    stack, gateway = matrix_stack, matrix_stack.gateway
    owner = await stack.synapse.register_user("petra", "petra-password")
    matrix_room = await owner.create_room("Private")
    room = f"mx-{secrets.token_hex(4)}"
    gateway.create_room(room)
    client = await OrsClient.connect(gateway.base_url, room)
    try:
        await client.join(gateway.token(room, "bruno", "Bruno Petit"))
        stack.link(room, matrix_room)

        async def refused() -> dict[str, object] | None:
            state = stack.link_state(room)
            return state if state.get("state") == "refused" else None

        state = await wait_for(refused, "the link to be refused", 20)
        assert state["detail"] == f"invite {stack.bot_user_id} to the room"
        assert stack.as_token not in str(state) and stack.hs_token not in str(state)
        assert await owner.members(matrix_room) == {owner.user_id: "petra"}
        assert await owner.call_memberships(matrix_room) == {}
        assert [e for e in await owner.messages(matrix_room) if e["sender"] != owner.user_id] == []
        assert [p["name"] for p in participants(gateway, room)] == ["Bruno Petit"]
    finally:
        await client.close()


async def test_a_room_forbidding_call_memberships_gets_the_notice(
    matrix_stack: MatrixStack,
) -> None:
    stack, gateway = matrix_stack, matrix_stack.gateway
    owner = await stack.synapse.register_user("quentin", "quentin-password")
    matrix_room = await owner.create_room(
        "Moderated",
        invite=[stack.bot_user_id],
        calls=False,
        power_levels_override={"events": {CALL_MEMBER: 50}},
    )
    room = f"mx-{secrets.token_hex(4)}"
    gateway.create_room(room)
    client = await OrsClient.connect(gateway.base_url, room)
    try:
        await client.join(gateway.token(room, "bruno", "Bruno Petit"))
        stack.link(room, matrix_room)

        async def notice() -> list[str]:
            return [
                e["content"].get("body", "")
                for e in await owner.messages(matrix_room)
                if e["sender"] == stack.bot_user_id and e["content"].get("msgtype") == "m.notice"
            ]

        said = await wait_for(notice, "the bot's notice in the Matrix room", 20)
        assert FORBIDDEN in said[0]
        state = stack.link_state(room)
        assert (state["state"], state["detail"]) == ("refused", FORBIDDEN)
        members = await owner.members(matrix_room)
        assert not [user for user in members if user.startswith(stack.ghost_prefix())]
        assert await owner.call_memberships(matrix_room) == {}
    finally:
        await client.close()
