"""docs/configuration.md documents every key of the gateway's sections and of the plugins this
project ships, each under its section's heading: the contract cannot drift from the code."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Config, _list_item_dataclass
from gateway.plugins import installed

DOCS = Path(__file__).parents[2] / "docs" / "configuration.md"
SHIPPED_PLUGINS = ("federation", "matrix", "sip", "visio")
"""Plugins of this distribution (others a test environment installs document themselves)."""


def documented() -> dict[str, str]:
    """Each ``## `[name]` `` or ``### `[[name]]` `` heading -> its text up to the next heading."""
    parts = re.split(
        r"^#{2,3} `\[{1,2}([a-z_.]+)\]{1,2}`\s*$", DOCS.read_text(), flags=re.MULTILINE
    )
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def sections() -> list[tuple[str, type[Any]]]:
    """(name, dataclass) of every section and array of tables to document."""
    found: list[tuple[str, type[Any]]] = []

    def add(name: str, kind: type[Any]) -> None:
        found.append((name, kind))
        for key, hint in typing.get_type_hints(kind).items():
            item = _list_item_dataclass(hint)
            if item is not None:
                add(f"{name}.{key}", item)

    defaults = Config()
    for f in dataclasses.fields(Config):
        if dataclasses.is_dataclass(getattr(defaults, f.name)):
            add(f.name, type(getattr(defaults, f.name)))
    for plugin in installed():
        if plugin.name in SHIPPED_PLUGINS and plugin.config is not None:
            add(plugin.name, plugin.config)
    return found


def test_the_shipped_plugins_are_installed() -> None:
    assert {p.name for p in installed()} >= set(SHIPPED_PLUGINS)


@pytest.mark.parametrize(("name", "kind"), sections(), ids=[name for name, _ in sections()])
def test_every_key_of_the_section_is_documented(name: str, kind: type[Any]) -> None:
    hints = typing.get_type_hints(kind)
    keys = [key for key, hint in hints.items() if _list_item_dataclass(hint) is None]
    if not keys:
        return  # a section made only of arrays of tables ([[tokens.issuers]])
    text = documented().get(name)
    assert text is not None, f"docs/configuration.md has no heading for [{name}]"
    missing = [key for key in keys if f"| `{key}` |" not in text]
    assert not missing, f"[{name}] keys missing from docs/configuration.md: {missing}"
