"""LiveKit signalling, participant side: the WebSocket at /rtc carrying protobuf messages.

Follows LiveKit's signalling protocol version 16 (`livekit_rtc.proto` in livekit/protocol, as the
`livekit-protocol` package ships it): the client opens
`ws://HOST:PORT/rtc?access_token=JWT&protocol=16&auto_subscribe=1&sdk=...`, every frame is a
binary `SignalRequest` (client to server) or `SignalResponse` (server to client), the server's
first message is `join` (JoinResponse), the client sends `ping_req` every `ping_interval` seconds
and the server answers `pong_resp`, `update` (ParticipantUpdate) carries participants joining,
changing and leaving (state DISCONNECTED), and `leave` ends the session. When the server refuses
the WebSocket upgrade (a bad token: HTTP 401), the reason is read from GET /rtc/validate with the
same query, as LiveKit's own SDKs do.

Two layers: `SignalSession` is sans-I/O (bytes in, events and bytes out, no socket, no clock);
`SignalClient` drives it over an aiohttp WebSocket. Media (the `offer` / `answer` / `trickle`
handshakes) is not handled here: those messages come out as `Unhandled` events for the WebRTC
layer to take.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp
from google.protobuf.message import DecodeError
from livekit.protocol import models, rtc

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 16
SDK_NAME = "rondpoint"
SDK_VERSION = "0.1.0"


class SignalError(Exception):
    """A LiveKit signalling failure, with a message fit for an operator."""


class SignalConnectError(SignalError):
    """The server refused the join, or closed before sending JoinResponse."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class SignalProtocolError(SignalError):
    """A frame that is not a SignalResponse, or a message out of order."""


# --- URLs ------------------------------------------------------------------------------------


def _base(url: str, scheme_map: dict[str, str]) -> tuple[str, str, str]:
    parts = urlsplit(url)
    scheme = scheme_map.get(parts.scheme)
    if scheme is None:
        raise ValueError(f"not a LiveKit URL: {url!r}")
    return scheme, parts.netloc, parts.path.rstrip("/")


def _query(token: str, *, auto_subscribe: bool, extra: dict[str, str] | None) -> str:
    params = {
        "access_token": token,
        "protocol": str(PROTOCOL_VERSION),
        "auto_subscribe": "1" if auto_subscribe else "0",
        "sdk": SDK_NAME,
        "version": SDK_VERSION,
    }
    params.update(extra or {})
    return urlencode(params)


def rtc_url(
    url: str, token: str, *, auto_subscribe: bool = True, extra: dict[str, str] | None = None
) -> str:
    """The signalling WebSocket URL for a LiveKit URL (ws, wss, http or https)."""
    scheme, netloc, path = _base(url, {"ws": "ws", "http": "ws", "wss": "wss", "https": "wss"})
    query = _query(token, auto_subscribe=auto_subscribe, extra=extra)
    return urlunsplit((scheme, netloc, path + "/rtc", query, ""))


def validate_url(url: str, token: str, *, auto_subscribe: bool = True) -> str:
    """The HTTP URL that explains why a join with these parameters is refused."""
    scheme, netloc, path = _base(
        url, {"ws": "http", "http": "http", "wss": "https", "https": "https"}
    )
    query = _query(token, auto_subscribe=auto_subscribe, extra=None)
    return urlunsplit((scheme, netloc, path + "/rtc/validate", query, ""))


def room_service_url(url: str, method: str) -> str:
    """The HTTP URL of one RoomService method (Twirp, JSON bodies) for a LiveKit URL."""
    scheme, netloc, path = _base(
        url, {"ws": "http", "http": "http", "wss": "https", "https": "https"}
    )
    return urlunsplit((scheme, netloc, f"{path}/twirp/livekit.RoomService/{method}", "", ""))


# --- messages --------------------------------------------------------------------------------


def encode_request(request: rtc.SignalRequest) -> bytes:
    return request.SerializeToString()


def decode_response(data: bytes) -> rtc.SignalResponse:
    response = rtc.SignalResponse()
    try:
        response.ParseFromString(data)
    except DecodeError as exc:
        raise SignalProtocolError(f"undecodable SignalResponse ({len(data)} bytes): {exc}") from exc
    return response


def ping_request(timestamp_ms: int, rtt_ms: int = 0) -> rtc.SignalRequest:
    return rtc.SignalRequest(ping_req=rtc.Ping(timestamp=timestamp_ms, rtt=rtt_ms))


def leave_request(
    reason: models.DisconnectReason = models.DisconnectReason.CLIENT_INITIATED,
) -> rtc.SignalRequest:
    return rtc.SignalRequest(
        leave=rtc.LeaveRequest(reason=reason, action=rtc.LeaveRequest.DISCONNECT)
    )


@dataclass(frozen=True)
class TrackInfo:
    """What LiveKit says about one published track (TrackInfo)."""

    sid: str
    kind: str
    """audio or video."""
    source: str
    """Lower case TrackSource name: microphone, camera, screen_share, screen_share_audio, unknown."""
    muted: bool = False
    name: str = ""
    mime_type: str = ""

    @classmethod
    def from_info(cls, info: models.TrackInfo) -> TrackInfo:
        return cls(
            sid=info.sid,
            kind="video" if info.type == models.TrackType.VIDEO else "audio",
            source=models.TrackSource.Name(info.source).lower(),
            muted=info.muted,
            name=info.name,
            mime_type=info.mime_type,
        )


@dataclass(frozen=True)
class Participant:
    """What LiveKit says about one participant (ParticipantInfo)."""

    sid: str
    identity: str
    name: str
    kind: str
    """Lower case, as in tokens: standard, sip, agent..."""
    state: str
    """JOINING, JOINED, ACTIVE or DISCONNECTED."""
    metadata: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    version: int = 0
    tracks: tuple[TrackInfo, ...] = ()

    @classmethod
    def from_info(cls, info: models.ParticipantInfo) -> Participant:
        return cls(
            sid=info.sid,
            identity=info.identity,
            name=info.name,
            kind=models.ParticipantInfo.Kind.Name(info.kind).lower(),
            state=models.ParticipantInfo.State.Name(info.state),
            metadata=info.metadata,
            attributes=dict(info.attributes),
            version=info.version,
            tracks=tuple(TrackInfo.from_info(t) for t in info.tracks),
        )


# --- events ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Joined:
    room_name: str
    room_sid: str
    participant: Participant
    other_participants: tuple[Participant, ...]
    server_version: str
    subscriber_primary: bool
    ping_interval: int
    """Seconds between two pings the client should send."""
    ping_timeout: int
    """Seconds without a ping after which the server drops the client."""
    ice_servers: tuple[IceServer, ...] = ()
    """STUN/TURN servers the server offers (TURN over TCP/TLS where UDP is blocked)."""
    sif_trailer: bytes = b""
    """Ends the frames the server injects itself into end-to-end encrypted tracks (frame
    decryption passes them on in clear)."""


@dataclass(frozen=True)
class IceServer:
    urls: tuple[str, ...]
    username: str = ""
    credential: str = field(default="", repr=False)


@dataclass(frozen=True)
class ParticipantsChanged:
    updated: tuple[Participant, ...]
    """Joined or changed: present in the room now."""
    left: tuple[Participant, ...]


@dataclass(frozen=True)
class PongReceived:
    last_ping_timestamp: int
    server_timestamp: int


@dataclass(frozen=True)
class Left:
    reason: str
    """A DisconnectReason name, e.g. CLIENT_INITIATED, ROOM_DELETED, SERVER_SHUTDOWN."""
    action: str
    """DISCONNECT, RESUME or RECONNECT."""
    can_reconnect: bool


@dataclass(frozen=True)
class Resumed:
    """The server took this connection as the resumption of an earlier session (ReconnectResponse)."""


@dataclass(frozen=True)
class Unhandled:
    """A message this layer does not interpret (offer, answer, trickle, track_published...)."""

    kind: str
    message: rtc.SignalResponse


Event = Joined | ParticipantsChanged | PongReceived | Left | Resumed | Unhandled


class SignalSession:
    """Sans-I/O state of one signalling session: feed it frames, send what it returns."""

    def __init__(self, resume: SignalSession | None = None) -> None:
        """A new session, or the continuation of RESUME's after a signalling reconnection."""
        self.resuming = resume is not None
        self.joined: Joined | None = resume.joined if resume is not None else None
        self.left: Left | None = None
        self.participants: dict[str, Participant] = dict(resume.participants) if resume else {}
        """Remote participants present in the room, by sid."""
        self.local: Participant | None = resume.local if resume is not None else None

    def receive(self, data: bytes) -> list[Event]:
        return self.handle(decode_response(data))

    def handle(self, response: rtc.SignalResponse) -> list[Event]:
        kind = response.WhichOneof("message")
        if kind is None:
            raise SignalProtocolError("empty SignalResponse")
        if kind == "reconnect":
            if not self.resuming:
                raise SignalProtocolError("reconnect received in a session that did not resume")
            self.resuming = False
            return [Resumed()]
        if self.joined is None and kind not in ("join", "leave"):
            raise SignalProtocolError(f"{kind} received before join")
        if kind == "join":
            if self.joined is not None:
                raise SignalProtocolError("second join in one session")
            return [self._on_join(response.join)]
        if kind == "update":
            changed = self._on_update(response.update.participants)
            return [changed] if changed.updated or changed.left else []
        if kind == "pong_resp":
            pong = response.pong_resp
            return [PongReceived(pong.last_ping_timestamp, pong.timestamp)]
        if kind == "leave":
            leave = response.leave
            self.left = Left(
                reason=models.DisconnectReason.Name(leave.reason),
                action=rtc.LeaveRequest.Action.Name(leave.action),
                can_reconnect=leave.can_reconnect,
            )
            return [self.left]
        return [Unhandled(kind, response)]

    def _on_join(self, join: rtc.JoinResponse) -> Joined:
        self.local = Participant.from_info(join.participant)
        others = tuple(Participant.from_info(p) for p in join.other_participants)
        self.participants = {p.sid: p for p in others}
        self.joined = Joined(
            room_name=join.room.name,
            room_sid=join.room.sid,
            participant=self.local,
            other_participants=others,
            server_version=join.server_version,
            subscriber_primary=join.subscriber_primary,
            ping_interval=join.ping_interval,
            ping_timeout=join.ping_timeout,
            ice_servers=tuple(
                IceServer(tuple(server.urls), server.username, server.credential)
                for server in join.ice_servers
            ),
            sif_trailer=bytes(join.sif_trailer),
        )
        return self.joined

    def _on_update(self, infos: Any) -> ParticipantsChanged:
        updated: list[Participant] = []
        left: list[Participant] = []
        for info in infos:
            p = Participant.from_info(info)
            if self.local is not None and p.sid == self.local.sid:
                if p.version >= self.local.version:
                    self.local = p
                continue
            known = self.participants.get(p.sid)
            if known is not None and p.version < known.version:
                continue  # an older snapshot arriving late
            if p.state == "DISCONNECTED":
                if self.participants.pop(p.sid, None) is not None:
                    left.append(p)
            else:
                self.participants[p.sid] = p
                updated.append(p)
        return ParticipantsChanged(tuple(updated), tuple(left))

    def ping(self, timestamp_ms: int, rtt_ms: int = 0) -> bytes:
        return encode_request(ping_request(timestamp_ms, rtt_ms))

    def leave(self) -> bytes:
        return encode_request(leave_request())


# --- the socket ------------------------------------------------------------------------------


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _refusal_reason(session: aiohttp.ClientSession, url: str, token: str) -> str:
    try:
        async with session.get(
            validate_url(url, token), timeout=aiohttp.ClientTimeout(total=5)
        ) as resp:
            text = (await resp.text()).strip()
    except (aiohttp.ClientError, TimeoutError) as exc:
        return f"no reason given ({exc.__class__.__name__})"
    # livekit-server quotes the whole token in its reason: keep secrets-bearing JWTs out of logs.
    return text.replace(token, "<token>")[:500] if text else f"HTTP {resp.status}"


class SignalClient:
    """One participant's signalling connection; `connect` returns once JoinResponse is in."""

    def __init__(
        self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse, own_http: bool
    ) -> None:
        self._http = http
        self._own_http = own_http
        self._ws = ws
        self.session = SignalSession()
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.closed = asyncio.Event()
        self.close_reason = ""
        self._tasks: list[asyncio.Task[None]] = []
        self._rtt_ms = 0

    @classmethod
    async def connect(
        cls,
        url: str,
        token: str,
        *,
        auto_subscribe: bool = True,
        timeout: float = 10.0,
        http: aiohttp.ClientSession | None = None,
        resume: SignalSession | None = None,
    ) -> SignalClient:
        """Join, or with RESUME (the session of a lost connection) ask to resume it: LiveKit
        answers `reconnect` instead of `join` when it still holds the participant."""
        own_http = http is None
        extra = None
        if resume is not None and resume.local is not None:
            extra = {"reconnect": "1", "sid": resume.local.sid}
        session = http or aiohttp.ClientSession()
        try:
            try:
                ws = await session.ws_connect(
                    rtc_url(url, token, auto_subscribe=auto_subscribe, extra=extra),
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=timeout),
                    autoping=True,
                    max_msg_size=16 * 1024 * 1024,
                )
            except aiohttp.WSServerHandshakeError as exc:
                reason = await _refusal_reason(session, url, token)
                raise SignalConnectError(
                    f"LiveKit refused the join (HTTP {exc.status}): {reason}", status=exc.status
                ) from None
            except (aiohttp.ClientError, OSError) as exc:
                raise SignalConnectError(f"cannot reach LiveKit at {url}: {exc}") from None
            client = cls(session, ws, own_http)
            if resume is not None:
                client.session = SignalSession(resume)
            try:
                await asyncio.wait_for(client._await_join(), timeout)
            except TimeoutError:
                await client._close_socket()
                raise SignalConnectError(
                    f"no JoinResponse from LiveKit within {timeout} s"
                ) from None
            except SignalError:
                await client._close_socket()
                raise
        except BaseException:
            if own_http:
                await session.close()
            raise
        client._tasks = [
            asyncio.create_task(client._read_loop(), name="livekit-signal-read"),
            asyncio.create_task(client._ping_loop(), name="livekit-signal-ping"),
        ]
        return client

    @property
    def joined(self) -> Joined:
        assert self.session.joined is not None
        return self.session.joined

    async def _receive_frame(self) -> bytes | None:
        msg = await self._ws.receive()
        if msg.type == aiohttp.WSMsgType.BINARY:
            data: bytes = msg.data
            return data
        if msg.type == aiohttp.WSMsgType.TEXT:
            raise SignalProtocolError("text frame from LiveKit; this client speaks protobuf only")
        if msg.type == aiohttp.WSMsgType.ERROR:
            self.close_reason = f"WebSocket error: {self._ws.exception()}"
        else:
            self.close_reason = f"WebSocket closed ({self._ws.close_code})"
        return None

    async def _await_join(self) -> None:
        """Read until JoinResponse (or ReconnectResponse when resuming); a leave refuses."""
        while True:
            data = await self._receive_frame()
            if data is None:
                raise SignalConnectError(f"LiveKit closed before JoinResponse: {self.close_reason}")
            for event in self.session.receive(data):
                if isinstance(event, Left):
                    raise SignalConnectError(f"LiveKit sent leave instead of join: {event.reason}")
                self.events.put_nowait(event)
                if isinstance(event, Joined | Resumed):
                    return

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self._receive_frame()
                if data is None:
                    break
                try:
                    events = self.session.receive(data)
                except SignalProtocolError as exc:
                    log.warning("LiveKit signalling: %s", exc)
                    continue
                for event in events:
                    if isinstance(event, PongReceived) and event.last_ping_timestamp:
                        self._rtt_ms = max(0, _now_ms() - event.last_ping_timestamp)
                    self.events.put_nowait(event)
                if self.session.left is not None:
                    self.close_reason = f"leave from LiveKit: {self.session.left.reason}"
                    break
        except (aiohttp.ClientError, SignalError, ConnectionError) as exc:
            self.close_reason = f"signalling failed: {exc}"
        finally:
            self.closed.set()
            await self._close_socket()

    async def _ping_loop(self) -> None:
        interval = self.joined.ping_interval or 5
        while not self._ws.closed:
            await asyncio.sleep(interval)
            with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                await self.ping()

    async def send(self, request: rtc.SignalRequest) -> None:
        if self._ws.closed:
            raise SignalError(f"signalling is closed: {self.close_reason or 'closed'}")
        await self._ws.send_bytes(encode_request(request))

    async def ping(self) -> None:
        await self.send(ping_request(_now_ms(), self._rtt_ms))

    async def next_event(self, timeout: float = 10.0) -> Event:
        return await asyncio.wait_for(self.events.get(), timeout)

    async def wait_for(self, predicate: Callable[[Event], bool], timeout: float = 10.0) -> Event:
        """The next event matching PREDICATE; events before it are dropped."""

        async def scan() -> Event:
            while True:
                event = await self.events.get()
                if predicate(event):
                    return event

        return await asyncio.wait_for(scan(), timeout)

    async def leave(self) -> None:
        """Tell the server we leave, then close."""
        if not self._ws.closed:
            with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                await self._ws.send_bytes(self.session.leave())
        await self.close()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self._close_socket()
        self.closed.set()
        if self._own_http:
            await self._http.close()

    async def _close_socket(self) -> None:
        if not self._ws.closed:
            with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                await self._ws.close()
