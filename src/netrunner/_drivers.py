"""The two drivers that run engine flows: blocking ``poll()`` and asyncio.

A flow yields ``(readers, writers, deadline)``; the driver waits until one of
those fds is ready or the deadline (``time.monotonic()`` seconds) passes, and
sends back the set of ready fds (empty on timeout).
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import threading
import time
from typing import Any

from ._engine import Flow
from ._io import fds

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


class Hub:
    """Drives any number of flows at once in one background thread, blocking
    in one ``poll()`` over all their fds: what ``drive`` does for one flow,
    for every sync ``Daemon`` of the interpreter. The thread exists only
    while there are flows; a flow that raises is logged and dropped.

    Flows run in the hub's thread, so whatever they call (daemon callbacks)
    delays the others while it runs, as a callback on an event loop would."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._new: list[Flow] = []
        self._thread: threading.Thread | None = None
        self._wake: int | None = None  # an eventfd: add() wakes the poll
        fds.on_fork_in_child(self._after_fork_in_child)

    def add(self, flow: Flow) -> None:
        """Run ``flow`` (a fresh generator) in the hub's thread."""
        with self._lock:
            if self._wake is None:
                self._wake = fds.eventfd("the daemon thread's wake-up counter")
            self._new.append(flow)
            if self._thread is None:
                thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                thread.start()
                self._thread = thread
            os.eventfd_write(self._wake, 1)

    def running_here(self) -> bool:
        """Called from the hub's own thread (a flow, or a callback it runs)."""
        return threading.current_thread() is self._thread

    def _loop(self) -> None:
        waits: dict[Flow, tuple[tuple[int, ...], tuple[int, ...], float | None]] = {}
        while True:
            with self._lock:
                new, self._new = self._new, []
                if not new and not waits:
                    self._thread = None
                    wake, self._wake = self._wake, None
                    if wake is not None:
                        fds.close(wake)
                    return
                wake = self._wake
            assert wake is not None
            for flow in new:
                self._step(flow, None, waits)
            masks: dict[int, int] = {wake: _POLLIN}
            deadline: float | None = None
            for readers, writers, until in waits.values():
                for fd in readers:
                    masks[fd] = masks.get(fd, 0) | _POLLIN
                for fd in writers:
                    masks[fd] = masks.get(fd, 0) | _POLLOUT
                if until is not None and (deadline is None or until < deadline):
                    deadline = until
            poller = select.poll()
            for fd, mask in masks.items():
                poller.register(fd, mask)
            timeout = None if deadline is None else max(0.0, (deadline - time.monotonic()) * 1000.0)
            ready = {fd for fd, _ in poller.poll(timeout)}
            if wake in ready:
                try:
                    os.eventfd_read(wake)
                except BlockingIOError:
                    pass
            now = time.monotonic()
            for flow, (readers, writers, until) in list(waits.items()):
                mine = ready.intersection((*readers, *writers))
                if mine or (until is not None and now >= until):
                    self._step(flow, mine, waits)

    @staticmethod
    def _step(flow: Flow, ready: set[int] | None, waits: dict[Flow, Any]) -> None:
        try:
            waits[flow] = flow.send(ready)  # type: ignore[arg-type]  # None starts a flow, as in drive()
        except StopIteration:
            waits.pop(flow, None)
        except BaseException:  # a flow must not take the others down with it
            waits.pop(flow, None)
            logging.getLogger("netrunner.daemon").exception("netrunner: a supervision flow failed")

    def _after_fork_in_child(self) -> None:
        # The thread does not exist in the child and the eventfd is closed;
        # the flows belong to the parent's daemons.
        self._lock = threading.Lock()
        self._new = []
        self._thread = None
        self._wake = None


#: The thread of every sync ``Daemon``.
hub = Hub("netrunner-daemons")
