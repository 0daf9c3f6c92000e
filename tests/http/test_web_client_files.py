"""The web page's files as the gateway serves them (gateway/http/webclient.py): every ES module the
page loads, followed from index.html through each module's relative imports, is a file of
gateway/web/static and answers 200 with a JavaScript content type (a browser refuses a module
script of any other type), and no file of the folder is left out of that graph."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.http import webclient

STATIC = webclient.STATIC
IMPORT = re.compile(r"""^\s*(?:import|export)\b[^"';]*?\bfrom\s+"(\./[^"]+)";""", re.M | re.S)
SCRIPT = re.compile(r'<script type="module" src="/static/([^"]+)"></script>')


def page_modules() -> set[str]:
    """The modules index.html loads, and those they import, as paths under STATIC."""
    todo = SCRIPT.findall((STATIC / "index.html").read_text())
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = STATIC / name
        assert path.is_file(), f"{name} is imported but is not in {STATIC}"
        for spec in IMPORT.findall(path.read_text()):
            todo.append(str((Path(name).parent / spec).as_posix()).removeprefix("./"))
    return seen


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application()
    webclient.add_routes(app)
    async with TestClient(TestServer(app)) as c:
        yield c


def test_the_page_loads_every_module_of_the_folder() -> None:
    modules = page_modules()
    assert {"app.js", "state.js", "ors-client.js", "i18n.js"} <= modules
    assert modules == {p.name for p in STATIC.glob("*.js")}


async def test_every_module_is_served_as_javascript(
    client: TestClient[web.Request, web.Application],
) -> None:
    for name in sorted(page_modules()):
        response = await client.get(f"/static/{name}")
        assert response.status == 200, name
        assert response.content_type in ("text/javascript", "application/javascript"), (
            name,
            response.content_type,
        )
        assert await response.read() == (STATIC / name).read_bytes()


async def test_the_page_is_served_with_its_content_security_policy(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/r/some-room")
    assert response.status == 200
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert '<script type="module" src="/static/app.js">' in await response.text()
