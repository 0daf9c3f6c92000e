"""Background tasks an object starts and, when it stops, cancels and waits for: one `TaskSet` per
owner, so that no task is lost to the garbage collector and none outlives its owner."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Iterator
from typing import Any


class TaskSet:
    """The running tasks of one owner; a finished task leaves the set by itself."""

    def __init__(self) -> None:
        self._running: set[asyncio.Task[None]] = set()

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run COROUTINE as a task of this set."""
        task = asyncio.ensure_future(coroutine)
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return task

    def __iter__(self) -> Iterator[asyncio.Task[None]]:
        return iter(list(self._running))

    async def cancel(self) -> None:
        """Cancel every task and wait until each has ended (how it ended is not asked)."""
        tasks = list(self._running)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._running.clear()
