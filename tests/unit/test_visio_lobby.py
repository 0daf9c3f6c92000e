"""protocols/visio/lobby.py against a loopback stand-in for Visio's backend room API.

The stand-in reproduces the request and answer shapes of suitenumerique/meet (commit e5f0b1c):
``src/backend/core/api/viewsets.py`` (``RoomViewSet.retrieve``, ``request_entry``, the
``ALLOW_UNREGISTERED_ROOMS`` answer), ``src/backend/core/services/lobby.py`` (``LobbyService``:
the ``lobbyParticipantId`` cookie, httponly and secure, set on every answer; bypass for public
rooms; waiting entries forgotten after ``LOBBY_WAITING_TIMEOUT``; denial kept
``LOBBY_DENIED_TIMEOUT``), ``src/backend/core/api/serializers.py`` (``RoomSerializer`` fields,
``RequestEntrySerializer``) and ``src/backend/core/tests/rooms/test_api_rooms_lobby.py`` (the
JSON bodies). The real backend (Django, PostgreSQL, Redis, Keycloak) does not run here: this is a
unit test of our client, not an interoperability test.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from protocols.visio.lobby import (
    BackendError,
    BackendUnreachable,
    LobbyStatus,
    Outcome,
    RoomNotFound,
    Throttled,
    VisioLobby,
    access_level_from_metadata,
    canonical_room_uuid,
    lobby_applies,
)

COOKIE = "lobbyParticipantId"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.secret-livekit-token.sig"


@dataclass
class Entry:
    status: str
    username: str
    expires: float


@dataclass
class FakeVisio:
    """Rooms by UUID -> access level; lobby entries by (room, participant)."""

    rooms: dict[str, str] = field(default_factory=dict)
    entries: dict[tuple[str, str], Entry] = field(default_factory=dict)
    waiting_timeout: float = 3.0
    denied_timeout: float = 5.0
    allow_unregistered: bool = True
    cookie_name: str = COOKIE
    throttle_next: int = 0
    fail_next: int = 0
    broken: str = ""
    requests: list[web.Request] = field(default_factory=list)
    notifications: list[dict[str, str]] = field(default_factory=list)

    def entry(self, room: str, participant: str) -> Entry | None:
        entry = self.entries.get((room, participant))
        if entry is not None and entry.expires < time.monotonic():
            del self.entries[(room, participant)]
            return None
        return entry

    def decide(self, room: str, participant: str, allow: bool) -> None:
        """What the host's POST rooms/{id}/enter/ does (LobbyService.handle_participant_entry)."""
        entry = self.entries[(room, participant)]
        entry.status = "accepted" if allow else "denied"
        entry.expires = time.monotonic() + (21600 if allow else self.denied_timeout)

    def waiting(self, room: str) -> list[str]:
        """The room's waiting participants, as GET rooms/{id}/waiting-participants/ lists them."""
        return [
            p
            for (r, p), e in list(self.entries.items())
            if r == room and self.entry(r, p) and e.status == "waiting"
        ]

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v1.0/rooms/{pk}/", self.retrieve)
        app.router.add_post("/api/v1.0/rooms/{pk}/request-entry/", self.request_entry)
        return app

    def _livekit(self, room: str) -> dict[str, str]:
        return {"url": "wss://livekit.visio.example", "room": room, "token": TOKEN}

    async def retrieve(self, request: web.Request) -> web.Response:
        self.requests.append(request)
        pk = request.match_info["pk"]
        level = self.rooms.get(pk)
        if level is None:
            if not self.allow_unregistered:
                return web.json_response({"detail": "No Room matches the given query."}, status=404)
            return web.json_response(
                {
                    "id": None,
                    "slug": pk,
                    "is_administrable": False,
                    "access_level": "public",
                    "livekit": self._livekit(pk),
                }
            )
        body: dict[str, Any] = {
            "id": pk,
            "name": "Réunion",
            "slug": "reunion",
            "configuration": {},
            "access_level": level,
        }
        if level == "public":  # anonymous callers get a token and the PIN only for public rooms
            body["pin_code"] = "0123456789"
            body["livekit"] = self._livekit(pk)
        return web.json_response(body)

    async def request_entry(self, request: web.Request) -> web.Response:
        self.requests.append(request)
        if self.fail_next:
            self.fail_next -= 1
            return web.Response(status=502, text="<html>bad gateway</html>")
        if self.throttle_next:
            self.throttle_next -= 1
            return web.json_response(
                {"detail": "Request was throttled. Expected available in 1 seconds."},
                status=429,
                headers={"Retry-After": "0"},
            )
        if self.broken == "html":
            return web.Response(text="<html>maintenance</html>", content_type="text/html")
        if self.broken == "status":
            return web.json_response({"status": "maybe", "id": "x", "livekit": None})
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not body.get("username"):
            return web.json_response({"username": ["This field is required."]}, status=400)
        pk = request.match_info["pk"]
        level = self.rooms.get(pk)
        if level is None:
            return web.json_response({"detail": "No Room matches the given query."}, status=404)
        participant = request.cookies.get(self.cookie_name) or str(uuid.uuid4())
        username = body["username"]
        entry = self.entry(pk, participant)
        livekit = None
        if level == "public":  # can_bypass_lobby for an anonymous user
            status = "accepted"
            livekit = self._livekit(pk)
        elif entry is None:  # enter(): notify the hosts, wait LOBBY_WAITING_TIMEOUT
            self.notifications.append({"type": "participantWaiting"})
            self.entries[(pk, participant)] = Entry(
                "waiting", username, time.monotonic() + self.waiting_timeout
            )
            status = "waiting"
        elif entry.status == "waiting":  # refresh_waiting_status
            entry.expires = time.monotonic() + self.waiting_timeout
            status = "waiting"
        else:
            status = entry.status
            if status == "accepted":
                livekit = self._livekit(pk)
        response = web.json_response(
            {
                "status": status,
                "username": username,
                "id": participant,
                "color": "hsl(120, 60%, 40%)",
                "livekit": livekit,
            }
        )
        response.set_cookie(
            self.cookie_name, participant, httponly=True, secure=True, samesite="Lax"
        )
        return response


@contextlib.asynccontextmanager
async def serve_fake_visio() -> AsyncIterator[tuple[FakeVisio, str]]:
    """A stand-in of Visio's backend on loopback, and its API URL."""
    fake = FakeVisio()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield fake, f"http://127.0.0.1:{server.port}/api/v1.0/"
    finally:
        await server.close()


@pytest.fixture
async def visio() -> AsyncIterator[tuple[FakeVisio, str]]:
    async with serve_fake_visio() as served:
        yield served


ROOM = "0b4c8f2e-1d2a-4e3b-9c8d-7e6f5a4b3c2d"


async def test_public_room_is_accepted_at_once(visio: tuple[FakeVisio, str]) -> None:
    fake, url = visio
    fake.rooms[ROOM] = "public"
    async with VisioLobby(url) as lobby:
        assert await lobby.access_level(ROOM.upper()) == "public"
        ticket = await lobby.request_entry(ROOM, "Phone ••• 42")
        assert ticket.status is LobbyStatus.ACCEPTED
        admission = await lobby.wait_admitted(ticket, poll_interval=0.05, timeout=1)
    assert admission.accepted and admission.livekit is not None
    assert admission.livekit.room == ROOM
    assert TOKEN not in repr(admission) and TOKEN not in repr(ticket)
    assert not fake.notifications
    body = await fake.requests[-1].json()
    assert body == {"username": "Phone ••• 42"}


async def test_restricted_room_waits_until_a_host_accepts(visio: tuple[FakeVisio, str]) -> None:
    fake, url = visio
    fake.rooms[ROOM] = "restricted"
    fake.waiting_timeout = 0.5
    async with VisioLobby(url) as lobby:
        assert await lobby.access_level(ROOM) == "restricted"
        ticket = await lobby.request_entry(ROOM, "Phone ••• 42")
        assert ticket.status is LobbyStatus.WAITING and ticket.participant_id
        waiter = asyncio.create_task(lobby.wait_admitted(ticket, poll_interval=0.1, timeout=5))
        await asyncio.sleep(1.0)  # twice the waiting lifetime: the polls keep the place
        assert fake.waiting(ROOM) == [ticket.participant_id]
        assert len(fake.notifications) == 1  # one participant, notified once
        fake.decide(ROOM, ticket.participant_id, allow=True)
        admission = await waiter
    assert admission.outcome is Outcome.ACCEPTED
    assert admission.livekit is not None and admission.livekit.url.startswith("wss://")
    polls = [r for r in fake.requests if r.method == "POST"]
    assert len(polls) >= 5
    assert all(r.cookies.get(COOKIE) == ticket.participant_id for r in polls[1:])
    assert COOKIE not in polls[0].cookies


async def test_a_denial_ends_the_wait(visio: tuple[FakeVisio, str]) -> None:
    fake, url = visio
    fake.rooms[ROOM] = "trusted"
    async with VisioLobby(url) as lobby:
        ticket = await lobby.request_entry(ROOM, "Phone")
        fake.decide(ROOM, ticket.participant_id, allow=False)
        admission = await lobby.wait_admitted(ticket, poll_interval=0.05, timeout=2)
    assert admission.outcome is Outcome.DENIED and admission.livekit is None


async def test_timeout(visio: tuple[FakeVisio, str]) -> None:
    fake, url = visio
    fake.rooms[ROOM] = "restricted"
    async with VisioLobby(url) as lobby:
        ticket = await lobby.request_entry(ROOM, "Phone")
        admission = await lobby.wait_admitted(ticket, poll_interval=0.05, timeout=0.4)
    assert admission.outcome is Outcome.TIMED_OUT and admission.livekit is None


async def test_callers_sharing_a_session_are_distinct_participants(
    visio: tuple[FakeVisio, str],
) -> None:
    fake, url = visio
    fake.rooms[ROOM] = "restricted"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        lobby = VisioLobby(url, session)
        first = await lobby.request_entry(ROOM, "Phone ••• 01")
        second = await lobby.request_entry(ROOM, "Phone ••• 02")
        assert first.participant_id != second.participant_id
        fake.decide(ROOM, second.participant_id, allow=True)
        one, two = await asyncio.gather(
            lobby.wait_admitted(first, poll_interval=0.05, timeout=0.5),
            lobby.wait_admitted(second, poll_interval=0.05, timeout=0.5),
        )
        assert one.outcome is Outcome.TIMED_OUT and two.outcome is Outcome.ACCEPTED
        await lobby.close()  # not ours: stays open
        assert not session.closed
    with pytest.raises(ValueError, match="DummyCookieJar"):
        async with aiohttp.ClientSession() as jarred:
            VisioLobby(url, jarred)


async def test_a_renamed_cookie_is_learned(visio: tuple[FakeVisio, str]) -> None:
    fake, url = visio
    fake.rooms[ROOM] = "restricted"
    fake.cookie_name = "visioLobby"
    async with VisioLobby(url) as lobby:
        ticket = await lobby.request_entry(ROOM, "Phone")
        assert ticket.cookie_name == "visioLobby"
        fake.decide(ROOM, ticket.participant_id, allow=True)
        assert (await lobby.wait_admitted(ticket, poll_interval=0.05, timeout=2)).accepted


async def test_cancellation_leaves_nothing_running(visio: tuple[FakeVisio, str]) -> None:
    fake, url = visio
    fake.rooms[ROOM] = "restricted"
    fake.waiting_timeout = 0.3
    async with VisioLobby(url) as lobby:
        ticket = await lobby.request_entry(ROOM, "Phone")
        waiter = asyncio.create_task(lobby.wait_admitted(ticket, poll_interval=0.05, timeout=30))
        await asyncio.sleep(0.3)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        count = len(fake.requests)
        await asyncio.sleep(0.5)
        assert len(fake.requests) == count
        assert fake.waiting(ROOM) == []  # Visio forgets a caller who stopped polling


async def test_errors_are_clear_and_keep_secrets(visio: tuple[FakeVisio, str]) -> None:
    fake, url = visio
    async with VisioLobby(url) as lobby:
        with pytest.raises(RoomNotFound, match="no such room"):
            await lobby.request_entry(ROOM, "Phone")
        fake.allow_unregistered = False
        with pytest.raises(RoomNotFound):
            await lobby.access_level(ROOM)
        fake.allow_unregistered = True
        assert await lobby.access_level(ROOM) == "public"  # an unregistered room is open
        with pytest.raises(ValueError, match="UUID"):
            await lobby.request_entry("../../users/me", "Phone")

        fake.rooms[ROOM] = "restricted"
        fake.broken = "html"
        with pytest.raises(BackendError, match="malformed JSON") as caught:
            await lobby.request_entry(ROOM, "Phone")
        assert "maintenance" not in str(caught.value)
        fake.broken = "status"
        with pytest.raises(BackendError, match="malformed lobby answer"):
            await lobby.request_entry(ROOM, "Phone")
        fake.broken = ""

        ticket = await lobby.request_entry(ROOM, "Phone")
        fake.decide(ROOM, ticket.participant_id, allow=True)
        fake.broken = "html"
        with pytest.raises(BackendError) as caught:
            await lobby.wait_admitted(ticket, poll_interval=0.05, timeout=2)
        for secret in (ticket.participant_id, TOKEN, COOKIE, ROOM):
            assert secret not in str(caught.value)


async def test_throttling_and_server_errors_are_ridden_out(visio: tuple[FakeVisio, str]) -> None:
    fake, url = visio
    fake.rooms[ROOM] = "restricted"
    async with VisioLobby(url) as lobby:
        fake.throttle_next = 2
        ticket = await lobby.request_entry(ROOM, "Phone")
        assert ticket.status is LobbyStatus.WAITING
        fake.decide(ROOM, ticket.participant_id, allow=True)
        fake.throttle_next, fake.fail_next = 1, 2
        assert (await lobby.wait_admitted(ticket, poll_interval=0.05, timeout=5)).accepted
        fake.throttle_next = 3
        with pytest.raises(Throttled):
            await lobby.request_entry(ROOM, "Phone")
        fake.throttle_next = 0
        fake.fail_next = 100
        with pytest.raises(BackendError) as caught:
            await lobby.wait_admitted(
                await _waiting_ticket(lobby, fake), poll_interval=0.02, timeout=5
            )
        assert caught.value.status == 502


async def _waiting_ticket(lobby: VisioLobby, fake: FakeVisio) -> Any:
    fake.fail_next = 0
    ticket = await lobby.request_entry(ROOM, "Phone")
    fake.fail_next = 100
    return ticket


async def test_unreachable_backend() -> None:
    with __import__("socket").socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with VisioLobby(f"http://127.0.0.1:{port}/api/v1.0", request_timeout=2) as lobby:
        with pytest.raises(BackendUnreachable, match="127.0.0.1 is unreachable"):
            await lobby.request_entry(ROOM, "Phone")


async def test_tls_is_verified_by_default() -> None:
    """A self-signed loopback HTTPS server is refused (no verification switch exists)."""
    import ssl
    import subprocess
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        await asyncio.to_thread(
            subprocess.run,
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True,
        )  # fmt: skip
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        fake = FakeVisio(rooms={ROOM: "public"})
        runner = web.AppRunner(fake.app())
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            async with VisioLobby(f"https://127.0.0.1:{port}/api/v1.0/") as lobby:
                with pytest.raises(BackendUnreachable, match="failed TLS verification"):
                    await lobby.access_level(ROOM)
            trusting = ssl.create_default_context(cafile=str(cert))
            trusting.check_hostname = False
            async with VisioLobby(
                f"https://127.0.0.1:{port}/api/v1.0/", ssl_context=trusting
            ) as lobby:
                assert await lobby.access_level(ROOM) == "public"
        finally:
            await runner.cleanup()


def test_helpers() -> None:
    assert canonical_room_uuid(" 0B4C8F2E1D2A4E3B9C8D7E6F5A4B3C2D ") == ROOM
    with pytest.raises(ValueError):
        canonical_room_uuid("cabinet")
    assert lobby_applies("public") is False
    assert lobby_applies("trusted") is True and lobby_applies("restricted") is True
    assert lobby_applies(None) is None and lobby_applies("other") is None
    assert (
        access_level_from_metadata('{"access_level": "trusted", "configuration": {}}') == "trusted"
    )
    assert access_level_from_metadata('{"recording_status": "x"}') is None
    assert access_level_from_metadata("") is None and access_level_from_metadata("[1") is None
    with pytest.raises(ValueError):
        VisioLobby("ftp://visio.example/")
    with pytest.raises(ValueError):
        VisioLobby("https://user:pw@visio.example/api/v1.0/")
