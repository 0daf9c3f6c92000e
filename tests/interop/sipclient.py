"""A small raw-SIP UDP client for attack tests: builds requests with the project's message model
and reads answers with the project's parser (protocols.sip.message), one datagram at a time.

Blocking sockets with timeouts: the gateway runs in another process, and plain sockets keep the
timing measurements free of event-loop noise.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import time
from dataclasses import dataclass, field

from protocols.sip.message import (
    Headers,
    NameAddress,
    Request,
    Response,
    SipParseError,
    make_response,
    parse_message,
    serialize,
)

Address = tuple[str, int]


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(8)


def new_tag() -> str:
    return secrets.token_hex(6)


def audio_offer(host: str, port: int) -> bytes:
    """A plain G.711 A-law offer with telephone-event, as a desk phone sends it."""
    return (
        "v=0\r\n"
        f"o=- 1 1 IN IP4 {host}\r\n"
        "s=-\r\n"
        f"c=IN IP4 {host}\r\n"
        "t=0 0\r\n"
        f"m=audio {port} RTP/AVP 8 101\r\n"
        "a=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        "a=fmtp:101 0-16\r\n"
        "a=sendrecv\r\n"
    ).encode()


@dataclass
class Call:
    """The caller's side of one INVITE dialog (or of an INVITE that never became one)."""

    invite: Request
    local_tag: str
    call_id: str
    responses: list[Response] = field(default_factory=list)
    remote_tag: str | None = None
    remote_target: str | None = None
    cseq: int = 1

    @property
    def final(self) -> Response | None:
        return next((r for r in self.responses if r.status >= 200), None)


class SipClient:
    """One UDP socket on ``local_host`` talking to one SIP server."""

    def __init__(self, server: Address, local_host: str = "127.0.0.1") -> None:
        self.server = server
        self.local_host = local_host
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((local_host, 0))
        self.local_port: int = self.sock.getsockname()[1]
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        """Where our offers say we take RTP; never read: the prompts are not listened to."""
        self.rtp.bind((local_host, 0))
        self.requests_received: list[Request] = []
        self._stash: list[Response] = []

    def close(self) -> None:
        self.sock.close()
        self.rtp.close()

    def __enter__(self) -> SipClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # building requests ---------------------------------------------------------------------------
    def target_uri(self, user: str) -> str:
        host, port = self.server
        return f"sip:{user}@{host}:{port}"

    def request(
        self,
        method: str,
        user: str,
        *,
        call_id: str | None = None,
        from_tag: str | None = None,
        cseq: int = 1,
        body: bytes = b"",
        content_type: str | None = None,
        extra: list[tuple[str, str]] | None = None,
    ) -> Request:
        """An out-of-dialog request to ``sip:user@server`` from an anonymous caller."""
        headers = Headers()
        headers.add("Via", self._via())
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<sip:0140506078@{self.local_host}>;tag={from_tag or new_tag()}")
        headers.add("To", f"<{self.target_uri(user)}>")
        headers.add("Call-ID", call_id or f"{secrets.token_hex(10)}@{self.local_host}")
        headers.add("CSeq", f"{cseq} {method}")
        headers.add("Contact", f"<sip:0140506078@{self.local_host}:{self.local_port}>")
        headers.add("User-Agent", "rondpoint-attack-tests")
        for name, value in extra or []:
            headers.add(name, value)
        if content_type:
            headers.add("Content-Type", content_type)
        return Request(method, self.target_uri(user), headers, body)

    def _via(self) -> str:
        return f"SIP/2.0/UDP {self.local_host}:{self.local_port};branch={new_branch()};rport"

    # the wire -----------------------------------------------------------------------------------
    def send(self, message: Request | Response) -> None:
        self.sock.sendto(serialize(message), self.server)

    def receive(self, timeout: float) -> Request | Response | None:
        """The next message, or None after ``timeout`` seconds; requests to us are answered
        (BYE 200, anything else 200 too: the tests only keep the dialog polite)."""
        if self._stash:
            return self._stash.pop(0)
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data, _ = self.sock.recvfrom(65535)
        except TimeoutError:
            return None
        try:
            message = parse_message(data)
        except SipParseError as error:
            raise AssertionError(f"the gateway sent an unparsable message: {data!r}") from error
        if isinstance(message, Request):
            self.requests_received.append(message)
            if message.method != "ACK":
                self.send(make_response(message, 200))
        return message

    def responses_to(
        self, request: Request, timeout: float, until_final: bool = True
    ) -> list[Response]:
        """Every response to ``request`` (same Call-ID and CSeq) until a final one (or the first
        one when not ``until_final``) or the timeout."""
        deadline = time.monotonic() + timeout
        answers: list[Response] = []
        key = (request.headers.get("Call-ID"), request.headers.get("CSeq"))
        others: list[Response] = []
        while (left := deadline - time.monotonic()) > 0:
            message = self.receive(left)
            if message is None:
                break
            if not isinstance(message, Response):
                continue
            if (message.headers.get("Call-ID"), message.headers.get("CSeq")) != key:
                others.append(message)
                continue
            answers.append(message)
            if message.status >= 200 or not until_final:
                break
        self._stash.extend(others)
        return answers

    def transact(self, request: Request, timeout: float = 2.0) -> list[Response]:
        self.send(request)
        return self.responses_to(request, timeout)

    def drain(self, seconds: float) -> list[Request | Response]:
        """Read (and answer) whatever arrives for ``seconds``."""
        deadline = time.monotonic() + seconds
        seen: list[Request | Response] = []
        while (left := deadline - time.monotonic()) > 0:
            message = self.receive(left)
            if message is not None:
                seen.append(message)
        return seen

    # calls ----------------------------------------------------------------------------------------
    def invite(self, user: str) -> Call:
        """Send an INVITE with a G.711 offer; read nothing yet."""
        tag = new_tag()
        invite = self.request(
            "INVITE",
            user,
            from_tag=tag,
            body=audio_offer(self.local_host, self.rtp.getsockname()[1]),
            content_type="application/sdp",
        )
        self.send(invite)
        return Call(invite, tag, invite.headers.get("Call-ID") or "")

    def wait_answer(self, call: Call, timeout: float = 5.0) -> Response | None:
        """Read the INVITE's responses until the final one; ACK it (RFC 3261 13.2.2.4 / 17.1.1.3)."""
        call.responses.extend(self.responses_to(call.invite, timeout))
        final = call.final
        if final is None:
            return None
        to = NameAddress.parse(final.headers.get("To") or "")
        call.remote_tag = to.tag
        if 200 <= final.status < 300:
            contact = final.headers.get("Contact")
            call.remote_target = str(NameAddress.parse(contact).uri) if contact else None
            self.send(self.in_dialog(call, "ACK", cseq=call.cseq))
        else:
            self.send(self._ack_failure(call, final))
        return final

    def _ack_failure(self, call: Call, final: Response) -> Request:
        """ACK for a non-2xx final response: same branch, part of the INVITE transaction."""
        headers = Headers()
        headers.add("Via", call.invite.headers.get("Via") or "")
        headers.add("Max-Forwards", "70")
        headers.add("From", call.invite.headers.get("From") or "")
        headers.add("To", final.headers.get("To") or "")
        headers.add("Call-ID", call.call_id)
        headers.add("CSeq", f"{call.cseq} ACK")
        return Request("ACK", call.invite.uri, headers)

    def in_dialog(
        self,
        call: Call,
        method: str,
        *,
        cseq: int | None = None,
        body: bytes = b"",
        content_type: str | None = None,
    ) -> Request:
        """A request inside the call's dialog (RFC 3261 12.2.1.1)."""
        if cseq is None:
            call.cseq += 1
            cseq = call.cseq
        headers = Headers()
        headers.add("Via", self._via())
        headers.add("Max-Forwards", "70")
        headers.add("From", call.invite.headers.get("From") or "")
        to = call.invite.headers.get("To") or ""
        headers.add("To", f"{to};tag={call.remote_tag}" if call.remote_tag else to)
        headers.add("Call-ID", call.call_id)
        headers.add("CSeq", f"{cseq} {method}")
        if content_type:
            headers.add("Content-Type", content_type)
        return Request(method, call.remote_target or call.invite.uri, headers, body)

    def info_digits(self, call: Call, digits: str) -> list[Response | None]:
        """Each digit as SIP INFO application/dtmf-relay; the final response of each, or None."""
        finals: list[Response | None] = []
        for digit in digits:
            info = self.in_dialog(
                call,
                "INFO",
                body=f"Signal={digit}\r\nDuration=160\r\n".encode(),
                content_type="application/dtmf-relay",
            )
            answers = self.transact(info, timeout=2.0)
            finals.append(next((r for r in answers if r.status >= 200), None))
        return finals

    def cancel(self, call: Call) -> None:
        """CANCEL the pending INVITE (RFC 3261 9.1): same branch, same CSeq number."""
        headers = Headers()
        headers.add("Via", call.invite.headers.get("Via") or "")
        headers.add("Max-Forwards", "70")
        headers.add("From", call.invite.headers.get("From") or "")
        headers.add("To", call.invite.headers.get("To") or "")
        headers.add("Call-ID", call.call_id)
        headers.add("CSeq", f"{call.cseq} CANCEL")
        self.send(Request("CANCEL", call.invite.uri, headers))

    def bye(self, call: Call, timeout: float = 2.0) -> Response | None:
        with contextlib.suppress(OSError):
            answers = self.transact(self.in_dialog(call, "BYE"), timeout)
            return next((r for r in answers if r.status >= 200), None)
        return None
