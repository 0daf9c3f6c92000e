"""Fixtures of the Matrix bridge's tests: a real Synapse, a real livekit-server, our gateway.

- `synapse_python` (session): the interpreter of Synapse's own venv (tests/synapse.sh).
- `livekit` (module): tests/interop/livekit_fixtures' shared livekit-server, playing the focus.
- `synapse` (module): a Synapse with no application service, for tests of the harness itself.
- `livekit_pages` (function): Chromium with livekit-client pages (tests/matrix/page.py).
- `phone` (function): a baresip phone (tests/matrix/meeting.py's PHONE_NUMBER, PHONE_HZ).
- `matrix_js` (function): `await matrix_js("anna")` starts a matrix-js-sdk driver
  (tests/matrix/jsclient.py, tests/matrix/js/rtc_member.mjs), closed after the test.
- `element_call_user(user, room, matrix_js=, livekit_pages=, device_id=, frequency=)`: a Matrix
  user in the room's call as Element Call would be (membership + focus token + livekit-client).
- `matrix_stack` (module): ports chosen first, then our gateway with a `[matrix]` section (the
  homeserver, fresh AS/HS tokens, the livekit fixture as the focus's LiveKit), then the
  registration YAML from `rondpoint matrix registration` on that gateway's configuration file,
  then Synapse started with it (the application service must listen before Synapse starts, or
  Synapse backs off), advertising our focus (/matrix) as its MatrixRTC transport. `matrix_stack_restartable` (function): the same with a Synapse and a
  livekit-server of the test's own, which it may kill and restart.

On a failed test, the Synapse, gateway and livekit-server logs go to test-artifacts/.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.gateway_process import ROOT, RunningGateway, free_port, running_gateway
from tests.interop.baresip import Baresip
from tests.interop.livekit_fixtures import (
    RunningLiveKit,
    livekit_server,
    livekit_server_restartable,
    running_livekit,
)
from tests.matrix.jsclient import JsClient, start_js_client
from tests.matrix.meeting import PHONE_HZ, PHONE_NUMBER
from tests.matrix.page import LiveKitBrowser, LiveKitPage, livekit_browser
from tests.matrix.synapse import (
    SERVER_NAME,
    MatrixUser,
    RunningSynapse,
    install_synapse,
    running_synapse,
    wait_for,
)

__all__ = ["livekit_server", "livekit_server_restartable"]

ARTIFACTS = ROOT / "test-artifacts"
BOT_LOCALPART = "rondpoint"
USER_PREFIX = "rondpoint_"


@dataclass
class MatrixStack:
    gateway: RunningGateway
    synapse: RunningSynapse
    livekit: RunningLiveKit
    as_token: str
    hs_token: str
    registration_path: Path

    @property
    def server_name(self) -> str:
        return self.synapse.server_name

    @property
    def focus_url(self) -> str:
        """Our focus's livekit_service_url, which Synapse advertises as its MatrixRTC transport."""
        return focus_url(self.gateway)

    @property
    def bot_user_id(self) -> str:
        return f"@{BOT_LOCALPART}:{self.server_name}"

    def ghost_prefix(self) -> str:
        """Ghost user ids start with this (`@rondpoint_`)."""
        return f"@{USER_PREFIX}"

    def link(self, room_here: str, matrix_room: str) -> None:
        """Links our room ROOM_HERE (created when missing) to MATRIX_ROOM (`!id:hs.test`)."""
        status, _ = self.gateway.admin("GET", f"/api/v1/rooms/{room_here}")
        if status == 404:
            self.gateway.create_room(room_here)
        status, body = self.gateway.admin(
            "POST", f"/api/v1/rooms/{room_here}/links", {"target": f"matrix:{matrix_room}"}
        )
        assert status == 201, body

    def link_state(self, room_here: str) -> dict[str, object]:
        """The status of ROOM_HERE's first link ({state, detail...}), {} when it has none."""
        status, body = self.gateway.admin("GET", f"/api/v1/rooms/{room_here}/links")
        assert status == 200, body
        items = body["links"] if isinstance(body, dict) else body
        return dict(items[0]["status"]) if items else {}

    async def linked_room(
        self,
        owner: MatrixUser,
        room_here: str | None = None,
        *,
        name: str = "",
        encrypted: bool = False,
        state: str = "connected",
        timeout: float = 20.0,
        room_version: str | None = None,
    ) -> tuple[str, str]:
        """OWNER creates a Matrix room inviting the bot, our room (ROOM_HERE or a fresh id) is
        linked to it; returns (room_here, matrix_room_id) once the link's state is STATE."""
        room_here = room_here or f"mx-{secrets.token_hex(4)}"
        matrix_room = await owner.create_room(
            name or room_here,
            encrypted=encrypted,
            invite=[self.bot_user_id],
            room_version=room_version,
        )
        self.link(room_here, matrix_room)

        async def reached() -> bool:
            return self.link_state(room_here).get("state") == state

        await wait_for(reached, f"the link of {room_here} to be {state}", timeout)
        return room_here, matrix_room

    async def olga_and_anna(
        self, room_here: str | None = None
    ) -> tuple[MatrixUser, MatrixUser, str, str]:
        """Olga makes a Matrix room linked to ROOM_HERE and invites Anna ("Anna Schmidt");
        returns (olga, anna, room_here, matrix_room_id)."""
        olga = await self.synapse.register_user("olga", "olga-password")
        anna = await self.synapse.register_user("anna", "anna-password")
        await anna.set_display_name("Anna Schmidt")
        room, matrix_room = await self.linked_room(olga, room_here)
        await olga.invite(matrix_room, anna.user_id)
        return olga, anna, room, matrix_room


@dataclass
class ElementCallUser:
    """A Matrix user in a room's call as Element Call would be: `js` holds the MatrixRTC
    membership (matrix-js-sdk), `page` the media (livekit-client in Chromium, connected with the
    JWT our focus's /sfu/get gave), `identity` its LiveKit identity `{user_id}:{device_id}`."""

    js: JsClient
    page: LiveKitPage
    identity: str
    room_id: str
    keys: asyncio.Task[None] | None = None
    """Encrypted: the media keys matrix-js-sdk manages, given to the page as they come."""

    async def leave(self) -> None:
        """Hangs up: the membership ends ({}), then the page leaves the LiveKit room."""
        await self.js.command("rtc_leave", room=self.room_id)
        await self.page.leave()
        if self.keys is not None:
            self.keys.cancel()


async def give_media_keys(js: JsClient, page: LiveKitPage, room_id: str) -> None:
    """Every "media_key" event of JS's session in ROOM_ID, set in PAGE's key provider."""
    seen = 0
    while True:
        events = js.events[seen:]
        seen += len(events)
        for event in events:
            if event["event"] == "media_key" and event["room"] == room_id:
                await page.set_key(event["identity"], event["key"], event["index"])
        await asyncio.sleep(0.05)


async def element_call_user(
    user: MatrixUser,
    room_id: str,
    *,
    matrix_js: Callable[..., Awaitable[JsClient]],
    livekit_pages: LiveKitBrowser,
    device_id: str,
    frequency: float | None = None,
    video: bool = False,
    notification: str | None = None,
    encrypted: bool = False,
) -> ElementCallUser:
    """USER (who must already be in ROOM_ID) joins its call as Element Call does: membership
    through matrix-js-sdk (focus from the homeserver's rtc/transports), LiveKit token from that
    focus's /sfu/get with an OpenID token, then a page publishing a tone at FREQUENCY (and a
    moving pattern if VIDEO). NOTIFICATION: "ring" to ring the room as the call's starter.
    ENCRYPTED: end-to-end encrypted media as Element Call's (matrix-js-sdk's Rust crypto and
    MatrixRTC media keys over Olm, livekit-client E2EE in the page)."""
    name = device_id.lower()
    js = await matrix_js(name)
    await js.command(
        "login",
        homeserver_url=user.homeserver_url,
        user_id=user.user_id,
        password=user.password,
        device_id=device_id,
        crypto=encrypted,
    )
    await js.command("join", room=room_id)
    await js.command(
        "rtc_join", room=room_id, notification=notification, manage_media_keys=encrypted
    )
    answer = await js.command("sfu_get", room=room_id)
    assert answer["status"] == 200, f"our focus refused {user.user_id}: {answer}"
    page = await livekit_pages.open(name, encrypted=encrypted)
    identity = f"{user.user_id}:{device_id}"
    keys = None
    if encrypted:
        own = await js.wait_event("media_key", lambda e: e["identity"] == identity, timeout=15)
        await page.set_key(identity, own["key"], own["index"])  # before anything is published
        keys = asyncio.create_task(give_media_keys(js, page, room_id))
    await page.connect(answer["body"]["url"], answer["body"]["jwt"])
    if frequency or video:
        await page.publish(frequency=frequency, video=video)
    return ElementCallUser(js, page, identity, room_id, keys)


def matrix_config(synapse_port: int, livekit: RunningLiveKit, as_token: str, hs_token: str) -> str:
    """The gateway's `[matrix]` section for a Synapse on SYNAPSE_PORT and LIVEKIT as the focus."""
    return (
        "[matrix]\n"
        f'homeserver_url = "http://127.0.0.1:{synapse_port}"\n'
        f'server_name = "{SERVER_NAME}"\n'
        f'as_token = "{as_token}"\n'
        f'hs_token = "{hs_token}"\n'
        f'sender_localpart = "{BOT_LOCALPART}"\n'
        f'user_prefix = "{USER_PREFIX}"\n'
        f'livekit_url = "{livekit.url}"\n'
        f'livekit_api_key = "{livekit.api_key}"\n'
        f'livekit_api_secret = "{livekit.api_secret}"\n'
        "reconnect_max_seconds = 2\n"
    )


def focus_url(gateway: RunningGateway) -> str:
    """Our focus's livekit_service_url (the `[matrix]` default: the appservice URL)."""
    return f"{gateway.base_url}/matrix"


def write_registration(gateway: RunningGateway, path: Path) -> Path:
    """The registration YAML printed by `rondpoint matrix registration` for GATEWAY's config."""
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(gateway.config_path)]
        + ["matrix", "registration"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    if result.returncode != 0:
        pytest.fail(f"rondpoint matrix registration failed:\n{result.stderr[-4000:]}")
    path.write_text(result.stdout)
    return path


def keep_artifacts(prefix: str, logs: dict[str, Path]) -> None:
    """Copies LOGS (name -> path) to test-artifacts/PREFIX-NAME."""
    ARTIFACTS.mkdir(exist_ok=True)
    for name, path in logs.items():
        with contextlib.suppress(OSError):
            shutil.copyfile(path, ARTIFACTS / f"{prefix}-{name}")


@contextlib.contextmanager
def running_stack(
    tmp: Path,
    python: Path,
    livekit: RunningLiveKit,
    request: pytest.FixtureRequest,
    extra_config: str = "",
) -> Iterator[MatrixStack]:
    """The stack (see `matrix_stack`); EXTRA_CONFIG: more sections of the gateway's configuration
    (another plugin's, as `[visio]`)."""
    synapse_port = free_port()
    as_token = secrets.token_urlsafe(24)
    hs_token = secrets.token_urlsafe(24)
    failed_before = request.session.testsfailed
    extra = matrix_config(synapse_port, livekit, as_token, hs_token) + extra_config
    (tmp / "gateway").mkdir(parents=True, exist_ok=True)
    with running_gateway(tmp / "gateway", extra_config=extra, log_format="text") as gateway:
        registration = write_registration(gateway, tmp / "registration.yaml")
        logs = {"gateway.log": gateway.log_path, "livekit.log": livekit.log_path}
        try:
            with running_synapse(
                tmp,
                python,
                app_service_files=[registration],
                port=synapse_port,
                rtc_transports=[{"type": "livekit", "livekit_service_url": focus_url(gateway)}],
            ) as synapse:
                logs["synapse.log"] = synapse.log_path
                yield MatrixStack(gateway, synapse, livekit, as_token, hs_token, registration)
        finally:
            if request.session.testsfailed > failed_before:
                name = getattr(request.node, "name", "matrix").replace("/", "_")
                keep_artifacts(f"matrix-{Path(name).stem}", logs)


@pytest.fixture(scope="session")
def synapse_python() -> Path:
    """Synapse's venv interpreter (installed by tests/synapse.sh when missing; fails, never skips)."""
    return install_synapse()


@pytest.fixture(scope="module")
def livekit(livekit_server: RunningLiveKit) -> RunningLiveKit:
    """The module's livekit-server (tests/interop/livekit_fixtures.py), the focus's SFU."""
    return livekit_server


@pytest.fixture(scope="module")
def synapse(
    synapse_python: Path, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[RunningSynapse]:
    """A Synapse with no application service."""
    failed_before = request.session.testsfailed
    with running_synapse(Path(tmp_path_factory.mktemp("synapse")), synapse_python) as running:
        try:
            yield running
        finally:
            if request.session.testsfailed > failed_before:
                keep_artifacts(
                    f"matrix-{Path(request.node.name).stem}", {"synapse.log": running.log_path}
                )


@pytest.fixture(scope="module")
def matrix_stack(
    synapse_python: Path,
    livekit: RunningLiveKit,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[MatrixStack]:
    """Our gateway as the application service of a real Synapse, the livekit fixture as the focus."""
    tmp = Path(tmp_path_factory.mktemp("matrix-stack"))
    with running_stack(tmp, synapse_python, livekit, request) as stack:
        yield stack


@pytest.fixture
def matrix_stack_restartable(
    synapse_python: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[MatrixStack]:
    """A stack of this test's own: it may kill/restart its Synapse (stack.synapse) and its
    livekit-server (stack.livekit)."""
    with (
        running_livekit(tmp_path) as livekit,
        running_stack(tmp_path, synapse_python, livekit, request) as stack,
    ):
        yield stack


@pytest.fixture
async def phone(tmp_path: Path) -> AsyncIterator[Baresip]:
    """A baresip phone calling from PHONE_NUMBER (shown as PHONE_NAME), sending PHONE_HZ."""
    async with Baresip(tmp_path, tone_hz=PHONE_HZ, user=PHONE_NUMBER) as running:
        yield running


@pytest.fixture
async def livekit_pages(request: pytest.FixtureRequest) -> AsyncIterator[LiveKitBrowser]:
    """Chromium for this test: `await livekit_pages.open(name)` gives a livekit-client page
    (tests/matrix/page.py); screenshots and consoles go to test-artifacts/ on a failure."""
    async with livekit_browser(request) as browser:
        yield browser


@contextlib.asynccontextmanager
async def js_clients(
    tmp: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Callable[..., Awaitable[JsClient]]]:
    """`await start(name, driver="rtc_member.mjs")`: a matrix-js-sdk driver logging to TMP; all
    are closed on exit, and their logs go to test-artifacts/ when REQUEST's test has failed."""
    failed_before = request.session.testsfailed
    clients: dict[str, JsClient] = {}

    async def start(name: str, driver: str = "rtc_member.mjs") -> JsClient:
        client = await start_js_client(tmp / f"{name}-js.log", driver)
        clients[name] = client
        return client

    failed = False
    try:
        yield start
    except BaseException:  # used inside a test's body: the test is failing
        failed = True
        raise
    finally:
        for client in clients.values():
            await client.close()
        if failed or request.session.testsfailed > failed_before:
            keep_artifacts(
                f"matrix-{request.node.name}",
                {f"{name}-js.log": c.log_path for name, c in clients.items()},
            )


@pytest.fixture
async def matrix_js(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Callable[..., Awaitable[JsClient]]]:
    """`await matrix_js(name, driver="rtc_member.mjs")`: a matrix-js-sdk driver of this test's
    own (`js_clients`), closed after the test."""
    async with js_clients(tmp_path, request) as start:
        yield start
