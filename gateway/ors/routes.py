"""ORS over HTTP (spec/ors-v1.md): discovery, keys, room info, anonymous tokens, dial-in, the
WebSocket, WHIP and WHEP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, TypeVar

from aiohttp import web

from gateway.http.keys import GATEWAY, HTTP_MEDIA_SESSIONS, PIN_FAILURES, WS_BEFORE_JOIN
from gateway.media.endpoint import PublishRequest, WebRtcEndpoint
from gateway.media.sdp import SdpError, SessionDescription
from gateway.media.sdp import parse as parse_sdp
from gateway.ors.problems import Problem, json_object
from gateway.ors.session import OrsSession, SessionState
from gateway.ratelimit import FailureBackoff
from gateway.rooms import (
    Participant,
    Role,
    Room,
    Track,
    TrackKind,
    TrackSource,
    check_room_id,
    new_id,
)
from gateway.rooms.names import display_name
from gateway.tokens import JoinGrant

if TYPE_CHECKING:
    from gateway.server import Gateway

log = logging.getLogger(__name__)

T = TypeVar("T")

VERSIONS = ["1"]
CAPABILITIES = ["websocket", "whip", "whep", "simulcast", "chat", "lobby", "pin", "livekit-grants"]
HARD_MESSAGE_LIMIT = 1024 * 1024


def _gateway(request: web.Request) -> Gateway:
    return request.config_dict[GATEWAY]


def _room_id(request: web.Request) -> str:
    room_id = request.match_info["room"]
    check_room_id(room_id)
    return room_id


def capabilities(gateway: Gateway) -> list[str]:
    """What discovery announces: the hub's own, resume unless [rooms] reconnect_grace is 0,
    dial-out when a dialler runs, and what the running plugins add (``Running.capabilities``)."""
    found = CAPABILITIES + (["resume"] if gateway.config.rooms.reconnect_grace else [])
    found += ["dial-out"] if gateway.diallers.schemes() else []
    for running in gateway.running.values():
        if running is not None:
            found += [name for name in running.capabilities if name not in found]
    return found


async def discovery(request: web.Request) -> web.Response:
    gateway = _gateway(request)
    base = gateway.config.base_url
    ws_base = base.replace("https://", "wss://").replace("http://", "ws://")
    return web.json_response(
        {
            "server": gateway.config.server.name,
            "versions": VERSIONS,
            "api_base": f"{base}/ors/v1",
            "keys_url": f"{base}/ors/v1/keys",
            "websocket_url_template": f"{ws_base}/ors/v1/rooms/{{room}}/ws",
            "capabilities": capabilities(gateway),
        }
    )


async def keys(request: web.Request) -> web.Response:
    return web.json_response(_gateway(request).signing_keys.jwks())


async def room_info(request: web.Request) -> web.Response:
    gateway = _gateway(request)
    room_id = _room_id(request)
    _limit(request)
    room = gateway.rooms.get(room_id)
    return web.json_response(
        {
            "id": room.id,
            "policy": {"pin": bool(room.policy.pin), "lobby": room.policy.lobby},
            "participants": len(room.joined()),
        }
    )


DIAL_IN_LISTED = 20
"""Numbers, and SIP URIs, a dial-in answer lists at most (spec 4.5)."""


async def dial_in(request: web.Request) -> web.Response:
    """How a phone reaches the room, and its PIN, for a participant inside it (spec 4.5): the
    token's identity must be joined (not in the lobby, not removed), so the answer tells nothing
    its holder could not already hear in the room. Plugins say their numbers (``Running.dial_in``)."""
    gateway = _gateway(request)
    room_id = _room_id(request)
    _limit(request)
    grant = _bearer_grant(request, room_id)
    room = gateway.rooms.get(room_id)
    if not any(p.identity == grant.identity for p in room.joined()):
        raise Problem(
            "not_joined", "only a participant inside the room may see how to dial in", 409
        )
    numbers: list[str] = []
    sip_uris: list[str] = []
    for running in gateway.running.values():
        if running is not None and running.dial_in is not None:
            found = running.dial_in(room_id)
            numbers += [n for n in found.numbers if n not in numbers]
            sip_uris += [u for u in found.sip_uris if u not in sip_uris]
    body = {
        "room": room_id,
        "numbers": numbers[:DIAL_IN_LISTED],
        "sip_uris": sip_uris[:DIAL_IN_LISTED],
        "pin": room.policy.pin or None,
    }
    return web.json_response(body, headers={"Cache-Control": "no-store"})


def _limit(request: web.Request) -> None:
    limiter, address = _gateway(request).anonymous_limit, request.remote or "?"
    if not limiter.allow(address):
        seconds = math.ceil(limiter.retry_after(address))
        raise Problem(
            "rate_limited",
            f"too many requests from this address; retry in {seconds} s",
            429,
            retry_after=seconds,
        )


PIN_FREE_FAILURES = 5
"""Wrong PINs a room takes from all addresses together before each further attempt must wait."""
PIN_FIRST_DELAY_SECONDS = 1.0
PIN_MAX_DELAY_SECONDS = 60.0
"""The wait after each further wrong PIN doubles from the first delay up to this."""
PIN_FORGET_SECONDS = 15 * 60.0
"""A room with no wrong PIN for this long starts afresh."""
PIN_ALERT_EVERY = 100
"""After the first alert, one more every this many wrong PINs."""


def _check_pin(request: web.Request, room: Room, pin: str) -> web.Response | None:
    """The room's PIN, guessed from any address: the first PIN_FREE_FAILURES wrong ones are
    checked at once, then one attempt per growing delay; the others get 429 with Retry-After
    without being checked, the right PIN included (spec 4.3). None: the PIN is right."""
    if not pin:
        raise Problem("pin_required", "this room needs its PIN", 403, "/pin")
    guard = request.config_dict[PIN_FAILURES]
    wait = guard.wait(room.id)
    if wait > 0:
        seconds = math.ceil(wait)
        problem = Problem(
            "rate_limited",
            f"too many wrong PINs for this room; retry in {seconds} s",
            429,
            retry_after=seconds,
        )
        return problem.response()
    if secrets.compare_digest(pin.encode(), room.policy.pin.encode()):
        return None
    log.warning("wrong room PIN", extra={"room": room.id, "source": request.remote})
    failures = guard.failed(room.id)
    if failures == PIN_FREE_FAILURES or failures % PIN_ALERT_EVERY == 0:
        log.warning(
            "PIN attacks on room %s: %d wrong PINs; each further attempt waits, up to %d s",
            room.id,
            failures,
            PIN_MAX_DELAY_SECONDS,
            extra={"room": room.id},
        )
    raise Problem("pin_incorrect", "the PIN is not correct", 403, "/pin")


async def create_token(request: web.Request) -> web.Response:
    """Anonymous join: a guest (or, for a room it creates, host) token; PIN checked here."""
    gateway = _gateway(request)
    room_id = _room_id(request)
    _limit(request)
    body = await json_object(request)
    raw_name = body.get("name")
    if not isinstance(raw_name, str) or not 1 <= len(raw_name.strip()) <= 64:
        raise Problem("invalid_message", "'name' is 1 to 64 characters", field="/name")
    name = display_name(raw_name)
    if not name:
        raise Problem(
            "invalid_message", "'name' has no character that can be displayed", field="/name"
        )
    pin = body.get("pin", "")
    if not isinstance(pin, str):
        raise Problem("invalid_message", "'pin' is a string of digits", field="/pin")
    identity = _kept_identity(gateway, room_id, body.get("token"))
    role = Role.GUEST
    if not gateway.rooms.exists(room_id):
        if not gateway.config.rooms.anonymous_create:
            raise Problem("room_not_found", f"room '{room_id}' does not exist", 404)
        gateway.rooms.create(room_id)
        role = Role.HOST
    room = gateway.rooms.get(room_id)
    if room.policy.pin and role is not Role.HOST:
        delayed = _check_pin(request, room, pin)
        if delayed is not None:
            return delayed
    ttl = gateway.config.rooms.guest_token_ttl
    token = gateway.tokens.mint(room_id, identity, name, role, ttl, anonymous=True)
    return web.json_response(
        {
            "token": token,
            "expires_at": int(time.time()) + ttl,
            "room": room_id,
            "role": role.value,
            "url": f"{gateway.config.base_url}/r/{room_id}",
        },
        status=201,
    )


def _kept_identity(gateway: Gateway, room_id: str, earlier: object) -> str:
    """The identity of the new anonymous token: a fresh one, or that of the earlier token this
    endpoint gave the visitor for the room (4.3), so that a reload keeps who it is (a host
    stays a host, 2.4); checked before anything changes."""
    if earlier is None:
        return "guest-" + secrets.token_urlsafe(8)
    if not isinstance(earlier, str):
        raise Problem("invalid_message", "'token' is a join token", field="/token")
    grant = gateway.tokens.verify(earlier, room_id)
    if not grant.anonymous:
        raise Problem(
            "invalid_message", "'token' is a token this endpoint gave for the room", field="/token"
        )
    return grant.identity


MAX_SOCKETS_BEFORE_JOIN = 20
"""WebSockets one source address may hold open that have not joined yet (each is closed after
JOIN_DEADLINE_SECONDS); one more is refused 429 before the upgrade (spec 6.1)."""


async def websocket(request: web.Request) -> web.StreamResponse:
    gateway = _gateway(request)
    room_id = _room_id(request)
    if not gateway.rooms.exists(room_id):
        raise Problem("room_not_found", f"room '{room_id}' does not exist", 404)
    address = request.remote or ""
    everyone_waiting = request.config_dict[WS_BEFORE_JOIN]
    waiting = everyone_waiting.get(address, set())
    waiting.difference_update([s for s in waiting if s.state is not SessionState.CONNECTED])
    if len(waiting) >= MAX_SOCKETS_BEFORE_JOIN:
        raise Problem(
            "rate_limited", "too many WebSockets from this address have not joined yet", 429
        )
    ws = web.WebSocketResponse(max_msg_size=HARD_MESSAGE_LIMIT, heartbeat=30)
    await ws.prepare(request)
    session = OrsSession(gateway, ws, room_id, address, transport=request.transport)
    everyone_waiting.setdefault(address, set()).add(session)
    try:
        await session.run()
    finally:
        waiting = everyone_waiting.get(address, set())
        waiting.discard(session)
        if not waiting:
            everyone_waiting.pop(address, None)
    return ws


# WHIP (RFC 9725) and WHEP: one HTTP offer/answer, a resource to DELETE --------------------------
class HttpMediaSession:
    """A WHIP publisher's or WHEP viewer's participant and endpoint, until DELETE or a sweep."""

    def __init__(
        self,
        kind: str,
        room_id: str,
        participant: Participant,
        endpoint: WebRtcEndpoint,
        identity: str,
    ) -> None:
        self.kind = kind
        self.room_id = room_id
        self.participant = participant
        self.endpoint = endpoint
        self.identity = identity
        """The token `sub` that created the session: only it, or a host, may delete it."""
        self.consent_seen = 0
        self.consent_at = time.monotonic()
        """When the client's ICE consent checks last advanced (RFC 7675); at first, its creation."""

    def end(self, gateway: Gateway, why: str) -> None:
        """Close the endpoint and take the participant out of the room, if it is still there."""
        self.endpoint.close()
        room = gateway.rooms.get(self.room_id) if gateway.rooms.exists(self.room_id) else None
        if room is not None and self.participant.id in room.participants:
            gateway.rooms.remove_participant(room, self.participant.id, "left")
        log.info(
            "%s session ended: %s",
            self.kind.upper(),
            why,
            extra={"room": self.room_id, "participant": self.participant.id},
        )


FIRST_CHECK_SECONDS = 15
"""A WHIP/WHEP session whose client sends no ICE check at all within this long of its creation is
ended: a client that connects checks within a second or two, so this only removes offers that were
never meant to connect (spec 11)."""


def sweep_http_media_sessions(
    gateway: Gateway, sessions: dict[str, HttpMediaSession], now: float
) -> None:
    """End WHIP/WHEP sessions whose participant left the room (a host removed it, the room was
    deleted), whose client sent no ICE check within ``FIRST_CHECK_SECONDS`` of the creation, or no
    consent check for ``limits.media_consent_seconds`` since."""
    timeout = gateway.config.limits.media_consent_seconds
    for resource, session in list(sessions.items()):
        checks = session.endpoint.consent_checks
        if checks != session.consent_seen:
            session.consent_seen, session.consent_at = checks, now
        room = gateway.rooms.get(session.room_id) if gateway.rooms.exists(session.room_id) else None
        present = room is not None and session.participant.id in room.participants
        allowed = timeout if session.consent_seen else min(timeout, FIRST_CHECK_SECONDS)
        if present and now - session.consent_at < allowed:
            continue
        del sessions[resource]
        if not present:
            why = "its participant left the room"
        elif session.consent_seen:
            why = "no ICE consent"
        else:
            why = f"no ICE consent check within {allowed} s of its creation"
        session.end(gateway, why)


async def _sweeping_http_media_sessions(app: web.Application) -> AsyncIterator[None]:
    """aiohttp cleanup context: sweeps the WHIP/WHEP sessions while the application runs."""
    gateway = app[GATEWAY]
    period = max(0.5, min(5.0, gateway.config.limits.media_consent_seconds / 3))

    async def sweep_forever() -> None:
        while True:
            await asyncio.sleep(period)
            try:
                sweep_http_media_sessions(gateway, app[HTTP_MEDIA_SESSIONS], time.monotonic())
            except Exception:  # one bad sweep must not end the next ones
                log.exception("sweeping WHIP/WHEP sessions failed")

    task = asyncio.create_task(sweep_forever(), name="whip-whep-sweep")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _bearer_grant(request: web.Request, room_id: str) -> JoinGrant:
    """The verified join token of the Authorization header (401, or 403 token_wrong_room).

    The token is checked before the room, so that a token for one room cannot tell which other
    rooms exist (spec 11)."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        raise Problem("token_invalid", "send the join token as 'Authorization: Bearer'", 401)
    return _gateway(request).tokens.verify(header[7:].strip(), room_id)


def _http_session_room(request: web.Request, room_id: str, grant: JoinGrant) -> Room:
    """The room of a new WHIP/WHEP session: it exists (404), and has no lobby unless a host asks."""
    room = _gateway(request).rooms.get(room_id)
    if room.policy.lobby and grant.role is not Role.HOST:
        raise Problem("forbidden", "this room has a lobby: WHIP and WHEP need a host token", 403)
    return room


MAX_OFFER_BYTES = 64 * 1024


async def _read_offer(request: web.Request) -> SessionDescription:
    """The body as an SDP offer: 415 for another content type, 413 above 64 KiB, 400
    negotiation_failed for a body that is empty or not SDP."""
    if request.content_type != "application/sdp":
        raise Problem("unsupported_media_type", "the body must be application/sdp", 415)
    body = await request.read()
    if len(body) > MAX_OFFER_BYTES:
        raise Problem("message_too_large", "the offer is larger than 64 KiB", 413)
    try:
        return parse_sdp(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise Problem("negotiation_failed", "the body is not UTF-8 text") from None
    except SdpError as e:
        raise Problem("negotiation_failed", str(e)) from None


def _media_sessions(request: web.Request) -> dict[str, HttpMediaSession]:
    return request.config_dict[HTTP_MEDIA_SESSIONS]


async def whip(request: web.Request) -> web.Response:
    gateway = _gateway(request)
    room_id = _room_id(request)
    grant = _bearer_grant(request, room_id)
    room = _http_session_room(request, room_id, grant)
    if not grant.can_publish:
        raise Problem("forbidden", "the token does not allow publishing", 403)
    offer = await _read_offer(request)
    requests = [
        PublishRequest(mid, new_id("TR"), "microphone" if kind == "audio" else "camera")
        for mid, kind in _offer_mids(offer)
    ]
    for publish in requests:
        if not grant.may_publish(publish.source):
            raise Problem(
                "forbidden",
                f"the token does not allow publishing a {publish.source} track (WHIP publishes "
                "every audio m-section as a microphone, every video one as a camera)",
                403,
            )
    participant, endpoint, answer = _attach(
        request,
        "whip",
        room,
        grant,
        lambda endpoint: endpoint.accept_publish_offer(offer, requests),
    )
    sources = {r.mid: r.source for r in requests}
    for info in answer.tracks:
        gateway.rooms.publish_track(
            room,
            Track(
                id=info.track_id,
                owner=participant.id,
                kind=TrackKind(info.kind),
                source=TrackSource(sources[info.mid]),
                codec=info.codec,
            ),
        )
    return _created(request, "whip", room_id, grant, participant, endpoint, answer.sdp)


async def whep(request: web.Request) -> web.Response:
    room_id = _room_id(request)
    grant = _bearer_grant(request, room_id)
    room = _http_session_room(request, room_id, grant)
    if not grant.can_subscribe:
        raise Problem("forbidden", "the token does not allow subscribing", 403)
    offer = await _read_offer(request)
    wanted = request.query.get("participant")
    publishers = [p for p in room.joined() if p.tracks and (wanted is None or p.id == wanted)]
    publishers.sort(key=lambda p: not any(t.kind is TrackKind.VIDEO for t in p.tracks.values()))
    if not publishers:
        raise Problem("participant_not_found", "nobody in this room publishes media yet", 404)
    viewed = list(publishers[0].tracks)
    participant, endpoint, answer = _attach(
        request, "whep", room, grant, lambda endpoint: endpoint.accept_view_offer(offer, viewed)
    )
    return _created(request, "whep", room_id, grant, participant, endpoint, answer)


def _attach(
    request: web.Request,
    kind: str,
    room: Room,
    grant: JoinGrant,
    negotiate: Callable[[WebRtcEndpoint], T],
) -> tuple[Participant, WebRtcEndpoint, T]:
    """Negotiate on a new endpoint, end the identity's older session of this kind, then add the
    HTTP client as a participant: a refused offer (or a full room) closes the endpoint, and the
    room never sees the participant."""
    gateway = _gateway(request)
    participant_id = new_id("PA")
    endpoint = gateway.relay.create_endpoint(room.id, participant_id)
    try:
        result = negotiate(endpoint)
        _replace_older_session(request, kind, room.id, grant.identity)
        participant = gateway.rooms.add_participant(
            room,
            grant.name,
            grant.role,
            origin="ors",
            participant_id=participant_id,
            identity=grant.identity,
        )
    except SdpError as e:
        endpoint.close()
        raise Problem("negotiation_failed", str(e)) from None
    except BaseException:
        endpoint.close()
        raise
    return participant, endpoint, result


def _replace_older_session(request: web.Request, kind: str, room_id: str, identity: str) -> None:
    """One WHIP and one WHEP session per identity (token `sub`) and room: a new one ends the older
    (spec 11), as a WebSocket `join` replaces the identity's older session (6.4)."""
    sessions = _media_sessions(request)
    for resource, session in list(sessions.items()):
        if (session.kind, session.room_id, session.identity) == (kind, room_id, identity):
            del sessions[resource]
            session.end(_gateway(request), "replaced by a new session of the same identity")


def _created(
    request: web.Request,
    kind: str,
    room_id: str,
    grant: JoinGrant,
    participant: Participant,
    endpoint: WebRtcEndpoint,
    answer: str,
) -> web.Response:
    resource = secrets.token_urlsafe(12)
    _media_sessions(request)[resource] = HttpMediaSession(
        kind, room_id, participant, endpoint, grant.identity
    )
    location = f"/ors/v1/rooms/{room_id}/{kind}/{resource}"
    return web.Response(
        status=201, text=answer, content_type="application/sdp", headers={"Location": location}
    )


async def delete_media_session(request: web.Request) -> web.Response:
    """End a WHIP/WHEP session: the token that created it (same `sub`) or a host's (spec 11)."""
    gateway = _gateway(request)
    room_id = _room_id(request)
    grant = _bearer_grant(request, room_id)
    kind = request.path.split("/")[-2]
    session = _media_sessions(request).get(request.match_info["resource"])
    if session is None or session.room_id != room_id or session.kind != kind:
        raise Problem("not_found", "no such WHIP/WHEP session", 404)
    if grant.identity != session.identity and grant.role is not Role.HOST:
        raise Problem("forbidden", "only the session's own token or a host's may end it", 403)
    del _media_sessions(request)[request.match_info["resource"]]
    session.end(gateway, "deleted")
    return web.Response(status=200)


async def patch_media_session(request: web.Request) -> web.Response:
    raise Problem(
        "method_not_allowed",
        "trickle ICE and ICE restarts are not supported: the server is ICE-lite",
        405,
    )


def _offer_mids(offer: SessionDescription) -> list[tuple[str, str]]:
    """(mid, kind) of each m-section of a WHIP offer that sends media, in order."""
    mids = [(media.mid, media.kind) for media in offer.media if media.sends and media.mid]
    if not mids:
        raise Problem(
            "negotiation_failed", "the offer has no sending audio or video m-line with a mid"
        )
    return mids


def add_routes(app: web.Application) -> None:
    app[HTTP_MEDIA_SESSIONS] = {}
    app[WS_BEFORE_JOIN] = {}
    app[PIN_FAILURES] = FailureBackoff(
        PIN_FREE_FAILURES, PIN_FIRST_DELAY_SECONDS, PIN_MAX_DELAY_SECONDS, PIN_FORGET_SECONDS
    )
    app.cleanup_ctx.append(_sweeping_http_media_sessions)
    app.router.add_get("/.well-known/ors", discovery)
    app.router.add_get("/ors/v1/keys", keys)
    app.router.add_get("/ors/v1/rooms/{room}", room_info)
    app.router.add_post("/ors/v1/rooms/{room}/tokens", create_token)
    app.router.add_get("/ors/v1/rooms/{room}/dial-in", dial_in)
    app.router.add_get("/ors/v1/rooms/{room}/ws", websocket)
    app.router.add_post("/ors/v1/rooms/{room}/whip", whip)
    app.router.add_post("/ors/v1/rooms/{room}/whep", whep)
    for kind in ("whip", "whep"):
        app.router.add_delete(f"/ors/v1/rooms/{{room}}/{kind}/{{resource}}", delete_media_session)
        app.router.add_patch(f"/ors/v1/rooms/{{room}}/{kind}/{{resource}}", patch_media_session)
