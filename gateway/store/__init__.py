"""Persistent state: rooms, PINs, settings, admin tokens and keys in SQLite."""

from gateway.store.admin_token import (
    ADMIN_TOKEN_FILE,
    DATABASE_FILE,
    admin_token_path,
    new_admin_token,
)
from gateway.store.sqlite import DispatchRule, RoomRecord, Store, StoreError, Trunk

__all__ = [
    "ADMIN_TOKEN_FILE",
    "DATABASE_FILE",
    "DispatchRule",
    "RoomRecord",
    "Store",
    "StoreError",
    "Trunk",
    "admin_token_path",
    "new_admin_token",
]
