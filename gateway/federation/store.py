"""The federation plugin's tables in the gateway's store: the peers operators allowed (with their
pinned keys) and the links to partners' rooms."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from gateway.plugins import Migration
from gateway.store import Store

MIGRATIONS: list[Migration] = [
    # 1: peers (the allow-list, with their pinned Ed25519 keys) and links.
    """
    CREATE TABLE federation_peers (
        name        TEXT PRIMARY KEY,
        url         TEXT NOT NULL DEFAULT '',
        rooms       TEXT NOT NULL DEFAULT '[]',
        keys        TEXT NOT NULL DEFAULT '{}',
        strict      INTEGER NOT NULL DEFAULT 0,
        added_at    INTEGER NOT NULL
    );
    CREATE TABLE federation_links (
        link_id     TEXT PRIMARY KEY,
        room_id     TEXT NOT NULL,
        peer        TEXT NOT NULL,
        peer_room   TEXT NOT NULL,
        initiator   INTEGER NOT NULL,
        created_at  INTEGER NOT NULL,
        UNIQUE (room_id, peer, peer_room)
    );
    """,
]


@dataclass
class Peer:
    """A partner server this gateway accepts signed requests from and links to."""

    name: str
    """Its discovery ``server`` name, a DNS name."""
    url: str = ""
    """Where its discovery document is (``https://host[:port]``); empty: ``https://{name}``."""
    rooms: list[str] = field(default_factory=list)
    """The rooms it may link; empty: every room."""
    keys: dict[str, str] = field(default_factory=dict)
    """Its pinned Ed25519 public keys: kid -> x (base64url of the raw key)."""
    strict: bool = False
    """Keys given by the operator (``--key``): never refreshed from its JWKS."""
    added_at: int = 0
    """Seconds since the epoch."""

    def allows(self, room_id: str) -> bool:
        """Whether the operator allowed this peer for ``room_id`` (the room's own
        ``policy.federation_peers`` may allow it too: the endpoint checks that)."""
        return not self.rooms or room_id in self.rooms


@dataclass
class LinkRecord:
    """A link between a room here and a partner's room, kept across restarts."""

    link_id: str
    room_id: str
    peer: str
    peer_room: str
    initiator: bool
    """Whether this side sent ``POST /links``."""
    created_at: int = 0
    """Seconds since the epoch."""


_PEER_COLUMNS = "name, url, rooms, keys, strict, added_at"
_LINK_COLUMNS = "link_id, room_id, peer, peer_room, initiator, created_at"


def _peer(row: tuple) -> Peer:
    return Peer(
        name=row[0],
        url=row[1],
        rooms=list(json.loads(row[2])),
        keys=dict(json.loads(row[3])),
        strict=bool(row[4]),
        added_at=int(row[5]),
    )


def _link(row: tuple) -> LinkRecord:
    return LinkRecord(
        link_id=row[0],
        room_id=row[1],
        peer=row[2],
        peer_room=row[3],
        initiator=bool(row[4]),
        created_at=int(row[5]),
    )


class FederationStore:
    """Peers and links, read and written through the gateway's store (small synchronous queries)."""

    def __init__(self, store: Store) -> None:
        self._db = store.connection

    # peers ---------------------------------------------------------------
    def peers(self) -> list[Peer]:
        rows = self._db.execute(f"SELECT {_PEER_COLUMNS} FROM federation_peers ORDER BY name")
        return [_peer(row) for row in rows.fetchall()]

    def peer(self, name: str) -> Peer | None:
        row = self._db.execute(
            f"SELECT {_PEER_COLUMNS} FROM federation_peers WHERE name = ?", (name,)
        ).fetchone()
        return _peer(row) if row else None

    def put_peer(self, peer: Peer) -> None:
        """Add or replace the peer (``added_at`` 0: now)."""
        if not peer.added_at:
            peer.added_at = int(time.time())
        self._db.execute(
            f"INSERT OR REPLACE INTO federation_peers ({_PEER_COLUMNS}) VALUES (?,?,?,?,?,?)",
            (
                peer.name,
                peer.url,
                json.dumps(peer.rooms),
                json.dumps(peer.keys),
                int(peer.strict),
                peer.added_at,
            ),
        )

    def remove_peer(self, name: str) -> bool:
        cursor = self._db.execute("DELETE FROM federation_peers WHERE name = ?", (name,))
        return cursor.rowcount > 0

    # links ---------------------------------------------------------------
    def links(self) -> list[LinkRecord]:
        rows = self._db.execute(
            f"SELECT {_LINK_COLUMNS} FROM federation_links ORDER BY room_id, peer, peer_room"
        )
        return [_link(row) for row in rows.fetchall()]

    def link(self, link_id: str) -> LinkRecord | None:
        row = self._db.execute(
            f"SELECT {_LINK_COLUMNS} FROM federation_links WHERE link_id = ?", (link_id,)
        ).fetchone()
        return _link(row) if row else None

    def find_link(self, room_id: str, peer: str, peer_room: str) -> LinkRecord | None:
        row = self._db.execute(
            f"SELECT {_LINK_COLUMNS} FROM federation_links "
            "WHERE room_id = ? AND peer = ? AND peer_room = ?",
            (room_id, peer, peer_room),
        ).fetchone()
        return _link(row) if row else None

    def put_link(self, record: LinkRecord) -> None:
        """Add or replace the link; a record for the same (room, peer, peer_room) with another
        link_id replaces the old one (the partner restarted and asked again). ``created_at`` 0:
        now."""
        if not record.created_at:
            record.created_at = int(time.time())
        self._db.execute(
            f"INSERT OR REPLACE INTO federation_links ({_LINK_COLUMNS}) VALUES (?,?,?,?,?,?)",
            (
                record.link_id,
                record.room_id,
                record.peer,
                record.peer_room,
                int(record.initiator),
                record.created_at,
            ),
        )

    def remove_link(self, link_id: str) -> None:
        self._db.execute("DELETE FROM federation_links WHERE link_id = ?", (link_id,))
