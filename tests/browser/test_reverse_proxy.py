"""The deployment of docs/deploy.md, for real: Debian's nginx with TLS in front of the gateway.

nginx runs the server block of docs/nginx/rondpoint.conf (the file docs/deploy.md shows verbatim),
with only its ports, certificate paths and upstream substituted, on loopback with a self-signed
certificate made by openssl. Headless Chromium opens the room at https://127.0.0.1:PORT/, joins
through wss, and two browsers exchange media; through the proxy the admin API and the metrics are
refused while discovery and /healthz answer; the gateway sees the browser's address from
X-Forwarded-For.

The test's nginx talks to the gateway from 127.0.0.2 (`proxy_bind`, in the test's own http block,
outside the documented server block), the gateway's only trusted proxy; the browser reaches nginx
from 127.0.0.1. So the gateway can be seen to name the browser, not the proxy.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import secrets
import shutil
import ssl
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.config import load_config
from tests.browser.conftest import ARTIFACTS, Participant, load_room_page
from tests.browser.test_web_client import receiving, wait_until
from tests.gateway_process import RunningGateway, free_port, running_gateway, stop_process

pytestmark = [pytest.mark.browser, pytest.mark.interop, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
SERVER_BLOCK = ROOT / "docs" / "nginx" / "rondpoint.conf"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
NGINX = "/usr/sbin/nginx"
PROXY_ADDRESS = "127.0.0.2"  # where the test's nginx connects to the gateway from


@dataclass
class Proxy:
    url: str
    prefix: Path


@pytest.fixture(scope="module")
def proxy_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, proxy_port: int) -> Iterator[RunningGateway]:
    tmp = Path(tmp_path_factory.mktemp("proxied-gateway"))
    with running_gateway(
        tmp,
        server_config=f'public_url = "https://127.0.0.1:{proxy_port}"',
        http_config=f'trusted_proxies = ["{PROXY_ADDRESS}"]',
        extra_config='[rooms]\ndemo_room = ""\n',
    ) as running:
        try:
            yield running
        finally:
            ARTIFACTS.mkdir(exist_ok=True)
            shutil.copyfile(running.log_path, ARTIFACTS / "reverse-proxy-gateway.log")


def server_block(gateway_port: int, proxy_port: int, cert: Path, key: Path) -> str:
    """docs/nginx/rondpoint.conf with this test's ports and paths; each substitution must apply."""
    text = SERVER_BLOCK.read_text()
    name = "rondpoint.example.gouv.fr"
    for old, new in [
        ("listen 443 ssl;", f"listen 127.0.0.1:{proxy_port} ssl;"),
        ("    listen [::]:443 ssl;\n", ""),  # loopback only, and IPv4 only: ::1 may be absent
        ("server 127.0.0.1:8080;", f"server 127.0.0.1:{gateway_port};"),
        (f"/etc/letsencrypt/live/{name}/fullchain.pem", str(cert)),
        (f"/etc/letsencrypt/live/{name}/privkey.pem", str(key)),
    ]:
        assert text.count(old) == 1, f"{SERVER_BLOCK} no longer has {old!r} once"
        text = text.replace(old, new)
    return text


def nginx_conf(prefix: Path, block: Path) -> str:
    user = ""
    if os.geteuid() == 0:  # the workers drop to nobody, like Debian's www-data
        nobody = pwd.getpwnam("nobody")
        user = f"user nobody {grp.getgrgid(nobody.pw_gid).gr_name};"
    return f"""{user}
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    proxy_bind {PROXY_ADDRESS};
    include {block};
}}
"""


def unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def fetch(
    url: str,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10, context=unverified()) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture(scope="module")
def proxy(gateway: RunningGateway, proxy_port: int) -> Iterator[Proxy]:
    if not Path(NGINX).exists():
        pytest.fail(f"{NGINX} is not installed: run 'make system-deps'")
    # Outside pytest's private tmp tree: nginx's workers (nobody when run as root) write here.
    prefix = Path(tempfile.mkdtemp(prefix="rondpoint-nginx-"))
    try:
        cert, key = prefix / "cert.pem", prefix / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
            + ["-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1"]
            + ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        gateway_port = int(urllib.parse.urlsplit(gateway.base_url).port or 0)
        block = prefix / "rondpoint.conf"
        block.write_text(server_block(gateway_port, proxy_port, cert, key))
        conf = prefix / "nginx.conf"
        conf.write_text(nginx_conf(prefix, block))
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(prefix, nobody.pw_uid, nobody.pw_gid)
        command = [NGINX, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf)]
        with open(prefix / "stderr.log", "wb") as stderr:
            process = subprocess.Popen(
                [*command, "-g", "daemon off;"], stdout=stderr, stderr=subprocess.STDOUT
            )
        url = f"https://127.0.0.1:{proxy_port}"
        try:

            def ready() -> bool:
                if process.poll() is not None:
                    errors = (prefix / "stderr.log").read_text(errors="replace")
                    errors += (prefix / "error.log").read_text(errors="replace")
                    raise RuntimeError(f"nginx exited: {errors[-3000:]}")
                with contextlib.suppress(OSError):
                    return fetch(url + "/healthz")[0] == 200
                return False

            wait_until(ready, 20, "nginx to proxy /healthz")
            yield Proxy(url, prefix)
        finally:
            stop_process(process)
            ARTIFACTS.mkdir(exist_ok=True)
            for name in ("error.log", "access.log"):
                if (prefix / name).exists():
                    shutil.copyfile(prefix / name, ARTIFACTS / f"reverse-proxy-nginx-{name}")
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


def test_deploy_doc_shows_the_tested_server_block() -> None:
    assert SERVER_BLOCK.read_text().strip() in DEPLOY_DOC.read_text()


def open_browser(chromium: Any, proxy: Proxy, room: str, name: str) -> Participant:
    context = chromium.new_context(
        viewport={"width": 1280, "height": 800}, locale="en-US", ignore_https_errors=True
    )
    context.grant_permissions(["camera", "microphone"], origin=proxy.url)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    load_room_page(page, f"{proxy.url}/r/{room}?autojoin=1&name={urllib.parse.quote(name)}&res=360")
    return Participant(name, context, page, console)


def test_browsers_meet_through_nginx(
    chromium: Any, proxy: Proxy, gateway: RunningGateway, request: pytest.FixtureRequest
) -> None:
    room = f"proxied-{secrets.token_hex(3)}"
    gateway.create_room(room)
    opened: list[Participant] = []
    try:
        alice = open_browser(chromium, proxy, room, "Alice")
        opened.append(alice)
        alice.wait_state("room")
        bruno = open_browser(chromium, proxy, room, "Bruno")
        opened.append(bruno)
        bruno.wait_state("room")

        # the page came from the proxy and its signalling went through it, over wss
        assert alice.page.evaluate("location.origin") == proxy.url
        status, detail = gateway.admin("GET", f"/api/v1/rooms/{room}")
        assert status == 200
        assert sorted(p["name"] for p in detail["participants"]) == ["Alice", "Bruno"], detail

        # each sees the other, and media flows both ways (over the media port, not nginx)
        wait_until(lambda: {o["name"] for o in alice.others()} == {"Bruno"}, 10, "Alice sees Bruno")
        wait_until(lambda: {o["name"] for o in bruno.others()} == {"Alice"}, 10, "Bruno sees Alice")
        wait_until(lambda: receiving(bruno, [alice.id]), 25, "Bruno to receive Alice's media")
        wait_until(lambda: receiving(alice, [bruno.id]), 25, "Alice to receive Bruno's media")

        # nginx logs a WebSocket when it ends: both were upgraded (101) through it
        for p in opened:
            p.context.close()
        opened.clear()
        upgraded = f'"GET /ors/v1/rooms/{room}/ws HTTP/1.1" 101 '
        wait_until(
            lambda: (proxy.prefix / "access.log").read_text().count(upgraded) == 2,
            10,
            "nginx to log both WebSockets",
        )
    finally:
        failed = (
            getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
        )
        for p in opened:
            if failed:
                ARTIFACTS.mkdir(exist_ok=True)
                with contextlib.suppress(Exception):
                    p.page.screenshot(path=str(ARTIFACTS / f"reverse-proxy-{p.name}.png"))
                (ARTIFACTS / f"reverse-proxy-{p.name}.console.txt").write_text("\n".join(p.console))
            p.context.close()


def test_the_admin_api_and_metrics_stay_off_the_public_side(
    proxy: Proxy, gateway: RunningGateway
) -> None:
    admin = {"Authorization": f"Bearer {gateway.admin_token}"}
    for path in ("/api/v1/rooms", "/%61pi/v1/rooms", "//api/v1/rooms", "/api/v1/../v1/rooms"):
        status, body = fetch(proxy.url + path, headers=admin)
        assert status == 403, (path, status, body[:200])
        assert b"rooms" not in body, (path, body[:200])
    for path in ("/metrics", "/metrics/", "/metrics?format=text"):
        status, body = fetch(proxy.url + path)
        assert status == 403, (path, status)
        assert b"rondpoint_rooms" not in body
    # ...yet the gateway serves them on loopback, as the admins use them
    assert gateway.admin("GET", "/api/v1/rooms")[0] == 200
    with urllib.request.urlopen(gateway.base_url + "/metrics", timeout=10) as response:
        assert b"rondpoint_rooms" in response.read()

    # what visitors need answers through the proxy, naming the public URL
    assert fetch(proxy.url + "/healthz") == (200, b'{"status": "ok"}')
    status, body = fetch(proxy.url + "/.well-known/ors")
    discovery = json.loads(body)
    assert status == 200 and discovery["api_base"] == proxy.url + "/ors/v1", discovery
    assert discovery["websocket_url_template"].startswith("wss://127.0.0.1:"), discovery
    # a WHIP offer larger than the gateway's 64 KiB limit is stopped at the proxy
    status, _ = fetch(
        proxy.url + "/ors/v1/rooms/nowhere/whip",
        method="POST",
        body=b"v=0\r\n" + b"a=x\r\n" * 14000,
        headers={"Content-Type": "application/sdp", "Authorization": "Bearer x"},
    )
    assert status == 413


def test_the_gateway_sees_the_browser_address_not_the_proxy(
    chromium: Any, proxy: Proxy, gateway: RunningGateway
) -> None:
    room = f"pin-{secrets.token_hex(3)}"
    gateway.create_room(room, pin="482916")
    context = chromium.new_context(ignore_https_errors=True)
    try:
        page = context.new_page()
        page.goto(f"{proxy.url}/healthz")
        # the browser itself, through nginx, with a spoofed header nginx must overwrite
        status = page.evaluate(
            """async (room) => (await fetch(`/ors/v1/rooms/${room}/tokens`, {
                method: "POST",
                headers: {"Content-Type": "application/json", "X-Forwarded-For": "192.0.2.66"},
                body: JSON.stringify({name: "Mallory", pin: "000000"}),
            })).status""",
            room,
        )
        assert status == 403
    finally:
        context.close()

    def wrong_pin_lines() -> list[dict]:
        entries = []
        for line in gateway.log_text().splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                if entry.get("msg") == "wrong room PIN" and entry.get("room") == room:
                    entries.append(entry)
        return entries

    entries = wait_until(wrong_pin_lines, 5, "the gateway to log the wrong PIN")
    # 127.0.0.1 is the browser as nginx saw it; the gateway's peer was nginx, 127.0.0.2
    assert [e["source"] for e in entries] == ["127.0.0.1"], entries


def test_deploy_doc_configuration_is_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway configuration shown in docs/deploy.md loads: every key in it exists.

    The TURN secret comes from the environment, as the document tells operators to do it.
    """
    monkeypatch.setenv("RONDPOINT_TURN_SECRET", "a-test-secret-of-enough-length")
    text = DEPLOY_DOC.read_text()
    start = text.index("```toml\n") + len("```toml\n")
    path = tmp_path / "rondpoint.toml"
    path.write_text(text[start : text.index("```", start)])
    config = load_config(path)
    assert config.http.trusted_proxies == ["127.0.0.1", "::1"]
    assert config.base_url == "https://rondpoint.example.gouv.fr"
    assert config.turn.servers and config.turn.secret == "a-test-secret-of-enough-length"
