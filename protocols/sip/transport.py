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
from collections.abc import Callable, Hashable
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
MAX_STREAM_BUFFER = 256 * 1024

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
                self._serve_connection, self.host, self.port, ssl=self.ssl_context
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
        if not self.guard.admits(source[0]):
            writer.close()
            return
        self._connections[source] = writer
        await self._read_stream(reader, source)
        self._connections.pop(source, None)
        writer.close()

    async def _read_stream(self, reader: asyncio.StreamReader, source: Address) -> None:
        framer = StreamReader()
        try:
            while data := await reader.read(65536):
                if not self.guard.admits(source[0]):
                    return
                for message in framer.feed(data):
                    self.message_received(message, source)
        except SipParseError:
            self.dropped += 1  # a stream that loses framing cannot be resynchronised: close it
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
            await self._read_stream(reader, destination)
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
