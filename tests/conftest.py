"""Shared fixtures: a real gateway process per test module; the example plugin on the path."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway_process import RunningGateway, running_gateway

TEST_PLUGINS = Path(__file__).parents[1] / ".cache" / "test-plugins"
"""The example protocol plugin, installed here by `make` for the tests only (never in .venv, so
that `make run` does not serve it): on the path of pytest and of every gateway a test starts."""
sys.path.append(str(TEST_PLUGINS))
os.environ["PYTHONPATH"] = os.pathsep.join(
    filter(None, [os.environ.get("PYTHONPATH", ""), str(TEST_PLUGINS)])
)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    with running_gateway(Path(tmp_path_factory.mktemp("gateway"))) as running:
        yield running
