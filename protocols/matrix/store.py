"""The Matrix plugin's tables in the gateway's store: homeserver transactions already applied,
ghosts, the MatrixRTC memberships we hold (so a restarted gateway ends its leftovers), and the
ghosts' Olm accounts."""

from __future__ import annotations

import time
from dataclasses import dataclass

from gateway.plugins import Migration
from gateway.store import Store

KEPT_TRANSACTIONS = 1000
"""How many transaction ids are remembered (the homeserver retries only its latest)."""

MIGRATIONS: list[Migration] = [
    # 1: transactions, ghosts, memberships, devices.
    """
    CREATE TABLE matrix_transactions (
        txn_id       TEXT PRIMARY KEY,
        received_at  REAL NOT NULL
    );
    CREATE TABLE matrix_ghosts (
        user_id      TEXT PRIMARY KEY,
        display_name TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE matrix_memberships (
        matrix_room_id TEXT NOT NULL,
        user_id        TEXT NOT NULL,
        device_id      TEXT NOT NULL,
        delay_id       TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (matrix_room_id, user_id, device_id)
    );
    CREATE TABLE matrix_devices (
        user_id      TEXT NOT NULL,
        device_id    TEXT NOT NULL,
        pickle       TEXT NOT NULL,
        PRIMARY KEY (user_id, device_id)
    );
    """,
]


@dataclass(frozen=True)
class Membership:
    """A MatrixRTC call membership a ghost holds, with its delayed leave (MSC4140 delay id)."""

    matrix_room_id: str
    user_id: str
    device_id: str
    delay_id: str = ""


class MatrixStore:
    """The plugin's rows, through the gateway's store (small synchronous queries)."""

    def __init__(self, store: Store) -> None:
        self._db = store.connection

    # transactions ---------------------------------------------------------
    def seen_transaction(self, txn_id: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM matrix_transactions WHERE txn_id = ?", (txn_id,)
        ).fetchone()
        return row is not None

    def add_transaction(self, txn_id: str, now: float | None = None) -> None:
        """Remember ``txn_id`` (keeping the latest KEPT_TRANSACTIONS)."""
        self._db.execute("BEGIN")
        try:
            self._db.execute(
                "INSERT OR IGNORE INTO matrix_transactions (txn_id, received_at) VALUES (?, ?)",
                (txn_id, time.time() if now is None else now),
            )
            self._db.execute(
                # rowids grow with each insert (the oldest are the ones deleted)
                "DELETE FROM matrix_transactions "
                "WHERE rowid <= (SELECT MAX(rowid) FROM matrix_transactions) - ?",
                (KEPT_TRANSACTIONS,),
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    # ghosts ---------------------------------------------------------------
    def ghost_name(self, user_id: str) -> str | None:
        """The display name last set for the ghost; None for a ghost not registered yet."""
        row = self._db.execute(
            "SELECT display_name FROM matrix_ghosts WHERE user_id = ?", (user_id,)
        ).fetchone()
        return str(row[0]) if row else None

    def put_ghost(self, user_id: str, display_name: str) -> None:
        self._db.execute(
            "INSERT INTO matrix_ghosts (user_id, display_name) VALUES (?, ?) "
            "ON CONFLICT(user_id) DO UPDATE SET display_name = excluded.display_name",
            (user_id, display_name),
        )

    # memberships ----------------------------------------------------------
    def memberships(self, matrix_room_id: str | None = None) -> list[Membership]:
        query = "SELECT matrix_room_id, user_id, device_id, delay_id FROM matrix_memberships"
        args: tuple[str, ...] = ()
        if matrix_room_id is not None:
            query += " WHERE matrix_room_id = ?"
            args = (matrix_room_id,)
        rows = self._db.execute(query + " ORDER BY matrix_room_id, user_id, device_id", args)
        return [Membership(*row) for row in rows.fetchall()]

    def put_membership(self, membership: Membership) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO matrix_memberships "
            "(matrix_room_id, user_id, device_id, delay_id) VALUES (?, ?, ?, ?)",
            (
                membership.matrix_room_id,
                membership.user_id,
                membership.device_id,
                membership.delay_id,
            ),
        )

    def remove_membership(self, matrix_room_id: str, user_id: str, device_id: str) -> None:
        self._db.execute(
            "DELETE FROM matrix_memberships "
            "WHERE matrix_room_id = ? AND user_id = ? AND device_id = ?",
            (matrix_room_id, user_id, device_id),
        )

    # devices (Olm accounts) -----------------------------------------------
    def device_pickle(self, user_id: str, device_id: str) -> str | None:
        row = self._db.execute(
            "SELECT pickle FROM matrix_devices WHERE user_id = ? AND device_id = ?",
            (user_id, device_id),
        ).fetchone()
        return str(row[0]) if row else None

    def put_device_pickle(self, user_id: str, device_id: str, pickle: str) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO matrix_devices (user_id, device_id, pickle) VALUES (?, ?, ?)",
            (user_id, device_id, pickle),
        )
