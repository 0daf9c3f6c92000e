"""The SIP side of the gateway: listeners, the UA core that routes requests to calls (RFC 3261 8, 12).

Out-of-dialog INVITEs become calls into rooms; OPTIONS is answered for keep-alives; REGISTER is
refused the same way whoever it names (the gateway is no registrar, and scanning it for users
must learn nothing); requests for unknown dialogs get 481.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import ssl
import time
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING

from gateway.links import LinkTargets
from gateway.media.rtp_endpoint import PortAllocator
from gateway.plugins import DialError, DialIn
from protocols.sip.call import CallState, InboundCall
from protocols.sip.clock import SYSTEM_CLOCK, Clock
from protocols.sip.config import dns_server_address
from protocols.sip.dialog import DialogId, incoming_dialog_id, response_dialog_id
from protocols.sip.digest import DigestServer
from protocols.sip.dispatch import Dispatcher
from protocols.sip.message import (
    NameAddress,
    Request,
    Response,
    SipParseError,
    SipUri,
    make_response,
)
from protocols.sip.outbound import OutboundCall, dial_target
from protocols.sip.registration import Registration
from protocols.sip.resolver import DnsLookup
from protocols.sip.store import DispatchRule, SipStore, Trunk
from protocols.sip.transaction import (
    TIMEOUT,
    Action,
    Deliver,
    Terminated,
    TransactionKey,
    new_branch,
    top_via,
)
from protocols.sip.transport import Guard, SipTransport, StreamLimits, trunk_caller_key

if TYPE_CHECKING:
    from gateway.server import Gateway

log = logging.getLogger(__name__)


class SipService:
    """The SIP plugin while it runs; also the gateway's dialler of ``sip:``, ``sips:`` and ``tel:``
    targets (gateway/dialling.py)."""

    ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, REFER"
    schemes: Sequence[str] = ("sip", "sips", "tel")

    def __init__(self, gateway: Gateway, clock: Clock = SYSTEM_CLOCK) -> None:
        self.gateway = gateway
        self.clock = clock
        """What calls read the time from (a manual clock in tests)."""
        self.config = gateway.config.sip
        self.store = SipStore(gateway.store)
        self.rooms = gateway.rooms
        # a link target's local room (visio-UUID, matrix-DIGEST) is made when its rule's first
        # caller arrives, never by a visitor
        self.rooms.reserve(LinkTargets.installed().is_room_id, "phone callers of a linked meeting")
        self.bus = gateway.bus
        self.relay = gateway.relay
        self.guard = Guard(
            failures_before_ban=self.config.failures_before_ban, ban_seconds=self.config.ban_seconds
        )
        self.guard.on_ban = self._banned
        self.guard.trusted = lambda host: self.trunk_of_address(host) is not None
        self.dispatcher = Dispatcher(
            gateway.rooms,
            self.config.language,
            [DispatchRule(r.number, r.room, r.language, r.pin) for r in self.config.dispatch],
        )
        self.ports = PortAllocator(
            self.config.host, self.config.rtp_port_start, self.config.rtp_port_end
        )
        self.media_ip = self.config.public_ip or self.config.host
        self.answer_delay = 0.3
        """Ringing before the answer, long enough for a caller's CANCEL to be honoured."""
        self.transports: list[SipTransport] = []
        self.calls: dict[DialogId, InboundCall] = {}
        self._pending: dict[tuple[str, str], InboundCall] = {}
        """Calls not answered yet, by (Call-ID, INVITE branch)."""
        self.outbound: dict[str, OutboundCall] = {}
        """Calls the rooms placed, by Call-ID."""
        self.dns = DnsLookup(
            [dns_server_address(server) for server in self.config.dns_servers],
            ipv6=":" in self.config.host,
        )
        """Where dial-out finds the servers of SIP domains (RFC 3263)."""
        self.digest = DigestServer(gateway.config.server.name, self._digest_secret())
        self.trunks: list[Trunk] = []
        self.registrations: dict[str, Registration] = {}
        """Registrations to trunks, by Call-ID."""
        self.trunks_changed()

    def _digest_secret(self) -> bytes:
        store = self.gateway.store
        secret = store.get_setting("sip.digest_secret")
        if secret is None:
            secret = secrets.token_hex(32)
            store.set_setting("sip.digest_secret", secret)
        return bytes.fromhex(secret)

    def trunks_changed(self) -> None:
        self.trunks = self.store.trunks()
        if self.transports:
            self._update_registrations()

    def _update_registrations(self) -> None:
        for registration in self.registrations.values():
            registration.stop()
        self.registrations = {}
        for trunk in self.trunks:
            if trunk.register and trunk.address:
                registration = Registration(self, self._transport_for(trunk.transport), trunk)
                self.registrations[registration.call_id] = registration
                registration.start()

    def registration_status(self, trunk_name: str) -> str | None:
        for registration in self.registrations.values():
            if registration.trunk.name == trunk_name:
                return registration.status
        return None

    def trunk(self, name: str | None) -> Trunk | None:
        if name is None:
            return next((t for t in self.trunks if t.address), None)
        found = next((t for t in self.trunks if t.name == name), None)
        if found is None:
            raise DialError(f"no trunk named '{name[:40]}'")
        return found

    def trunk_of_address(self, host: str) -> Trunk | None:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return None
        for trunk in self.trunks:
            for network in trunk.allowed:
                if address in ipaddress.ip_network(network, strict=False):
                    return trunk
        return None

    def _trunk_password(self, username: str) -> str | None:
        return next(
            (t.password for t in self.trunks if t.username == username and t.password), None
        )

    # dialling out --------------------------------------------------------------------------
    def dial(self, room_id: str, target: str, trunk_name: str | None) -> OutboundCall:
        """Call ``target`` into the room; DialError when it cannot be dialled, RoomError when the
        room cannot take the callee. A refused call keeps no port and no participant."""
        uri = dial_target(target)
        trunk = self.trunk(trunk_name) if trunk_name is not None or uri.scheme == "tel" else None
        self.rooms.get(room_id)
        transport = self._transport_for(trunk.transport if trunk else "udp")
        try:
            call = OutboundCall(self, transport, room_id, target, trunk, self.clock)
        except OSError:
            raise DialError("no free RTP port for the call") from None
        try:
            call.add_to_room()
        except BaseException:
            call.abandon()
            raise
        self.outbound[call.call_id] = call
        call.begin()
        return call

    def _transport_for(self, kind: str) -> SipTransport:
        return next((t for t in self.transports if t.kind == kind), self.transports[0])

    def owns(self, participant_id: str) -> bool:
        """Whether the participant is a phone on one of this service's calls."""
        return self._call_of(participant_id) is not None

    def _call_of(self, participant_id: str) -> InboundCall | None:
        return next(
            (
                c
                for c in self.calls.values()
                if c.participant and c.participant.id == participant_id
            ),
            None,
        )

    def transfer(self, participant_id: str, target: str) -> None:
        """Blind-transfer a phone participant out of its room (REFER); DialError if impossible."""
        try:
            SipUri.parse(target)
        except ValueError:
            raise DialError("the transfer target is not a sip: or tel: URI") from None
        call = self._call_of(participant_id)
        if call is None:
            raise DialError("that participant is not on a phone call here")
        try:
            call.transfer(target)
        except ValueError as error:
            raise DialError(str(error)) from None

    def calls_of(self, room_id: str) -> list[dict[str, object]]:
        return [call.status() for call in self.outbound.values() if call.room_id == room_id]

    async def start(self) -> None:
        advertised = self.config.public_ip or self.config.host
        kinds: list[tuple[str, int, ssl.SSLContext | None]] = [
            ("udp", self.config.port, None),
            ("tcp", self.config.port, None),
        ]
        if self.config.tls_port:
            kinds.append(("tls", self.config.tls_port, self._server_ssl()))
        for kind, port, context in kinds:
            transport = SipTransport(
                kind,
                self.config.host,
                port,
                self,
                self.guard,
                advertised,
                context,
                limits=StreamLimits(
                    idle_seconds=self.config.tcp_idle_seconds,
                    message_seconds=self.config.tcp_message_seconds,
                    connections_per_address=self.config.tcp_connections_per_address,
                    max_connections=self.config.tcp_max_connections,
                ),
            )
            await transport.start()
            self.transports.append(transport)
        self._update_registrations()
        log.info("SIP listening", extra={"host": self.config.host, "port": self.config.port})

    def _server_ssl(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = (
            ssl.TLSVersion.TLSv1_3
            if self.config.tls_min_version == "1.3"
            else ssl.TLSVersion.TLSv1_2
        )
        context.load_cert_chain(self.config.tls_cert, self.config.tls_key)
        return context

    async def stop(self) -> None:
        for registration in self.registrations.values():
            registration.stop()
        for call in list(self.calls.values()) + list(self._pending.values()):
            call.hang_up("room_closed")
        for transport in self.transports:
            transport.close()

    def _banned(self, key: str) -> None:
        """A ban started: end that address's (or that trunk caller's) calls still waiting for a
        PIN."""
        for call in list(self._pending.values()) + list(self.calls.values()):
            if call.failure_key == key and call.participant is None:
                call.hang_up("banned")

    @property
    def port(self) -> int:
        return self.transports[0].port if self.transports else self.config.port

    def dial_in(self, room_id: str) -> DialIn:
        """How a phone reaches the room (ORS dial-in, spec 4.5), at ``[sip] domain`` when set."""
        host = self.config.domain
        if not host:
            address = self.config.public_ip or self.config.host
            host = f"[{address}]" if ":" in address else address
            if self.port != 5060:
                host += f":{self.port}"
        numbers, uris = self.dispatcher.dial_in(room_id, host, self.config.allow_anonymous)
        return DialIn(numbers=numbers, sip_uris=uris)

    # what calls need -------------------------------------------------------------------------
    def contact(self, transport: SipTransport) -> str:
        return f"<sip:rondpoint@{transport.sent_by};transport={transport.kind}>"

    def via(self, transport: SipTransport) -> str:
        return f"SIP/2.0/{transport.via_transport} {transport.sent_by};branch={new_branch()};rport"

    def register_dialog(self, call: InboundCall) -> None:
        assert call.dialog is not None
        self.calls[call.dialog.id] = call
        self._pending.pop(_pending_key(call.invite), None)

    def forget(self, call: InboundCall) -> None:
        if call.dialog is not None:
            self.calls.pop(call.dialog.id, None)
        self._pending.pop(_pending_key(call.invite), None)
        if isinstance(call, OutboundCall):
            # keep the final status visible in the admin API for a while
            asyncio.get_running_loop().call_later(60, lambda: self.outbound.pop(call.call_id, None))

    def send_in_dialog(self, call: InboundCall, request: Request) -> None:
        """Send a request of ours in a call's dialog, to where the phone's signalling comes from."""
        call.transport.send_request(request, call.source)

    def options_response(self, request: Request) -> Response:
        response = make_response(request, 200)
        response.headers.add("Allow", self.ALLOW)
        response.headers.add("Accept", "application/sdp")
        response.headers.add("Supported", "timer")
        return response

    # the transaction user ----------------------------------------------------------------------
    def deliver(self, transport: SipTransport, action: Deliver) -> None:
        message = action.message
        if isinstance(message, Response):
            self._response(message)
            return
        try:
            self._request(transport, message, action)
        except ValueError:
            if action.key is not None:
                transport.send_response(action.key, make_response(message, 400, "Bad Request"))

    def _response(self, response: Response) -> None:
        registration = self.registrations.get(response.headers.get("Call-ID") or "")
        if registration is not None:
            registration.response(response)
            return
        outbound = self.outbound.get(response.headers.get("Call-ID") or "")
        cseq = response.headers.get("CSeq") or ""
        if outbound is not None and cseq.upper().endswith("INVITE") and outbound.dialog is None:
            outbound.invite_response(response)
            return
        try:
            call = self.calls.get(response_dialog_id(response))
        except ValueError:
            return
        if call is not None:
            if isinstance(call, OutboundCall) and cseq.upper().endswith("INVITE"):
                call.invite_response(response)
            else:
                call.response_received(response)

    def _request(self, transport: SipTransport, request: Request, action: Deliver) -> None:
        key, source = action.key, action.source or ("", 0)
        method = request.method
        to_tag = NameAddress.parse(request.headers.get("To") or "").tag
        if method == "CANCEL":
            call = self._pending.get(_pending_key(request))
            if call is not None:
                call.cancelled()
            return
        if to_tag:
            call = self.calls.get(incoming_dialog_id(request))
            if call is not None and call.state is not CallState.ENDED:
                call.in_dialog(request, key)
            elif method != "ACK" and key is not None:
                transport.send_response(
                    key, make_response(request, 481, "Call/Transaction Does Not Exist")
                )
            return
        if key is None:
            return  # a stray ACK
        if method == "INVITE":
            self._invite(transport, request, key, source)
        elif method == "OPTIONS":
            transport.send_response(key, self.options_response(request))
        elif method == "REGISTER":
            response = make_response(request, 403, "Forbidden")
            transport.send_response(key, response)
        elif method in ("BYE", "UPDATE", "INFO", "REFER", "PRACK", "ACK"):
            transport.send_response(
                key, make_response(request, 481, "Call/Transaction Does Not Exist")
            )
        else:
            response = make_response(request, 501, "Not Implemented")
            response.headers.add("Allow", self.ALLOW)
            transport.send_response(key, response)

    def _invite(
        self,
        transport: SipTransport,
        request: Request,
        key: TransactionKey,
        source: tuple[str, int],
    ) -> None:
        user = SipUri.parse(request.uri).user or ""
        trunk = self.trunk_of_address(source[0])
        trusted = trunk is not None
        credentials = request.headers.get("Authorization")
        if not trusted and (credentials or not self.config.allow_anonymous):
            verdict = self.digest.check(
                "INVITE", credentials, self._trunk_password, now=time.time(), body=request.body
            )
            if verdict.user is None:
                if credentials and not verdict.stale:
                    self.guard.failure(source[0], "authentication")
                transport.send_response(
                    key, self.digest.unauthorized(request, time.time(), stale=verdict.stale)
                )
                return
            trusted = True
            trunk = next((t for t in self.trunks if t.username == verdict.user), None)
        call = InboundCall(self, transport, request, key, source, self.clock)
        if trunk is not None:
            # its wrong PINs count against the trunk's caller, never the trunk's address
            call.failure_key = trunk_caller_key(trunk.name, _caller_identity(request))
            if self.guard.banned(call.failure_key):
                transport.send_response(key, make_response(request, 403, "Forbidden"))
                return
        self._pending[_pending_key(request)] = call
        call.start(user, trusted=trusted, srtp=trunk.srtp if trunk is not None else "optional")

    def terminated(self, transport: SipTransport, action: Terminated) -> None:
        if (
            action.reason == TIMEOUT
            and isinstance(action.key, TransactionKey)
            and action.key.method == "INVITE"
        ):
            call = next((c for c in self.outbound.values() if c.key == action.key), None)
            if call is not None:
                call.timed_out()

    def connection_in_use(self, transport: SipTransport, peer: tuple[str, int]) -> bool:
        calls = [*self.calls.values(), *self._pending.values()]
        return any(
            call.transport is transport
            and call.source == peer
            and call.state is not CallState.ENDED
            for call in calls
        )

    def timer_fired(self, transport: SipTransport, key: Hashable, name: str) -> list[Action]:
        call = self.calls.get(key) if isinstance(key, DialogId) else None
        return call.timer_fired(name) if call is not None else []


def _caller_identity(request: Request) -> str:
    """Who calls through a trunk: the identity it asserts (RFC 3325), else the From user."""
    for header in ("P-Asserted-Identity", "From"):
        value = request.headers.get(header)
        if value:
            try:
                user = NameAddress.parse(value).uri.user
            except SipParseError:
                continue
            if user:
                return user[:64]
    return ""


def _pending_key(request: Request) -> tuple[str, str]:
    return (request.headers.get("Call-ID") or "", top_via(request).branch or "")
