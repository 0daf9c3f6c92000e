"""The Matrix plugin as the hub sees it: installed, its scheme and sentence, off without a
homeserver."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from gateway.links import LinkTargets
from gateway.plugins import installed, public_path
from protocols.matrix.config import MatrixConfig
from protocols.matrix.plugin import plugin


def test_it_is_installed_and_mounted_at_matrix() -> None:
    assert plugin in installed()
    assert public_path(plugin) == "/matrix/"


def test_its_link_scheme_says_what_to_configure() -> None:
    assert "[matrix] homeserver_url" in plugin.link_schemes["matrix"]
    assert "rondpoint matrix registration" in plugin.link_schemes["matrix"]


def test_targets_are_checked_before_it_runs() -> None:
    targets = LinkTargets.of([plugin])
    assert targets.canonical("Matrix:!AbC:hs.test") == "matrix:!AbC:hs.test"


def test_it_does_not_start_without_a_homeserver() -> None:
    gateway = SimpleNamespace(config=SimpleNamespace(matrix=MatrixConfig()))
    assert asyncio.run(plugin.start(gateway)) is None  # type: ignore[arg-type,misc]
