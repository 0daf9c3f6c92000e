"""MatrixClient and Ghosts against a real Synapse, with the gateway as its application service:
a ghost registers, gets its display name, joins a room a real user made (the bot invites it),
puts a call membership and a delayed leave (MSC4140) it restarts, cancels and lets fire, and
sends a message the real user reads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway.store import Store
from protocols.matrix.client import MatrixClient, MatrixError
from protocols.matrix.ghosts import Ghosts
from protocols.matrix.ids import GHOST_DEVICE, ghost_user_id
from protocols.matrix.store import MIGRATIONS, MatrixStore
from tests.matrix.conftest import USER_PREFIX, MatrixStack
from tests.matrix.synapse import MatrixUser, wait_for

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

CALL_MEMBER = "org.matrix.msc3401.call.member"


@pytest.fixture
async def client(matrix_stack: MatrixStack) -> AsyncIterator[MatrixClient]:
    matrix = MatrixClient(matrix_stack.synapse.url, matrix_stack.as_token, matrix_stack.bot_user_id)
    yield matrix
    await matrix.close()


@pytest.fixture
def ghosts(client: MatrixClient) -> Ghosts:
    store = Store(":memory:")
    store.migrate_plugin("matrix", MIGRATIONS)
    return Ghosts(client, MatrixStore(store))


async def room_with_the_bot(stack: MatrixStack, owner: MatrixUser, client: MatrixClient) -> str:
    room = await owner.create_room("Ghosts", invite=[stack.bot_user_id])
    assert await client.join(room) == room
    return room


async def test_a_ghost_joins_named_and_speaks(
    matrix_stack: MatrixStack, client: MatrixClient, ghosts: Ghosts
) -> None:
    anna = await matrix_stack.synapse.register_user("anna", "anna-password")
    room = await room_with_the_bot(matrix_stack, anna, client)
    ghost = ghost_user_id(USER_PREFIX, "p_AbC-12_xyz", matrix_stack.server_name)
    await ghosts.ensure(ghost, "Zoé (téléphone)")
    await ghosts.ensure(ghost, "Zoé (téléphone)")  # the same name again: nothing to do
    await ghosts.join(room, ghost)
    await ghosts.join(room, ghost)  # already there: fine

    members = await anna.members(room)
    assert members[ghost] == "Zoé (téléphone)"
    await client.send(
        room, "m.room.message", {"msgtype": "m.text", "body": "bonjour Anna"}, as_user=ghost
    )

    async def read() -> bool:
        return (ghost, "bonjour Anna") in await anna.texts(room)

    await wait_for(read, "Anna to read the ghost's message")
    await ghosts.leave(room, ghost)
    assert ghost not in await anna.members(room)


async def test_a_ghost_holds_a_call_membership_with_a_delayed_leave(
    matrix_stack: MatrixStack, client: MatrixClient, ghosts: Ghosts
) -> None:
    bert = await matrix_stack.synapse.register_user("bert", "bert-password")
    room = await room_with_the_bot(matrix_stack, bert, client)
    ghost = ghost_user_id(USER_PREFIX, "p_Call_1", matrix_stack.server_name)
    await ghosts.ensure(ghost, "Caller")
    await ghosts.join(room, ghost)
    key = f"_{ghost}_{GHOST_DEVICE}_m.call"
    membership = {"application": "m.call", "call_id": "", "device_id": GHOST_DEVICE}

    # the delayed leave first (as matrix-js-sdk), then the membership; restarting keeps it away
    delay_id = await client.put_delayed_state(room, CALL_MEMBER, key, {}, 1500, as_user=ghost)
    await client.put_state(room, CALL_MEMBER, key, membership, as_user=ghost)
    for _ in range(3):
        await asyncio.sleep(0.5)
        await client.update_delayed(delay_id, "restart", as_user=ghost)
    assert key in await bert.call_memberships(room)

    # cancelled, it never fires; the ghost ends its membership itself
    await client.update_delayed(delay_id, "cancel", as_user=ghost)
    with pytest.raises(MatrixError) as gone:
        await client.update_delayed(delay_id, "restart", as_user=ghost)
    assert gone.value.status == 404
    assert key in await bert.call_memberships(room)
    await client.put_state(room, CALL_MEMBER, key, {}, as_user=ghost)
    assert key not in await bert.call_memberships(room)

    # left alone (a crashed gateway), the delayed leave ends a new membership by itself
    await client.put_delayed_state(room, CALL_MEMBER, key, {}, 500, as_user=ghost)
    await client.put_state(room, CALL_MEMBER, key, membership, as_user=ghost)

    async def ended() -> bool:
        return key not in await bert.call_memberships(room)

    await wait_for(ended, "the delayed leave to end the membership")


async def test_the_bot_without_an_invite_is_refused(
    matrix_stack: MatrixStack, client: MatrixClient
) -> None:
    cleo = await matrix_stack.synapse.register_user("cleo", "cleo-password")
    room = await cleo.create_room("Private")
    with pytest.raises(MatrixError) as refused:
        await client.join(room)
    assert refused.value.status == 403
    assert matrix_stack.as_token not in str(refused.value)


async def test_room_state_and_aliases(matrix_stack: MatrixStack, client: MatrixClient) -> None:
    dora = await matrix_stack.synapse.register_user("dora", "dora-password")
    room = await room_with_the_bot(matrix_stack, dora, client)
    await dora.request(
        "PUT",
        f"/_matrix/client/v3/directory/room/{MatrixUser._q('#dora:' + matrix_stack.server_name)}",
        {"room_id": room},
    )
    assert await client.resolve_alias(f"#dora:{matrix_stack.server_name}") == room
    types = {event["type"] for event in await client.room_state(room)}
    assert {"m.room.create", "m.room.power_levels", "m.room.member"} <= types


async def test_a_ghost_the_homeserver_forgot_is_registered_again(
    matrix_stack: MatrixStack, client: MatrixClient, ghosts: Ghosts
) -> None:
    erin = await matrix_stack.synapse.register_user("erin", "erin-password")
    room = await room_with_the_bot(matrix_stack, erin, client)
    ghost = ghost_user_id(USER_PREFIX, "p_Forgotten", matrix_stack.server_name)
    ghosts.store.put_ghost(ghost, "")  # our store remembers a ghost the homeserver never had
    await ghosts.ensure(ghost, "Back Again")
    await ghosts.join(room, ghost)
    assert (await erin.members(room))[ghost] == "Back Again"
