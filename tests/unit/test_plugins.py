"""Protocol plugins (gateway/plugins.py): discovery through entry points, their configuration
sections, their store migrations (SIP's adopting an older release's tables), the dialler registry
(gateway/dialling.py) and a gateway that starts without a plugin that fails."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway import plugins as plugins_module
from gateway.config import Config, ConfigError, load_config
from gateway.dialling import Diallers
from gateway.http.admin import authorize
from gateway.http.app import create_app
from gateway.plugins import (
    ENTRY_POINT_GROUP,
    DialError,
    PluginError,
    ProtocolPlugin,
    Running,
    installed,
)
from gateway.server import Gateway, banner
from gateway.store import open_store
from protocols.sip.store import DispatchRule, SipStore, Trunk
from tests.gateway_process import free_port


# discovery -------------------------------------------------------------------------------------
@pytest.fixture
def entry_points(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[EntryPoint]]:
    """Stand-in for the installed distributions' entry points in the plugins' group."""
    points: list[EntryPoint] = []
    installed.cache_clear()
    monkeypatch.setattr(
        plugins_module,
        "entry_points",
        lambda group: [p for p in points if p.group == group],
    )
    yield points
    installed.cache_clear()


def point(name: str, value: str) -> EntryPoint:
    return EntryPoint(name, value, ENTRY_POINT_GROUP)


NAMED_HTTP = ProtocolPlugin(name="http", summary="takes a hub section's name")
NAMED_BADLY = ProtocolPlugin(name="Echo Plugin", summary="not a name")
NOT_A_PLUGIN = {"name": "echo"}
TAKES_THE_API = ProtocolPlugin(name="echo", summary="public routes", public_path="/api/v1/")
PATH_WITHOUT_SLASH = ProtocolPlugin(name="echo", summary="public routes", public_path="/echo")


def test_sip_and_visio_are_found_through_their_entry_points() -> None:
    names = [plugin.name for plugin in installed()]
    assert {"sip", "visio"} <= set(names) and names == sorted(names)


def test_the_plugins_come_sorted_by_name(entry_points: list[EntryPoint]) -> None:
    entry_points += [
        point("visio", "protocols.visio.plugin:plugin"),
        point("sip", "protocols.sip.plugin:plugin"),
    ]
    assert [plugin.name for plugin in installed()] == ["sip", "visio"]


def test_the_plugin_modules_are_light_to_import() -> None:
    """Discovery imports every plugin, in every command: no media stack until one starts."""
    code = (
        "import sys, protocols.sip.plugin, protocols.visio.plugin\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'aiortc', 'av', 'livekit'}))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]"


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        (
            [("broken", "no_such_module_for_rondpoint:plugin")],
            "entry point 'broken' (no_such_module_for_rondpoint:plugin) in group "
            "rondpoint.protocols: cannot be loaded (ModuleNotFoundError",
        ),
        (
            [("sip", "protocols.sip.plugin:plugin"), ("sip2", "protocols.sip.plugin:plugin")],
            "entry point 'sip2' (protocols.sip.plugin:plugin) in group rondpoint.protocols: "
            "another installed plugin is named 'sip'",
        ),
        ([("http", "tests.unit.test_plugins:NAMED_HTTP")], "name 'http' must be"),
        ([("echo", "tests.unit.test_plugins:NAMED_BADLY")], "name 'Echo Plugin' must be"),
        ([("echo", "tests.unit.test_plugins:NOT_A_PLUGIN")], "is dict, not a ProtocolPlugin"),
        ([("echo", "tests.unit.test_plugins:TAKES_THE_API")], "public_path '/api/v1/' must be"),
        ([("echo", "tests.unit.test_plugins:PATH_WITHOUT_SLASH")], "public_path '/echo' must be"),
    ],
)
def test_a_plugin_that_cannot_be_used_stops_discovery_with_a_clear_sentence(
    entry_points: list[EntryPoint], points: list[tuple[str, str]], expected: str
) -> None:
    entry_points += [point(name, value) for name, value in points]
    with pytest.raises(PluginError) as refused:
        installed()
    assert expected in str(refused.value)
    assert "\n" not in str(refused.value)


# configuration sections ------------------------------------------------------------------------
@dataclass
class EchoConfig:
    enabled: bool = True
    greeting: str = "Echo"
    token: str = field(default="", repr=False)
    names: list[str] = field(default_factory=list)

    def validate(self, where: str) -> None:
        if not self.greeting:
            raise ConfigError(f"{where}: 'echo.greeting' must not be empty")


ECHO = ProtocolPlugin(name="echo", summary="test plugin", config=EchoConfig)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rondpoint.toml"
    path.write_text(text)
    return path


def test_a_plugins_section_is_read_like_the_hubs(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, '[echo]\ngreeting = "Hello"\nnames = ["a", "b"]\n'), plugins=[ECHO]
    )
    assert (config.echo.greeting, config.echo.names, config.echo.enabled) == (
        "Hello",
        ["a", "b"],
        True,
    )
    assert load_config(None, plugins=[ECHO]).echo.greeting == "Echo"


def test_the_defaults_hold_every_installed_plugins_section() -> None:
    config = Config()
    assert sorted(config.sections) == [p.name for p in installed() if p.config is not None]
    assert config.sip.enabled is True and config.visio.url == ""
    with pytest.raises(AttributeError, match="no configuration section 'nosuch'"):
        _ = config.nosuch


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[nosuch]\nx = 1\n",
            "unknown key 'nosuch' (allowed here: echo, http, limits, log, media, rooms, server, "
            "tokens, turn)",
        ),
        ("[echo]\ngreting = 1\n", "unknown key 'echo.greting' (allowed here: enabled, greeting"),
        ("[echo]\nenabled = 1\n", "'echo.enabled' must be true or false, not 1"),
        ("echo = 3\n", "'echo' must be a table ([echo])"),
        ('[echo]\ngreeting = ""\n', "'echo.greeting' must not be empty"),
        ("[echo]\ntoken = 1234567\n", "'echo.token' must be a string, not the value given"),
        ("[sip]\nport = 5060\n", "unknown key 'sip'"),
    ],
)
def test_a_plugins_section_is_refused_naming_file_and_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as refused:
        load_config(path, plugins=[ECHO])
    assert str(path) in str(refused.value)
    assert expected in str(refused.value)
    assert "1234567" not in str(refused.value)


def test_a_section_is_checked_even_when_its_plugin_is_turned_off(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'sip.language' is 'de'"):
        load_config(write(tmp_path, '[sip]\nenabled = false\nlanguage = "de"\n'))


# SIP's tables in a database an older release made ----------------------------------------------
OLD_HUB_MIGRATIONS = [
    """
    CREATE TABLE rooms (id TEXT PRIMARY KEY, pin TEXT NOT NULL DEFAULT '',
        lobby INTEGER NOT NULL DEFAULT 0, federation_peers TEXT NOT NULL DEFAULT '[]',
        created_at REAL NOT NULL);
    CREATE TABLE room_links (room_id TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
        target TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (room_id, target));
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE admin_tokens (token_hash TEXT PRIMARY KEY, label TEXT NOT NULL,
        created_at REAL NOT NULL);
    CREATE TABLE token_keys (key_id TEXT PRIMARY KEY, secret TEXT NOT NULL,
        created_at REAL NOT NULL);
    """,
    """
    CREATE TABLE dispatch_rules (number TEXT PRIMARY KEY, room_id TEXT NOT NULL DEFAULT '',
        language TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL);
    CREATE INDEX rooms_by_pin ON rooms(pin) WHERE pin != '';
    """,
    """
    CREATE TABLE trunks (name TEXT PRIMARY KEY, address TEXT NOT NULL DEFAULT '',
        transport TEXT NOT NULL DEFAULT 'udp', username TEXT NOT NULL DEFAULT '',
        password TEXT NOT NULL DEFAULT '', allowed TEXT NOT NULL DEFAULT '[]',
        register INTEGER NOT NULL DEFAULT 0, caller_id TEXT NOT NULL DEFAULT '',
        srtp TEXT NOT NULL DEFAULT 'off', created_at REAL NOT NULL);
    """,
    "ALTER TABLE dispatch_rules ADD COLUMN pin TEXT NOT NULL DEFAULT '';",
]
"""The hub's migrations 1 to 4 as released before the plugins had tables of their own."""


def old_database(path: Path, version: int) -> None:
    """A database as the release with hub schema ``version`` left it, with a rule and a trunk."""
    db = sqlite3.connect(path, isolation_level=None)
    for number, script in enumerate(OLD_HUB_MIGRATIONS[:version], start=1):
        db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
    db.execute("INSERT INTO rooms (id, pin, created_at) VALUES ('conseil', '123456', 0)")
    db.execute(
        "INSERT INTO dispatch_rules (number, room_id, created_at) VALUES ('0140', 'conseil', 0)"
    )
    if version >= 3:
        db.execute(
            "INSERT INTO trunks (name, address, password, allowed, register, created_at) "
            "VALUES ('operateur', 'sbc.example:5060', 'pw', '[\"192.0.2.0/24\"]', 1, 0)"
        )
    if version >= 4:
        db.execute("UPDATE dispatch_rules SET pin = '24680' WHERE number = '0140'")
    db.close()


def test_a_database_of_the_last_release_keeps_its_rules_and_trunks(tmp_path: Path) -> None:
    path = tmp_path / "rondpoint.sqlite3"
    old_database(path, version=4)
    store = open_store(path, installed())
    sip = SipStore(store)
    assert sip.dispatch_rules() == [DispatchRule("0140", "conseil", "", "24680")]
    assert sip.trunks() == [
        Trunk("operateur", "sbc.example:5060", "udp", "", "pw", ["192.0.2.0/24"], True, "", "off")
    ]
    assert store.plugin_schema_version("sip") == 1
    assert store.rooms_with_pin("123456") == ["conseil"]
    sip.save_dispatch_rule(DispatchRule("*", "", "en"))
    store.close()
    reopened = open_store(path, installed())
    assert [rule.number for rule in SipStore(reopened).dispatch_rules()] == ["*", "0140"]


def test_an_older_database_gets_the_rule_pin_column_and_the_trunks_table(tmp_path: Path) -> None:
    path = tmp_path / "rondpoint.sqlite3"
    old_database(path, version=2)
    sip = SipStore(open_store(path, installed()))
    assert sip.dispatch_rules() == [DispatchRule("0140", "conseil", "", "")]
    sip.save_trunk(Trunk("pbx", allowed=["10.0.0.0/8"]))
    assert [trunk.name for trunk in sip.trunks()] == ["pbx"]


def test_a_new_database_gets_the_sip_tables_from_the_plugin(tmp_path: Path) -> None:
    store = open_store(tmp_path / "rondpoint.sqlite3", installed())
    sip = SipStore(store)
    sip.save_dispatch_rule(DispatchRule("0140", "conseil", "fr", "1234"))
    assert sip.dispatch_rules() == [DispatchRule("0140", "conseil", "fr", "1234")]
    assert sip.delete_dispatch_rule("0140") and not sip.delete_dispatch_rule("0140")


# the dialler registry --------------------------------------------------------------------------
@dataclass
class FakeCall:
    call_ref: str
    room_id: str

    def status(self) -> dict[str, object]:
        return {"id": self.call_ref, "room": self.room_id}


class FakeDialler:
    def __init__(self, *schemes: str) -> None:
        self.schemes = schemes
        self.dialled: list[tuple[str, str, str | None]] = []
        self.transferred: list[tuple[str, str]] = []
        self.participants: set[str] = set()

    def dial(self, room_id: str, target: str, route: str | None) -> FakeCall:
        self.dialled.append((room_id, target, route))
        return FakeCall(f"{self.schemes[0]}-{len(self.dialled)}", room_id)

    def calls_of(self, room_id: str) -> list[dict[str, object]]:
        return [{"to": target} for room, target, _ in self.dialled if room == room_id]

    def owns(self, participant_id: str) -> bool:
        return participant_id in self.participants

    def transfer(self, participant_id: str, target: str) -> None:
        self.transferred.append((participant_id, target))


def test_a_target_goes_to_the_dialler_of_its_scheme_and_a_bare_number_is_tel() -> None:
    phones, echoes = FakeDialler("sip", "sips", "tel"), FakeDialler("echo")
    diallers = Diallers()
    diallers.register(phones)
    diallers.register(echoes)
    assert diallers.schemes() == ["echo", "sip", "sips", "tel"]
    diallers.dial("conseil", "SIP:alice@example.org", None)
    diallers.dial("conseil", "+33 6 12 34 56 78", "operateur")
    diallers.dial("cabinet", "echo:bob", None)
    assert phones.dialled == [
        ("conseil", "SIP:alice@example.org", None),
        ("conseil", "+33 6 12 34 56 78", "operateur"),
    ]
    assert echoes.dialled == [("cabinet", "echo:bob", None)]
    assert diallers.calls_of("conseil") == [
        {"to": "SIP:alice@example.org"},
        {"to": "+33 6 12 34 56 78"},
    ]


def test_a_scheme_no_dialler_takes_is_refused_without_echoing_the_target() -> None:
    diallers = Diallers()
    with pytest.raises(DialError, match="this gateway cannot dial out"):
        diallers.dial("conseil", "tel:+33612345678", None)
    diallers.register(FakeDialler("sip", "sips", "tel"))
    with pytest.raises(DialError) as refused:
        diallers.dial("conseil", "mailto:secret-alice@example.org", None)
    assert str(refused.value) == "the target is not a sip:, sips: or tel: URI, nor a number"
    with pytest.raises(ValueError, match="two diallers for the scheme 'tel'"):
        diallers.register(FakeDialler("tel"))


def test_a_transfer_goes_to_the_dialler_that_owns_the_participant() -> None:
    phones, echoes = FakeDialler("sip"), FakeDialler("echo")
    echoes.participants.add("PA_echo")
    diallers = Diallers()
    diallers.register(phones)
    diallers.register(echoes)
    diallers.transfer("PA_echo", "echo:carol")
    assert (phones.transferred, echoes.transferred) == ([], [("PA_echo", "echo:carol")])
    with pytest.raises(DialError, match="not on a phone call here"):
        diallers.transfer("PA_browser", "sip:bob@example.org")


# a gateway and its plugins ---------------------------------------------------------------------
def gateway_config(data_dir: Path, plugins: list[ProtocolPlugin]) -> Config:
    config = load_config(None, plugins=plugins)
    config.server.data_dir = str(data_dir)
    config.rooms.demo_room = ""
    config.media.port = free_port(socket.SOCK_DGRAM)
    return config


async def test_a_plugin_that_fails_to_start_stops_the_start_and_gives_back_what_started(
    tmp_path: Path,
) -> None:
    stopped: list[str] = []

    async def fail(gateway: Gateway) -> Running | None:
        raise OSError("address already in use")

    async def stop() -> None:
        stopped.append("echo")

    async def start_echo(gateway: Gateway) -> Running | None:
        return Running(stop=stop, banner=lambda: "echo: ready", diallers=[FakeDialler("echo")])

    plugins = [
        ProtocolPlugin(name="echo", summary="works", start=start_echo),
        ProtocolPlugin(name="broken", summary="fails", start=fail),
    ]
    gateway = Gateway(gateway_config(tmp_path / "data", plugins), plugins)
    with pytest.raises(PluginError, match="^broken: address already in use$"):
        await gateway.start()
    assert stopped == ["echo"]
    assert not gateway.ready


async def test_the_banner_has_a_line_per_plugin(tmp_path: Path) -> None:
    async def start_echo(gateway: Gateway) -> Running | None:
        return Running(stop=nothing, banner=lambda: "echo: ready", diallers=[FakeDialler("echo")])

    async def turned_off(gateway: Gateway) -> Running | None:
        return None

    plugins = [
        ProtocolPlugin(name="echo", summary="works", start=start_echo),
        ProtocolPlugin(name="quiet", summary="off", start=turned_off),
        ProtocolPlugin(name="passive", summary="nothing to start"),
    ]
    gateway = Gateway(gateway_config(tmp_path / "data", plugins), plugins)
    await gateway.start()
    try:
        lines = banner(gateway, gateway.relay.port).splitlines()
        assert "  echo       echo: ready" in lines
        assert "  quiet      off" in lines
        assert "  passive    off" in lines
        assert gateway.diallers.schemes() == ["echo"]
    finally:
        await gateway.stop()


async def nothing() -> None:
    return None


async def test_a_plugins_admin_routes_are_mounted_behind_the_admin_token(tmp_path: Path) -> None:
    async def calls(request: web.Request) -> web.Response:
        gateway = authorize(request)
        return web.json_response({"calls": gateway.diallers.calls_of("conseil")})

    def admin(gateway: Gateway) -> web.Application:
        app = web.Application()
        app.router.add_get("/calls", calls)
        return app

    plugins = [ProtocolPlugin(name="echo", summary="admin routes only", admin=admin)]
    gateway = Gateway(gateway_config(tmp_path / "data", plugins), plugins)
    await gateway.start()
    client = TestClient(TestServer(create_app(gateway), host="127.0.0.1"))
    await client.start_server()
    try:
        token = {"Authorization": f"Bearer {gateway.new_admin_token}"}
        refused = await client.get("/api/v1/echo/calls")
        assert (refused.status, (await refused.json())["code"]) == (401, "unauthorized")
        listed = await client.get("/api/v1/echo/calls", headers=token)
        assert (listed.status, await listed.json()) == (200, {"calls": []})
        gateway.rooms.create("conseil")
        dialled = await client.post(
            "/api/v1/rooms/conseil/dial", json={"to": "echo:bob"}, headers=token
        )
        assert (dialled.status, (await dialled.json())["code"]) == (409, "invalid_state")
        discovery = await (await client.get("/.well-known/ors")).json()
        assert "dial-out" not in discovery["capabilities"]
    finally:
        await client.close()
        await gateway.stop()


async def test_a_plugins_public_routes_and_capabilities_are_served(tmp_path: Path) -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"hello": request.match_info["who"]})

    def public(gateway: Gateway) -> web.Application:
        app = web.Application()
        app.router.add_get("/hello/{who}", hello)
        return app

    async def start(gateway: Gateway) -> Running | None:
        return Running(stop=nothing, capabilities=["echo", "chat"])

    plugins = [
        ProtocolPlugin(name="echo", summary="public", public=public, start=start),
        ProtocolPlugin(name="far", summary="elsewhere", public=public, public_path="/ors/v1/far/"),
    ]
    gateway = Gateway(gateway_config(tmp_path / "data", plugins), plugins)
    await gateway.start()
    client = TestClient(TestServer(create_app(gateway), host="127.0.0.1"))
    await client.start_server()
    try:
        for path in ("/echo/hello/bob", "/ors/v1/far/hello/bob"):
            answered = await client.get(path)
            assert (answered.status, await answered.json()) == (200, {"hello": "bob"})
        discovery = await (await client.get("/.well-known/ors")).json()
        assert discovery["capabilities"].count("chat") == 1
        assert discovery["capabilities"][-1] == "echo"
    finally:
        await client.close()
        await gateway.stop()
