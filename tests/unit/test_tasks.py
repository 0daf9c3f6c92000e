"""gateway/tasks.py: an owner's background tasks run, leave the set when done, and are all
cancelled and waited for at the end, whatever they raised."""

from __future__ import annotations

import asyncio

from gateway.tasks import TaskSet


async def test_a_finished_task_leaves_the_set() -> None:
    tasks = TaskSet()
    ran: list[str] = []

    async def work() -> None:
        ran.append("done")

    task = tasks.spawn(work())
    await task
    await asyncio.sleep(0)  # the done callback
    assert ran == ["done"] and list(tasks) == []


async def test_cancel_stops_every_task_and_waits_for_each() -> None:
    tasks = TaskSet()
    ended: list[str] = []

    async def forever(name: str) -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            ended.append(name)

    async def failing() -> None:
        raise RuntimeError("boom")

    tasks.spawn(forever("a"))
    tasks.spawn(forever("b"))
    tasks.spawn(failing())
    await asyncio.sleep(0)
    await tasks.cancel()
    assert sorted(ended) == ["a", "b"] and list(tasks) == []
