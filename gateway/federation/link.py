"""One link of a room here to a partner gateway's room (spec 14.4): a gateway.links ``Link``.

Both ends run the same loop. It asks the partner to link (``POST /links``, idempotent: after a
restart either side asks again), then sends this room's full ``state`` and, on the initiator, a
media offer; from then on it keeps one transaction in flight (``PUT /transactions/{txn_id}``),
retrying the same txn id with backoff (0.5 s doubling to 30 s) until the partner answers, and an
empty transaction every ``heartbeat_seconds``. Answers decide the state:

- 200: ``connected``;
- 403 ``peer_not_allowed``: ``refused`` with the partner's detail, asked again every 60 s;
- another 4xx (``room_not_found`` there...): ``failed`` with the partner's detail, every 60 s;
- network errors, 5xx, 429: ``retrying`` with the reason, with backoff;
- 404 ``link_not_found`` to a transaction: the partner forgot the link: ask again.

Contact is any answered request or any transaction received. With none for three heartbeats the
link is ``retrying`` and asks again; the partner's participants stay for ``grace_seconds`` more,
then leave the room.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from gateway.federation.mirror import Mirror
from gateway.federation.targets import target_of
from gateway.links import LinkState, LinkStatus
from gateway.rooms import RoomEvent, Subscription
from gateway.rooms.names import display_name

if TYPE_CHECKING:
    from gateway.federation.media import MediaGlue
    from gateway.rooms import RoomManager

log = logging.getLogger(__name__)

FIRST_RETRY = 0.5
MAX_RETRY = 30.0
SLOW_RETRY = 60.0
"""Seconds between attempts while the partner refuses the link or cannot serve it."""
MISSED_HEARTBEATS = 3
FORGET_TIMEOUT = 5.0
SEEN_TRANSACTIONS = 1_000
MAX_EVENTS = 100
"""Events in one transaction, at most."""
MAX_PENDING = 1_000
"""Events waiting for the partner; beyond, a full state replaces the participant events, and if
that is not enough the oldest others (chat) are dropped."""
NOT_A_PEER = "not a federation peer any more"
COVERED_BY_STATE = ("state", "participant", "participant_left")
"""Events a full ``state`` makes useless: dropped when one is queued."""


class Client(Protocol):
    """The signed HTTP client (gateway/federation/directory.py ``FederationClient``)."""

    async def request(
        self, peer: str, method: str, path: str, body: object | None = None, *, timeout: float = 10
    ) -> tuple[int, dict[str, Any]]: ...


@dataclass
class Attempt:
    """The partner's answer to one request, as the link's state sees it."""

    state: LinkState
    detail: str


def judge(status: int, body: dict[str, Any], what: str) -> Attempt:
    """The link state an answer to ``what`` leads to (see the module docstring)."""
    if 200 <= status < 300:
        return Attempt(LinkState.CONNECTED, "")
    # the partner's words, shown to operators and hosts: one line, no control characters
    detail = display_name(str(body.get("detail") or body.get("title") or ""), 300)
    detail = detail or f"HTTP {status}"
    code = str(body.get("code", ""))
    said = f"{what}: {detail}"
    if status == 403 and code == "peer_not_allowed":
        return Attempt(LinkState.REFUSED, detail)
    if status == 429 or status >= 500:
        return Attempt(LinkState.RETRYING, f"{said} ({status})")
    return Attempt(LinkState.FAILED, detail)


def new_link_id() -> str:
    return "l_" + secrets.token_urlsafe(16)


def new_txn_id() -> str:
    return "t_" + secrets.token_urlsafe(16)


class FederationLink:
    """The live link of ``room_id`` to ``peer_room`` on ``peer`` (module docstring)."""

    def __init__(
        self,
        *,
        rooms: RoomManager,
        client: Client,
        unreachable: tuple[type[BaseException], ...],
        room_id: str,
        peer: str,
        peer_room: str,
        link_id: str,
        initiator: bool,
        heartbeat_seconds: float,
        grace_seconds: float,
        max_participants: int,
        media: MediaGlue | None = None,
        on_transaction: Callable[[str], None] = lambda direction: None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        is_peer: Callable[[str], bool] = lambda name: True,
    ) -> None:
        self.rooms = rooms
        self.client = client
        self.unreachable = unreachable
        self.room_id = room_id
        self.peer = peer
        self.peer_room = peer_room
        self.target = target_of(peer_room, peer)
        self.link_id = link_id
        self.initiator = initiator
        self.heartbeat = heartbeat_seconds
        self.grace = grace_seconds
        self.media = media
        self.mirror = Mirror(rooms, room_id, peer, max_participants=max_participants, media=media)
        if media is not None:
            media.on_wanted_change = self._demand_changed
        self.on_transaction = on_transaction
        self.clock = clock
        self.sleep = sleep
        self.is_peer = is_peer
        self._status = LinkStatus(LinkState.CONNECTING, "asking the partner", time.time())
        self._pending: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        self._relink = False
        """The partner forgot the link: ask again (POST /links)."""
        self._partner_back = False
        """The partner asked to link while we were waiting to ask again: ask now."""
        self._offer_due = False
        """The initiator owes the partner a media offer (after each (re)connection)."""
        self._task: asyncio.Task[None] | None = None
        self._follow: asyncio.Task[None] | None = None
        self._events: Subscription | None = None
        self._seen_txns: OrderedDict[str, None] = OrderedDict()
        self._last_contact = clock()
        self._stopped = False
        self.partner_forgot = False
        """The partner unlinked it (DELETE): ``forget()`` does not tell it again."""
        self.forget_hook: Callable[[FederationLink], Awaitable[None]] | None = None
        self.asked_by_partner = False
        """Opened because the partner asked to link just now: no need to ask it back."""

    # --- gateway.links.Link ---------------------------------------------------------------

    def status(self) -> LinkStatus:
        self._status.remote_participants = len(self.mirror)
        if self.media is not None:
            stats = self.media.stats()
            self._status.packets_in = stats.get("packets_in", 0)
            self._status.packets_out = stats.get("packets_out", 0)
        return self._status

    async def start(self) -> None:
        if self._task is None and not self._stopped:
            self._events = self.rooms.bus.subscribe(self.room_id)
            self._follow = asyncio.create_task(self._follow_room(self._events))
            self._task = asyncio.create_task(self._run(), name=f"federation-link-{self.link_id}")

    async def stop(self) -> None:
        self._stopped = True
        for task in (self._task, self._follow):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._follow = None
        if self._events is not None:
            self._events.close()
            self._events = None
        self.mirror.clear()
        if self.media is not None:
            self.media.close()
        self._set(LinkState.STOPPED, "unlinked")

    async def forget(self) -> None:
        """The operator unlinked it (or deleted the room): tell the partner, best effort."""
        if self.forget_hook is not None:
            await self.forget_hook(self)
        if self.partner_forgot:
            return
        with contextlib.suppress(*self.unreachable, TimeoutError):
            await asyncio.wait_for(
                self.client.request(
                    self.peer, "DELETE", f"/links/{self.link_id}", timeout=FORGET_TIMEOUT
                ),
                FORGET_TIMEOUT + 1,
            )

    def peer_removed(self) -> None:
        """The operator removed the peer: its people leave, and the link shows ``failed`` until
        the peer is added again (checked every SLOW_RETRY seconds)."""
        self.mirror.clear()
        if self._task is not None and not self._stopped:
            self._task.cancel()
            self._task = asyncio.create_task(self._run(), name=f"federation-link-{self.link_id}")
        self._set(LinkState.FAILED, NOT_A_PEER)

    # --- what the partner sends (routes.py) -------------------------------------------------

    def receive(self, txn_id: str, events: Sequence[dict[str, Any]]) -> None:
        """A transaction from the partner, checked as a whole; applied once per txn id."""
        self._last_contact = self.clock()
        self.on_transaction("in")
        if txn_id in self._seen_txns:
            return
        self._seen_txns[txn_id] = None
        while len(self._seen_txns) > SEEN_TRANSACTIONS:
            self._seen_txns.popitem(last=False)
        self.mirror.apply(events)

    def partner_linked(self, link_id: str) -> None:
        """The partner asked to link again (it restarted): it gets our full state again."""
        self._last_contact = self.clock()
        self.link_id = link_id
        self._partner_back = self._status.state is not LinkState.CONNECTED
        self.resend_state()
        self._offer_due = self.initiator and self.media is not None

    def resend_state(self) -> None:
        """Our full state (and our demand) go first: the partner may have lost them."""
        self._queue(self.mirror.state_event(), replace_state=True)
        if self.media is not None:
            self._demand_changed()

    # --- the loop ----------------------------------------------------------------------

    def _set(self, state: LinkState, detail: str = "") -> None:
        if state != self._status.state or detail != self._status.detail:
            log.info(
                "federation link %s of room %s: %s %s", self.target, self.room_id, state, detail
            )
            self._status = LinkStatus(state, detail, time.time(), self._status.attempts)

    async def _run(self) -> None:
        delay = FIRST_RETRY
        while True:
            if not self.is_peer(self.peer):
                attempt = Attempt(LinkState.FAILED, NOT_A_PEER)
            elif self.asked_by_partner:  # the partner's POST /links opened it: linked already
                self.asked_by_partner = False
                attempt = Attempt(LinkState.CONNECTED, "")
            else:
                attempt = await self._ask()
            if attempt.state is LinkState.CONNECTED:
                self._status.attempts = 0
                delay = FIRST_RETRY
                self._set(LinkState.CONNECTED, f"linked with {self.peer_room} on {self.peer}")
                self.resend_state()
                self._offer_due = self.initiator and self.media is not None
                attempt = await self._send_until_broken()
            self._status.attempts += 1
            if attempt.state in (LinkState.REFUSED, LinkState.FAILED):
                self._set(attempt.state, attempt.detail)
                await self._sleep_watching(SLOW_RETRY)
                continue
            self._set(LinkState.RETRYING, f"{attempt.detail}; next attempt in {delay:g} s")
            await self._sleep_watching(delay)
            delay = min(delay * 2, MAX_RETRY)

    async def _sleep_watching(self, seconds: float) -> None:
        """Wait, removing the partner's participants if the grace runs out meanwhile; the
        partner asking to link again (``partner_linked``) ends the wait: it is back."""
        end = self.clock() + seconds
        while True:
            self.check_contact()
            left = end - self.clock()
            if left <= 0 or self._partner_back:
                self._partner_back = False
                return
            await self.sleep(min(left, max(self.heartbeat / 2, 0.05)))

    def check_contact(self) -> None:
        """The partner's participants leave after three missed heartbeats and the grace."""
        silent = self.clock() - self._last_contact
        if len(self.mirror) and silent > MISSED_HEARTBEATS * self.heartbeat + self.grace:
            log.info("no contact with %s: its participants leave", self.peer)
            self.mirror.clear("disconnected")

    async def _call(self, method: str, path: str, body: object, what: str) -> Attempt:
        try:
            status, answer = await self.client.request(self.peer, method, path, body)
        except self.unreachable as error:
            return Attempt(LinkState.RETRYING, f"{what}: {error}")
        self._last_contact = self.clock()
        attempt = judge(status, answer, what)
        if status == 404 and answer.get("code") == "link_not_found":
            attempt = Attempt(LinkState.RETRYING, f"{self.peer} forgot the link: asking again")
            self._relink = True
        return attempt

    async def _ask(self) -> Attempt:
        body = {"link_id": self.link_id, "room": self.peer_room, "peer_room": self.room_id}
        self._relink = False
        return await self._call("POST", "/links", body, f"{self.peer} refused the link")

    async def _send_until_broken(self) -> Attempt:
        """Send transactions (one in flight) until the link breaks; the reason."""
        delay = FIRST_RETRY
        txn: tuple[str, list[dict[str, Any]]] | None = None
        while True:
            if txn is None:
                if not self._pending and self._offer_due:
                    await self._offer_media()
                if not self._pending:
                    await self._wait_for_events()
                events, self._pending = self._pending[:MAX_EVENTS], self._pending[MAX_EVENTS:]
                txn = (new_txn_id(), events)
            txn_id, events = txn
            body = {"link_id": self.link_id, "events": events}
            attempt = await self._call("PUT", f"/transactions/{txn_id}", body, "transaction")
            if attempt.state is LinkState.CONNECTED:
                self.on_transaction("out")
                txn, delay = None, FIRST_RETRY
                if self._status.state is not LinkState.CONNECTED:
                    self._set(LinkState.CONNECTED, f"linked with {self.peer_room} on {self.peer}")
                continue
            if self._relink:
                self._requeue(events)
                return attempt
            if attempt.state in (LinkState.REFUSED, LinkState.FAILED):
                # the partner will not take these events: they go (a full state follows later)
                log.warning(
                    "federation link %s: %s refused %d events: %s",
                    self.target,
                    self.peer,
                    len(events),
                    attempt.detail,
                )
                self._requeue([])
                return attempt
            silent = self.clock() - self._last_contact
            if silent >= MISSED_HEARTBEATS * self.heartbeat:
                self._requeue(events)
                return Attempt(LinkState.RETRYING, attempt.detail)
            await self._sleep_watching(delay)
            delay = min(delay * 2, MAX_RETRY)

    async def _offer_media(self) -> None:
        """The initiator's offer (``POST /links/{id}/media``); its answer starts the transport.
        A network error leaves it due (tried again after the next transaction)."""
        assert self.media is not None
        try:
            offer = self.media.create_offer()
        except ValueError as error:
            log.warning("federation link %s: no media offer: %s", self.target, error)
            self._offer_due = False
            return
        try:
            status, answer = await self.client.request(
                self.peer, "POST", f"/links/{self.link_id}/media", {"sdp": offer}
            )
        except self.unreachable as error:
            log.info("federation link %s: media offer not sent: %s", self.target, error)
            return
        self._last_contact = self.clock()
        if 200 <= status < 300 and isinstance(answer.get("sdp"), str):
            self._offer_due = False
            try:
                self.media.accept_answer(answer["sdp"])
                log.info("federation link %s: media offered and answered", self.target)
            except ValueError as error:
                log.warning("federation link %s: unusable media answer: %s", self.target, error)
        elif status != 429 and status < 500:
            self._offer_due = False
            log.warning(
                "federation link %s: %s refused the media offer: %s",
                self.target,
                self.peer,
                str(answer.get("detail", status))[:300],
            )

    async def _wait_for_events(self) -> None:
        """Until events are queued, or a heartbeat is due (then an empty transaction goes)."""
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.heartbeat)
        self.check_contact()
        if self.media is not None and self.media.lost():
            self._offer_due = True

    def _requeue(self, events: list[dict[str, Any]]) -> None:
        """Events of an unsent transaction go back, before the newer ones; a full state is sent
        again on reconnection, so only what it does not cover (chat) is kept."""
        kept = [e for e in events if e["type"] not in COVERED_BY_STATE]
        self._pending = kept + [e for e in self._pending if e["type"] not in COVERED_BY_STATE]

    def _queue(self, event: dict[str, Any], *, replace_state: bool = False) -> None:
        if replace_state:
            # a full state covers every participant upsert queued before it
            self._pending = [e for e in self._pending if e["type"] not in COVERED_BY_STATE]
            self._pending.insert(0, event)
        else:
            self._pending.append(event)
        if len(self._pending) > MAX_PENDING:
            # a full state replaces the participant events; the oldest of the rest (chat) go
            log.warning("federation link %s: the partner is too slow, events dropped", self.target)
            if not replace_state:
                self._queue(self.mirror.state_event(), replace_state=True)
                return
            del self._pending[1 : len(self._pending) - MAX_PENDING + 1]
        self._wake.set()

    async def _follow_room(self, events: Subscription) -> None:
        async for event in events:
            self._on_room_event(event)

    def _on_room_event(self, event: RoomEvent) -> None:
        try:
            out = self.mirror.outbound(event)
        except Exception:  # a bug must not end the link: report it and carry on
            log.exception("federation link %s: a room event was not sent", self.target)
            return
        for item in out:
            self._queue(item)

    def _demand_changed(self) -> None:
        if self.media is not None:
            self._queue(self.mirror.demand_event(self.media.wanted()))
