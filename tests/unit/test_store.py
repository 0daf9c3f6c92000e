"""SQLite store: migrations, rooms with links, settings, hashed admin tokens, token keys."""

from pathlib import Path

from gateway.store import RoomRecord, Store
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
