"""The Matrix client-server API as an application service: the bot and its ghosts.

matrix-nio does the work where it has it: its request builders (``nio.Api``: the paths of
``join``, ``room_invite``, ``room_leave``, ``room_get_state``, ``room_put_state``,
``room_send``, ``room_redact``, ``to_device``, ``profile_set_displayname``,
``room_resolve_alias``), percent-encoding every path segment. Added around it here, because nio
is a client of one logged-in user and has none of them:

- one ``request()`` that every call goes through: the application service's token in the
  ``Authorization`` header (nio's builders put ``access_token`` in the query string, where it
  would reach access logs: it is taken out), ``?user_id=`` to act as a ghost (Application Service
  API, "Identity assertion"), ``?device_id=`` to act as one of its devices (MSC3202 device
  masquerading, which Synapse reads as ``device_id``), a timeout, TLS verified against
  ``[matrix] ca_file``, and errors turned into ``MatrixError`` / ``MatrixUnavailable`` whose
  text never holds a token;
- registration of ghosts (``m.login.application_service``);
- MSC4140 delayed events: ``?org.matrix.msc4140.delay=`` on a state event, and
  ``delayed_events/{delay_id}/{restart|cancel|send}``;
- the OpenID ``userinfo`` check of the focus token service, made without our token;
- an event's relations, a page at a time (``/relations/{eventId}/{relType}/{eventType}``): nio
  builds it only for a syncing client of its own.

Events the homeserver pushes (service.py) stay JSON objects: nio's event classes parse what a
syncing client needs and turn MatrixRTC's state and to-device events into ``UnknownEvent`` with
the same object inside, so they would add a step and no checking.
"""

from __future__ import annotations

import json
import ssl
import urllib.parse
import uuid
from typing import Any

import aiohttp
from nio import Api

DELAYED_EVENTS = "/_matrix/client/unstable/org.matrix.msc4140/delayed_events"
DELAY_PARAMETER = "org.matrix.msc4140.delay"
DELAYED_ACTIONS = frozenset({"restart", "cancel", "send"})
MAX_RESPONSE = 16 * 1024 * 1024


class MatrixError(Exception):
    """The homeserver refused a request; ``str()`` is safe to show (never a token)."""

    def __init__(self, status: int, errcode: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.errcode = errcode


class MatrixUnavailable(MatrixError):
    """The homeserver could not be reached, failed (5xx) or took too long."""


def _path(built: tuple[str, ...]) -> tuple[str, str, dict[str, Any] | None]:
    """(method, path, body) of an ``nio.Api`` builder's answer, its ``access_token`` taken out."""
    method, url = built[0], built[1]
    body = json.loads(built[2]) if len(built) > 2 else None
    path, _, query = url.partition("?")
    kept = [(k, v) for k, v in urllib.parse.parse_qsl(query) if k != "access_token"]
    if kept:
        path += "?" + urllib.parse.urlencode(kept)
    return method, path, body


def _quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


class MatrixClient:
    """The client-server API as the application service (``?user_id=`` impersonation)."""

    def __init__(
        self,
        homeserver_url: str,
        as_token: str,
        bot_user_id: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.homeserver_url = homeserver_url.rstrip("/")
        self.bot_user_id = bot_user_id
        self._as_token = as_token
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        as_user: str | None = None,
        device_id: str | None = None,
        query: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Call ``path`` (already percent-encoded, may hold a query) as the application service,
        or as ``as_user`` (and its device ``device_id``); the answer's JSON object. MatrixError
        with the homeserver's errcode when it refuses, MatrixUnavailable when it cannot answer."""
        params: dict[str, str] = dict(query or {})
        if as_user is not None:
            params["user_id"] = as_user
        if device_id is not None:
            params["device_id"] = device_id
        return await self._call(
            method,
            path,
            body,
            params=params,
            headers={"Authorization": f"Bearer {self._as_token}"},
        )

    async def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        *,
        params: dict[str, str],
        headers: dict[str, str],
    ) -> dict[str, Any]:
        path_only, _, path_query = path.partition("?")
        query = dict(urllib.parse.parse_qsl(path_query))
        query.update(params)
        url = self.homeserver_url + path_only
        if query:
            url += "?" + urllib.parse.urlencode(query)
        what = f"{method} {path_only}"  # never the query: it may hold a token
        try:
            async with self._client().request(
                method,
                url,
                json=body,
                headers=headers,
                ssl=self._ssl,
            ) as response:
                raw = await response.content.read(MAX_RESPONSE + 1)
                status = response.status
        except TimeoutError:
            raise MatrixUnavailable(
                0, "M_TIMEOUT", f"{what}: the homeserver did not answer in time"
            ) from None
        except aiohttp.ClientError as error:
            raise MatrixUnavailable(
                0,
                "M_UNREACHABLE",
                f"{what}: the homeserver cannot be reached ({type(error).__name__})",
            ) from None
        answer = _json_object(raw)
        if status >= 500:
            raise MatrixUnavailable(
                status, str(answer.get("errcode", "M_UNKNOWN")), _said(what, status, answer)
            )
        if status >= 400:
            raise MatrixError(
                status, str(answer.get("errcode", "M_UNKNOWN")), _said(what, status, answer)
            )
        return answer

    # users ---------------------------------------------------------------
    async def register(self, localpart: str) -> None:
        """Register ``@localpart`` in our namespace; a user already there is fine."""
        try:
            await self.request(
                "POST",
                "/_matrix/client/v3/register",
                {
                    "type": "m.login.application_service",
                    "username": localpart,
                    "inhibit_login": True,
                },
            )
        except MatrixError as error:
            if error.errcode != "M_USER_IN_USE":
                raise

    async def set_display_name(self, user_id: str, name: str) -> None:
        method, path, body = _path(Api.profile_set_displayname("", user_id, name))
        await self.request(method, path, body, as_user=user_id)

    # rooms ---------------------------------------------------------------
    async def resolve_alias(self, alias: str) -> str:
        method, path, _ = _path(Api.room_resolve_alias(alias))
        answer = await self.request(method, path)
        room_id = answer.get("room_id")
        if not isinstance(room_id, str):
            raise MatrixError(404, "M_NOT_FOUND", f"the alias {alias} names no room")
        return room_id

    async def join(self, room: str, *, as_user: str | None = None) -> str:
        """Join a room by id or alias; its room id."""
        method, path, _ = _path(Api.join("", room))
        answer = await self.request(method, path, {}, as_user=as_user)
        room_id = answer.get("room_id")
        return room_id if isinstance(room_id, str) else room

    async def invite(self, room_id: str, user_id: str, *, as_user: str | None = None) -> None:
        method, path, body = _path(Api.room_invite("", room_id, user_id))
        await self.request(method, path, body, as_user=as_user)

    async def leave(self, room_id: str, *, as_user: str) -> None:
        method, path, _ = _path(Api.room_leave("", room_id))
        await self.request(method, path, {}, as_user=as_user)

    async def room_state(self, room_id: str, *, as_user: str | None = None) -> list[dict[str, Any]]:
        method, path, _ = _path(Api.room_get_state("", room_id))
        answer = await self._call_list(method, path, as_user)
        return [event for event in answer if isinstance(event, dict)]

    async def _call_list(self, method: str, path: str, as_user: str | None) -> list[Any]:
        """The few endpoints that answer a JSON array (``/state``) come back under ``"list"``."""
        answer = await self.request(method, path, as_user=as_user)
        items = answer.get(_LIST_KEY, [])
        return items if isinstance(items, list) else []

    async def put_state(
        self,
        room_id: str,
        event_type: str,
        state_key: str,
        content: dict[str, Any],
        *,
        as_user: str | None = None,
    ) -> str:
        """Send a state event; its event id."""
        method, path, body = _path(Api.room_put_state("", room_id, event_type, content, state_key))
        answer = await self.request(method, _state_key_path(path, state_key), body, as_user=as_user)
        return str(answer.get("event_id", ""))

    async def put_delayed_state(
        self,
        room_id: str,
        event_type: str,
        state_key: str,
        content: dict[str, Any],
        delay_ms: int,
        *,
        as_user: str,
    ) -> str:
        """Schedule a state event ``delay_ms`` from now (MSC4140); its delay id."""
        method, path, body = _path(Api.room_put_state("", room_id, event_type, content, state_key))
        answer = await self.request(
            method,
            _state_key_path(path, state_key),
            body,
            as_user=as_user,
            query={DELAY_PARAMETER: str(int(delay_ms))},
        )
        delay_id = answer.get("delay_id")
        if not isinstance(delay_id, str):
            raise MatrixError(
                400, "M_UNRECOGNIZED", "the homeserver does not schedule delayed events (MSC4140)"
            )
        return delay_id

    async def update_delayed(self, delay_id: str, action: str, *, as_user: str) -> None:
        """Restart, cancel or send a delayed event now; MatrixError 404 when it is gone."""
        if action not in DELAYED_ACTIONS:
            raise ValueError(f"a delayed event is restarted, cancelled or sent, not {action!r}")
        path = f"{DELAYED_EVENTS}/{_quote(delay_id)}/{action}"
        await self.request("POST", path, {}, as_user=as_user)

    async def send(
        self,
        room_id: str,
        event_type: str,
        content: dict[str, Any],
        *,
        as_user: str | None = None,
        txn_id: str | None = None,
    ) -> str:
        """Send a room event; its event id. The same ``txn_id`` is sent once."""
        built = Api.room_send("", room_id, event_type, content, txn_id or uuid.uuid4().hex)
        method, path, body = _path(built)
        answer = await self.request(method, path, body, as_user=as_user)
        return str(answer.get("event_id", ""))

    async def redact(self, room_id: str, event_id: str, *, as_user: str | None = None) -> None:
        method, path, body = _path(Api.room_redact("", room_id, event_id, uuid.uuid4().hex))
        await self.request(method, path, body, as_user=as_user)

    async def relations(
        self,
        room_id: str,
        event_id: str,
        rel_type: str,
        event_type: str,
        *,
        limit: int,
        page: str | None = None,
        as_user: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the events of EVENT_TYPE relating to EVENT_ID by REL_TYPE, newest first
        (the relations API, v1.3+): at most LIMIT events (its items that are not objects are left
        out) and the token of the next page (None at the end), from the page PAGE (a token an
        earlier page gave; None: the newest). MatrixError when refused, and M_BAD_JSON when the
        answer holds no list of events."""
        path = (
            f"/_matrix/client/v1/rooms/{_quote(room_id)}/relations/{_quote(event_id)}"
            f"/{_quote(rel_type)}/{_quote(event_type)}"
        )
        limit = max(1, int(limit))
        query = {"limit": str(limit)}
        if page is not None:
            query["from"] = page
        answer = await self.request("GET", path, as_user=as_user, query=query)
        chunk = answer.get("chunk")
        if not isinstance(chunk, list):
            raise MatrixError(
                200, "M_BAD_JSON", "GET relations: the homeserver's answer holds no chunk of events"
            )
        following = answer.get("next_batch")
        next_page = following if isinstance(following, str) and 0 < len(following) <= 512 else None
        return [e for e in chunk[:limit] if isinstance(e, dict)], next_page

    async def send_to_device(
        self,
        event_type: str,
        messages: dict[str, dict[str, dict[str, Any]]],
        *,
        as_user: str,
        device_id: str | None = None,
    ) -> None:
        """To-device events ``{user: {device: content}}`` from ``as_user`` (from its device
        ``device_id`` when given: MSC3202)."""
        built = Api.to_device("", event_type, {"messages": messages}, uuid.uuid4().hex)
        method, path, body = _path(built)
        await self.request(method, path, body, as_user=as_user, device_id=device_id)

    # OpenID (the focus token service) --------------------------------------
    async def openid_userinfo(self, access_token: str) -> str:
        """The user an OpenID token (``/openid/request_token``) was issued to; MatrixError 401
        when the homeserver does not know it. Our own token is not sent."""
        answer = await self._call(
            "GET",
            "/_matrix/federation/v1/openid/userinfo",
            None,
            params={"access_token": access_token},
            headers={},
        )
        sub = answer.get("sub")
        if not isinstance(sub, str):
            raise MatrixError(401, "M_UNKNOWN_TOKEN", "the homeserver named no user for the token")
        return sub


_LIST_KEY = "list"


def _json_object(raw: bytes) -> dict[str, Any]:
    """The answer as an object (an array is put under ``"list"``); ``{}`` when not JSON."""
    if len(raw) > MAX_RESPONSE:
        return {}
    try:
        value = json.loads(raw) if raw else {}
    except (ValueError, RecursionError):
        return {}
    if isinstance(value, list):
        return {_LIST_KEY: value}
    return value if isinstance(value, dict) else {}


def _said(what: str, status: int, answer: dict[str, Any]) -> str:
    """A refusal in one line: the request, the status, the homeserver's error (cut short)."""
    errcode = str(answer.get("errcode", ""))[:64]
    error = str(answer.get("error", ""))[:200]
    detail = f" {errcode}" if errcode else ""
    detail += f": {error}" if error else ""
    return f"{what} answered {status}{detail}"


def _state_key_path(path: str, state_key: str) -> str:
    """nio drops the trailing '/' of an empty state key; the spec's path keeps it."""
    return path if state_key else path + "/"
