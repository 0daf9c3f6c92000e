"""Shared fixtures: a real gateway process per test module; the example plugin on the path; why a
rerun test failed its first try, kept in test-artifacts/reruns.txt (.ci/run prints it), and the
rooms that try created deleted, so that the rerun is a real second try."""

from __future__ import annotations

import os
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway_process import CREATED_ROOMS, RunningGateway, running_gateway

TEST_PLUGINS = Path(__file__).parents[1] / ".cache" / "test-plugins"
"""The example protocol plugin, installed here by `make` for the tests only (never in .venv, so
that `make run` does not serve it): on the path of pytest and of every gateway a test starts."""
sys.path.append(str(TEST_PLUGINS))
os.environ["PYTHONPATH"] = os.pathsep.join(
    filter(None, [os.environ.get("PYTHONPATH", ""), str(TEST_PLUGINS)])
)


RERUNS = Path(__file__).parents[1] / "test-artifacts" / "reruns.txt"
RERUN_LINES = 40
"""The end of a first try's traceback: where it failed."""
CRASH_LINES = 30
"""The exception's own message (a peer's error can be long: its causes follow the first line)."""
LOG_LINES = 40
"""The end of each log of the processes a failed test used (its gateway, Synapse...)."""
LOG_SECTION = "last lines of "


def _process_logs(funcargs: dict[str, object]) -> dict[str, Path]:
    """The logs of the processes among a test's fixtures, and of the ones they hold (a Matrix
    stack's gateway and Synapse): name -> path, for whatever has a `log_path`."""
    logs: dict[str, Path] = {}
    for name, value in funcargs.items():
        for owner, held in [(name, value), *((f"{name}.{k}", v) for k, v in _fields(value))]:
            path = getattr(held, "log_path", None)
            if isinstance(path, Path) and path not in logs.values():
                logs[owner] = path
    return logs


def _fields(value: object) -> list[tuple[str, object]]:
    fields = getattr(value, "__dataclass_fields__", None)
    return [(k, getattr(value, k, None)) for k in fields] if isinstance(fields, dict) else []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test's report carries the end of its processes' logs: on CI only the report is
    seen, not the artifacts."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    if report.when != "call" or not report.failed:
        return
    for name, path in _process_logs(getattr(item, "funcargs", {})).items():
        try:
            lines = path.read_text(errors="replace").splitlines()[-LOG_LINES:]
        except OSError:
            continue
        report.sections.append((f"{LOG_SECTION}{name} ({path.name})", "\n".join(lines)))


@pytest.fixture(autouse=True)
def _a_failed_try_gives_back_its_rooms(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that fails deletes the rooms it created, so that its rerun is a second try of the
    same test: pytest-rerunfailures keeps a module's gateway, where the rooms would still exist
    (``room_exists``) however the first try failed."""
    first = len(CREATED_ROOMS)
    yield
    report = getattr(request.node, "rep_call", None)
    created, CREATED_ROOMS[first:] = CREATED_ROOMS[first:], []
    if report is None or not report.failed:
        return
    for gateway, room in created:
        if gateway.process.poll() is None:
            gateway.admin("DELETE", f"/api/v1/rooms/{urllib.parse.quote(room, safe='')}")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """`pytest -rR` only names the tests that needed a rerun: keep why their first try failed
    (the exception, the end of the traceback, the end of its processes' logs)."""
    if report.outcome != "rerun":  # pytest-rerunfailures' outcome for a failed first try
        return
    RERUNS.parent.mkdir(exist_ok=True)
    crash = getattr(report.longrepr, "reprcrash", None)
    parts = [f"--- {report.nodeid} ({report.when})"]
    if crash is not None:
        parts.append(f"{crash.path}:{crash.lineno}")
        parts += str(crash.message).splitlines()[:CRASH_LINES]
        parts.append("- the traceback's end:")
    parts += str(report.longrepr).splitlines()[-RERUN_LINES:]
    for title, text in report.sections:
        if title.startswith(LOG_SECTION):
            parts += [f"- {title}:", text]
    with RERUNS.open("a") as out:
        out.write("\n".join(parts) + "\n")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    with running_gateway(Path(tmp_path_factory.mktemp("gateway"))) as running:
        yield running
