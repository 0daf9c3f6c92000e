"""The fakes and helpers of the MatrixLink unit tests (test_link, test_e2ee_link,
test_megolm_link): a gateway with a room "here", a fake MatrixService over a fake homeserver, a
fake LiveKit half, and small waits and look-ups."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from gateway.config import Config
from gateway.links import LinkState, LinkStatus
from gateway.rooms import ChatMessage, Participant, Role
from gateway.rooms.events import Subscription
from gateway.server import Gateway
from protocols.livekit.bridge import BridgePolicy, BridgeSettings
from protocols.matrix.config import MatrixConfig
from protocols.matrix.ghosts import Ghosts
from protocols.matrix.membership import CALL_MEMBER, is_active
from protocols.matrix.store import MIGRATIONS, MatrixStore
from tests.unit.matrix.fake_homeserver import BOT, FakeHomeserver

ROOM = "!call:hs.test"
ANNA = "@anna:hs.test"
OPEN_CALLS = {"users_default": 0, "events": {CALL_MEMBER: 0}, "state_default": 50}


class FakeService:
    """What a MatrixLink uses of protocols.matrix.service.MatrixService."""

    def __init__(self, homeserver: FakeHomeserver, store: MatrixStore) -> None:
        self.config = MatrixConfig(homeserver_url="http://127.0.0.1:1", server_name="hs.test")
        self.client = homeserver
        self.store = store
        self.ghosts = Ghosts(homeserver, store)  # type: ignore[arg-type]
        self.focus_url = "http://127.0.0.1:8080/matrix"
        self.listeners: list[Callable[[dict[str, Any]], Awaitable[None]]] = []
        self.to_device_listeners: list[Callable[[dict[str, Any]], Awaitable[None]]] = []
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        homeserver.on_event = self.queue.put_nowait
        self.consumer = asyncio.get_running_loop().create_task(self._consume())

    def listen(self, handler: Callable[[dict[str, Any]], Awaitable[None]]) -> Callable[[], None]:
        self.listeners.append(handler)
        return lambda: self.listeners.remove(handler)

    def listen_to_device(
        self, handler: Callable[[dict[str, Any]], Awaitable[None]]
    ) -> Callable[[], None]:
        self.to_device_listeners.append(handler)
        return lambda: self.to_device_listeners.remove(handler)

    async def _consume(self) -> None:
        while True:
            event = await self.queue.get()
            for handler in list(self.listeners):
                await handler(event)


class FakeBridge:
    """The LiveKit half: who it brought here, and what it was asked."""

    made: list[FakeBridge] = []

    def __init__(
        self, gateway: Gateway, room_id: str, settings: BridgeSettings, policy: BridgePolicy
    ) -> None:
        self.gateway, self.room_id, self.settings, self.policy = gateway, room_id, settings, policy
        self.remotes: dict[str, str] = {}
        self.resyncs = 0
        self.started = self.stopped = False
        FakeBridge.made.append(self)

    def identities(self) -> dict[str, str]:
        return dict(self.remotes)

    def resync(self) -> None:
        self.resyncs += 1

    def status(self) -> LinkStatus:
        return LinkStatus(LinkState.CONNECTED, "in the LiveKit room")

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    def bring(self, identity: str, name: str) -> Participant:
        """A LiveKit participant brought here, as the real bridge does."""
        room = self.gateway.rooms.get(self.room_id)
        participant = self.gateway.rooms.add_participant(
            room, name, Role.MEMBER, origin="matrix", origin_address=identity, lobby=False
        )
        self.remotes[identity] = participant.id
        return participant


def gateway_here(tmp_path: Path) -> Gateway:
    """A gateway (no SIP, no demo room) with the Matrix tables and an empty room "here"."""
    config = Config()
    config.server.data_dir = str(tmp_path / "data")
    config.sip.enabled = False
    config.rooms.demo_room = ""
    gateway = Gateway(config, plugins=[])
    gateway.store.migrate_plugin("matrix", MIGRATIONS)
    gateway.rooms.create("here")
    FakeBridge.made.clear()
    return gateway


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met")


def ghost_of(participant: Participant) -> str:
    from protocols.matrix.ids import ghost_user_id

    return ghost_user_id("rondpoint_", participant.id, "hs.test")


def key_of(user: str) -> str:
    return f"_{user}_RONDPOINT_m.call"


def join_here(gateway: Gateway, name: str, origin: str = "ors") -> Participant:
    room = gateway.rooms.get("here")
    return gateway.rooms.add_participant(room, name, Role.MEMBER, origin=origin, lobby=False)


def notices(homeserver: FakeHomeserver) -> list[str]:
    return [
        content["body"]
        for kind, _, content, sender in homeserver.sent
        if kind == "m.room.message" and content.get("msgtype") == "m.notice" and sender == BOT
    ]


async def first_chat(events: Subscription) -> ChatMessage:
    """The next chat message among EVENTS (within 5 s)."""
    async with asyncio.timeout(5):
        async for event in events:
            if isinstance(event, ChatMessage):
                return event
    raise AssertionError("the room's events ended without a chat message")


async def bea_in_the_call(
    link: Any, homeserver: FakeHomeserver, gateway: Gateway
) -> tuple[Participant, str]:
    """Bea joins the room here and LINK starts; once her ghost's call membership is active: Bea
    and her ghost's user id."""
    bea = join_here(gateway, "Bea")
    await link.start()
    ghost = ghost_of(bea)
    await until(lambda: is_active(homeserver.content(ROOM, CALL_MEMBER, key_of(ghost)) or {}))
    return bea, ghost
