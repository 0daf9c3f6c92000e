"""The running Matrix plugin: the client, the ghosts, the store, and the homeserver's
transactions applied in order by one consumer.

The application-service route (appservice.py) hands each new transaction to ``submit``; a bounded
queue holds them (a full queue is refused, and the homeserver sends the transaction again later),
and one task gives each room event, then each to-device event, to the listeners in order. A
listener's exception is logged and never stops the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.store import Store
from protocols.matrix.client import MatrixClient
from protocols.matrix.config import MatrixConfig
from protocols.matrix.ghosts import Ghosts
from protocols.matrix.store import MatrixStore

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[None]]
MAX_QUEUED_TRANSACTIONS = 1000

KNOWN_EVENT_PREFIXES = (
    "m.room.",
    "m.call.",
    "m.reaction",
    "m.rtc.",
    "org.matrix.msc3401.",
    "org.matrix.msc4075.",
    "org.matrix.msc4143.",
    "io.element.",
)
"""Room events the listeners are given; others are ignored (logged at debug)."""


@dataclass(frozen=True)
class Transaction:
    """A homeserver transaction's events, checked for shape by the route."""

    txn_id: str
    events: Sequence[dict[str, Any]]
    to_device: Sequence[dict[str, Any]] = ()


class MatrixService:
    """What the plugin runs (``Running.service``). Made inside the event loop (it starts its
    consumer task)."""

    def __init__(
        self,
        config: MatrixConfig,
        store: Store,
        *,
        base_url: str,
        client: MatrixClient | None = None,
        max_queued: int = MAX_QUEUED_TRANSACTIONS,
    ) -> None:
        self.config = config
        self.base_url = base_url
        self.client = client or MatrixClient(
            config.homeserver_url,
            config.as_token,
            config.bot_user_id,
            ssl_context=config.ssl_context() if config.homeserver_url.startswith("https") else None,
        )
        self.store = MatrixStore(store)
        self.ghosts = Ghosts(self.client, self.store)
        self._queue: asyncio.Queue[Transaction] = asyncio.Queue(maxsize=max_queued)
        self._listeners: list[Handler] = []
        self._to_device_listeners: list[Handler] = []
        self._consumer = asyncio.get_running_loop().create_task(self._consume())

    @property
    def appservice_url(self) -> str:
        return self.config.appservice_url_for(self.base_url)

    @property
    def focus_url(self) -> str:
        """The ``livekit_service_url`` our ghosts advertise in their call memberships."""
        return self.config.focus_url_for(self.base_url)

    def listen(self, handler: Handler) -> Callable[[], None]:
        """``handler`` gets every room event of every transaction, in order; returns the
        unsubscribe function."""
        return _subscribe(self._listeners, handler)

    def listen_to_device(self, handler: Handler) -> Callable[[], None]:
        """``handler`` gets every to-device event (MSC2409), in order; returns the unsubscribe."""
        return _subscribe(self._to_device_listeners, handler)

    def submit(self, transaction: Transaction) -> bool:
        """Queue a new transaction and remember its id; False when the queue is full (nothing
        remembered: the homeserver sends it again)."""
        try:
            self._queue.put_nowait(transaction)
        except asyncio.QueueFull:
            return False
        self.store.add_transaction(transaction.txn_id)
        return True

    def seen(self, txn_id: str) -> bool:
        """Whether the transaction was already accepted (a homeserver's retry)."""
        return self.store.seen_transaction(txn_id)

    async def drained(self) -> None:
        """Returns once every queued transaction was applied (tests, shutdown)."""
        await self._queue.join()

    async def close(self) -> None:
        self._consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._consumer
        await self.client.close()

    async def _consume(self) -> None:
        while True:
            transaction = await self._queue.get()
            try:
                await self._apply(transaction)
            finally:
                self._queue.task_done()

    async def _apply(self, transaction: Transaction) -> None:
        for event in transaction.events:
            kind = event.get("type")
            if not isinstance(kind, str) or not kind.startswith(KNOWN_EVENT_PREFIXES):
                log.debug("matrix event of type %.80r ignored", kind)
                continue
            if not isinstance(event.get("room_id"), str) or not isinstance(
                event.get("sender"), str
            ):
                log.debug("matrix event of type %.80s without a room or sender ignored", kind)
                continue
            await _deliver(list(self._listeners), event)
        for event in transaction.to_device:
            await _deliver(list(self._to_device_listeners), event)


def _subscribe(listeners: list[Handler], handler: Handler) -> Callable[[], None]:
    listeners.append(handler)

    def unsubscribe() -> None:
        if handler in listeners:
            listeners.remove(handler)

    return unsubscribe


async def _deliver(listeners: list[Handler], event: dict[str, Any]) -> None:
    for handler in listeners:
        try:
            await handler(event)
        except Exception:
            log.exception(
                "a Matrix event handler failed on a %.80s event; the next events go on",
                event.get("type"),
            )
