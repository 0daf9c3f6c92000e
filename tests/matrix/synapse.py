"""A real Synapse homeserver on loopback for the Matrix interop tests, and a small client for tests.

Synapse comes from tests/synapse.sh (PyPI `matrix-synapse`, pinned, in its own virtual environment
under .cache/; Synapse is AGPL, so it only ever runs as a separate process, never imported here).
`running_synapse()` writes a homeserver.yaml (SQLite, one plain-HTTP listener on 127.0.0.1 with the
client, openid and federation resources, no federation with anyone, raised rate limits, the
MatrixRTC / application-service experimental features the bridge uses), generates the signing key,
starts `python -m synapse.app.homeserver` and waits for `/_matrix/client/versions`.

A test can kill Synapse and bring it back on the same port and SQLite database
(`RunningSynapse.kill()` / `restart()` / `arestart()`), like tests/interop/livekit_fixtures.

`MatrixUser` is a real user of that homeserver (registered with the shared-secret admin API) that a
test drives through the client-server API with aiohttp: rooms, messages, state, OpenID tokens.
Every wait is bounded and fails saying what it waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import secrets
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import aiohttp
import pytest

from tests.gateway_process import ROOT, free_port
from tests.processes import LoggedServer, installed, spawn_logged, wait_http_ready

INSTALL_SCRIPT = ROOT / "tests" / "synapse.sh"
SERVER_NAME = "hs.test"
CALL_MEMBER = "org.matrix.msc3401.call.member"
T = TypeVar("T")


def install_synapse() -> Path:
    """The Python of Synapse's own venv, installed first when missing (fails loudly, never skips)."""
    path = installed(INSTALL_SCRIPT, timeout=900)
    if not path.exists():
        pytest.fail(f"tests/synapse.sh printed {path}, which does not exist")
    return path


def homeserver_yaml(
    *,
    server_name: str,
    port: int,
    data_dir: Path,
    registration_secret: str,
    app_service_files: list[Path],
    rtc_transports: list[dict[str, Any]] | None = None,
) -> str:
    """Synapse's configuration for a test homeserver (JSON is YAML). RTC_TRANSPORTS: the MatrixRTC
    foci it advertises to clients (MSC4143 `GET .../org.matrix.msc4143/rtc/transports`)."""
    generous = {"per_second": 1000, "burst_count": 1000}
    config: dict[str, Any] = {
        "server_name": server_name,
        "public_baseurl": f"http://127.0.0.1:{port}/",
        "pid_file": str(data_dir / "homeserver.pid"),
        "listeners": [
            {
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client", "openid", "federation"], "compress": False}],
            }
        ],
        "database": {"name": "sqlite3", "args": {"database": str(data_dir / "homeserver.db")}},
        "log_config": str(data_dir / "log.config"),
        "media_store_path": str(data_dir / "media_store"),
        "signing_key_path": str(data_dir / "signing.key"),
        "registration_shared_secret": registration_secret,
        "enable_registration": False,
        "report_stats": False,
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "federation_domain_whitelist": [],
        "app_service_config_files": [str(path) for path in app_service_files],
        "max_event_delay_duration": "24h",
        "matrix_rtc": {"transports": rtc_transports or []},
        "experimental_features": {
            "msc4143_enabled": True,  # MatrixRTC transports
            "msc4222_enabled": True,  # state_after in /sync
            "msc2409_to_device_messages_enabled": True,  # to-device events to appservices
            # device lists / one-time key counts in appservice transactions (device masquerading,
            # `?device_id=` with the AS token, needs no flag: it is on in Synapse 1.163)
            "msc3202_transaction_extensions": True,
            "msc4075_enabled": True,  # MatrixRTC notifications (ringing)
            "msc4354_enabled": True,  # sticky events (newer MatrixRTC membership transport)
        },
        "rc_message": generous,
        "rc_registration": generous,
        "rc_login": {"address": generous, "account": generous, "failed_attempts": generous},
        "rc_joins": {"local": generous, "remote": generous},
        "rc_joins_per_room": generous,
        "rc_invites": {"per_room": generous, "per_user": generous, "per_issuer": generous},
        "rc_room_creation": generous,
        "rc_delayed_event_mgmt": generous,
        "rc_3pid_validation": generous,
        "rc_admin_redaction": generous,
        "rc_key_requests": generous,
        "rc_presence": {"per_user": generous},
        "rc_reports": generous,
        "rc_media_create": generous,
        "rc_federation": {"sleep_limit": 1000, "reject_limit": 1000, "concurrent": 100},
        "url_preview_enabled": False,
        "presence": {"enabled": False},
        "enable_metrics": False,
    }
    return json.dumps(config, indent=2) + "\n"


LOG_CONFIG = """version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s'
handlers:
  console:
    class: logging.StreamHandler
    formatter: precise
loggers:
  synapse.storage.SQL:
    level: WARNING
root:
  level: INFO
  handlers: [console]
disable_existing_loggers: false
"""


READY_PATH = "/_matrix/client/versions"
"""What Synapse answers once it serves clients."""


@dataclass
class RunningSynapse(LoggedServer):
    """A Synapse a test runs; killing it keeps its database (pending delayed events too), and a
    restart serves the same port and database again."""

    name: ClassVar[str] = "synapse"
    restart_pause: ClassVar[float] = 0.3
    restart_timeout: ClassVar[float] = 60.0
    url: str
    """http://127.0.0.1:PORT, the client-server API's base."""
    server_name: str
    port: int
    config_path: Path
    log_path: Path
    registration_secret: str
    process: subprocess.Popen[bytes]
    command: list[str] = field(default_factory=list)
    restarts: int = 0

    def ready_url(self) -> str:
        return self.url + READY_PATH

    def user_id(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"

    async def register_user(self, name: str, password: str, admin: bool = False) -> MatrixUser:
        """Registers NAME (a localpart) with the shared-secret admin API and returns it logged in;
        a NAME already registered (with PASSWORD) by an earlier test on this module's Synapse gets
        a new login instead, so a test does not depend on running first."""
        async with aiohttp.ClientSession() as http:
            endpoint = f"{self.url}/_synapse/admin/v1/register"
            async with http.get(endpoint) as response:
                nonce = (await response.json())["nonce"]
            mac = hmac.new(self.registration_secret.encode(), digestmod=hashlib.sha1)
            mac.update(b"\x00".join([nonce.encode(), name.encode(), password.encode()]))
            mac.update(b"\x00admin" if admin else b"\x00notadmin")
            body = {
                "nonce": nonce,
                "username": name,
                "password": password,
                "admin": admin,
                "mac": mac.hexdigest(),
            }
            async with http.post(endpoint, json=body) as response:
                reply = await response.json()
                if response.status == 400 and reply.get("errcode") == "M_USER_IN_USE":
                    return await self.login(self.user_id(name), password)
                if response.status != 200:
                    raise MatrixApiError("POST", endpoint, response.status, reply)
        return MatrixUser(
            self.url, reply["user_id"], reply["access_token"], reply["device_id"], password
        )

    async def login(self, user_id: str, password: str, device_id: str | None = None) -> MatrixUser:
        """A new login (a new device unless DEVICE_ID is given) of an existing user."""
        body: dict[str, Any] = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user_id},
            "password": password,
        }
        if device_id:
            body["device_id"] = device_id
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{self.url}/_matrix/client/v3/login", json=body) as response,
        ):
            reply = await response.json()
            if response.status != 200:
                raise AssertionError(f"login of {user_id} failed: {response.status} {reply}")
        return MatrixUser(
            self.url, reply["user_id"], reply["access_token"], reply["device_id"], password
        )


class MatrixApiError(AssertionError):
    """A client-server API call answered with an error (status, errcode)."""

    def __init__(self, method: str, path: str, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.errcode = str(body.get("errcode", ""))
        super().__init__(f"{method} {path} -> {status} {body}")


@dataclass
class MatrixUser:
    """A logged-in user; every call opens its own HTTP session, so a user can be used from any
    event loop and needs no closing."""

    homeserver_url: str
    user_id: str
    access_token: str
    device_id: str
    password: str = ""

    async def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        query: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Calls PATH (starting with /_matrix/...) as this user; raises MatrixApiError on an error."""
        url = self.homeserver_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        headers = {"Authorization": f"Bearer {self.access_token}"}
        async with (
            aiohttp.ClientSession() as http,
            http.request(method, url, json=body, headers=headers) as response,
        ):
            raw = await response.read()
            reply = json.loads(raw) if raw else {}
            if response.status >= 400:
                raise MatrixApiError(method, path, response.status, reply)
            return dict(reply)

    @staticmethod
    def _q(value: str) -> str:
        return urllib.parse.quote(value, safe="")

    async def create_room(
        self,
        name: str = "",
        *,
        encrypted: bool = False,
        invite: list[str] | None = None,
        power_levels_override: dict[str, Any] | None = None,
        preset: str = "private_chat",
        calls: bool = True,
        room_version: str | None = None,
    ) -> str:
        """A new room; CALLS: members may join its MatrixRTC call (power level 0 for
        `org.matrix.msc3401.call.member`, as Element Web sets when it creates a room), merged
        under POWER_LEVELS_OVERRIDE's own `events`. ROOM_VERSION: the server's default when None
        (12 on Synapse 1.163, whose room ids are `!` and a hash, without `:server`)."""
        body: dict[str, Any] = {"preset": preset, "invite": invite or []}
        if room_version:
            body["room_version"] = room_version
        if calls:
            override = dict(power_levels_override or {})
            override["events"] = {CALL_MEMBER: 0, **override.get("events", {})}
            power_levels_override = override
        if name:
            body["name"] = name
        if encrypted:
            body["initial_state"] = [
                {
                    "type": "m.room.encryption",
                    "state_key": "",
                    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                }
            ]
        if power_levels_override is not None:
            body["power_level_content_override"] = power_levels_override
        reply = await self.request("POST", "/_matrix/client/v3/createRoom", body)
        return str(reply["room_id"])

    async def invite(self, room_id: str, user_id: str) -> None:
        await self.request(
            "POST", f"/_matrix/client/v3/rooms/{self._q(room_id)}/invite", {"user_id": user_id}
        )

    async def join(self, room: str) -> str:
        """Joins a room id or alias; returns the room id."""
        reply = await self.request("POST", f"/_matrix/client/v3/join/{self._q(room)}", {})
        return str(reply["room_id"])

    async def leave(self, room_id: str) -> None:
        await self.request("POST", f"/_matrix/client/v3/rooms/{self._q(room_id)}/leave", {})

    async def send(self, room_id: str, event_type: str, content: dict[str, Any]) -> str:
        path = (
            f"/_matrix/client/v3/rooms/{self._q(room_id)}/send/{self._q(event_type)}/"
            f"{secrets.token_hex(8)}"
        )
        return str((await self.request("PUT", path, content))["event_id"])

    async def send_text(self, room_id: str, text: str, msgtype: str = "m.text") -> str:
        return await self.send(room_id, "m.room.message", {"msgtype": msgtype, "body": text})

    async def messages(self, room_id: str, limit: int = 50) -> list[dict[str, Any]]:
        """The room's most recent timeline events (all types), oldest first."""
        reply = await self.request(
            "GET",
            f"/_matrix/client/v3/rooms/{self._q(room_id)}/messages",
            query={"dir": "b", "limit": str(limit)},
        )
        return list(reversed(reply.get("chunk", [])))

    async def texts(self, room_id: str, limit: int = 50) -> list[tuple[str, str]]:
        """(sender, body) of the recent m.room.message events, oldest first."""
        return [
            (str(e["sender"]), str(e["content"].get("body", "")))
            for e in await self.messages(room_id, limit)
            if e.get("type") == "m.room.message"
        ]

    async def state(self, room_id: str) -> list[dict[str, Any]]:
        path = f"/_matrix/client/v3/rooms/{self._q(room_id)}/state"
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {self.access_token}"}
            async with http.get(self.homeserver_url + path, headers=headers) as response:
                reply = await response.json()
                if response.status >= 400:
                    raise MatrixApiError("GET", path, response.status, reply)
                return list(reply)

    async def state_event(
        self, room_id: str, event_type: str, state_key: str = ""
    ) -> dict[str, Any] | None:
        """The content of one state event, or None when there is none."""
        path = (
            f"/_matrix/client/v3/rooms/{self._q(room_id)}/state/{self._q(event_type)}/"
            f"{self._q(state_key)}"
        )
        try:
            return await self.request("GET", path)
        except MatrixApiError as e:
            if e.status == 404:
                return None
            raise

    async def put_state(
        self, room_id: str, event_type: str, state_key: str, content: dict[str, Any]
    ) -> str:
        path = (
            f"/_matrix/client/v3/rooms/{self._q(room_id)}/state/{self._q(event_type)}/"
            f"{self._q(state_key)}"
        )
        return str((await self.request("PUT", path, content))["event_id"])

    async def call_memberships(self, room_id: str) -> dict[str, dict[str, Any]]:
        """The room's non-empty MatrixRTC memberships: state key -> content."""
        return {
            str(e["state_key"]): dict(e["content"])
            for e in await self.state(room_id)
            if e.get("type") == CALL_MEMBER and e.get("content")
        }

    async def set_display_name(self, name: str) -> None:
        await self.request(
            "PUT",
            f"/_matrix/client/v3/profile/{self._q(self.user_id)}/displayname",
            {"displayname": name},
        )

    async def members(self, room_id: str, membership: str = "join") -> dict[str, str]:
        """User id -> display name (or "") of the room's members with MEMBERSHIP."""
        reply = await self.request("GET", f"/_matrix/client/v3/rooms/{self._q(room_id)}/members")
        return {
            str(e["state_key"]): str(e["content"].get("displayname") or "")
            for e in reply.get("chunk", [])
            if e["content"].get("membership") == membership
        }

    async def openid_token(self) -> dict[str, Any]:
        """{access_token, token_type, matrix_server_name, expires_in}, as Element Call sends it."""
        return await self.request(
            "POST", f"/_matrix/client/v3/user/{self._q(self.user_id)}/openid/request_token", {}
        )

    async def wait_for(
        self,
        check: Callable[[], Awaitable[T | None]],
        what: str,
        timeout: float = 15.0,
        interval: float = 0.25,
    ) -> T:
        """Awaits CHECK until it returns something truthy; fails naming WHAT and the last value."""
        return await wait_for(check, what, timeout, interval)


async def wait_for(
    check: Callable[[], Awaitable[T | None]],
    what: str,
    timeout: float = 15.0,
    interval: float = 0.25,
) -> T:
    """Awaits CHECK every INTERVAL until it returns something truthy; fails naming WHAT and the last
    value CHECK returned."""
    deadline = time.monotonic() + timeout
    while True:
        last = await check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:g} s waiting for {what}; last: {last!r}"
            )
        await asyncio.sleep(interval)


@contextlib.contextmanager
def running_synapse(
    tmp: Path,
    python: Path,
    *,
    app_service_files: list[Path] | None = None,
    port: int | None = None,
    server_name: str = SERVER_NAME,
    rtc_transports: list[dict[str, Any]] | None = None,
) -> Iterator[RunningSynapse]:
    """Synapse on 127.0.0.1:PORT (free when not given) with data under TMP. The application
    services of APP_SERVICE_FILES should be listening already (Synapse backs off when they are
    not). PYTHON: the venv's interpreter from `install_synapse()`. RTC_TRANSPORTS: see
    homeserver_yaml()."""
    port = port or free_port()
    data_dir = tmp / "synapse"
    data_dir.mkdir(parents=True, exist_ok=True)
    registration_secret = secrets.token_hex(16)
    config_path = data_dir / "homeserver.yaml"
    config_path.write_text(
        homeserver_yaml(
            server_name=server_name,
            port=port,
            data_dir=data_dir,
            registration_secret=registration_secret,
            app_service_files=app_service_files or [],
            rtc_transports=rtc_transports,
        )
    )
    (data_dir / "log.config").write_text(LOG_CONFIG)
    base = [str(python), "-m", "synapse.app.homeserver", "--config-path", str(config_path)]
    generated = subprocess.run(
        [*base, "--generate-missing-configs"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=data_dir,
    )
    if generated.returncode != 0:
        raise RuntimeError(
            f"synapse --generate-missing-configs failed:\n{generated.stderr[-4000:]}"
        )
    log_path = data_dir / "synapse.log"
    url = f"http://127.0.0.1:{port}"
    running = RunningSynapse(
        url=url,
        server_name=server_name,
        port=port,
        config_path=config_path,
        log_path=log_path,
        registration_secret=registration_secret,
        process=spawn_logged(base, log_path, name="synapse", cwd=data_dir),
        command=base,
    )
    try:
        wait_http_ready(url + READY_PATH, running.process, log_path, name="synapse", timeout=60.0)
        yield running
    finally:
        running.stop()
