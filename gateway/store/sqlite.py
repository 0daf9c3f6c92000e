"""SQLite store with migrations; small synchronous queries, safe to call from the event loop."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from gateway.store.migrations import MIGRATIONS


@dataclass
class DispatchRule:
    """A dialled number or SIP user -> a room ("" for the PIN prompt), with the prompts' language.

    ``room_id`` may also be a link target, ``visio:UUID`` (the local room ``visio-UUID``, made on
    demand). ``pin``: the caller must type it first, and typed at any PIN prompt it reaches this
    rule's room."""

    number: str
    room_id: str = ""
    language: str = ""
    pin: str = ""


@dataclass
class Trunk:
    """A SIP trunk: an operator's SBC or a PBX that calls come from and go out through."""

    name: str
    address: str = ""
    """host[:port] where calls and REGISTERs go; empty for an inbound-only trunk."""
    transport: str = "udp"
    username: str = ""
    password: str = ""
    """Digest credentials: what the trunk must send us, and what we answer its challenges with."""
    allowed: list[str] = field(default_factory=list)
    """Addresses or networks (CIDR) whose calls are this trunk's without authentication."""
    register: bool = False
    caller_id: str = ""
    srtp: str = "off"

    def public(self) -> dict[str, object]:
        """The trunk as the admin API shows it: never the password."""
        return {
            "name": self.name,
            "address": self.address,
            "transport": self.transport,
            "username": self.username,
            "password_set": bool(self.password),
            "allowed": list(self.allowed),
            "register": self.register,
            "caller_id": self.caller_id,
            "srtp": self.srtp,
        }


@dataclass
class RoomRecord:
    id: str
    pin: str = ""
    lobby: bool = False
    federation_peers: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)


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
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        version = self.schema_version
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            self._db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")

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
        return RoomRecord(
            id=row[0],
            pin=row[1],
            lobby=bool(row[2]),
            federation_peers=json.loads(row[3]),
            links=links,
            created_at=row[4],
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

    def rooms_with_pin(self, pin: str) -> list[str]:
        rows = self._db.execute("SELECT id FROM rooms WHERE pin = ? AND pin != ''", (pin,))
        return [row[0] for row in rows]

    # SIP dispatch rules ------------------------------------------------------
    def save_dispatch_rule(self, rule: DispatchRule) -> None:
        self._db.execute(
            "INSERT INTO dispatch_rules (number, room_id, language, pin, created_at) "
            "VALUES (?,?,?,?,?) ON CONFLICT(number) DO UPDATE SET room_id=excluded.room_id, "
            "language=excluded.language, pin=excluded.pin",
            (rule.number, rule.room_id, rule.language, rule.pin, time.time()),
        )

    def dispatch_rules(self) -> list[DispatchRule]:
        rows = self._db.execute(
            "SELECT number, room_id, language, pin FROM dispatch_rules ORDER BY number"
        )
        return [DispatchRule(*row) for row in rows]

    def delete_dispatch_rule(self, number: str) -> bool:
        cursor = self._db.execute("DELETE FROM dispatch_rules WHERE number = ?", (number,))
        return cursor.rowcount > 0

    # SIP trunks --------------------------------------------------------------
    def save_trunk(self, trunk: Trunk) -> None:
        self._db.execute(
            "INSERT INTO trunks (name, address, transport, username, password, allowed, register, "
            "caller_id, srtp, created_at) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(name) DO UPDATE "
            "SET address=excluded.address, transport=excluded.transport, username=excluded.username, "
            "password=excluded.password, allowed=excluded.allowed, register=excluded.register, "
            "caller_id=excluded.caller_id, srtp=excluded.srtp",
            (
                trunk.name,
                trunk.address,
                trunk.transport,
                trunk.username,
                trunk.password,
                json.dumps(trunk.allowed),
                int(trunk.register),
                trunk.caller_id,
                trunk.srtp,
                time.time(),
            ),
        )

    def trunks(self) -> list[Trunk]:
        rows = self._db.execute(
            "SELECT name, address, transport, username, password, allowed, register, caller_id, "
            "srtp FROM trunks ORDER BY name"
        )
        return [
            Trunk(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), bool(r[6]), r[7], r[8])
            for r in rows
        ]

    def delete_trunk(self, name: str) -> bool:
        return self._db.execute("DELETE FROM trunks WHERE name = ?", (name,)).rowcount > 0

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
