"""MatrixRTC call memberships (MSC3401/MSC4143 as matrix-js-sdk 43 sends them) held by our ghosts.

A member of a Matrix call is a state event ``org.matrix.msc3401.call.member`` at the state key
``_{user}_{device}_m.call``; leaving sets it to ``{}``. Like matrix-js-sdk's MembershipManager, a
`MembershipKeeper` first schedules the leave as an MSC4140 delayed event (``{}`` in 8 s), then sends
the membership, then restarts the delayed event every 5 s: if the gateway dies, the homeserver ends
the membership by itself. A membership that vanished (the delayed leave fired while the homeserver
or the network was down) is sent again, never twice for one device (one state key per device).

Memberships we hold are kept in the store (``matrix_memberships``), so that a restarted gateway
ends the ones left behind (``end_leftovers``) instead of waiting for their delayed leave.

The ring (``org.matrix.msc4075.rtc.notification``) is what a member whose join starts the call
sends, as matrix-js-sdk's MatrixRTCSession.sendCallNotify does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from protocols.matrix.client import MatrixError, MatrixUnavailable
from protocols.matrix.rooms import CALL_SLOT
from protocols.matrix.store import Membership

if TYPE_CHECKING:
    from protocols.matrix.client import MatrixClient
    from protocols.matrix.store import MatrixStore

log = logging.getLogger(__name__)

CALL_MEMBER = "org.matrix.msc3401.call.member"
RTC_NOTIFICATION = "org.matrix.msc4075.rtc.notification"
APPLICATION = "m.call"
MEMBERSHIP_EXPIRES_MS = 14_400_000
LEAVE_DELAY_MS = 8_000
RESTART_SECONDS = 5.0
RING_LIFETIME_MS = 30_000
RETRY_MAX_SECONDS = 5.0
REJOIN_SECONDS = 1.0


def state_key(user_id: str, device_id: str) -> str:
    """The state key of a device's membership in the room's call (``_{user}_{device}_m.call``)."""
    return f"_{user_id}_{device_id}_{APPLICATION}"


def membership_content(
    user_id: str,
    device_id: str,
    matrix_room_id: str,
    focus_url: str,
    *,
    intent: str = "video",
    created_ts: int | None = None,
) -> dict[str, Any]:
    """A device's membership in the room's call. ``membershipID`` is ``{user}:{device}``, as
    matrix-js-sdk sends it: the member's LiveKit identity."""
    content: dict[str, Any] = {
        "application": APPLICATION,
        "call_id": "",
        "scope": "m.room",
        "device_id": device_id,
        "membershipID": f"{user_id}:{device_id}",
        "expires": MEMBERSHIP_EXPIRES_MS,
        "m.call.intent": intent,
        "focus_active": {"type": "livekit", "focus_selection": "oldest_membership"},
        "foci_preferred": [
            {
                "type": "livekit",
                "livekit_service_url": focus_url,
                "livekit_alias": matrix_room_id,
            }
        ],
    }
    if created_ts is not None:
        content["created_ts"] = created_ts
    return content


def is_active(content: Mapping[str, Any]) -> bool:
    """Whether a call.member state content is a membership (``{}`` is a leave)."""
    return isinstance(content.get("device_id"), str) and content.get("application") == APPLICATION


def member_of(event: Mapping[str, Any]) -> tuple[str, str] | None:
    """(user, device) a call.member state event is about, from its sender and state key; None
    when it is not one (or its key names another user than its sender)."""
    if event.get("type") != CALL_MEMBER:
        return None
    key, sender = event.get("state_key"), event.get("sender")
    if not isinstance(key, str) or not isinstance(sender, str):
        return None
    prefix, suffix = f"_{sender}_", f"_{APPLICATION}"
    if not key.startswith(prefix) or not key.endswith(suffix):
        return None
    device = key[len(prefix) : -len(suffix)]
    return (sender, device) if device else None


def ring_content(membership_event_id: str, *, intent: str = "video", now_ms: int) -> dict[str, Any]:
    """The ring a member sends when its join starts the call."""
    return {
        "slot_id": CALL_SLOT,
        "m.mentions": {"room": True, "user_ids": []},
        "notification_type": "ring",
        "m.relates_to": {"rel_type": "m.reference", "event_id": membership_event_id},
        "sender_ts": now_ms,
        "lifetime": RING_LIFETIME_MS,
        "msc4354_sticky_key": CALL_SLOT,
        "m.call.intent": intent,
    }


def _now_ms() -> int:
    return int(time.time() * 1000)


class MembershipKeeper:
    """Holds one device's membership in one room's call while it should; see the module
    docstring. ``on_held`` is called each time the membership is (again) in place."""

    def __init__(
        self,
        client: MatrixClient,
        store: MatrixStore,
        matrix_room_id: str,
        user_id: str,
        device_id: str,
        focus_url: str,
        *,
        intent: str = "video",
        on_held: Callable[[str], None] | None = None,
        restart_seconds: float = RESTART_SECONDS,
        leave_delay_ms: int = LEAVE_DELAY_MS,
    ) -> None:
        self.client = client
        self.store = store
        self.matrix_room_id = matrix_room_id
        self.user_id = user_id
        self.device_id = device_id
        self.focus_url = focus_url
        self.intent = intent
        self.on_held = on_held
        self.restart_seconds = restart_seconds
        self.leave_delay_ms = leave_delay_ms
        self.state_key = state_key(user_id, device_id)
        self.held = False
        """Whether the membership is in place, as far as we know."""
        self.event_id = ""
        self._delay_id = ""
        self._created_ts: int | None = None
        self._sending = False
        """A membership was sent with no answer yet (cancelled, timed out): it may still land."""
        self._check = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._keep(), name=f"membership-{self.user_id}")

    def vanished(self) -> None:
        """The room says this device's membership ended: look, and join again if so."""
        self._check.set()

    async def leave(self) -> None:
        """End the membership: ``{}`` at its state key, the delayed leave cancelled. What cannot
        be done now (homeserver down) is done by the delayed leave, or at the next start."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        was_held, self.held = self.held, False
        interrupted, self._sending = self._sending, False
        if not was_held and not self._delay_id:
            return
        try:
            await self.client.put_state(
                self.matrix_room_id, CALL_MEMBER, self.state_key, {}, as_user=self.user_id
            )
            # A membership interrupted on its way may still land after this {}: the delayed
            # leave, kept, ends it then.
            if not interrupted:
                await self._cancel_delayed()
        except MatrixError as error:
            log.warning("membership of %s not ended now (%s)", self.user_id, error)
            return
        self.store.remove_membership(self.matrix_room_id, self.user_id, self.device_id)

    async def _cancel_delayed(self) -> None:
        delay_id, self._delay_id = self._delay_id, ""
        if delay_id:
            with contextlib.suppress(MatrixError):
                await self.client.update_delayed(delay_id, "cancel", as_user=self.user_id)

    async def _join(self) -> None:
        """The delayed leave first, then the membership (matrix-js-sdk's order)."""
        await self._cancel_delayed()
        self._delay_id = await self.client.put_delayed_state(
            self.matrix_room_id,
            CALL_MEMBER,
            self.state_key,
            {},
            self.leave_delay_ms,
            as_user=self.user_id,
        )
        self.store.put_membership(
            Membership(self.matrix_room_id, self.user_id, self.device_id, self._delay_id)
        )
        if self._created_ts is None:
            self._created_ts = _now_ms()
        content = membership_content(
            self.user_id,
            self.device_id,
            self.matrix_room_id,
            self.focus_url,
            intent=self.intent,
            created_ts=self._created_ts,
        )
        self._sending = True
        self.event_id = await self.client.put_state(
            self.matrix_room_id, CALL_MEMBER, self.state_key, content, as_user=self.user_id
        )
        self._sending = False
        self.held = True
        if self.on_held is not None:
            self.on_held(self.event_id)

    async def _still_held(self) -> bool:
        try:
            content = await self.client.request(
                "GET",
                f"/_matrix/client/v3/rooms/{_quote(self.matrix_room_id)}/state/"
                f"{CALL_MEMBER}/{_quote(self.state_key)}",
                as_user=self.user_id,
            )
        except MatrixUnavailable:
            raise
        except MatrixError:
            return False
        # Ours, not something another member wrote at our state key (rooms without MSC3757
        # let anyone allowed to send call memberships write any "_@user..." key).
        return (
            is_active(content) and content.get("membershipID") == f"{self.user_id}:{self.device_id}"
        )

    async def _keep(self) -> None:
        delay = 0.5
        while True:
            try:
                if not self.held:
                    await self._join()
                delay = 0.5
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._check.wait(), self.restart_seconds)
                if self._check.is_set():
                    self._check.clear()
                    if not await self._still_held():
                        log.info("membership of %s vanished: joining again", self.user_id)
                        self.held = False
                        # at most one rejoin a second, whoever keeps ending it
                        await asyncio.sleep(REJOIN_SECONDS)
                        continue
                await self.client.update_delayed(self._delay_id, "restart", as_user=self.user_id)
            except asyncio.CancelledError:
                raise
            except MatrixUnavailable as error:
                log.info("homeserver unavailable for %s's membership: %s", self.user_id, error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
            except MatrixError as error:
                # The delayed leave is gone (it fired, or the homeserver forgot it): the membership
                # may have ended with it. Join again: the same state key, so never two.
                log.info("membership of %s: %s; joining again", self.user_id, error)
                self._delay_id = ""
                self.held = False
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)


def _quote(text: str) -> str:
    return quote(text, safe="")


async def end_leftovers(
    client: MatrixClient, store: MatrixStore, *, matrix_room_id: str | None = None
) -> list[Membership]:
    """End the memberships a previous run left behind (all, or one room's); those ended."""
    ended: list[Membership] = []
    for held in store.memberships(matrix_room_id):
        user = held.user_id
        try:
            await client.put_state(
                held.matrix_room_id,
                CALL_MEMBER,
                state_key(user, held.device_id),
                {},
                as_user=user,
            )
            if held.delay_id:
                with contextlib.suppress(MatrixError):
                    await client.update_delayed(held.delay_id, "cancel", as_user=user)
        except MatrixUnavailable as error:
            log.info("leftover membership of %s not ended yet: %s", user, error)
            continue
        except MatrixError as error:
            log.info("leftover membership of %s: %s", user, error)
        store.remove_membership(held.matrix_room_id, user, held.device_id)
        ended.append(held)
    return ended
