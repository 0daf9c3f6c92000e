"""SIP over UDP, TCP and TLS (RFC 3261 section 18): the thin asyncio shell around the sans-I/O core.

Bytes come in, are parsed, and go through the transaction layer; the actions it returns (send,
start or cancel a timer, deliver to the transaction user) are carried out here. Nothing else in
protocols/sip touches a socket or a clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import ssl
import time
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Protocol

from gateway.ratelimit import RateLimiter
from protocols.sip.message import Request, Response, StreamReader, parse_message, serialize
from protocols.sip.transaction import (
    Action,
    CancelTimer,
    Deliver,
    Send,
    StartTimer,
    Terminated,
    TimerSettings,
    TransactionKey,
    TransactionLayer,
)
from protocols.sip.uri import SipParseError

log = logging.getLogger(__name__)

Address = tuple[str, int]

MAX_DATAGRAM = 65_535
MAX_STREAM_BODY = 65_536
"""The largest body taken on a connection, as in a datagram; a larger Content-Length gets 413
and the connection is closed, so no connection buffers more than a head and this."""
READ_SIZE = 65_536


@dataclass(frozen=True)
class StreamLimits:
    """Deadlines and caps of SIP connections (TCP, TLS), from ``[sip]`` in the configuration."""

    idle_seconds: float = 60.0
    """A connection that sends nothing (CRLF keep-alives count) for this long, with no call on
    it, is closed."""
    message_seconds: float = 10.0
    """A message's head and body must arrive within this from its first byte (and a TLS
    handshake within this from the connection)."""
    connections_per_address: int = 10
    """Connections one address may hold at once (a trunk's address: no cap of its own)."""
    max_connections: int = 1000
    """Connections held at once in all, per listener."""


_FOLD = re.compile(rb"\r?\n[ \t]+")
_HEADER = re.compile(rb"([!%'*+\-.0-9A-Z_`a-z~]+)[ \t]*:[ \t]*(.*)")
_METHOD = re.compile(rb"[!%'*+\-.0-9A-Z_`a-z~]+")
_ECHOED = {b"via": b"Via", b"v": b"Via", b"from": b"From", b"f": b"From", b"to": b"To"}
_ECHOED |= {b"t": b"To", b"call-id": b"Call-ID", b"i": b"Call-ID", b"cseq": b"CSeq"}
_PRINTABLE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
_MAX_ECHOED = 2048


def error_response(data: bytes, status: int, reason: str) -> bytes | None:
    """Best-effort answer to a request the parser refused (RFC 3261 8.2, 16.3 and RFC 4475 3.1.2).

    When the start line is a request (never an ACK) and its Via, From, To, Call-ID and CSeq can
    still be read, they are echoed in a ``status`` response so the sender's transaction ends;
    anything else (a response, missing or binary fields, an oversized head) gets None: drop it.
    """
    head = re.split(rb"\r?\n\r?\n", data, maxsplit=1)[0]
    lines = _FOLD.sub(b" ", head).split(b"\n")
    start = lines[0].strip().split(b" ")
    if len(start) < 2 or not _METHOD.fullmatch(start[0]) or start[0].upper() == b"ACK":
        return None
    if start[0].upper().startswith(b"SIP/"):
        return None  # a response: never answered
    found: dict[bytes, list[bytes]] = {}
    for line in lines[1:]:
        match = _HEADER.fullmatch(line.rstrip(b"\r"))
        if match is None:
            continue
        name = _ECHOED.get(match.group(1).lower())
        value = match.group(2).strip()
        if name is None:
            continue
        if not value or not _PRINTABLE.fullmatch(value):
            return None
        found.setdefault(name, []).append(value)
    if set(found) != {b"Via", b"From", b"To", b"Call-ID", b"CSeq"}:
        return None
    if any(len(found[name]) != 1 for name in (b"From", b"To", b"Call-ID", b"CSeq")):
        return None
    to = found[b"To"][0]
    if b";tag=" not in to.lower().replace(b" ", b""):
        to += b";tag=" + secrets.token_hex(6).encode()
    out = [f"SIP/2.0 {status} {reason}".encode()]
    out += [b"Via: " + via for via in found[b"Via"][:10]]
    out += [b"From: " + found[b"From"][0], b"To: " + to]
    out += [b"Call-ID: " + found[b"Call-ID"][0], b"CSeq: " + found[b"CSeq"][0]]
    out += [b"Server: Rondpoint", b"Content-Length: 0"]
    response = b"\r\n".join(out) + b"\r\n\r\n"
    return response if len(response) <= _MAX_ECHOED else None


class TransactionUser(Protocol):
    """The UA core above the transport (RFC 3261 section 8 and 12-16)."""

    def deliver(self, transport: SipTransport, action: Deliver) -> None: ...

    def terminated(self, transport: SipTransport, action: Terminated) -> None: ...

    def timer_fired(self, transport: SipTransport, key: Hashable, name: str) -> list[Action]: ...

    def connection_in_use(self, transport: SipTransport, peer: Address) -> bool:
        """Whether a call goes through this connection (it is then kept open when idle)."""
        ...


MAX_BANS = 10_000
"""Bans held at once (addresses and trunks' callers); the oldest make room."""


def trunk_caller_key(trunk: str, caller: str) -> str:
    """Whom wrong PINs are counted against for a trunk's call: the trunk and its caller, never
    the trunk's address (it carries every caller of the trunk)."""
    return f"trunk {trunk} caller {caller or 'anonymous'}"


class Guard:
    """Per-address message rate limit and temporary bans, shared by every transport.

    Failures are counted per key: a source address, or for a trunk's call the trunk and its
    caller (``trunk_caller_key``), which is banned on its own without touching the address."""

    def __init__(
        self, messages_per_second: int = 50, failures_before_ban: int = 10, ban_seconds: int = 600
    ) -> None:
        self.limiter = RateLimiter(messages_per_second * 60, burst=messages_per_second * 2)
        # failures are forgiven slowly (the whole allowance over ten minutes), so a patient
        # guesser is banned too
        self.failures = RateLimiter(failures_before_ban / 10, burst=failures_before_ban)
        self.ban_seconds = ban_seconds
        self._banned: dict[str, float] = {}
        self.trusted: Callable[[str], bool] | None = None
        """Whether an address is a trunk's (set by the UA core)."""
        self.on_ban: Callable[[str], None] | None = None
        """Called with the key (an address, or a trunk's caller) when a ban starts: its calls
        waiting for a PIN end."""

    def admits(self, host: str) -> bool:
        if self.banned(host):
            return False
        if self.trusted is not None and self.trusted(host):
            return True  # a trunk carries many callers' messages: no per-address rate limit
        return self.limiter.allow(host)

    def failure(self, key: str, what: str) -> None:
        """A failed authentication or PIN; too many in a row bans the key for a while. The log
        lines name an address as fail2ban expects ("from HOST") only when the key is one."""
        where = f"on {key}" if _is_trunk_caller(key) else f"from {key}"
        log.warning("SIP %s failed %s", what, where, extra={"source": key})
        if self.banned(key):
            return  # a ban runs from its start: failures during it do not prolong it
        if not self.failures.allow(key):
            now = time.monotonic()
            self._banned.pop(key, None)
            self._banned[key] = now + self.ban_seconds
            while len(self._banned) > MAX_BANS:
                del self._banned[next(iter(self._banned))]
            if _is_trunk_caller(key):
                log.warning("SIP %s refused for %d s", key, self.ban_seconds, extra={"source": key})
            else:
                log.warning(
                    "SIP address banned: %s for %d s", key, self.ban_seconds, extra={"source": key}
                )
            if self.on_ban is not None:
                self.on_ban(key)

    def banned(self, key: str) -> bool:
        until = self._banned.get(key)
        if until is None:
            return False
        if time.monotonic() < until:
            return True
        del self._banned[key]
        return False


def _is_trunk_caller(key: str) -> bool:
    return key.startswith("trunk ")


class SipTransport:
    """One listening transport; ``kind`` is "udp", "tcp" or "tls" (as written in Via)."""

    def __init__(
        self,
        kind: str,
        host: str,
        port: int,
        user: TransactionUser,
        guard: Guard,
        advertised_host: str = "",
        ssl_context: ssl.SSLContext | None = None,
        timers: TimerSettings | None = None,
        limits: StreamLimits | None = None,
    ) -> None:
        self.kind = kind
        self.host = host
        self.port = port
        self.advertised_host = advertised_host or host
        self.user = user
        self.guard = guard
        self.ssl_context = ssl_context
        self.layer = TransactionLayer(reliable=kind != "udp", timers=timers)
        self._timers: dict[tuple[Hashable, str], asyncio.TimerHandle] = {}
        self._datagrams: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self._connections: dict[Address, asyncio.StreamWriter] = {}
        self._connections_by_host: Counter[str] = Counter()
        self.limits = limits or StreamLimits()
        self.messages_in = 0
        self.dropped = 0

    @property
    def via_transport(self) -> str:
        return self.kind.upper()

    @property
    def sent_by(self) -> str:
        host = self.advertised_host
        host = f"[{host}]" if ":" in host else host
        return f"{host}:{self.port}"

    # life cycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.kind == "udp":
            self._datagrams, _ = await loop.create_datagram_endpoint(
                lambda: _Datagrams(self), local_addr=(self.host, self.port)
            )
            self.port = self._datagrams.get_extra_info("sockname")[1]
        else:
            self._server = await asyncio.start_server(
                self._serve_connection,
                self.host,
                self.port,
                ssl=self.ssl_context,
                ssl_handshake_timeout=self.limits.message_seconds if self.ssl_context else None,
            )
            self.port = self._server.sockets[0].getsockname()[1]

    def close(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        if self._datagrams is not None:
            self._datagrams.close()
        if self._server is not None:
            self._server.close()
        for writer in self._connections.values():
            writer.close()
        self._connections.clear()

    # bytes in ----------------------------------------------------------------------------------
    def datagram_received(self, data: bytes, source: Address) -> None:
        if not self.guard.admits(source[0]):
            self.dropped += 1
            return
        if data.strip(b"\r\n") == b"":
            return  # RFC 5626 keep-alive
        try:
            message = parse_message(data)
        except SipParseError as error:
            answer = error_response(data[:MAX_DATAGRAM], error.status, error.reason)
            if answer is not None and self._datagrams is not None:
                self._datagrams.sendto(answer, source)
            else:
                self.dropped += 1
            log.debug(
                "unparsable SIP datagram %s",
                "answered" if answer is not None else "dropped",
                extra={"source": source[0], "reason": error.reason, "status": error.status},
            )
            return
        self.message_received(message, source)

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = writer.get_extra_info("peername")
        source: Address = (peer[0], peer[1])
        if not self._admits_connection(source[0]):
            self.dropped += 1
            writer.close()
            return
        self._connections[source] = writer
        self._connections_by_host[source[0]] += 1
        try:
            await self._read_stream(reader, source, writer)
        finally:
            self._connections.pop(source, None)
            self._connections_by_host[source[0]] -= 1
            if self._connections_by_host[source[0]] <= 0:
                del self._connections_by_host[source[0]]
            writer.close()

    def _admits_connection(self, host: str) -> bool:
        if len(self._connections) >= self.limits.max_connections:
            return False
        if not self.guard.admits(host):
            return False
        trunk = self.guard.trusted is not None and self.guard.trusted(host)
        return trunk or self._connections_by_host[host] < self.limits.connections_per_address

    async def _read_stream(
        self, reader: asyncio.StreamReader, source: Address, writer: asyncio.StreamWriter
    ) -> None:
        """Messages off a connection until it ends or breaks a rule: each message counts against
        its address's rate limit like a datagram; a silent connection with no call on it is
        closed after ``idle_seconds``, one whose message does not complete in
        ``message_seconds`` at once."""
        framer = StreamReader(max_body_size=MAX_STREAM_BODY)
        loop = asyncio.get_running_loop()
        message_started: float | None = None
        try:
            while True:
                if message_started is not None:
                    deadline = message_started + self.limits.message_seconds - loop.time()
                else:
                    deadline = self.limits.idle_seconds
                try:
                    async with asyncio.timeout(max(deadline, 0.0)):
                        data = await reader.read(READ_SIZE)
                except TimeoutError:
                    if message_started is None and self.user.connection_in_use(self, source):
                        continue
                    self.dropped += 1
                    log.debug(
                        "SIP connection closed: %s",
                        "idle" if message_started is None else "message too slow",
                        extra={"source": source[0]},
                    )
                    return
                if not data:
                    return
                messages = framer.feed(data)
                for message in messages:
                    if not self.guard.admits(source[0]):
                        self.dropped += 1  # a flood on one connection: silence, then closed
                        return
                    self.message_received(message, source)
                if messages or not framer.in_message:
                    message_started = None
                if framer.in_message and message_started is None:
                    message_started = loop.time()
        except SipParseError as error:
            # a stream that loses framing cannot be resynchronised: answer if we can, close it
            self.dropped += 1
            answer = error_response(framer.buffered(), error.status, error.reason)
            if answer is not None:
                writer.write(answer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass

    def message_received(self, message: Request | Response, source: Address) -> None:
        self.messages_in += 1
        self.execute(self.layer.receive(message, source))

    # actions out --------------------------------------------------------------------------------
    def execute(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                self.send(action.message, action.destination)
            elif isinstance(action, StartTimer):
                self._start_timer(action)
            elif isinstance(action, CancelTimer):
                handle = self._timers.pop((action.key, action.name), None)
                if handle is not None:
                    handle.cancel()
            elif isinstance(action, Deliver):
                self.user.deliver(self, action)
            elif isinstance(action, Terminated):
                self.user.terminated(self, action)

    def _start_timer(self, action: StartTimer) -> None:
        slot = (action.key, action.name)
        previous = self._timers.pop(slot, None)
        if previous is not None:
            previous.cancel()
        loop = asyncio.get_running_loop()
        self._timers[slot] = loop.call_later(
            action.seconds, self._timer_fired, action.key, action.name
        )

    def _timer_fired(self, key: Hashable, name: str) -> None:
        self._timers.pop((key, name), None)
        if isinstance(key, TransactionKey):
            self.execute(self.layer.timer_fired(key, name))
        else:
            self.execute(self.user.timer_fired(self, key, name))

    def send(self, message: Request | Response, destination: Address) -> None:
        data = serialize(message)
        if self.kind == "udp":
            if self._datagrams is not None:
                self._datagrams.sendto(data, destination)
            return
        writer = self._connections.get(destination)
        if writer is not None and not writer.is_closing():
            writer.write(data)
        else:
            asyncio.get_running_loop().create_task(self._connect_and_send(data, destination))

    async def _connect_and_send(self, data: bytes, destination: Address) -> None:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(*destination, ssl=self._client_ssl()), 10
            )
        except (OSError, TimeoutError, ssl.SSLError):
            log.info(
                "SIP connection failed", extra={"destination": f"{destination[0]}:{destination[1]}"}
            )
            return
        self._connections[destination] = writer
        writer.write(data)
        with contextlib.suppress(Exception):
            await self._read_stream(reader, destination, writer)
        self._connections.pop(destination, None)
        writer.close()

    def _client_ssl(self) -> ssl.SSLContext | None:
        if self.kind != "tls":
            return None
        context = ssl.create_default_context()
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    # the transaction user's calls -------------------------------------------------------------
    def send_request(self, request: Request, destination: Address) -> TransactionKey | None:
        key, actions = self.layer.send_request(request, destination)
        self.execute(actions)
        return key

    def send_response(self, key: TransactionKey, response: Response) -> None:
        self.execute(self.layer.send_response(key, response))


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, transport: SipTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[override]
        self.transport.datagram_received(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        log.debug("SIP UDP error: %s", exc)
