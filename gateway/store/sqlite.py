"""SQLite store with migrations; small synchronous queries, safe to call from the event loop."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gateway.plugins import Migration, ProtocolPlugin
from gateway.store.migrations import MIGRATIONS


@dataclass
class RoomRecord:
    id: str
    pin: str = ""
    lobby: bool = False
    federation_peers: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)
    hosts: list[str] = field(default_factory=list)
    """The identities (token `sub`) that are the room's hosts, oldest first."""


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class StoreError(Exception):
    """The database cannot be opened or used; the message names the file and the problem, on one
    line, for the operator (a file of another kind, a corrupt file, a directory it cannot write)."""


class Store:
    def __init__(self, path: Path | str) -> None:
        try:
            if str(path) != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                # it holds trunk passwords and token keys: readable by the gateway's user only
                Path(path).touch(mode=0o600, exist_ok=True)
            self._db = sqlite3.connect(str(path), isolation_level=None)
        except OSError as error:
            where = error.filename or path
            raise StoreError(f"{where}: {error.strerror or error}") from None
        except sqlite3.Error as error:
            raise StoreError(f"{path}: cannot open the database ({error})") from None
        try:
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._migrate()
        except sqlite3.Error as error:
            self._db.close()
            raise StoreError(f"{path}: not a usable Rondpoint database ({error})") from None

    def close(self) -> None:
        self._db.close()

    @property
    def connection(self) -> sqlite3.Connection:
        """The database, for a plugin's own tables (autocommit; ``BEGIN`` for a transaction)."""
        return self._db

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        version = self.schema_version
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            self._db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")

    def plugin_schema_version(self, plugin: str) -> int:
        """How many of ``plugin``'s migrations this database has (0 for none)."""
        row = self._db.execute(
            "SELECT version FROM plugin_schema WHERE plugin = ?", (plugin,)
        ).fetchone()
        return int(row[0]) if row else 0

    def migrate_plugin(self, plugin: str, migrations: Sequence[Migration]) -> None:
        """Apply the plugin's migrations this database lacks, each with its version in one
        transaction (a function step must use ``execute``: ``executescript`` commits); StoreError
        naming the plugin and the step when one fails."""
        version = self.plugin_schema_version(plugin)
        for number, step in enumerate(migrations[version:], start=version + 1):
            name = plugin.replace("'", "''")
            record = (
                f"INSERT INTO plugin_schema (plugin, version) VALUES ('{name}', {number}) "
                "ON CONFLICT(plugin) DO UPDATE SET version = excluded.version"
            )
            try:
                if isinstance(step, str):
                    self._db.executescript(f"BEGIN; {step}; {record}; COMMIT;")
                else:
                    self._db.execute("BEGIN")
                    step(self._db)
                    self._db.execute(record)
                    self._db.execute("COMMIT")
            except Exception as error:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StoreError(
                    f"the {plugin} plugin's store migration {number} failed "
                    f"({type(error).__name__}: {error})"
                ) from None

    # rooms ---------------------------------------------------------------
    def save_room(self, room: RoomRecord) -> None:
        self._db.execute(
            "INSERT INTO rooms (id, pin, lobby, federation_peers, created_at) VALUES (?,?,?,?,?) "
            "ON CONFLICT(id) DO UPDATE SET pin=excluded.pin, lobby=excluded.lobby, "
            "federation_peers=excluded.federation_peers",
            (
                room.id,
                room.pin,
                int(room.lobby),
                json.dumps(room.federation_peers),
                room.created_at,
            ),
        )

    def get_room(self, room_id: str) -> RoomRecord | None:
        row = self._db.execute(
            "SELECT id, pin, lobby, federation_peers, created_at FROM rooms WHERE id = ?",
            (room_id,),
        ).fetchone()
        return self._room_from_row(row) if row else None

    def list_rooms(self) -> list[RoomRecord]:
        rows = self._db.execute(
            "SELECT id, pin, lobby, federation_peers, created_at FROM rooms ORDER BY id"
        ).fetchall()
        return [self._room_from_row(row) for row in rows]

    def delete_room(self, room_id: str) -> bool:
        return self._db.execute("DELETE FROM rooms WHERE id = ?", (room_id,)).rowcount > 0

    def _room_from_row(self, row: tuple) -> RoomRecord:
        links = [
            r[0]
            for r in self._db.execute(
                "SELECT target FROM room_links WHERE room_id = ? ORDER BY created_at", (row[0],)
            )
        ]
        hosts = [
            r[0]
            for r in self._db.execute(
                "SELECT identity FROM room_hosts WHERE room_id = ? ORDER BY added_at", (row[0],)
            )
        ]
        return RoomRecord(
            id=row[0],
            pin=row[1],
            lobby=bool(row[2]),
            federation_peers=json.loads(row[3]),
            links=links,
            created_at=row[4],
            hosts=hosts,
        )

    def add_link(self, room_id: str, target: str) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO room_links (room_id, target, created_at) VALUES (?,?,?)",
            (room_id, target, time.time()),
        )

    def remove_link(self, room_id: str, target: str) -> bool:
        cursor = self._db.execute(
            "DELETE FROM room_links WHERE room_id = ? AND target = ?", (room_id, target)
        )
        return cursor.rowcount > 0

    def add_room_host(self, room_id: str, identity: str) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO room_hosts (room_id, identity, added_at) VALUES (?,?,?)",
            (room_id, identity, time.time()),
        )

    def remove_room_host(self, room_id: str, identity: str) -> bool:
        cursor = self._db.execute(
            "DELETE FROM room_hosts WHERE room_id = ? AND identity = ?", (room_id, identity)
        )
        return cursor.rowcount > 0

    def rooms_with_pin(self, pin: str) -> list[str]:
        rows = self._db.execute("SELECT id FROM rooms WHERE pin = ? AND pin != ''", (pin,))
        return [row[0] for row in rows]

    # settings ------------------------------------------------------------
    def get_setting(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_setting(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # admin tokens (stored hashed) ----------------------------------------
    def add_admin_token(self, token: str, label: str) -> None:
        self._db.execute(
            "INSERT INTO admin_tokens (token_hash, label, created_at) VALUES (?,?,?)",
            (_hash_token(token), label, time.time()),
        )

    def replace_admin_tokens(self, token: str, label: str) -> None:
        """``token`` becomes the only admin token: every other one stops working at once (the
        admin API reads this table on each request, so a running gateway needs no restart)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("DELETE FROM admin_tokens")
            self.add_admin_token(token, label)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def has_admin_tokens(self) -> bool:
        return self._db.execute("SELECT 1 FROM admin_tokens LIMIT 1").fetchone() is not None

    def check_admin_token(self, token: str) -> bool:
        wanted = _hash_token(token)
        rows = self._db.execute("SELECT token_hash FROM admin_tokens").fetchall()
        return any(hmac.compare_digest(wanted, row[0]) for row in rows)

    # token signing keys ----------------------------------------------------
    def token_keys(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT key_id, secret FROM token_keys").fetchall())

    def add_token_key(self, key_id: str, secret: str | None = None) -> str:
        secret = secret or secrets.token_urlsafe(32)
        self._db.execute(
            "INSERT INTO token_keys (key_id, secret, created_at) VALUES (?,?,?) "
            "ON CONFLICT(key_id) DO UPDATE SET secret = excluded.secret",
            (key_id, secret, time.time()),
        )
        return secret


def open_store(path: Path | str, plugins: Sequence[ProtocolPlugin]) -> Store:
    """The store with the hub's tables and every plugin's, a plugin turned off included (its data
    stays readable by its admin routes and commands); StoreError as ``Store``."""
    store = Store(path)
    try:
        for plugin in plugins:
            store.migrate_plugin(plugin.name, plugin.migrations)
    except StoreError:
        store.close()
        raise
    return store
