"""The application-service routes as a real Synapse calls them: its ping and its user queries
reach us with the hs_token; a caller without it changes nothing; no token is ever logged."""

from __future__ import annotations

import aiohttp
import pytest

from tests.matrix.conftest import USER_PREFIX, MatrixStack
from tests.matrix.synapse import MatrixApiError, MatrixUser, wait_for

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]


def assert_no_token_logged(stack: MatrixStack) -> None:
    log = stack.gateway.log_path.read_text(errors="replace")
    assert stack.as_token not in log and stack.hs_token not in log


async def test_synapse_pings_us_with_the_hs_token(matrix_stack: MatrixStack) -> None:
    bot = MatrixUser(matrix_stack.synapse.url, matrix_stack.bot_user_id, matrix_stack.as_token, "")
    answer = await bot.request(
        "POST", "/_matrix/client/v1/appservice/rondpoint/ping", {"transaction_id": "ping-1"}
    )
    assert isinstance(answer["duration_ms"], int)
    assert_no_token_logged(matrix_stack)


async def test_a_ghost_synapse_asks_about_is_registered_by_us(matrix_stack: MatrixStack) -> None:
    anna = await matrix_stack.synapse.register_user("anna", "anna-password")
    ghost = f"@{USER_PREFIX}tel_+33612345678:{matrix_stack.server_name}"
    profile_path = f"/_matrix/client/v3/profile/{MatrixUser._q(ghost)}"
    with pytest.raises(MatrixApiError):
        await anna.request("GET", profile_path)  # Synapse does not know the ghost yet
    # inviting a user of our exclusive namespace Synapse does not know makes it ask us (the user
    # query), and we register it; the phone's ghost then accepts the invite under the number
    room = await anna.create_room("Phone", invite=[ghost])

    async def named_and_joined() -> dict[str, object] | None:
        try:
            profile = await anna.request("GET", profile_path)
        except MatrixApiError:
            return None
        joined = ghost in await anna.members(room, membership="join")
        return profile if joined and profile.get("displayname") == "+33612345678" else None

    await wait_for(named_and_joined, "the ghost to be registered, named and joined")
    assert_no_token_logged(matrix_stack)


async def test_a_caller_without_the_hs_token_changes_nothing(matrix_stack: MatrixStack) -> None:
    base = f"{matrix_stack.gateway.base_url}/matrix/_matrix/app/v1"
    event = {
        "type": "m.room.message",
        "room_id": "!forged:hs.test",
        "sender": "@mallory:hs.test",
        "event_id": "$forged",
        "content": {"msgtype": "m.text", "body": "forged"},
    }
    async with aiohttp.ClientSession() as http:
        async with http.put(f"{base}/transactions/forged-1", json={"events": [event]}) as missing:
            assert missing.status == 401
            assert (await missing.json())["errcode"] == "M_UNAUTHORIZED"
        headers = {"Authorization": f"Bearer {matrix_stack.as_token}"}
        async with http.put(
            f"{base}/transactions/forged-1", json={"events": [event]}, headers=headers
        ) as wrong:
            assert wrong.status == 403
            body = await wrong.text()
            assert matrix_stack.as_token not in body and matrix_stack.hs_token not in body
        ghost = f"@{USER_PREFIX}squatter:{matrix_stack.server_name}"
        async with http.get(f"{base}/users/{ghost}", headers=headers) as query:
            assert query.status == 403
    assert_no_token_logged(matrix_stack)
