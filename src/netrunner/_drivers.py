"""The drivers that run engine flows: blocking ``poll()``, and the async
waiters of asyncio and trio that :func:`adrive` uses.

A flow yields ``(readers, writers, deadline)``; the driver waits until one of
those fds is ready or the deadline (``time.monotonic()`` seconds) passes, and
sends back the set of ready fds (empty on timeout).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import select
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ._engine import Flow
from ._io import fds

_POLLIN = select.POLLIN
_POLLOUT = select.POLLOUT


#: The longest single blocking wait, in seconds. ``poll()`` takes at most
#: about 24.8 days (an int of milliseconds) and a lock's ``acquire`` at most
#: ``threading.TIMEOUT_MAX``; a longer timeout (``1e12``, ``float("inf")``
#: where it reaches a driver) is waited in steps of this.
LONGEST_WAIT = 86_400.0


def seconds_left(deadline: float) -> float:
    """How long one blocking wait for ``deadline`` (``time.monotonic()``
    seconds) may last: until it, at most :data:`LONGEST_WAIT`, never < 0.
    The caller waits again when it wakes before the deadline."""
    return min(max(0.0, deadline - time.monotonic()), LONGEST_WAIT)


def wait_in_steps(wait: Callable[[float], Any], deadline: float) -> Any:
    """``wait(seconds)`` (a blocking wait that returns something falsy when
    its time ran out) repeated until it returns something truthy or
    ``deadline`` has passed; its last result."""
    while not (got := wait(seconds_left(deadline))) and time.monotonic() < deadline:
        pass
    return got


def _poll_for(poller: select.poll, seconds: float) -> list[tuple[int, int]]:
    return poller.poll(seconds * 1000.0)


def drive(flow: Flow) -> Any:
    """Run ``flow`` to completion in this thread, blocking in ``poll()``."""
    ready: Any = None
    try:
        while True:
            readers, writers, deadline = flow.send(ready)
            if not readers and not writers and deadline is None:  # would block for ever
                raise RuntimeError("netrunner: internal error: a wait on nothing")
            poller = select.poll()
            for fd in readers:
                poller.register(fd, _POLLIN)
            for fd in writers:
                poller.register(fd, _POLLOUT)
            if deadline is None:
                events = poller.poll()
            else:
                events = wait_in_steps(functools.partial(_poll_for, poller), deadline)
            ready = dict(events)  # fd -> events: what a flow asks is "fd in ready"
    except StopIteration as stop:
        return stop.value
    finally:
        flow.close()


_EPOLLIN = select.EPOLLIN
_EPOLLOUT = select.EPOLLOUT
#: Idle epoll instances of waits, reused (a new one costs two system calls).
_idle_epolls: list[select.epoll] = []
_IDLE_EPOLLS = 32


class _Wait:
    """One wait: its epoll instance, the fds registered in it, those found
    ready, and how to end it early."""

    __slots__ = ("ep", "fds", "ready", "wake", "clean")

    def __init__(self, ep: select.epoll) -> None:
        self.ep = ep
        self.fds: list[int] = []
        self.ready: set[int] = set()
        self.wake: Callable[[], object] | None = None
        self.clean = True  # every fd unregistered: the instance can be reused

    def drop(self, fd: int) -> None:
        """``fd`` is about to be closed: unregister it and end the wait."""
        self.ready.add(fd)
        try:
            self.fds.remove(fd)
            self.ep.unregister(fd)
        except (ValueError, OSError):
            self.clean = False
        if self.wake is not None:
            self.wake()


class _EpollWaiter:
    """Waits for fds on an async library's event loop. A flow waits for
    several fds at once, and several tasks may wait on the same fd (a
    ``read`` and a ``wait`` both watch the control socket). So each wait
    registers its fds in an epoll instance of its own (taken from a small
    pool) and the library waits for that one fd to become readable, until
    the flow's deadline. The fds are registered only while the wait lasts,
    in the loop and in the instance alike: no stale registration can
    survive an fd being closed, by a finalizer outside the loop included.

    So a wait registers one fd with the loop however many it waits for:
    under asyncio, two calls into the loop's selector per wait rather than
    two per fd (ADR 3, "Later: one epoll instance per wait")."""

    __slots__ = ("_waits",)

    def __init__(self) -> None:
        self._waits: dict[int, dict[_Wait, None]] = {}

    def forget(self, fd: int) -> None:
        """``fd`` is about to be closed: wake whoever waits on it."""
        waits = self._waits.pop(fd, None)
        if waits:
            for w in list(waits):
                w.drop(fd)

    async def _readable(self, w: _Wait, deadline: float | None) -> bool:
        """Wait until ``w.ep`` is readable (True), or until the deadline or
        ``w.wake()`` (False)."""
        raise NotImplementedError

    async def wait(self, readers: tuple[int, ...], writers: tuple[int, ...], deadline: float | None) -> set[int]:
        ep = _idle_epolls.pop() if _idle_epolls else fds.epoll("the epoll instance of a wait")
        w = _Wait(ep)
        table = self._waits
        try:
            for fd in readers:
                if fd not in w.fds:
                    ep.register(fd, _EPOLLIN)
                    w.fds.append(fd)
                    table.setdefault(fd, {})[w] = None
            for fd in writers:
                if fd in w.fds:
                    ep.modify(fd, _EPOLLIN | _EPOLLOUT)
                    continue
                ep.register(fd, _EPOLLOUT)
                w.fds.append(fd)
                table.setdefault(fd, {})[w] = None
            readable = await self._readable(w, deadline)
            ready = w.ready
            if readable and len(w.fds) == 1:
                ready.add(w.fds[0])  # the only fd: no need to ask which
            else:
                for fd, _ in ep.poll(0):
                    ready.add(fd)
            return ready
        finally:
            for fd in w.fds:
                waits = table.get(fd)
                if waits is not None:
                    waits.pop(w, None)
                    if not waits:
                        del table[fd]
                try:
                    ep.unregister(fd)
                except OSError:
                    w.clean = False
            if w.clean and len(_idle_epolls) < _IDLE_EPOLLS:
                _idle_epolls.append(ep)
            else:
                fds.close_epoll(ep)


def _settle(fut: asyncio.Future[bool], readable: bool) -> None:
    if not fut.done():
        fut.set_result(readable)


class AsyncWaiter(_EpollWaiter):
    """Waits under asyncio (any loop that has ``add_reader``): a reader on
    the running loop for the wait's epoll instance, and a timer for its
    deadline."""

    __slots__ = ()

    #: asyncio has no convention that every call yields to the loop.
    schedules = False

    @staticmethod
    async def before() -> None:
        """Not called (``schedules`` is False): the trio waiter's twin."""

    @staticmethod
    async def after() -> None:
        """Not called (``schedules`` is False): the trio waiter's twin."""

    async def _readable(self, w: _Wait, deadline: float | None) -> bool:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        w.wake = functools.partial(_settle, fut, False)
        efd = w.ep.fileno()
        loop.add_reader(efd, _settle, fut, True)
        timer = None
        if deadline is not None:
            timer = loop.call_later(max(0.0, deadline - time.monotonic()), _settle, fut, False)
        try:
            return await fut
        finally:
            if timer is not None:
                timer.cancel()
            loop.remove_reader(efd)


class TrioWaiter(_EpollWaiter):
    """Waits under trio: ``trio.lowlevel.wait_readable`` on the wait's epoll
    instance (trio waits for one fd per call, and for a given fd and
    direction one task at a time), in a cancel scope whose deadline is the
    flow's, on trio's clock."""

    __slots__ = ("_trio", "before", "after")

    #: trio's convention: every async call notices a cancellation and lets
    #: other tasks run, even when it finds what it needs without waiting.
    schedules = True

    def __init__(self) -> None:
        import trio  # running: imported already

        super().__init__()
        self._trio = trio
        #: Before an operation: raise if the task is cancelled already.
        self.before: Callable[[], Awaitable[None]] = trio.lowlevel.checkpoint_if_cancelled
        #: After an operation that did not wait: let the others run, without
        #: raising (what the operation did, a read, must not be lost).
        self.after: Callable[[], Awaitable[None]] = trio.lowlevel.cancel_shielded_checkpoint

    async def _readable(self, w: _Wait, deadline: float | None) -> bool:
        trio = self._trio
        if deadline is None:
            scope = trio.CancelScope()
        else:
            scope = trio.CancelScope(deadline=trio.current_time() + (deadline - time.monotonic()))
        w.wake = scope.cancel
        with scope:
            await trio.lowlevel.wait_readable(w.ep)
        return not scope.cancelled_caught


def _forget_idle_epolls() -> None:
    _idle_epolls.clear()  # closed in the child with every netrunner fd


fds.on_fork_in_child(_forget_idle_epolls)


async def adrive(flow: Flow, waiter: AsyncWaiter | TrioWaiter) -> Any:
    """Run ``flow`` to completion with an async library's waiter."""
    if waiter.schedules:
        return await _adrive_checkpoint(flow, waiter)
    ready: Any = None
    try:
        while True:
            readers, writers, deadline = flow.send(ready)
            ready = await waiter.wait(readers, writers, deadline)
    except StopIteration as stop:
        return stop.value
    finally:
        flow.close()


async def _adrive_checkpoint(flow: Flow, waiter: AsyncWaiter | TrioWaiter) -> Any:
    """:func:`adrive` as a trio checkpoint, like trio's own calls: a
    cancellation is noticed before the flow starts, and a flow that ends
    without waiting still lets the other tasks run."""
    ready: Any = None
    try:
        await waiter.before()
        while True:
            readers, writers, deadline = flow.send(ready)
            ready = await waiter.wait(readers, writers, deadline)
    except StopIteration as stop:
        if ready is None:
            await waiter.after()
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
            timeout = None if deadline is None else seconds_left(deadline) * 1000.0  # an early wake-up steps no flow
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
