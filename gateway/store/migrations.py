"""Schema migrations of the hub's SQLite tables, applied in order at open; never edit a released one.

A plugin's tables are its own (``ProtocolPlugin.migrations``), versioned apart in ``plugin_schema``
and applied by ``Store.migrate_plugin``.
"""

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
    # 2: rooms found by their PIN. Released with the SIP dispatch_rules table, which is the SIP
    # plugin's now (protocols/sip/store.py): a database made then keeps it, and the plugin's first
    # migration adopts it; a new database gets it from the plugin.
    """
    CREATE INDEX rooms_by_pin ON rooms(pin) WHERE pin != '';
    """,
    # 3: released as the SIP trunks table, the SIP plugin's now (see 2): nothing for the hub.
    "",
    # 4: released as dispatch_rules' pin column, the SIP plugin's now (see 2): nothing for the hub.
    "",
    # 5: each plugin's schema version (Store.migrate_plugin).
    """
    CREATE TABLE plugin_schema (
        plugin      TEXT PRIMARY KEY,
        version     INTEGER NOT NULL
    );
    """,
    # 6: the identities (token `sub`) that are a room's hosts (ORS 2.4), kept across restarts.
    """
    CREATE TABLE room_hosts (
        room_id     TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
        identity    TEXT NOT NULL,
        added_at    REAL NOT NULL,
        PRIMARY KEY (room_id, identity)
    );
    """,
]
