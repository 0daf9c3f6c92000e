"""The SIP plugin's tables: dispatch rules and trunks, kept in the gateway's store (gateway/store).

Their schema is the plugin's own (``MIGRATIONS``, versioned apart from the hub's). Releases before
the plugin seam made these tables as hub migrations 2 to 4; the first migration adopts them as
they are, with their rows, and makes them in a new database.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field

from gateway.plugins import Migration
from gateway.store import Store

PLUGIN = "sip"


@dataclass
class DispatchRule:
    """A dialled number or SIP user -> a room ("" for the PIN prompt), with the prompts' language.

    ``room_id`` may also be a link target, ``visio:UUID`` or ``matrix:!id:server`` (its local room,
    ``visio-UUID`` or ``matrix-`` and a digest, made on demand: gateway.links.link_room_id).
    ``pin``: the caller must type it first, and typed at any PIN prompt it reaches this rule's
    room."""

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


def _tables_and_adoption(db: sqlite3.Connection) -> None:
    """Make dispatch_rules and trunks, or adopt them as an older release left them (a database at
    hub schema 2 or 3 has dispatch_rules without its pin column)."""
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS dispatch_rules (
            number      TEXT PRIMARY KEY,
            room_id     TEXT NOT NULL DEFAULT '',
            language    TEXT NOT NULL DEFAULT '',
            created_at  REAL NOT NULL,
            pin         TEXT NOT NULL DEFAULT ''
        )
        """
    )
    columns = {row[1] for row in db.execute("PRAGMA table_info(dispatch_rules)")}
    if "pin" not in columns:
        db.execute("ALTER TABLE dispatch_rules ADD COLUMN pin TEXT NOT NULL DEFAULT ''")
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS trunks (
            name        TEXT PRIMARY KEY,
            address     TEXT NOT NULL DEFAULT '',
            transport   TEXT NOT NULL DEFAULT 'udp',
            username    TEXT NOT NULL DEFAULT '',
            password    TEXT NOT NULL DEFAULT '',
            allowed     TEXT NOT NULL DEFAULT '[]',
            register    INTEGER NOT NULL DEFAULT 0,
            caller_id   TEXT NOT NULL DEFAULT '',
            srtp        TEXT NOT NULL DEFAULT 'off',
            created_at  REAL NOT NULL
        )
        """
    )


MIGRATIONS: list[Migration] = [
    # 1: dispatch rules (a dialled number or user -> a room, or the PIN prompt, with an optional
    # PIN) and trunks (where calls go out, who may call in, credentials both ways).
    _tables_and_adoption,
]
"""Never edit a released step; add one."""


class SipStore:
    """Dispatch rules and trunks in the gateway's store; small synchronous queries."""

    def __init__(self, store: Store) -> None:
        store.migrate_plugin(PLUGIN, MIGRATIONS)  # done at open already; a no-op then
        self._db = store.connection

    # dispatch rules ----------------------------------------------------------------------------
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

    # trunks --------------------------------------------------------------------------------------
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
