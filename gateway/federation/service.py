"""The running federation plugin: its links (opened by gateway.links through the ``ors:``
adapter), what partners ask through the public routes (link, unlink, transactions, media), the
reaction to a peer's removal, and its metrics."""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from gateway.federation.adapter import FederationAdapter
from gateway.federation.directory import FederationClient, PeerDirectory, PeerUnreachable
from gateway.federation.link import FederationLink, new_link_id
from gateway.federation.media import MediaGlue
from gateway.federation.signing import RequestVerifier
from gateway.federation.store import FederationStore, LinkRecord, Peer
from gateway.federation.targets import split_target, target_of
from gateway.links import LinkError, LinkState
from gateway.ors.problems import Problem
from gateway.ratelimit import RateLimiter
from gateway.rooms import RoomError

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from gateway.federation.config import FederationConfig
    from gateway.server import Gateway

log = logging.getLogger(__name__)

UNVERIFIED_PER_MINUTE = 30
UNVERIFIED_BURST = 30


class FederationService:
    """See the module docstring; ``gateway.running["federation"].service``."""

    def __init__(self, gateway: Gateway, config: FederationConfig) -> None:
        self.gateway = gateway
        self.config = config
        self.server_name = gateway.config.server.name
        self.store = FederationStore(gateway.store)
        self.directory = PeerDirectory(self.store, config.ssl_context())
        self.client = FederationClient(self.server_name, gateway.signing_keys, self.directory)
        self.verifier = RequestVerifier(self.server_name, self.directory)
        self.adapter = FederationAdapter(self)
        self.limiter = RateLimiter(
            config.requests_per_second * 60, burst=config.request_burst, max_keys=10_000
        )
        self.unverified = RateLimiter(UNVERIFIED_PER_MINUTE, burst=UNVERIFIED_BURST)
        """Requests that fail verification, per source address."""
        self._asking: set[tuple[str, str, str]] = set()
        """(room, peer, peer room) of links a partner is asking for right now (``accept``)."""
        self.transactions: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()

    async def close(self) -> None:
        await self.directory.close()

    def banner(self) -> str:
        return f"federation: {len(self.store.peers())} peers, {len(self.store.links())} links"

    # --- links, as gateway.links opens them --------------------------------------------------

    def open_link(self, room_id: str, target: str) -> FederationLink:
        peer_room, peer = split_target(target)
        record = self.store.find_link(room_id, peer, peer_room)
        if record is None:
            record = LinkRecord(new_link_id(), room_id, peer, peer_room, initiator=True)
            self.store.put_link(record)
        media = MediaGlue(self.gateway.relay, room_id, record.link_id, controlling=record.initiator)
        link = FederationLink(
            rooms=self.gateway.rooms,
            client=self.client,
            unreachable=(PeerUnreachable,),
            room_id=room_id,
            peer=peer,
            peer_room=peer_room,
            link_id=record.link_id,
            initiator=record.initiator,
            heartbeat_seconds=self.config.heartbeat_seconds,
            grace_seconds=self.config.grace_seconds,
            max_participants=self.gateway.config.rooms.max_participants,
            media=media,
            on_transaction=lambda direction: self.transactions.update([direction]),
            is_peer=lambda name: self.store.peer(name) is not None,
        )
        link.forget_hook = self._forgotten
        link.asked_by_partner = (room_id, peer, peer_room) in self._asking
        return link

    async def _forgotten(self, link: FederationLink) -> None:
        """The link was unlinked here (or by the partner): its record goes."""
        record = self.store.find_link(link.room_id, link.peer, link.peer_room)
        if record is not None:
            self.store.remove_link(record.link_id)

    def live(self, record: LinkRecord) -> FederationLink | None:
        link = self.gateway.links.live(record.room_id, target_of(record.peer_room, record.peer))
        return link if isinstance(link, FederationLink) else None

    def on_peer_removed(self, name: str) -> None:
        """An operator removed the peer: its links show ``failed`` until it is added again."""
        for record in self.store.links():
            if record.peer == name:
                link = self.live(record)
                if link is not None:
                    link.peer_removed()

    # --- what partners ask (routes.py) --------------------------------------------------------

    def check_rate(self, peer: Peer) -> bool:
        return self.limiter.allow(peer.name)

    def allowed(self, peer: Peer, room_id: str) -> bool:
        """Whether ``peer`` may link ``room_id``: allowed server-wide or for this room by the
        operator, or named by the room's policy."""
        if peer.allows(room_id):
            return True
        try:
            room = self.gateway.rooms.get(room_id)
        except RoomError:
            return False
        return peer.name in room.policy.federation_peers

    def _record(self, peer: Peer, link_id: object) -> LinkRecord:
        record = self.store.link(link_id) if isinstance(link_id, str) else None
        if record is None or record.peer != peer.name:
            raise Problem("link_not_found", "no such link with this server", 404)
        if not self.allowed(peer, record.room_id):
            raise Problem("peer_not_allowed", f"{peer.name} may not link this room", 403)
        return record

    def link_of(self, peer: Peer, link_id: object) -> FederationLink:
        """The live link ``link_id`` with ``peer``; Problem 404 ``link_not_found`` otherwise."""
        link = self.live(self._record(peer, link_id))
        if link is None:
            raise Problem("link_not_found", "this link is not running here", 404)
        return link

    async def accept(self, peer: Peer, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /links`` with a checked body: store the link (idempotent), run it, answer."""
        link_id, room_id, peer_room = body["link_id"], body["room"], body["peer_room"]
        if not self.allowed(peer, room_id):  # first: a peer learns nothing of other rooms
            raise Problem(
                "peer_not_allowed", f"{peer.name} is not allowed to link room '{room_id}'", 403
            )
        if not self.gateway.rooms.exists(room_id):
            raise Problem("room_not_found", f"room '{room_id}' does not exist here", 404)
        existing = self.store.find_link(room_id, peer.name, peer_room)
        if existing is None:
            linked = [r for r in self.store.links() if r.room_id == room_id]
            if len(linked) >= self.config.max_links_per_room:
                raise Problem(
                    "too_many_links",
                    f"room '{room_id}' has {len(linked)} links, the most it may have",
                    409,
                )
            self.store.put_link(LinkRecord(link_id, room_id, peer.name, peer_room, False))
            log.info("a partner linked a room", extra={"room": room_id, "peer": peer.name})
        elif existing.link_id != link_id:
            existing.link_id = link_id
            self.store.put_link(existing)
        record = self.store.find_link(room_id, peer.name, peer_room)
        assert record is not None
        live = self.live(record)
        if live is not None:
            live.partner_linked(link_id)
        else:
            self._asking.add((room_id, peer.name, peer_room))
            try:
                await self.gateway.links.ensure(room_id, target_of(peer_room, peer.name))
            except (LinkError, RoomError) as error:
                log.warning("a partner's link cannot run here: %s", error)
            finally:
                self._asking.discard((room_id, peer.name, peer_room))
        return {"link_id": link_id, "room": room_id, "peer_room": peer_room, "state": "connected"}

    async def unlinked(self, peer: Peer, link_id: str) -> None:
        """``DELETE /links/{link_id}``: the partner unlinked; so do we, without telling it."""
        record = self.store.link(link_id)
        if record is None or record.peer != peer.name:
            raise Problem("link_not_found", "no such link with this server", 404)
        link = self.live(record)
        if link is not None:
            link.partner_forgot = True
        with contextlib.suppress(LinkError, RoomError):
            await self.gateway.links.unlink(
                record.room_id, target_of(record.peer_room, record.peer)
            )
        self.store.remove_link(record.link_id)
        log.info("a partner unlinked a room", extra={"room": record.room_id, "peer": peer.name})

    # --- metrics -----------------------------------------------------------------------------

    def metrics(self) -> Iterable[Metric]:
        states = Counter(
            status.state.value
            for scheme, status in self.gateway.links.statuses()
            if scheme == self.adapter.scheme
        )
        links = GaugeMetricFamily(
            "rondpoint_federation_links", "Federation links by state", labels=["state"]
        )
        for state in LinkState:
            links.add_metric([state.value], states.get(state.value, 0))
        yield links
        transactions = CounterMetricFamily(
            "rondpoint_federation_transactions",
            "Federation transactions answered, by direction",
            labels=["direction"],
        )
        for direction in ("in", "out"):
            transactions.add_metric([direction], self.transactions.get(direction, 0))
        yield transactions
        refused = CounterMetricFamily(
            "rondpoint_federation_refused",
            "Partners' requests this gateway refused, by problem code",
            labels=["code"],
        )
        for code, count in sorted(self.refused.items()):
            refused.add_metric([code], count)
        yield refused
