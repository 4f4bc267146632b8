"""The two drivers that run engine flows: blocking ``poll()`` and asyncio.

A flow yields ``(readers, writers, deadline)``; the driver waits until one of
those fds is ready or the deadline (``time.monotonic()`` seconds) passes, and
sends back the set of ready fds (empty on timeout).
"""

from __future__ import annotations

import asyncio
import select
import time
from typing import Any

from ._engine import Flow

_POLLIN = select.POLLIN
_POLLOUT = select.POLLOUT


def drive(flow: Flow) -> Any:
    """Run ``flow`` to completion in this thread, blocking in ``poll()``."""
    ready: Any = None
    try:
        while True:
            readers, writers, deadline = flow.send(ready)
            poller = select.poll()
            for fd in readers:
                poller.register(fd, _POLLIN)
            for fd in writers:
                poller.register(fd, _POLLOUT)
            if deadline is None:
                events = poller.poll()
            else:
                events = poller.poll(max(0.0, (deadline - time.monotonic()) * 1000.0))
            ready = {fd for fd, _ in events}
    except StopIteration as stop:
        return stop.value
    finally:
        flow.close()


def _fire(fd: int, waiters: dict[asyncio.Future[None], set[int]]) -> None:
    for fut, ready in waiters.items():
        ready.add(fd)
        if not fut.done():
            fut.set_result(None)


def _expire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class AsyncWaiter:
    """Waits for fds on the running loop; any number of tasks may wait on the
    same fd at once (the loop allows one callback per fd, so they share it).
    An fd is registered only while someone waits on it, so closing an fd
    never leaves a stale registration in the loop's selector."""

    __slots__ = ("_readers", "_writers", "_loop")

    def __init__(self) -> None:
        self._readers: dict[int, dict[asyncio.Future[None], set[int]]] = {}
        self._writers: dict[int, dict[asyncio.Future[None], set[int]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def forget(self, fd: int) -> None:
        """``fd`` is about to be closed: wake whoever waits on it and drop
        its registration."""
        for table, remove in ((self._readers, "remove_reader"), (self._writers, "remove_writer")):
            waiters = table.pop(fd, None)
            if waiters is not None:
                _fire(fd, waiters)
                if self._loop is not None and not self._loop.is_closed():
                    getattr(self._loop, remove)(fd)

    async def wait(self, readers: tuple[int, ...], writers: tuple[int, ...], deadline: float | None) -> set[int]:
        loop = self._loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        ready: set[int] = set()
        for fd in readers:
            self._watch(self._readers, loop.add_reader, fd, fut, ready)
        for fd in writers:
            self._watch(self._writers, loop.add_writer, fd, fut, ready)
        timer = None
        if deadline is not None:
            timer = loop.call_later(max(0.0, deadline - time.monotonic()), _expire, fut)
        try:
            await fut
        finally:
            if timer is not None:
                timer.cancel()
            for fd in readers:
                self._unwatch(self._readers, loop.remove_reader, fd, fut)
            for fd in writers:
                self._unwatch(self._writers, loop.remove_writer, fd, fut)
        return ready

    @staticmethod
    def _watch(table: dict[int, Any], add: Any, fd: int, fut: asyncio.Future[None], ready: set[int]) -> None:
        waiters = table.get(fd)
        if waiters is None:
            waiters = table[fd] = {}
            add(fd, _fire, fd, waiters)
        waiters[fut] = ready

    @staticmethod
    def _unwatch(table: dict[int, Any], remove: Any, fd: int, fut: asyncio.Future[None]) -> None:
        waiters = table.get(fd)
        if waiters is None:
            return
        waiters.pop(fut, None)
        if not waiters:
            del table[fd]
            remove(fd)


async def adrive(flow: Flow, waiter: AsyncWaiter) -> Any:
    """Run ``flow`` to completion on the running loop."""
    ready: Any = None
    try:
        while True:
            readers, writers, deadline = flow.send(ready)
            ready = await waiter.wait(readers, writers, deadline)
    except StopIteration as stop:
        return stop.value
    finally:
        flow.close()
