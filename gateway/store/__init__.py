"""Persistent state: rooms, PINs, settings, admin tokens and keys in SQLite."""

from gateway.store.sqlite import RoomRecord, Store

__all__ = ["RoomRecord", "Store"]
