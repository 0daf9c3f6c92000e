"""protocols/visio/admission.py and the Visio adapter's ``admit``: phones the hub sends to a Visio
room pass Visio's lobby, through the loopback stand-in of Visio's backend from
tests/unit/test_visio_lobby.py (shapes of suitenumerique/meet ``core/api/viewsets.py`` and
``core/services/lobby.py``)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.links import AdmissionOutcome, AdmittingAdapter, LinkError
from protocols.visio.adapter import VisioAdapter
from protocols.visio.admission import admit_through_lobby, admitted
from protocols.visio.config import VisioConfig
from protocols.visio.lobby import Outcome
from tests.unit.test_visio_lobby import FakeVisio, visio  # noqa: F401  (fixture)

UUID = "0b4c8f2e-1d2a-4e3b-9c8d-7e6f5a4b3c2d"
TARGET = f"visio:{UUID}"


async def test_visio_lobby_applies_to_the_caller(visio: tuple[FakeVisio, str]) -> None:  # noqa: F811
    fake, url = visio
    prompts: list[float] = []

    def play() -> float:
        prompts.append(asyncio.get_running_loop().time())
        return 0.1

    fake.rooms[UUID] = "public"
    assert await admit_through_lobby(url, TARGET, "Phone ••• 42", play) is None
    assert admitted(None) and not prompts and not fake.notifications

    fake.rooms[UUID] = "restricted"
    waiting = asyncio.create_task(
        admit_through_lobby(url, TARGET, "Phone ••• 42", play, poll_interval=0.05, repeat=0.2)
    )
    await asyncio.sleep(0.8)
    assert len(prompts) >= 2  # the waiting prompt plays again while nobody decides
    [participant] = fake.waiting(UUID)
    assert fake.entries[(UUID, participant)].username == "Phone ••• 42"
    fake.decide(UUID, participant, allow=True)
    admission = await waiting
    assert admission is not None and admitted(admission)

    fake.rooms[UUID] = "trusted"
    waiting = asyncio.create_task(
        admit_through_lobby(url, TARGET, "Phone ••• 07", play, poll_interval=0.05)
    )
    while len(fake.waiting(UUID)) < 1:
        await asyncio.sleep(0.02)
    [participant] = fake.waiting(UUID)
    fake.decide(UUID, participant, allow=False)
    denied = await waiting
    assert denied is not None and denied.outcome is Outcome.DENIED and not admitted(denied)

    waiting = asyncio.create_task(  # a caller who hangs up leaves nothing behind
        admit_through_lobby(url, TARGET, "Phone", play, poll_interval=0.05)
    )
    await asyncio.sleep(0.3)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    count = len(fake.requests)
    await asyncio.sleep(0.3)
    assert len(fake.requests) == count


async def test_without_a_backend_the_lobby_cannot_apply() -> None:
    assert await admit_through_lobby("", TARGET, "Phone", lambda: 0.0) is None


def adapter(backend_url: str) -> VisioAdapter:
    config = VisioConfig(backend_url=backend_url)
    gateway: Any = SimpleNamespace(config=SimpleNamespace(visio=config))
    return VisioAdapter(gateway, poll_interval=0.05)


async def test_the_adapter_gives_the_lobby_decision_to_the_hub(
    visio: tuple[FakeVisio, str],  # noqa: F811
) -> None:
    fake, url = visio
    visio_adapter = adapter(url)
    assert isinstance(visio_adapter, AdmittingAdapter) and visio_adapter.origin == "visio"
    fake.rooms[UUID] = "public"
    accepted = await visio_adapter.admit(TARGET, "Phone ••• 42", lambda: 0.0)
    assert accepted.outcome is AdmissionOutcome.ACCEPTED

    fake.rooms[UUID] = "restricted"
    waiting = asyncio.create_task(visio_adapter.admit(TARGET, "Phone ••• 42", lambda: 0.0))
    while not fake.waiting(UUID):
        await asyncio.sleep(0.02)
    fake.decide(UUID, fake.waiting(UUID)[0], allow=False)
    denied = await waiting
    assert (denied.outcome, denied.outcome.value) == (AdmissionOutcome.DENIED, "denied")


async def test_a_failing_backend_is_a_hub_error_and_keeps_the_caller_out() -> None:
    unreachable = adapter("http://127.0.0.1:9/api/v1.0/")
    with pytest.raises(LinkError, match="unreachable") as refused:
        await unreachable.admit(TARGET, "Phone", lambda: 0.0)
    assert refused.value.code == "link_unavailable"
