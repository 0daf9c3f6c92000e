"""SIP dialogs: state from both sides, in-dialog requests, CSeq order and target refresh (RFC 3261 section 12).

Also the UA core's 2xx retransmission until the ACK arrives (RFC 3261 13.3.1.4), because RFC 6026
leaves that to the TU and a missing ACK must end the call rather than leave it stuck.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, replace

from .message import CSeq, Headers, NameAddress, Request, Response, make_response
from .transaction import (
    NO_ACK,
    Action,
    Address,
    CancelTimer,
    Send,
    StartTimer,
    Terminated,
    TimerSettings,
)

# Requests whose Contact replaces the remote target (12.2, RFC 3311, RFC 3515, RFC 6665).
TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})

TIMER_2XX = "2xx"
TIMER_2XX_TIMEOUT = "2xx-timeout"


class DialogState(enum.Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


@dataclass(frozen=True)
class DialogId:
    """Call-ID plus both tags, as seen from our side (12)."""

    call_id: str
    local_tag: str
    remote_tag: str


def _header(message: Request | Response, name: str) -> str:
    value = message.headers.get(name)
    if value is None:
        raise ValueError(f"missing {name}")
    return value


def _tag(message: Request | Response, name: str) -> str:
    return NameAddress.parse(_header(message, name)).tag or ""


def incoming_dialog_id(request: Request) -> DialogId:
    """The id of the dialog an incoming request belongs to (To tag is ours, 12.2.2)."""
    return DialogId(_header(request, "Call-ID"), _tag(request, "To"), _tag(request, "From"))


def response_dialog_id(response: Response) -> DialogId:
    """The id of the dialog a response to our request belongs to (From tag is ours)."""
    return DialogId(_header(response, "Call-ID"), _tag(response, "From"), _tag(response, "To"))


def _without_tag(value: str) -> NameAddress:
    address = NameAddress.parse(value)
    params = {k: v for k, v in address.params.items() if k.lower() != "tag"}
    return NameAddress(address.display_name, address.uri, params)


def _with_tag(address: NameAddress, tag: str | None) -> str:
    params = dict(address.params)
    if tag:
        params["tag"] = tag
    return str(NameAddress(address.display_name, address.uri, params))


def _contact_uri(message: Request | Response) -> str | None:
    contacts = message.headers.get_all("Contact")
    if not contacts or contacts[0].strip() == "*":
        return None
    return str(NameAddress.parse(contacts[0]).uri)


class Dialog:
    """One dialog's state (12.1) and the requests it sends and receives (12.2)."""

    def __init__(
        self,
        *,
        call_id: str,
        local_tag: str,
        remote_tag: str,
        local_uri: NameAddress,
        remote_uri: NameAddress,
        local_seq: int | None,
        remote_seq: int | None,
        remote_target: str,
        route_set: list[str],
        secure: bool,
        is_uac: bool,
        local_contact: str | None = None,
        state: DialogState = DialogState.CONFIRMED,
    ) -> None:
        self.call_id = call_id
        self.local_tag = local_tag
        self.remote_tag = remote_tag
        self.local_uri = local_uri
        self.remote_uri = remote_uri
        self.local_seq = local_seq
        self.remote_seq = remote_seq
        self.remote_target = remote_target
        self.route_set = route_set
        self.secure = secure
        self.is_uac = is_uac
        self.local_contact = local_contact
        self.state = state
        # The CSeq number an ACK for a 2xx repeats (13.2.2.4): the latest INVITE we sent.
        self.invite_seq: int | None = local_seq if is_uac else None

    @property
    def id(self) -> DialogId:
        return DialogId(self.call_id, self.local_tag, self.remote_tag)

    @classmethod
    def as_uas(
        cls, request: Request, response: Response, *, local_contact: str | None = None
    ) -> Dialog:
        """The dialog a 1xx (with To tag) or 2xx we send to `request` creates (12.1.1)."""
        remote_target = _contact_uri(request)
        if remote_target is None:
            raise ValueError("a dialog-creating request needs a Contact")
        local_tag = _tag(response, "To")
        if not local_tag:
            raise ValueError("the response must carry our To tag")
        if local_contact is None:
            contacts = response.headers.get_all("Contact")
            local_contact = contacts[0] if contacts else None
        return cls(
            call_id=_header(request, "Call-ID"),
            local_tag=local_tag,
            remote_tag=_tag(request, "From"),
            local_uri=_without_tag(_header(request, "To")),
            remote_uri=_without_tag(_header(request, "From")),
            local_seq=None,
            remote_seq=CSeq.parse(_header(request, "CSeq")).number,
            remote_target=remote_target,
            route_set=request.headers.get_all("Record-Route"),
            secure=request.uri.lower().startswith("sips:"),
            is_uac=False,
            local_contact=local_contact,
            state=DialogState.EARLY if response.status < 200 else DialogState.CONFIRMED,
        )

    @classmethod
    def as_uac(cls, request: Request, response: Response) -> Dialog:
        """The dialog a 1xx (with To tag) or 2xx to our `request` creates (12.1.2)."""
        remote_tag = _tag(response, "To")
        if not remote_tag:
            raise ValueError("the response carries no To tag")
        contacts = request.headers.get_all("Contact")
        return cls(
            call_id=_header(request, "Call-ID"),
            local_tag=_tag(request, "From"),
            remote_tag=remote_tag,
            local_uri=_without_tag(_header(request, "From")),
            remote_uri=_without_tag(_header(request, "To")),
            local_seq=CSeq.parse(_header(request, "CSeq")).number,
            remote_seq=None,
            remote_target=_contact_uri(response) or request.uri,
            route_set=list(reversed(response.headers.get_all("Record-Route"))),
            secure=request.uri.lower().startswith("sips:"),
            is_uac=True,
            local_contact=contacts[0] if contacts else None,
            state=DialogState.EARLY if response.status < 200 else DialogState.CONFIRMED,
        )

    # -- requests we send -----------------------------------------------------------------------

    def _request_uri_and_routes(self) -> tuple[str, list[str]]:
        """12.2.1.1: loose routing keeps the target as Request-URI; strict routing does not."""
        if not self.route_set:
            return self.remote_target, []
        first = NameAddress.parse(self.route_set[0])
        if "lr" in first.uri.params:
            return self.remote_target, list(self.route_set)
        strict_uri = first.uri
        allowed = {k: v for k, v in strict_uri.params.items() if k.lower() != "method"}
        request_uri = str(replace(strict_uri, params=allowed, headers={}))
        return request_uri, [*self.route_set[1:], f"<{self.remote_target}>"]

    def create_request(
        self,
        method: str,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        via: str | None = None,
        extra_headers: Iterable[tuple[str, str]] = (),
    ) -> Request:
        """An in-dialog request (12.2.1.1). `via` is our Via with a fresh branch (the transport's).

        ACK (for a 2xx) repeats the CSeq number of the INVITE it acknowledges; every other method
        takes the next local sequence number. CANCEL is built from its request (transaction.make_cancel).
        """
        method = method.upper()
        if method == "CANCEL":
            raise ValueError("a CANCEL is built from the request it cancels, not from the dialog")
        if method == "ACK":
            if self.invite_seq is None:
                raise ValueError("no INVITE to acknowledge in this dialog")
            number = self.invite_seq
        else:
            number = (self.local_seq or 0) + 1
            self.local_seq = number
            if method == "INVITE":
                self.invite_seq = number
        request_uri, routes = self._request_uri_and_routes()
        headers = Headers()
        if via is not None:
            headers.add("Via", via)
        headers.add("Max-Forwards", "70")
        for route in routes:
            headers.add("Route", route)
        headers.add("From", _with_tag(self.local_uri, self.local_tag))
        headers.add("To", _with_tag(self.remote_uri, self.remote_tag))
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", str(CSeq(number, method)))
        if self.local_contact and method in TARGET_REFRESH_METHODS:
            headers.add("Contact", self.local_contact)
        for name, value in extra_headers:
            headers.add(name, value)
        if body and content_type:
            headers.add("Content-Type", content_type)
        return Request(method, request_uri, headers, body)

    def create_ack(self, *, via: str | None = None, body: bytes = b"") -> Request:
        """The ACK for a 2xx to our latest INVITE (13.2.2.4): same CSeq number, method ACK."""
        content_type = "application/sdp" if body else None
        return self.create_request("ACK", via=via, body=body, content_type=content_type)

    def receive_response(self, response: Response) -> None:
        """A response to a request we sent in this dialog (12.2.1.2, 13.2.2.4)."""
        method = CSeq.parse(_header(response, "CSeq")).method
        status = response.status
        if 200 <= status < 300:
            if method == "INVITE" and self.state is DialogState.EARLY:
                self.state = DialogState.CONFIRMED
                if self.is_uac:
                    self.route_set = list(reversed(response.headers.get_all("Record-Route")))
            if method in TARGET_REFRESH_METHODS:
                self.remote_target = _contact_uri(response) or self.remote_target
            if method == "BYE":
                self.state = DialogState.TERMINATED
        elif status in (408, 481):
            # The peer no longer knows this dialog, or our request timed out.
            self.state = DialogState.TERMINATED

    # -- requests we receive --------------------------------------------------------------------

    def matches(self, request: Request) -> bool:
        try:
            return incoming_dialog_id(request) == self.id
        except ValueError:
            return False

    def receive_request(self, request: Request) -> Response | None:
        """Check an in-dialog request (12.2.2): a 500 to send back if out of order, else None.

        On acceptance the remote CSeq advances, a target refresh request's Contact becomes
        the remote target, and a BYE ends the dialog.
        """
        method = request.method.upper()
        if method in ("ACK", "CANCEL"):
            return None  # they repeat the CSeq number of the request they belong to
        number = CSeq.parse(_header(request, "CSeq")).number
        if self.remote_seq is not None and number < self.remote_seq:
            return make_response(request, 500, "Server Internal Error")
        self.remote_seq = number
        if method in TARGET_REFRESH_METHODS:
            self.remote_target = _contact_uri(request) or self.remote_target
        if method == "BYE":
            self.state = DialogState.TERMINATED
        return None


class SuccessRetransmission:
    """The UAS core resends its 2xx to an INVITE until the ACK arrives (13.3.1.4).

    T1 doubling up to T2 on unreliable transports; after 64*T1 without an ACK it reports
    Terminated(NO_ACK, dialog id) and the TU ends the session with a BYE. Timers are named
    TIMER_2XX and TIMER_2XX_TIMEOUT and keyed by the dialog id.
    """

    def __init__(
        self,
        response: Response,
        destination: Address,
        key: DialogId,
        *,
        reliable: bool,
        timers: TimerSettings | None = None,
    ) -> None:
        self.response = response
        self.destination = destination
        self.key = key
        self.reliable = reliable
        self.timers = timers or TimerSettings()
        self._interval = self.timers.t1
        self._running: set[str] = set()
        self.acknowledged = False

    def start(self) -> list[Action]:
        actions: list[Action] = [Send(self.response, self.destination)]
        if not self.reliable:
            self._running.add(TIMER_2XX)
            actions.append(StartTimer(TIMER_2XX, self._interval, self.key))
        self._running.add(TIMER_2XX_TIMEOUT)
        actions.append(StartTimer(TIMER_2XX_TIMEOUT, 64 * self.timers.t1, self.key))
        return actions

    def ack_received(self) -> list[Action]:
        self.acknowledged = True
        actions: list[Action] = [CancelTimer(name, self.key) for name in sorted(self._running)]
        self._running.clear()
        return actions

    def timer_fired(self, name: str) -> list[Action]:
        if name not in self._running:
            return []
        self._running.discard(name)
        if name == TIMER_2XX:
            self._interval = min(2 * self._interval, self.timers.t2)
            self._running.add(TIMER_2XX)
            return [
                Send(self.response, self.destination),
                StartTimer(TIMER_2XX, self._interval, self.key),
            ]
        actions: list[Action] = [CancelTimer(n, self.key) for n in sorted(self._running)]
        self._running.clear()
        actions.append(Terminated(NO_ACK, self.key))
        return actions
