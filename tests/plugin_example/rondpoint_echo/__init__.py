"""An example Rondpoint protocol plugin, ``echo:NAME``: linking a room to it, or dialling it, adds a
participant NAME. A partner's plugin copies its shape; docs/architecture.md walks through it."""

from rondpoint_echo.plugin import plugin

__all__ = ["plugin"]
