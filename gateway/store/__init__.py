"""Persistent state: rooms, PINs, settings, admin tokens and keys in SQLite; plugins' own tables
through ``Store.migrate_plugin`` and ``Store.connection``."""

from gateway.store.admin_token import (
    ADMIN_TOKEN_FILE,
    DATABASE_FILE,
    admin_token_path,
    new_admin_token,
)
from gateway.store.sqlite import RoomRecord, Store, StoreError, open_store

__all__ = [
    "ADMIN_TOKEN_FILE",
    "DATABASE_FILE",
    "RoomRecord",
    "Store",
    "StoreError",
    "admin_token_path",
    "new_admin_token",
    "open_store",
]
