"""Shared fixtures: a real gateway process per test module; the example plugin on the path; why a
rerun test failed its first try, kept in test-artifacts/reruns.txt (.ci/run prints it)."""

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


RERUNS = Path(__file__).parents[1] / "test-artifacts" / "reruns.txt"
RERUN_LINES = 60
"""The end of a first try's failure: where it failed and the assertion's message."""


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """`pytest -rR` only names the tests that needed a rerun: keep why their first try failed."""
    if report.outcome != "rerun":  # pytest-rerunfailures' outcome for a failed first try
        return
    RERUNS.parent.mkdir(exist_ok=True)
    lines = str(report.longrepr).splitlines()[-RERUN_LINES:]
    with RERUNS.open("a") as out:
        out.write(f"--- {report.nodeid} ({report.when})\n" + "\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    with running_gateway(Path(tmp_path_factory.mktemp("gateway"))) as running:
        yield running
