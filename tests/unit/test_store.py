"""SQLite store: migrations (the hub's and each plugin's), rooms with links, settings, hashed admin
tokens, token keys."""

import sqlite3
from pathlib import Path

import pytest

from gateway.plugins import ProtocolPlugin
from gateway.store import RoomRecord, Store, StoreError, open_store
from gateway.store.migrations import MIGRATIONS


def test_migrations_bring_a_new_file_to_the_latest_version(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    assert store.schema_version == len(MIGRATIONS)
    store.close()
    assert Store(tmp_path / "db.sqlite3").schema_version == len(MIGRATIONS)


def test_rooms_round_trip_with_links(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    store.save_room(
        RoomRecord(id="cabinet", pin="1234", lobby=True, federation_peers=["de.example"])
    )
    store.add_link("cabinet", "visio:1b4e28ba-2fa1-11d2-883f-0016d3cca427")
    store.close()
    room = Store(tmp_path / "db.sqlite3").get_room("cabinet")
    assert room is not None
    assert (room.pin, room.lobby, room.federation_peers) == ("1234", True, ["de.example"])
    assert room.links == ["visio:1b4e28ba-2fa1-11d2-883f-0016d3cca427"]


def test_deleting_a_room_deletes_its_links() -> None:
    store = Store(":memory:")
    store.save_room(RoomRecord(id="cabinet"))
    store.add_link("cabinet", "matrix:!abc:example.org")
    assert store.delete_room("cabinet")
    store.save_room(RoomRecord(id="cabinet"))
    assert store.get_room("cabinet").links == []  # type: ignore[union-attr]


def test_admin_tokens_are_stored_hashed(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    store.add_admin_token("rpa_secret-value", "initial")
    assert store.check_admin_token("rpa_secret-value")
    assert not store.check_admin_token("rpa_other")
    assert b"rpa_secret-value" not in (tmp_path / "db.sqlite3").read_bytes()


def test_settings_overwrite() -> None:
    store = Store(":memory:")
    store.set_setting("k", "1")
    store.set_setting("k", "2")
    assert store.get_setting("k") == "2"
    assert store.get_setting("absent") is None


def test_a_plugins_migrations_are_versioned_apart_and_applied_once(tmp_path: Path) -> None:
    steps: list[str] = ["CREATE TABLE echo_calls (target TEXT NOT NULL)"]
    store = Store(tmp_path / "db.sqlite3")
    store.migrate_plugin("echo", steps)
    store.connection.execute("INSERT INTO echo_calls VALUES ('echo:bob')")
    store.migrate_plugin("echo", steps)  # nothing left to apply: the table and its row stay
    steps.append(lambda db: db.execute("ALTER TABLE echo_calls ADD COLUMN room TEXT"))
    store.migrate_plugin("echo", steps)
    assert store.plugin_schema_version("echo") == 2
    assert store.plugin_schema_version("other") == 0
    assert store.schema_version == len(MIGRATIONS)
    assert store.connection.execute("SELECT target, room FROM echo_calls").fetchall() == [
        ("echo:bob", None)
    ]


def test_a_failing_plugin_migration_names_the_plugin_and_changes_nothing() -> None:
    store = Store(":memory:")

    def half_done(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE echo_calls (target TEXT)")
        db.execute("INSERT INTO no_such_table VALUES (1)")

    with pytest.raises(StoreError, match="the echo plugin's store migration 1 failed"):
        store.migrate_plugin("echo", [half_done])
    assert store.plugin_schema_version("echo") == 0
    tables = store.connection.execute("SELECT name FROM sqlite_master WHERE name = 'echo_calls'")
    assert tables.fetchall() == []
    with pytest.raises(StoreError, match="migration 1 failed"):
        store.migrate_plugin("echo", ["CREATE TABLE broken (;"])
    assert store.plugin_schema_version("echo") == 0


def test_open_store_runs_every_plugins_migrations(tmp_path: Path) -> None:
    plugins = [
        ProtocolPlugin(name="echo", summary="test", migrations=["CREATE TABLE echo_calls (x)"]),
        ProtocolPlugin(name="quiet", summary="test"),
    ]
    store = open_store(tmp_path / "db.sqlite3", plugins)
    assert store.plugin_schema_version("echo") == 1
    assert store.connection.execute("SELECT count(*) FROM echo_calls").fetchone() == (0,)
