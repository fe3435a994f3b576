"""Concurrent calls of one work item that stop together: the first failure cancels its siblings.

``asyncio.gather`` raises the first failure but leaves the other calls running: their requests keep
being paid for after the item has already failed, and their usage lands after the item's journal
entry was written. A :class:`asyncio.TaskGroup` cancels them and waits for them to end, so the
item's usage (answered and abandoned requests alike) is complete when its failure is recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import TypeVar

__all__ = ["gather"]

T = TypeVar("T")


async def gather(calls: Iterable[Awaitable[T]]) -> list[T]:
    """Results in order; on a failure, cancel the rest and raise that failure itself (not a group),
    so callers keep catching :class:`~synthgen.errors.CompletionFailed` as before."""

    async def run(call: Awaitable[T]) -> T:
        return await call

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(run(call)) for call in calls]
    except BaseExceptionGroup as errors:
        raise errors.exceptions[0] from None
    return [task.result() for task in tasks]
