"""Schema migrations for the SQLite store, applied in order at open; never edit a released one."""

MIGRATIONS: list[str] = [
    # 1: rooms, their links, settings, admin tokens, token signing keys.
    """
    CREATE TABLE rooms (
        id          TEXT PRIMARY KEY,
        pin         TEXT NOT NULL DEFAULT '',
        lobby       INTEGER NOT NULL DEFAULT 0,
        federation_peers TEXT NOT NULL DEFAULT '[]',
        created_at  REAL NOT NULL
    );
    CREATE TABLE room_links (
        room_id     TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
        target      TEXT NOT NULL,
        created_at  REAL NOT NULL,
        PRIMARY KEY (room_id, target)
    );
    CREATE TABLE settings (
        key         TEXT PRIMARY KEY,
        value       TEXT NOT NULL
    );
    CREATE TABLE admin_tokens (
        token_hash  TEXT PRIMARY KEY,
        label       TEXT NOT NULL,
        created_at  REAL NOT NULL
    );
    CREATE TABLE token_keys (
        key_id      TEXT PRIMARY KEY,
        secret      TEXT NOT NULL,
        created_at  REAL NOT NULL
    );
    """,
    # 2: SIP dispatch rules (a dialled number or user -> a room, or the PIN prompt).
    """
    CREATE TABLE dispatch_rules (
        number      TEXT PRIMARY KEY,
        room_id     TEXT NOT NULL DEFAULT '',
        language    TEXT NOT NULL DEFAULT '',
        created_at  REAL NOT NULL
    );
    CREATE INDEX rooms_by_pin ON rooms(pin) WHERE pin != '';
    """,
    # 3: SIP trunks: where calls go out, who may call in, credentials both ways.
    """
    CREATE TABLE trunks (
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
    );
    """,
    # 4: a dispatch rule may carry a PIN (its room is reached by typing it at a PIN prompt).
    """
    ALTER TABLE dispatch_rules ADD COLUMN pin TEXT NOT NULL DEFAULT '';
    """,
]
