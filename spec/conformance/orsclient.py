"""A small ORS v1 client written from spec/ors-v1.md alone, used by the conformance suite.

It speaks the signalling only (WebSocket JSON messages and the HTTP endpoints); a test that needs
media pairs it with any WebRTC stack.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDict

Message = dict[str, Any]


class OrsError(Exception):
    def __init__(self, message: Message) -> None:
        super().__init__(message["problem"].get("detail", ""))
        self.message = message
        self.problem: dict[str, Any] = message["problem"]
        self.code: str = self.problem.get("code", "")


class OrsClient:
    """One WebSocket session. Replies are matched by ``id``; everything else queues as events."""

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.http = http
        self.ws = ws
        self.received: list[Message] = []
        self.events: asyncio.Queue[Message] = asyncio.Queue()
        self._replies: dict[str, asyncio.Future[Message]] = {}
        self._ids = itertools.count(1)
        self._reader = asyncio.create_task(self._read())
        self.closed = asyncio.Event()

    @classmethod
    async def connect(cls, base_url: str, room: str) -> OrsClient:
        http = aiohttp.ClientSession()
        ws_url = base_url.replace("http", "ws", 1).rstrip("/") + f"/ors/v1/rooms/{room}/ws"
        try:
            ws = await http.ws_connect(ws_url, max_msg_size=4 * 1024 * 1024)
        except BaseException:
            await http.close()
            raise
        return cls(http, ws)

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    continue
                message = json.loads(frame.data)
                self.received.append(message)
                future = self._replies.pop(message.get("reply_to", ""), None)
                if future is not None and not future.done():
                    future.set_result(message)
                else:
                    await self.events.put(message)
        finally:
            self.closed.set()
            for future in self._replies.values():
                if not future.done():
                    future.set_exception(ConnectionError("socket closed"))

    async def send(self, message: Message) -> None:
        await self.ws.send_str(json.dumps(message))

    async def send_raw(self, text: str) -> None:
        await self.ws.send_str(text)

    async def request(self, message: Message, timeout: float = 10) -> Message:
        """Send with a fresh ``id`` and return the direct reply; OrsError for an ``error`` reply."""
        request_id = f"r{next(self._ids)}"
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._replies[request_id] = future
        await self.send({**message, "id": request_id})
        reply = await asyncio.wait_for(future, timeout)
        if reply["type"] == "error":
            raise OrsError(reply)
        return reply

    async def next_event(self, *types: str, timeout: float = 10) -> Message:
        """The next queued message of one of ``types`` (any type if none), skipping others."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.events.get()
                if not types or message["type"] in types:
                    return message

    async def join(self, token: str, name: str | None = None, resume: str | None = None) -> Message:
        """``resume``: the resume_token of an earlier ``joined``, to take that participant back
        (6.6)."""
        message: Message = {"type": "join", "token": token}
        if name:
            message["name"] = name
        if resume is not None:
            message["resume"] = resume
        return await self.request(message)

    async def drop(self) -> None:
        """Lose the connection as a broken network does: no ``leave``, no close frame."""
        connection = self.ws.get_extra_info("socket")
        if connection is not None:
            connection.shutdown(socket.SHUT_RDWR)
        await self.closed.wait()
        await self.close()

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        await self.http.close()


RATE_LIMIT_ATTEMPTS = 3
MAX_RETRY_AFTER = 65
"""A rate-limited request (429 with Retry-After) is tried again after the wait, twice."""


@dataclass
class HttpAnswer:
    """An HTTP answer: its status, its headers (names in any case) and its JSON body."""

    status: int
    headers: Mapping[str, str]
    body: Message


async def http_request(
    http: aiohttp.ClientSession, method: str, url: str, **options: Any
) -> HttpAnswer:
    """METHOD on URL, its answer's JSON body (empty when it has none). The resources that need no
    credentials are rate-limited per address (4.1): a suite that asks many waits as a client
    should, once the server says how long."""
    for attempt in range(RATE_LIMIT_ATTEMPTS):
        async with http.request(method, url, **options) as response:
            try:
                body = await response.json(content_type=None) or {}
            except ValueError:  # not JSON: a plain 404 page
                body = {}
            answer = HttpAnswer(response.status, CIMultiDict(response.headers), body)
        wait = answer.headers.get("Retry-After", "")
        if answer.status != 429 or not wait.isdigit() or attempt + 1 == RATE_LIMIT_ATTEMPTS:
            break
        await asyncio.sleep(min(int(wait), MAX_RETRY_AFTER))
    return answer


async def anonymous_token(
    base_url: str, room: str, name: str, pin: str | None = None, earlier: str | None = None
) -> Message:
    """A token from the anonymous token endpoint (4.3); EARLIER, a token it gave before, keeps
    that token's identity."""
    body: Message = {"name": name}
    if pin is not None:
        body["pin"] = pin
    if earlier is not None:
        body["token"] = earlier
    url = base_url.rstrip("/") + f"/ors/v1/rooms/{room}/tokens"
    async with aiohttp.ClientSession() as http:
        answer = await http_request(http, "POST", url, json=body)
    return {"status": answer.status, **answer.body}
