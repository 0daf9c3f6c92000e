"""Visio's waiting room (lobby) from the gateway's side: a client of the Visio backend's room API.

Follows suitenumerique/meet (read at commit e5f0b1c, 2026-08-21; findings with line references in
the issue-4 notes):

- ``POST {backend}/rooms/{uuid}/request-entry/`` with ``{"username": NAME}``
  (``src/backend/core/api/viewsets.py`` ``request_entry``, ``core/services/lobby.py``
  ``LobbyService.request_entry``). Anyone may call it, anonymously. The answer is always 200:
  ``{"status": "waiting"|"accepted"|"denied", "username", "id", "color", "livekit": null |
  {"url", "room", "token"}}``. The participant is the ``lobbyParticipantId`` cookie (httponly,
  **secure**) set on every answer; the first answer's ``id`` is its value.
- A waiting participant must poll again within ``LOBBY_WAITING_TIMEOUT`` (3 s) or it is forgotten
  (the browser polls every second and gives up after 10 minutes). A denial is kept 5 s, after which
  a new request would wait again: polling stops at the first ``denied``.
- Who waits: nobody in a ``public`` room; anonymous callers (this gateway) in ``trusted`` and
  ``restricted`` rooms (``LobbyService.can_bypass_lobby``). Hosts are notified by the backend itself
  (LiveKit ``SendData`` ``{"type": "participantWaiting"}``) and admit with ``POST .../enter/``.
- ``GET {backend}/rooms/{uuid}/`` is readable anonymously and carries ``access_level``
  (``RoomSerializer``); with ``ALLOW_UNREGISTERED_ROOMS`` an unknown room answers 200 with
  ``"id": null`` and ``"access_level": "public"``.
- ``request-entry`` is throttled per client address (150/minute by default): 429 with
  ``Retry-After``, which the client honours.

Every caller gets its own participant id, echoed in an explicit ``Cookie`` header: the session must
not keep cookies (``aiohttp.DummyCookieJar``), or callers sharing it would become one participant.
Errors name the backend's host and an HTTP status, never a cookie, a token or a response body.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import uuid
from dataclasses import dataclass, field, replace
from enum import StrEnum
from http.cookies import SimpleCookie
from types import TracebackType
from typing import Any

import aiohttp
from yarl import URL

log = logging.getLogger(__name__)

COOKIE_NAME = "lobbyParticipantId"
"""Visio's ``LOBBY_COOKIE_NAME`` default; a renamed cookie is learned from the first answer."""
POLL_INTERVAL = 2.0
"""Seconds between polls: under Visio's 3 s waiting lifetime, and 2.5 times fewer requests than
the browser's 1 s against the per-address throttle that all our callers share."""
WAIT_TIMEOUT = 600.0
"""How long a caller waits for a host by default: the browser's 10 minutes."""
REQUEST_TIMEOUT = 10.0
MAX_BODY = 64 * 1024
RETRY_AFTER_CAP = 10.0
"""Longest wait honoured from a 429's Retry-After (a longer one would lose our place in the lobby
anyway, since Visio forgets a waiting participant after 3 s without a poll)."""
TRANSIENT_ERRORS = 5
"""Failed polls in a row (unreachable, 5xx, 429) tolerated before wait_admitted gives up."""
ACCESS_LEVELS = ("public", "trusted", "restricted")


class VisioLobbyError(Exception):
    """The lobby flow failed; the message is safe to log and to show (no cookie, no token)."""


class BackendUnreachable(VisioLobbyError):
    """No HTTP answer: connection refused, DNS, TLS verification, or a request timeout."""


class RoomNotFound(VisioLobbyError):
    """The backend has no such room (404)."""


class BackendError(VisioLobbyError):
    """An answer we cannot use: an unexpected status, a redirect, malformed JSON."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Throttled(BackendError):
    """429 from the backend's rate limit; ``retry_after`` in seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message, 429)
        self.retry_after = retry_after


class LobbyStatus(StrEnum):
    WAITING = "waiting"
    ACCEPTED = "accepted"
    DENIED = "denied"


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    DENIED = "denied"
    TIMED_OUT = "timed_out"


@dataclass(frozen=True)
class LiveKitGrant:
    """The ``livekit`` object of an acceptance: where and with what token Visio would let the
    participant in. The token is never shown by ``repr``."""

    url: str
    room: str
    token: str = field(repr=False)


@dataclass(frozen=True)
class LobbyTicket:
    """One caller's place in one Visio room's lobby."""

    room_uuid: str
    participant_id: str
    display_name: str
    status: LobbyStatus
    cookie_name: str = COOKIE_NAME
    livekit: LiveKitGrant | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Admission:
    outcome: Outcome
    ticket: LobbyTicket
    livekit: LiveKitGrant | None = field(default=None, repr=False)

    @property
    def accepted(self) -> bool:
        return self.outcome is Outcome.ACCEPTED


def canonical_room_uuid(room_uuid: str) -> str:
    """The room's UUID in Visio's spelling (lowercase, hyphens); ValueError otherwise."""
    try:
        return str(uuid.UUID(room_uuid.strip()))
    except (ValueError, AttributeError):
        raise ValueError("a Visio room is named by its UUID") from None


def lobby_applies(access_level: str | None) -> bool | None:
    """Whether an anonymous caller (our gateway) waits in a room of this access level; None when
    the level is unknown."""
    if access_level == "public":
        return False
    if access_level in ("trusted", "restricted"):
        return True
    return None


def access_level_from_metadata(metadata: str) -> str | None:
    """The access level in a Visio room's LiveKit metadata (JSON written by the backend's
    ``RoomManagement.update_metadata`` when a host changes it during the meeting), or None: most
    rooms never carry it, so absence says nothing."""
    if not metadata:
        return None
    try:
        data = json.loads(metadata)
    except ValueError:
        return None
    level = data.get("access_level") if isinstance(data, dict) else None
    return level if level in ACCESS_LEVELS else None


class VisioLobby:
    """Client of one Visio backend's lobby. ``backend_url`` is its API root, e.g.
    ``https://visio.example/api/v1.0/``. TLS certificates are verified (pass ``ssl`` for a private
    CA); the session, when given, must use ``aiohttp.DummyCookieJar``."""

    def __init__(
        self,
        backend_url: str,
        session: aiohttp.ClientSession | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        request_timeout: float = REQUEST_TIMEOUT,
        cookie_name: str = COOKIE_NAME,
    ) -> None:
        url = URL(backend_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("the Visio backend URL must be http(s)://HOST/...")
        if url.user or url.password or url.query_string or url.fragment:
            raise ValueError("the Visio backend URL carries no credentials, query or fragment")
        if not url.path.endswith("/"):
            url = url.with_path(url.path + "/")
        self.base = url
        self.host = url.host
        if session is not None and not isinstance(session.cookie_jar, aiohttp.DummyCookieJar):
            raise ValueError(
                "the session for the Visio lobby must not keep cookies (aiohttp.DummyCookieJar): "
                "each caller is its own lobby participant"
            )
        self._session = session
        self._own_session = session is None
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self.request_timeout = request_timeout
        self.cookie_name = cookie_name

    async def __aenter__(self) -> VisioLobby:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    # requests ---------------------------------------------------------------------------
    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        cookie: str | None = None,
        timeout: float | None = None,
    ) -> tuple[Any, SimpleCookie]:
        """One request; the JSON answer and the cookies it set. Raises VisioLobbyError."""
        headers = {"Accept": "application/json", "User-Agent": "Rondpoint"}
        if cookie is not None:
            headers["Cookie"] = cookie
        what = f"the Visio backend {self.host}"
        try:
            async with self._http().request(
                method,
                self.base.join(URL(path)),
                json=body,
                headers=headers,
                allow_redirects=False,
                ssl=self._ssl,
                timeout=aiohttp.ClientTimeout(total=timeout or self.request_timeout),
            ) as response:
                status = response.status
                if status == 404:
                    raise RoomNotFound(f"{what} has no such room")
                if status == 429:
                    raise Throttled(
                        f"{what} throttled the lobby requests (429)",
                        _retry_after(response.headers.get("Retry-After")),
                    )
                if status != 200:
                    raise BackendError(f"{what} answered {status}", status)
                raw = await response.content.read(MAX_BODY + 1)
                cookies = response.cookies
        except VisioLobbyError:
            raise
        except TimeoutError:
            raise BackendUnreachable(f"{what} did not answer in time") from None
        except aiohttp.ClientSSLError as error:
            raise BackendUnreachable(
                f"{what} failed TLS verification ({type(error).__name__})"
            ) from None
        except (aiohttp.ClientError, OSError) as error:
            raise BackendUnreachable(f"{what} is unreachable ({type(error).__name__})") from None
        if len(raw) > MAX_BODY:
            raise BackendError(f"{what} sent an oversized answer", status)
        try:
            return json.loads(raw), cookies
        except ValueError:
            raise BackendError(f"{what} sent malformed JSON", status) from None

    async def access_level(self, room_uuid: str) -> str | None:
        """``public``, ``trusted`` or ``restricted`` as the backend's room API says (anonymously
        readable); None when the answer has no known level. An unregistered room (allowed by
        Visio's ALLOW_UNREGISTERED_ROOMS) is ``public``. RoomNotFound for a 404."""
        room = canonical_room_uuid(room_uuid)
        data, _ = await self._request("GET", f"rooms/{room}/")
        if not isinstance(data, dict):
            raise BackendError(f"the Visio backend {self.host} sent a room that is no object")
        level = data.get("access_level")
        return level if level in ACCESS_LEVELS else None

    async def request_entry(self, room_uuid: str, display_name: str) -> LobbyTicket:
        """Ask to enter: a ticket already accepted (public room), waiting, or (rarely) denied.
        A 429 is retried after its Retry-After, a few times."""
        room = canonical_room_uuid(room_uuid)
        name = display_name.strip()[:255] or "Phone"
        ticket = LobbyTicket(room, "", name, LobbyStatus.WAITING, self.cookie_name)
        for attempt in range(3):
            try:
                return await self._entry(ticket)
            except Throttled as throttled:
                if attempt == 2:
                    raise
                await asyncio.sleep(min(throttled.retry_after, RETRY_AFTER_CAP))
        raise AssertionError("unreachable")

    async def _entry(self, ticket: LobbyTicket, timeout: float | None = None) -> LobbyTicket:
        cookie = f"{ticket.cookie_name}={ticket.participant_id}" if ticket.participant_id else None
        data, cookies = await self._request(
            "POST",
            f"rooms/{ticket.room_uuid}/request-entry/",
            body={"username": ticket.display_name},
            cookie=cookie,
            timeout=timeout,
        )
        return self._read_entry(ticket, data, cookies)

    def _read_entry(self, ticket: LobbyTicket, data: Any, cookies: SimpleCookie) -> LobbyTicket:
        malformed = BackendError(f"the Visio backend {self.host} sent a malformed lobby answer")
        if not isinstance(data, dict):
            raise malformed
        raw_status = data.get("status")
        if raw_status not in tuple(LobbyStatus):
            raise malformed
        status = LobbyStatus(raw_status)
        participant_id = data.get("id")
        if not isinstance(participant_id, str) or not participant_id:
            raise malformed
        cookie_name = ticket.cookie_name
        for name, morsel in cookies.items():
            if morsel.value == participant_id:
                cookie_name = name  # a renamed LOBBY_COOKIE_NAME
        if not _cookie_safe(participant_id) or not _cookie_safe(cookie_name):
            raise malformed
        grant: LiveKitGrant | None = None
        livekit = data.get("livekit")
        if status is LobbyStatus.ACCEPTED:
            if not isinstance(livekit, dict) or not all(
                isinstance(livekit.get(key), str) for key in ("url", "room", "token")
            ):
                raise malformed
            grant = LiveKitGrant(livekit["url"], livekit["room"], livekit["token"])
        if ticket.participant_id and participant_id != ticket.participant_id:
            log.warning(
                "Visio lobby gave a new participant id (cookie not recognised)",
                extra={"backend": self.host},
            )
        return replace(
            ticket,
            participant_id=participant_id,
            status=status,
            cookie_name=cookie_name,
            livekit=grant,
        )

    async def wait_admitted(
        self,
        ticket: LobbyTicket,
        *,
        poll_interval: float = POLL_INTERVAL,
        timeout: float = WAIT_TIMEOUT,
    ) -> Admission:
        """Poll until a host accepts or denies, or ``timeout`` seconds pass. Cancelling is safe:
        no request outlives the task, and Visio forgets the waiting caller 3 s after the last poll
        (hosts then no longer see it). Raises RoomNotFound if the room disappears, BackendError on
        a malformed answer, and the last error after TRANSIENT_ERRORS failed polls in a row."""
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        if ticket.status is LobbyStatus.ACCEPTED:
            return Admission(Outcome.ACCEPTED, ticket, ticket.livekit)
        if ticket.status is LobbyStatus.DENIED:
            return Admission(Outcome.DENIED, ticket)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = poll_interval
        failures = 0
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return Admission(Outcome.TIMED_OUT, ticket)
            await asyncio.sleep(min(delay, remaining))
            remaining = deadline - loop.time()
            if remaining <= 0:
                return Admission(Outcome.TIMED_OUT, ticket)
            delay = poll_interval
            try:
                ticket = await self._entry(ticket, timeout=min(self.request_timeout, remaining))
            except (BackendUnreachable, Throttled) as error:
                failures = _count_failure(failures, error)
                if isinstance(error, Throttled):
                    delay = max(poll_interval, min(error.retry_after, RETRY_AFTER_CAP))
                continue
            except BackendError as error:
                if error.status is None or error.status < 500:
                    raise
                failures = _count_failure(failures, error)
                continue
            failures = 0
            if ticket.status is LobbyStatus.ACCEPTED:
                return Admission(Outcome.ACCEPTED, ticket, ticket.livekit)
            if ticket.status is LobbyStatus.DENIED:
                return Admission(Outcome.DENIED, ticket)


def _count_failure(failures: int, error: VisioLobbyError) -> int:
    failures += 1
    log.info("Visio lobby poll failed", extra={"error": str(error), "failures": failures})
    if failures >= TRANSIENT_ERRORS:
        raise error
    return failures


def _retry_after(value: str | None) -> float:
    with contextlib.suppress(TypeError, ValueError):
        return max(0.0, float(value))  # type: ignore[arg-type]
    return 1.0


def _cookie_safe(value: str) -> bool:
    """Nothing that could break out of a ``Cookie: name=value`` header."""
    return 0 < len(value) <= 128 and all(c.isalnum() or c in "-_." for c in value)
