"""Two headless Chromiums for a NetLab test: one on the host, one inside the namespace (through
NetLab.chromium_launcher), started and closed together."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import CHROMIUM
from tests.netlab.netns import NetLab


@dataclass
class Browsers:
    host: Any
    namespace: Any


@contextlib.contextmanager
def host_and_namespace(
    lab: NetLab, args: list[str], namespace_env: Mapping[str, str] | None = None
) -> Iterator[Browsers]:
    """Chromium with ARGS on the host and in LAB's namespace (there with NAMESPACE_ENV)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is not installed: run 'make system-deps'")
    from playwright import sync_api

    with sync_api.sync_playwright() as pw:
        host = pw.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            namespace = pw.chromium.launch(
                executable_path=str(lab.chromium_launcher()),
                args=args,
                env=dict(namespace_env) if namespace_env is not None else None,
            )
            try:
                yield Browsers(host, namespace)
            finally:
                namespace.close()
        finally:
            host.close()
