"""An in-process stand-in for a homeserver's HTTP API, for unit tests of our client and public
routes: it records every request (method, path, query, headers, body) and answers from a table
the test fills (``answers[(method, path)] = (status, json)``), 200 ``{}`` otherwise. OpenID tokens
in ``openid_users`` are known to ``/openid/userinfo``."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from ssl import SSLContext
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class RecordingHomeserver:
    answers: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    openid_users: dict[str, str] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    stall: asyncio.Event | None = None
    """When set, every request waits for it (a homeserver that does not answer)."""
    server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    def paths(self, method: str | None = None) -> list[str]:
        return [r.path for r in self.requests if method is None or r.method == method]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = json.loads(raw) if raw else None
        self.requests.append(
            Recorded(request.method, request.path, dict(request.query), dict(request.headers), body)
        )
        if self.stall is not None:
            await self.stall.wait()
        if request.path == "/_matrix/federation/v1/openid/userinfo":
            user = self.openid_users.get(request.query.get("access_token", ""))
            if user is None:
                return web.json_response(
                    {"errcode": "M_UNKNOWN_TOKEN", "error": "Access Token unknown or expired"},
                    status=401,
                )
            return web.json_response({"sub": user})
        status, answer = self.answers.get((request.method, request.path), (200, {}))
        return web.json_response(answer, status=status)

    async def start(self, ssl: SSLContext | None = None) -> RecordingHomeserver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server(ssl=ssl)
        return self

    async def close(self) -> None:
        if self.stall is not None:
            self.stall.set()
        if self.server is not None:
            await self.server.close()
