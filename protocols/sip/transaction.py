"""SIP transactions: the four state machines and the layer that matches messages to them (RFC 3261 section 17, RFC 6026).

Sans-I/O: every input is a method call (`receive`, `send`, `timer_fired`, `transport_error`) and
every output is a list of actions for the caller to carry out: send a message, start or cancel a
named timer, deliver a message to the transaction user (TU), or forget a terminated transaction.
The caller owns the sockets and the clock; time only enters through `timer_fired`.

Choices the RFCs leave open:
- A server INVITE transaction sends 100 Trying itself after `TimerSettings.trying_delay` (200 ms)
  unless the TU sends a provisional or final response sooner (17.2.1); a delay of 0 sends it at once.
- A 2xx to an INVITE is not retransmitted here: per RFC 6026 the server transaction waits in
  Accepted (timer L) and the client transaction in Accepted (timer M), passing 2xx
  retransmissions up, while the UA core retransmits the 2xx until the ACK (RFC 3261 13.3.1.4).
- Timers whose value is zero on reliable transports (D, I, J, K) end the transaction at once.
- Stray responses matching no client transaction are dropped (RFC 6026 section 7.1.2).
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Hashable
from dataclasses import dataclass, replace

from .message import CSeq, Headers, NameAddress, Request, Response, Via, make_response

MAGIC_COOKIE = "z9hG4bK"

Address = tuple[str, int]
Message = Request | Response

# Timer names, from RFC 3261 Table 4 and RFC 6026 (L, M); TRYING is the 200 ms 100-Trying timer.
TIMER_A, TIMER_B, TIMER_D = "A", "B", "D"
TIMER_E, TIMER_F, TIMER_G, TIMER_H = "E", "F", "G", "H"
TIMER_I, TIMER_J, TIMER_K = "I", "J", "K"
TIMER_L, TIMER_M = "L", "M"
TIMER_TRYING = "Trying"

# Reasons carried by Terminated.
COMPLETED = "completed"
TIMEOUT = "timeout"  # B or F fired: the TU treats it as a 408 (RFC 3261 8.1.3.1)
NO_ACK = "no ACK"  # H fired: the peer never acknowledged our final response
TRANSPORT_ERROR = "transport error"


@dataclass(frozen=True)
class TimerSettings:
    """RFC 3261 timer base values (Table 4), in seconds."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    timer_d: float = 32.0
    trying_delay: float = 0.2


@dataclass(frozen=True)
class TransactionKey:
    """What a message is matched on (17.1.3, 17.2.3); `sent_by` is empty for client transactions."""

    branch: str
    sent_by: str
    method: str


# -- actions ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    """Put `message` on the wire to `destination`."""

    message: Request | Response
    destination: Address


@dataclass(frozen=True)
class StartTimer:
    """Call `timer_fired(key, name)` after `seconds` (replacing a running timer of that name)."""

    name: str
    seconds: float
    key: Hashable  # a TransactionKey, or a dialog.DialogId for the UA core's 2xx timers


@dataclass(frozen=True)
class CancelTimer:
    """Forget the timer `name` of transaction `key` (a late firing is ignored anyway)."""

    name: str
    key: Hashable


@dataclass(frozen=True)
class Deliver:
    """Hand `message` to the TU. `key` is the transaction to answer on (None for an ACK to a 2xx).

    A delivered CANCEL carries the key of the INVITE server transaction it cancels: the TU answers
    that INVITE with 487 (the CANCEL itself has already been answered 200).
    """

    message: Request | Response
    key: TransactionKey | None
    source: Address | None = None


@dataclass(frozen=True)
class Terminated:
    """The transaction ended; `reason` is COMPLETED, TIMEOUT, NO_ACK or TRANSPORT_ERROR."""

    reason: str
    key: Hashable


Action = Send | StartTimer | CancelTimer | Deliver | Terminated


class State(enum.Enum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


# -- helpers ------------------------------------------------------------------------------------


def new_branch() -> str:
    """A fresh RFC 3261 branch parameter (magic cookie + randomness, 8.1.1.7)."""
    return MAGIC_COOKIE + secrets.token_hex(12)


def new_tag() -> str:
    """A fresh From/To tag (19.3)."""
    return secrets.token_hex(8)


def top_via(message: Message) -> Via:
    values = message.headers.get_all("Via")
    if not values:
        raise ValueError("message has no Via")
    return Via.parse(values[0])


def _cseq(message: Message) -> CSeq:
    value = message.headers.get("CSeq")
    if value is None:
        raise ValueError("message has no CSeq")
    return CSeq.parse(value)


def _sent_by(via: Via) -> str:
    return f"{via.host.lower()}:{via.port or ''}"


def client_key(message: Message) -> TransactionKey:
    """The client transaction a request creates or a response belongs to (17.1.3)."""
    branch = top_via(message).branch or ""
    method = _cseq(message).method
    return TransactionKey(branch, "", "INVITE" if method == "ACK" else method)


def server_key(request: Request) -> TransactionKey:
    """The server transaction a request belongs to (17.2.3); an ACK maps to its INVITE."""
    via = top_via(request)
    method = "INVITE" if request.method == "ACK" else request.method
    branch = via.branch or ""
    if not branch.startswith(MAGIC_COOKIE):
        # RFC 2543 peers: the ACK and CANCEL repeat these fields of the INVITE (17.2.3).
        from_value = request.headers.get("From") or ""
        from_tag = NameAddress.parse(from_value).tag if from_value else None
        branch = "|".join(
            [
                "rfc2543",
                request.uri,
                request.headers.get("Call-ID") or "",
                from_tag or "",
                str(_cseq(request).number),
                str(via),
            ]
        )
    return TransactionKey(branch, _sent_by(via), method)


def response_destination(via: Via, source: Address, reliable: bool) -> Address:
    """Where the responses to a request go (RFC 3261 18.2.2, RFC 3581 rport)."""
    if reliable or "rport" in via.params:
        return source
    port = via.port or (5061 if via.transport.upper() == "TLS" else 5060)
    return (via.received or source[0], port)


def stamp_received(request: Request, source: Address) -> None:
    """Add received= / fill rport= in the top Via (RFC 3261 18.2.1, RFC 3581 section 4)."""
    vias = request.headers.get_all("Via")
    if not vias:
        return
    via = Via.parse(vias[0])
    changed = False
    if via.host.strip("[]").lower() != source[0].strip("[]").lower():
        via.params["received"] = source[0]
        changed = True
    if "rport" in via.params and not via.params["rport"]:
        via.params["rport"] = str(source[1])
        changed = True
    if not changed:
        return
    vias[0] = str(via)
    rebuilt = Headers()
    placed = False
    for name, value in request.headers.items():
        if name.lower() == "via":
            if not placed:
                for via_value in vias:
                    rebuilt.add("Via", via_value)
                placed = True
            continue
        rebuilt.add(name, value)
    request.headers = rebuilt


def make_ack(invite: Request, response: Response) -> Request:
    """The ACK a client INVITE transaction sends for a 300-699 response (17.1.1.3)."""
    headers = Headers()
    headers.add("Via", invite.headers.get_all("Via")[0])
    headers.add("Max-Forwards", "70")
    for route in invite.headers.get_all("Route"):
        headers.add("Route", route)
    headers.add("From", invite.headers.get("From") or "")
    headers.add("To", response.headers.get("To") or invite.headers.get("To") or "")
    headers.add("Call-ID", invite.headers.get("Call-ID") or "")
    headers.add("CSeq", str(CSeq(_cseq(invite).number, "ACK")))
    return Request("ACK", invite.uri, headers)


def make_cancel(request: Request) -> Request:
    """The CANCEL for a pending request, sent to the same destination (RFC 3261 9.1)."""
    headers = Headers()
    headers.add("Via", request.headers.get_all("Via")[0])
    headers.add("Max-Forwards", "70")
    for route in request.headers.get_all("Route"):
        headers.add("Route", route)
    headers.add("From", request.headers.get("From") or "")
    headers.add("To", request.headers.get("To") or "")
    headers.add("Call-ID", request.headers.get("Call-ID") or "")
    headers.add("CSeq", str(CSeq(_cseq(request).number, "CANCEL")))
    return Request("CANCEL", request.uri, headers)


# -- the state machines -------------------------------------------------------------------------


class Transaction:
    """What the four state machines share: key, state, running timers, termination."""

    def __init__(
        self,
        key: TransactionKey,
        request: Request,
        destination: Address,
        *,
        reliable: bool,
        timers: TimerSettings,
    ) -> None:
        self.key = key
        self.request = request
        self.destination = destination
        self.reliable = reliable
        self.timers = timers
        self.state = State.TERMINATED
        self._running: set[str] = set()

    @property
    def running_timers(self) -> frozenset[str]:
        return frozenset(self._running)

    def _start(self, name: str, seconds: float) -> StartTimer:
        self._running.add(name)
        return StartTimer(name, seconds, self.key)

    def _cancel(self, *names: str) -> list[Action]:
        actions: list[Action] = []
        for name in names:
            if name in self._running:
                self._running.discard(name)
                actions.append(CancelTimer(name, self.key))
        return actions

    def _terminate(self, reason: str) -> list[Action]:
        actions = self._cancel(*sorted(self._running))
        self.state = State.TERMINATED
        actions.append(Terminated(reason, self.key))
        return actions

    def _wait_or_end(self, name: str, seconds: float) -> list[Action]:
        """Timers D, I, J, K: zero on reliable transports, so the transaction ends at once."""
        if self.reliable:
            return self._terminate(COMPLETED)
        return [self._start(name, seconds)]

    def timer_fired(self, name: str) -> list[Action]:
        """A timer this transaction started has expired; stale or cancelled timers are ignored."""
        if name not in self._running or self.state is State.TERMINATED:
            return []
        self._running.discard(name)
        return self._on_timer(name)

    def _on_timer(self, name: str) -> list[Action]:
        raise NotImplementedError

    def transport_error(self) -> list[Action]:
        """The transport could not deliver a message of this transaction (17.1.4, 17.2.4)."""
        if self.state is State.TERMINATED:
            return []
        return self._terminate(TRANSPORT_ERROR)


class ClientInviteTransaction(Transaction):
    """RFC 3261 17.1.1 with RFC 6026's Accepted state."""

    def start(self) -> list[Action]:
        self.state = State.CALLING
        actions: list[Action] = [Send(self.request, self.destination)]
        self._interval_a = self.timers.t1
        if not self.reliable:
            actions.append(self._start(TIMER_A, self._interval_a))
        actions.append(self._start(TIMER_B, 64 * self.timers.t1))
        return actions

    def receive(self, response: Response) -> list[Action]:
        status = response.status
        deliver = Deliver(response, self.key)
        if self.state in (State.CALLING, State.PROCEEDING):
            actions = self._cancel(TIMER_A, TIMER_B)
            if status < 200:
                self.state = State.PROCEEDING
                return [*actions, deliver]
            if status < 300:
                self.state = State.ACCEPTED
                return [*actions, deliver, self._start(TIMER_M, 64 * self.timers.t1)]
            self.state = State.COMPLETED
            self._ack = make_ack(self.request, response)
            actions += [Send(self._ack, self.destination), deliver]
            return actions + self._wait_or_end(TIMER_D, self.timers.timer_d)
        if self.state is State.ACCEPTED and 200 <= status < 300:
            return [deliver]
        if self.state is State.COMPLETED and status >= 300:
            return [Send(self._ack, self.destination)]
        return []

    def _on_timer(self, name: str) -> list[Action]:
        if name == TIMER_A and self.state is State.CALLING:
            self._interval_a *= 2
            return [Send(self.request, self.destination), self._start(TIMER_A, self._interval_a)]
        if name == TIMER_B and self.state is State.CALLING:
            return self._terminate(TIMEOUT)
        if name in (TIMER_D, TIMER_M):
            return self._terminate(COMPLETED)
        return []


class ClientNonInviteTransaction(Transaction):
    """RFC 3261 17.1.2."""

    def start(self) -> list[Action]:
        self.state = State.TRYING
        actions: list[Action] = [Send(self.request, self.destination)]
        self._interval_e = self.timers.t1
        if not self.reliable:
            actions.append(self._start(TIMER_E, self._interval_e))
        actions.append(self._start(TIMER_F, 64 * self.timers.t1))
        return actions

    def receive(self, response: Response) -> list[Action]:
        if self.state not in (State.TRYING, State.PROCEEDING):
            return []  # Completed absorbs retransmitted finals
        deliver = Deliver(response, self.key)
        if response.status < 200:
            self.state = State.PROCEEDING
            return [deliver]
        self.state = State.COMPLETED
        actions = self._cancel(TIMER_E, TIMER_F)
        actions.append(deliver)
        return actions + self._wait_or_end(TIMER_K, self.timers.t4)

    def _on_timer(self, name: str) -> list[Action]:
        if name == TIMER_E and self.state in (State.TRYING, State.PROCEEDING):
            if self.state is State.TRYING:
                self._interval_e = min(2 * self._interval_e, self.timers.t2)
            else:
                self._interval_e = self.timers.t2
            return [Send(self.request, self.destination), self._start(TIMER_E, self._interval_e)]
        if name == TIMER_F and self.state in (State.TRYING, State.PROCEEDING):
            return self._terminate(TIMEOUT)
        if name == TIMER_K:
            return self._terminate(COMPLETED)
        return []


class ServerInviteTransaction(Transaction):
    """RFC 3261 17.2.1 with RFC 6026's Accepted state."""

    last_response: Response | None = None

    def start(self) -> list[Action]:
        self.state = State.PROCEEDING
        if self.timers.trying_delay <= 0:
            return self._send_trying()
        return [self._start(TIMER_TRYING, self.timers.trying_delay)]

    def _send_trying(self) -> list[Action]:
        self.last_response = make_response(self.request, 100)
        return [Send(self.last_response, self.destination)]

    def receive(self, request: Request) -> list[Action]:
        if request.method == "ACK":
            if self.state is State.COMPLETED:
                self.state = State.CONFIRMED
                actions = self._cancel(TIMER_G, TIMER_H)
                return actions + self._wait_or_end(TIMER_I, self.timers.t4)
            if self.state is State.ACCEPTED:
                return [Deliver(request, None, self.destination)]
            return []
        # A retransmitted INVITE gets the latest response again (17.2.1); Accepted absorbs it.
        if self.state is State.PROCEEDING and self.last_response is None:
            return self._cancel(TIMER_TRYING) + self._send_trying()
        if self.state in (State.PROCEEDING, State.COMPLETED) and self.last_response is not None:
            return [Send(self.last_response, self.destination)]
        return []

    def send(self, response: Response) -> list[Action]:
        """The TU's response to the INVITE."""
        status = response.status
        if self.state is State.ACCEPTED and 200 <= status < 300:
            return [Send(response, self.destination)]
        if self.state is not State.PROCEEDING:
            return []
        actions = self._cancel(TIMER_TRYING)
        actions.append(Send(response, self.destination))
        if status < 200:
            self.last_response = response
        elif status < 300:
            self.last_response = response
            self.state = State.ACCEPTED
            actions.append(self._start(TIMER_L, 64 * self.timers.t1))
        else:
            self.last_response = response
            self.state = State.COMPLETED
            self._interval_g = self.timers.t1
            if not self.reliable:
                actions.append(self._start(TIMER_G, self._interval_g))
            actions.append(self._start(TIMER_H, 64 * self.timers.t1))
        return actions

    def _on_timer(self, name: str) -> list[Action]:
        if name == TIMER_TRYING and self.state is State.PROCEEDING:
            return self._send_trying() if self.last_response is None else []
        if name == TIMER_G and self.state is State.COMPLETED and self.last_response is not None:
            self._interval_g = min(2 * self._interval_g, self.timers.t2)
            return [
                Send(self.last_response, self.destination),
                self._start(TIMER_G, self._interval_g),
            ]
        if name == TIMER_H and self.state is State.COMPLETED:
            return self._terminate(NO_ACK)
        if name in (TIMER_I, TIMER_L):
            return self._terminate(COMPLETED)
        return []


class ServerNonInviteTransaction(Transaction):
    """RFC 3261 17.2.2."""

    last_response: Response | None = None

    def start(self) -> list[Action]:
        self.state = State.TRYING
        return []

    def receive(self, request: Request) -> list[Action]:
        if self.state in (State.PROCEEDING, State.COMPLETED) and self.last_response is not None:
            return [Send(self.last_response, self.destination)]
        return []  # Trying absorbs retransmissions

    def send(self, response: Response) -> list[Action]:
        if self.state not in (State.TRYING, State.PROCEEDING):
            return []
        self.last_response = response
        actions: list[Action] = [Send(response, self.destination)]
        if response.status < 200:
            self.state = State.PROCEEDING
            return actions
        self.state = State.COMPLETED
        return actions + self._wait_or_end(TIMER_J, 64 * self.timers.t1)

    def _on_timer(self, name: str) -> list[Action]:
        if name == TIMER_J:
            return self._terminate(COMPLETED)
        return []


ClientTransaction = ClientInviteTransaction | ClientNonInviteTransaction
ServerTransaction = ServerInviteTransaction | ServerNonInviteTransaction


# -- the layer ----------------------------------------------------------------------------------


class TransactionLayer:
    """The transactions of one transport: matching, creation, retransmission absorption, CANCEL."""

    def __init__(self, *, reliable: bool, timers: TimerSettings | None = None) -> None:
        self.reliable = reliable
        self.timers = timers or TimerSettings()
        self._clients: dict[TransactionKey, ClientTransaction] = {}
        self._servers: dict[TransactionKey, ServerTransaction] = {}

    def __len__(self) -> int:
        return len(self._clients) + len(self._servers)

    def client(self, key: TransactionKey) -> ClientTransaction | None:
        return self._clients.get(key)

    def server(self, key: TransactionKey) -> ServerTransaction | None:
        return self._servers.get(key)

    def _reap(self, actions: list[Action]) -> list[Action]:
        for action in actions:
            if isinstance(action, Terminated) and isinstance(action.key, TransactionKey):
                self._clients.pop(action.key, None)
                self._servers.pop(action.key, None)
        return actions

    # -- from the network ---------------------------------------------------------------------

    def receive(self, message: Request | Response, source: Address) -> list[Action]:
        """A parsed message arrived from `source`."""
        try:
            if isinstance(message, Response):
                return self._receive_response(message)
            return self._receive_request(message, source)
        except ValueError:
            return []  # no usable Via or CSeq: nothing can be matched or answered

    def _receive_response(self, response: Response) -> list[Action]:
        transaction = self._clients.get(client_key(response))
        if transaction is None:
            return []
        return self._reap(transaction.receive(response))

    def _receive_request(self, request: Request, source: Address) -> list[Action]:
        stamp_received(request, source)
        key = server_key(request)
        if request.method == "ACK":
            invite = self._servers.get(key)
            if invite is None:
                return [Deliver(request, None, source)]  # the ACK to a 2xx belongs to the TU
            return self._reap(invite.receive(request))
        existing = self._servers.get(key)
        if existing is not None:
            return self._reap(existing.receive(request))
        destination = response_destination(top_via(request), source, self.reliable)
        transaction: ServerTransaction
        if request.method == "INVITE":
            transaction = ServerInviteTransaction(
                key, request, destination, reliable=self.reliable, timers=self.timers
            )
        else:
            transaction = ServerNonInviteTransaction(
                key, request, destination, reliable=self.reliable, timers=self.timers
            )
        self._servers[key] = transaction
        actions = transaction.start()
        if request.method == "CANCEL":
            return self._reap(actions + self._cancel(transaction, request, source))
        actions.append(Deliver(request, key, source))
        return self._reap(actions)

    def _cancel(
        self, transaction: ServerTransaction, cancel: Request, source: Address
    ) -> list[Action]:
        """RFC 3261 9.2: answer the CANCEL here, and let the TU answer the INVITE 487."""
        invite = self._servers.get(replace(transaction.key, method="INVITE"))
        if not isinstance(invite, ServerInviteTransaction):
            return transaction.send(make_response(cancel, 481, to_tag=new_tag()))
        # The 200 carries the same To tag as the INVITE's responses when there is one (9.2).
        to_tag = None
        if invite.last_response is not None:
            to_value = invite.last_response.headers.get("To")
            to_tag = NameAddress.parse(to_value).tag if to_value else None
        actions = transaction.send(make_response(cancel, 200, to_tag=to_tag or new_tag()))
        if invite.state is State.PROCEEDING:
            actions.append(Deliver(cancel, invite.key, source))
        return actions

    # -- from the TU ----------------------------------------------------------------------------

    def send_request(
        self, request: Request, destination: Address
    ) -> tuple[TransactionKey | None, list[Action]]:
        """Start a client transaction; the request's top Via must carry a fresh branch.

        An ACK (to a 2xx) is sent as is, outside any transaction, so its key is None.
        """
        if request.method == "ACK":
            return None, [Send(request, destination)]
        key = client_key(request)
        transaction: ClientTransaction
        if request.method == "INVITE":
            transaction = ClientInviteTransaction(
                key, request, destination, reliable=self.reliable, timers=self.timers
            )
        else:
            transaction = ClientNonInviteTransaction(
                key, request, destination, reliable=self.reliable, timers=self.timers
            )
        self._clients[key] = transaction
        return key, self._reap(transaction.start())

    def send_response(self, key: TransactionKey, response: Response) -> list[Action]:
        """The TU answers the request of server transaction `key` (a vanished one is ignored)."""
        transaction = self._servers.get(key)
        if transaction is None:
            return []
        return self._reap(transaction.send(response))

    def timer_fired(self, key: TransactionKey, name: str) -> list[Action]:
        transaction: ClientTransaction | ServerTransaction | None = self._clients.get(key)
        if transaction is None:
            transaction = self._servers.get(key)
        if transaction is None:
            return []
        return self._reap(transaction.timer_fired(name))

    def transport_error(self, key: TransactionKey) -> list[Action]:
        transaction: ClientTransaction | ServerTransaction | None = self._clients.get(key)
        if transaction is None:
            transaction = self._servers.get(key)
        if transaction is None:
            return []
        return self._reap(transaction.transport_error())
