"""Persistent state: rooms, PINs, settings, admin tokens and keys in SQLite."""

from gateway.store.sqlite import DispatchRule, RoomRecord, Store, Trunk

__all__ = ["DispatchRule", "RoomRecord", "Store", "Trunk"]
