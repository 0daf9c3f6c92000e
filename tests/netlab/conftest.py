"""NetLab fixtures: an impaired network namespace per test (tests/netlab/netns.py), skipped without
root, and a final check that nothing a NetLab added (namespace, veth, qdisc, chain) is left behind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netlab.netns import NetLab, is_root, leftovers, remove_stale

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "netlab"


NO_ROOT_NEEDED = {"test_udp_delay.py"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if is_root():
        return
    skip = pytest.mark.skip(reason="NetLab needs root (ip netns, tc, iptables)")
    for item in items:
        path = item.path
        if path.parent.name == "netlab" and path.name not in NO_ROOT_NEEDED:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind() -> Iterator[None]:
    """After the last NetLab test: no namespace, veth, qdisc or iptables chain of ours remains."""
    if is_root():
        remove_stale()
    yield
    if is_root():
        assert leftovers() == []


@pytest.fixture
def netlab() -> Iterator[NetLab]:
    with NetLab() as lab:
        yield lab


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
