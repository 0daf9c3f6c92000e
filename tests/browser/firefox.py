"""A small synchronous WebDriver BiDi driver for Debian's headless Firefox (firefox-esr).

Playwright can neither download its own Firefox here nor drive Debian's, but Firefox speaks
WebDriver BiDi natively (https://w3c.github.io/webdriver-bidi/): start it with
`--remote-debugging-port`, open a WebSocket to `ws://127.0.0.1:PORT/session`, send `session.new`,
then `browsingContext.*` and `script.evaluate` commands. The WebSocket lives in an aiohttp client on
a private event loop in a background thread, so the API is synchronous and coexists with
Playwright's sync API (whose loop runs in the main thread).

    with launch_firefox(tmp_path) as ff:
        ff.navigate("http://127.0.0.1:8080/r/room?autojoin=1&name=Fanny")
        ff.evaluate("window.rondpoint.stats()")  # -> plain JSON value (dict, list, str...)
        ff.screenshot(path)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp

FIREFOX = shutil.which("firefox-esr") or "/usr/bin/firefox-esr"

# Fake camera and microphone without a permission prompt, autoplay allowed, loopback ICE candidates
# (the gateway listens on 127.0.0.1; see also `media_origins`), and no background traffic: this machine may only reach 127.0.0.1.
PREFS: dict[str, bool | int | str] = {
    # media
    "media.navigator.streams.fake": True,
    "media.navigator.permission.disabled": True,
    "media.autoplay.default": 0,
    "media.autoplay.blocking_policy": 0,
    "media.peerconnection.ice.loopback": True,
    "media.peerconnection.ice.obfuscate_host_addresses": False,
    "media.gmp-manager.updateEnabled": False,
    "media.gmp-manager.url": "",
    # updates
    "app.update.disabledForTesting": True,
    "app.update.auto": False,
    "app.update.checkInstallTime": False,
    "extensions.update.enabled": False,
    "extensions.getAddons.cache.enabled": False,
    "extensions.blocklist.enabled": False,
    "browser.search.update": False,
    "browser.region.network.url": "",
    "browser.region.update.enabled": False,
    # telemetry and studies
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.unified": False,
    "toolkit.telemetry.archive.enabled": False,
    "toolkit.telemetry.server": "",
    "datareporting.healthreport.uploadEnabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.policy.firstRunURL": "",
    "browser.ping-centre.telemetry": False,
    "browser.newtabpage.activity-stream.feeds.telemetry": False,
    "browser.newtabpage.activity-stream.telemetry": False,
    "app.normandy.enabled": False,
    "app.normandy.api_url": "",
    "app.shield.optoutstudies.enabled": False,
    "messaging-system.rsexperimentloader.enabled": False,
    # captive portal, connectivity checks, DNS over HTTPS, prefetching
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "network.trr.mode": 5,
    "doh-rollout.disable-heuristics": True,
    "network.dns.disablePrefetch": True,
    "network.prefetch-next": False,
    "network.http.speculative-parallel-limit": 0,
    # safe browsing
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "browser.safebrowsing.downloads.remote.enabled": False,
    "browser.safebrowsing.blockedURIs.enabled": False,
    "browser.safebrowsing.update.enabled": False,
    "browser.safebrowsing.provider.google.updateURL": "",
    "browser.safebrowsing.provider.google4.updateURL": "",
    "browser.safebrowsing.provider.mozilla.updateURL": "",
    # remote settings
    "services.settings.server": "data:,#remote-settings-disabled",
    # first-run and home pages
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.page": 0,
    "browser.startup.homepage": "about:blank",
    "browser.newtabpage.enabled": False,
    "browser.aboutwelcome.enabled": False,
    "browser.topsites.contile.enabled": False,
    "browser.discovery.enabled": False,
    "startup.homepage_welcome_url": "about:blank",
    "startup.homepage_welcome_url.additional": "",
    "toolkit.startup.max_resumed_crashes": -1,
    # only WebDriver BiDi on the remote port
    "remote.active-protocols": 1,
}

MEDIA_PERMISSIONS = ("camera", "microphone")
LISTENING = re.compile(rb"WebDriver BiDi listening on (ws://[\w.:\[\]-]+)")


class BiDiError(RuntimeError):
    """A WebDriver BiDi `error` reply, or a script exception from `script.evaluate`."""


def write_profile(
    profile: Path,
    prefs: dict[str, bool | int | str] | None = None,
    media_origins: Sequence[str] = (),
) -> None:
    """user.js with PREFS (+ `prefs`); camera and microphone permanently allowed for `media_origins`.

    The permanent permission matters beyond the prompt: without it (fake devices do not count as
    capturing), Firefox gathers ICE candidates on the default-route address only, never on
    127.0.0.1, and cannot reach a gateway that listens on loopback.
    """
    profile.mkdir(parents=True, exist_ok=True)
    prefs = {**PREFS, **(prefs or {})}
    if media_origins:
        defaults = profile / "default-permissions"
        defaults.write_text(
            "".join(
                f"origin\t{kind}\t1\t{o}\n" for o in media_origins for kind in MEDIA_PERMISSIONS
            )
        )
        prefs["permissions.manager.defaultsUrl"] = defaults.as_uri()
    lines = [f"user_pref({json.dumps(k)}, {json.dumps(v)});" for k, v in prefs.items()]
    (profile / "user.js").write_text("\n".join(lines) + "\n")


class Firefox:
    """One headless Firefox process and one BiDi session on its first tab."""

    def __init__(
        self,
        workdir: Path,
        executable: str = FIREFOX,
        size: tuple[int, int] = (1280, 800),
        prefs: dict[str, bool | int | str] | None = None,
        media_origins: Sequence[str] = (),
        start_timeout: float = 30,
    ) -> None:
        self.workdir = workdir
        self.profile = workdir / "profile"
        self.log_path = workdir / "firefox.log"
        self.console: list[str] = []
        self._seq = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self.context = ""
        write_profile(self.profile, prefs, media_origins)
        width, height = size
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [
                    executable,
                    "--headless",
                    "--no-remote",
                    "--profile",
                    str(self.profile),
                    "--remote-debugging-port=0",
                    "--width",
                    str(width),
                    "--height",
                    str(height),
                    "about:blank",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its content processes share our process group id
                env={**os.environ, "MOZ_CRASHREPORTER_DISABLE": "1", "MOZ_HEADLESS": "1"},
            )
        try:
            url = self._wait_listening(start_timeout)
            self._thread.start()
            self._run(self._connect(url + "/session"), 15)
            self.command("session.new", {"capabilities": {"alwaysMatch": {}}})
            self.command("session.subscribe", {"events": ["log.entryAdded"]})
            tree = self.command("browsingContext.getTree", {"maxDepth": 0})
            self.context = str(tree["contexts"][0]["context"])
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ plumbing

    def _wait_listening(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = LISTENING.search(self.log_path.read_bytes())
            if found:
                return found.group(1).decode()
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"Firefox did not open its BiDi port: {self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""

    def _run(self, coro: Any, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _connect(self, url: str) -> None:
        self._http = aiohttp.ClientSession()
        # No Origin header: Firefox refuses WebSocket upgrades from web origins it was not told about.
        self._ws = await self._http.ws_connect(url, max_msg_size=64 * 1024 * 1024, heartbeat=None)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if data.get("type") == "event":
                if data.get("method") == "log.entryAdded":
                    p = data.get("params", {})
                    self.console.append(f"{p.get('level')}: {p.get('text')}")
                continue
            future = self._pending.pop(data.get("id"), None)
            if future is not None and not future.done():
                future.set_result(data)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(BiDiError("the BiDi WebSocket closed"))
        self._pending.clear()

    async def _command(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        assert self._ws is not None
        self._seq += 1
        future: asyncio.Future[dict[str, Any]] = self._loop.create_future()
        self._pending[self._seq] = future
        await self._ws.send_str(json.dumps({"id": self._seq, "method": method, "params": params}))
        return await future

    # ------------------------------------------------------------------ API

    def command(
        self, method: str, params: dict[str, Any] | None = None, timeout: float = 30
    ) -> dict[str, Any]:
        """Sends one BiDi command and returns its `result`; raises BiDiError on an `error` reply."""
        reply = self._run(self._command(method, params or {}), timeout)
        if reply.get("type") == "error":
            raise BiDiError(f"{method}: {reply.get('error')}: {reply.get('message')}")
        return dict(reply.get("result") or {})

    def navigate(self, url: str, wait: str = "complete") -> None:
        self.command(
            "browsingContext.navigate", {"context": self.context, "url": url, "wait": wait}
        )

    def evaluate(self, expression: str, timeout: float = 30) -> Any:
        """Evaluates one JavaScript expression (awaited if a promise); returns it as JSON."""
        wrapped = (
            "(async () => { const v = await (" + expression + "); "
            "return v === undefined ? 'null' : JSON.stringify(v); })()"
        )
        result = self.command(
            "script.evaluate",
            {
                "expression": wrapped,
                "target": {"context": self.context},
                "awaitPromise": True,
                "resultOwnership": "none",
            },
            timeout,
        )
        if result.get("type") == "exception":
            details = result.get("exceptionDetails", {})
            raise BiDiError(f"{expression!r} threw: {details.get('text')}")
        value = result.get("result", {})
        if value.get("type") != "string":
            raise BiDiError(f"{expression!r}: unexpected BiDi value {value!r}")
        return json.loads(value["value"])

    def wait_for(self, expression: str, timeout: float = 15, interval: float = 0.25) -> Any:
        """Polls `expression` until it is truthy; returns it, or fails with its last value."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            with contextlib.suppress(BiDiError):  # e.g. during a navigation
                last = self.evaluate(expression)
                if last:
                    return last
            time.sleep(interval)
        raise AssertionError(
            f"timed out after {timeout} s waiting for {expression}; last: {last!r}"
        )

    def click(self, selector: str) -> None:
        """Clicks the element SELECTOR finds as a user does: a real pointer press and release at its
        centre (input.performActions), so the page gets a trusted event with user activation, which
        getDisplayMedia, for one, requires; element.click() from a script has none."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return null; e.scrollIntoView({block: 'center'});"
            " const r = e.getBoundingClientRect();"
            " return {x: Math.round(r.x + r.width / 2), y: Math.round(r.y + r.height / 2)}; })()"
        )
        if not box:
            raise BiDiError(f"no element matches {selector!r}")
        actions = [
            {"type": "pointerMove", "x": box["x"], "y": box["y"]},
            {"type": "pointerDown", "button": 0},
            {"type": "pointerUp", "button": 0},
        ]
        self.command(
            "input.performActions",
            {
                "context": self.context,
                "actions": [{"type": "pointer", "id": "mouse", "actions": actions}],
            },
        )

    def screenshot(self, path: Path) -> None:
        result = self.command("browsingContext.captureScreenshot", {"context": self.context})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(result["data"]))

    def close(self) -> None:
        """Ends the session, closes the browser and makes sure no process of it is left."""
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(Exception):
                self.command("browser.close", {}, timeout=5)
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._run(self._disconnect(), 5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        if not self._thread.is_alive() and not self._loop.is_closed():
            self._loop.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        # Content processes left behind by a crash or a kill share the group of the one we started.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)

    async def _disconnect(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._http is not None:
            await self._http.close()


@contextlib.contextmanager
def launch_firefox(workdir: Path, **options: Any) -> Iterator[Firefox]:
    """Starts Firefox in `workdir` (profile and log), yields the driver, always closes it."""
    browser = Firefox(workdir, **options)
    try:
        yield browser
    finally:
        browser.close()
