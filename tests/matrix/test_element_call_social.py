"""Raised hands and reactions between a room here and a Matrix room's call, as Element Call carries
them: a member's hand is an `m.reaction` "🖐️" on their call membership event (lowered by redacting
it), a reaction an `io.element.call.reaction` referencing it. Real peers: Synapse, livekit-server
as the focus, matrix-js-sdk holding Anna's membership and a Chromium livekit-client page for her
media; here an ORS client."""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.interop.sipp_tools import wait_until
from tests.matrix.conftest import MatrixStack, element_call_user
from tests.matrix.jsclient import JsClient
from tests.matrix.meeting import CALL_MEMBER, bruno_here, listed
from tests.matrix.page import LiveKitBrowser
from tests.matrix.synapse import wait_for

pytestmark = [
    pytest.mark.interop,
    pytest.mark.browser,
    pytest.mark.timeout(180),
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]

HAND = "🖐️"
CALL_REACTION = "io.element.call.reaction"


def reactions_seen(messages: list[dict[str, Any]], participant_id: str) -> list[str]:
    return [
        m["emoji"]
        for m in messages
        if m["type"] == "reaction" and m["participant_id"] == participant_id
    ]


async def test_hands_and_reactions_cross_element_call_both_ways_and_bounded(
    matrix_stack: MatrixStack,
    matrix_js: Callable[..., Awaitable[JsClient]],
    livekit_pages: LiveKitBrowser,
) -> None:
    stack, gateway = matrix_stack, matrix_stack.gateway
    olga, anna, room, matrix_room = await stack.olga_and_anna("rathaus-hands")
    # Anna in the call, her page connected (publishing nothing: hands and reactions need no media).
    await element_call_user(
        anna, matrix_room, matrix_js=matrix_js, livekit_pages=livekit_pages, device_id="ANNAJS"
    )
    state = await anna.state(matrix_room)
    membership = next(
        e["event_id"]
        for e in state
        if e["type"] == CALL_MEMBER and e["state_key"] == f"_{anna.user_id}_ANNAJS_m.call"
    )

    async def anna_here() -> dict[str, Any] | None:
        found = listed(gateway, room, "Anna Schmidt")
        return found[0] if found else None

    anna_listed = await wait_for(anna_here, "Anna listed here", 30)

    async with bruno_here(gateway, room) as (host, _):
        # Matrix -> here: Anna raises her hand as Element Call does, then lowers it (redaction).
        # Olga, in the room but not in the call, cannot raise Anna's hand.
        hand_content = {
            "m.relates_to": {"rel_type": "m.annotation", "event_id": membership, "key": HAND}
        }
        await olga.send(matrix_room, "m.reaction", hand_content)
        await asyncio.sleep(1.5)
        assert listed(gateway, room, "Anna Schmidt")[0]["hand_raised_at"] is None
        hand = await anna.send(matrix_room, "m.reaction", hand_content)
        await wait_until(
            lambda: any(
                m["type"] == "participant_updated"
                and m["participant"]["id"] == anna_listed["id"]
                and m["participant"]["hand_raised_at"]
                for m in host.received
            ),
            15,
            "Anna's raised hand never showed here",
        )
        quoted = urllib.parse.quote(matrix_room, safe="")
        await anna.request("PUT", f"/_matrix/client/v3/rooms/{quoted}/redact/{hand}/lower1", {})
        await wait_until(
            lambda: listed(gateway, room, "Anna Schmidt")[0]["hand_raised_at"] is None,
            15,
            "Anna's hand stays up here",
        )

        # A host here lowers Anna's hand. The bot (power level 0) may not redact her reaction: the
        # hand is down here only, and stays down through a change of the call (her new name).
        async def raise_annas_hand() -> str:
            event_id = await anna.send(matrix_room, "m.reaction", hand_content)
            await wait_until(
                lambda: listed(gateway, room, anna_listed["name"])[0]["hand_raised_at"],
                15,
                "Anna's raised hand never showed here",
            )
            return event_id

        hand = await raise_annas_hand()
        lower_annas = {"type": "hand", "raised": False, "participant_id": anna_listed["id"]}
        await host.request(lower_annas)
        await anna.set_display_name("Anna S.")
        await wait_until(lambda: listed(gateway, room, "Anna S."), 15, "Anna not renamed here")
        assert listed(gateway, room, "Anna S.")[0]["hand_raised_at"] is None
        anna_listed = listed(gateway, room, "Anna S.")[0]
        bot = stack.bot_user_id

        async def hand_redacted_by(sender: str, event_id: str) -> bool:
            return any(
                e["type"] == "m.room.redaction"
                and e["sender"] == sender
                and event_id in (e.get("redacts"), e.get("content", {}).get("redacts"))
                for e in await olga.messages(matrix_room, 100)
            )

        assert not await hand_redacted_by(bot, hand)
        # Olga makes the bot a moderator; Anna lowers and raises her hand again in Matrix; a host
        # here lowers it: the bot redacts her reaction, which lowers it in Element Call too.
        power_levels = await olga.state_event(matrix_room, "m.room.power_levels") or {}
        users = {**power_levels.get("users", {}), bot: 50}
        await olga.put_state(
            matrix_room, "m.room.power_levels", "", {**power_levels, "users": users}
        )
        await anna.request("PUT", f"/_matrix/client/v3/rooms/{quoted}/redact/{hand}/lower2", {})
        await wait_until(
            lambda: listed(gateway, room, "Anna S.")[0]["hand_raised_at"] is None, 15, "still up"
        )
        hand = await raise_annas_hand()
        await host.request(lower_annas)

        async def redacted_by_the_bot() -> bool:
            return await hand_redacted_by(bot, hand)

        await wait_for(redacted_by_the_bot, "Anna's hand redacted by the bot", 20)
        assert listed(gateway, room, "Anna S.")[0]["hand_raised_at"] is None

        # Here -> Matrix: Bruno's ghost raises its hand on its own membership, then redacts it.
        prefix = stack.ghost_prefix()
        await host.request({"type": "hand", "raised": True})

        async def ghost_hand() -> dict[str, Any] | None:
            for event in await olga.messages(matrix_room, 100):
                relation = event.get("content", {}).get("m.relates_to", {})
                if (
                    event["type"] == "m.reaction"
                    and event["sender"].startswith(prefix)
                    and relation.get("key") == HAND
                ):
                    return event
            return None

        raised = await wait_for(ghost_hand, "the ghost's raised hand in the Matrix room", 20)
        ghost = raised["sender"]
        ghost_state = {
            e["event_id"]: e
            for e in await olga.state(matrix_room)
            if e["type"] == CALL_MEMBER and e["sender"] == ghost
        }
        assert raised["content"]["m.relates_to"]["event_id"] in ghost_state
        await host.request({"type": "hand", "raised": False})

        async def redacted() -> bool:
            return any(
                e["type"] == "m.room.redaction"
                and e["sender"] == ghost
                and raised["event_id"] in (e.get("redacts"), e.get("content", {}).get("redacts"))
                for e in await olga.messages(matrix_room, 100)
            )

        await wait_for(redacted, "the ghost's hand redacted", 20)

        # Reactions both ways: Element Call's, ours as Element Call reads them.
        def call_reaction(emoji: str, name: str) -> dict[str, Any]:
            return {
                "m.relates_to": {"rel_type": "m.reference", "event_id": membership},
                "emoji": emoji,
                "name": name,
            }

        await anna.send(matrix_room, CALL_REACTION, call_reaction("🐶", "dog"))  # none of ours
        await anna.send(matrix_room, CALL_REACTION, call_reaction("👏", "clapping"))
        await wait_until(
            lambda: reactions_seen(host.received, anna_listed["id"]) == ["👏"],
            15,
            "no applause from Element Call",
        )
        await host.request({"type": "reaction", "emoji": "🎉"})

        async def ghost_reaction() -> dict[str, Any] | None:
            for event in await olga.messages(matrix_room, 100):
                if event["type"] == CALL_REACTION and event["sender"] == ghost:
                    return event
            return None

        sent = await wait_for(ghost_reaction, "the ghost's reaction in the Matrix room", 20)
        assert sent["content"]["emoji"] == "🎉" and sent["content"]["name"] == "party"
        assert sent["content"]["m.relates_to"] == {
            "rel_type": "m.reference",
            "event_id": raised["content"]["m.relates_to"]["event_id"],
        }

        # Olga, in the room but not in the call, has no membership to react on: nothing here.
        await olga.send(matrix_room, CALL_REACTION, call_reaction("👍", "thumbsup"))

        # A flood from Element Call reaches here at the room's rate (10 at once, then 1/s).
        started = time.monotonic()
        for _ in range(30):
            await anna.send(matrix_room, CALL_REACTION, call_reaction("❤️", "heart"))
        await wait_until(
            lambda: reactions_seen(host.received, anna_listed["id"]).count("❤️") >= 5,
            15,
            "no hearts from Element Call",
        )
        await asyncio.sleep(2)
        seen = reactions_seen(host.received, anna_listed["id"])
        elapsed = time.monotonic() - started
        assert "👍" not in seen
        assert seen.count("❤️") <= 10 + elapsed + 1, (elapsed, seen)
