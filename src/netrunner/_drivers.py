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
    asked: Any = None  # the first wait always makes the poll object
    poller: select.poll
    try:
        while True:
            readers, writers, deadline = flow.send(ready)
            if not readers and not writers and deadline is None:  # would block for ever
                raise RuntimeError("netrunner: internal error: a wait on nothing")
            if (readers, writers) != asked:  # a poll object holds no fd: the same numbers, the same request
                asked = readers, writers
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
    """The waits of one flow: their epoll instance, the fds registered in
    it (fd -> events), those found ready by the current wait, and how to
    end that wait early."""

    __slots__ = ("ep", "masks", "ready", "wake", "clean", "fut", "loop")

    def __init__(self, ep: select.epoll) -> None:
        self.ep = ep
        self.masks: dict[int, int] = {}
        self.ready: set[int] = set()
        self.wake: Callable[[], object] | None = None
        self.clean = True  # every fd unregistered: the instance can be reused
        #: asyncio: the future of the current wait, and the loop that has
        #: the instance as a reader (from the first wait to ``finish``).
        self.fut: asyncio.Future[bool] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def remove(self, fd: int) -> None:
        """Take ``fd`` out of the instance; if that fails, something of it
        may stay registered, and the instance is not reused."""
        self.masks.pop(fd, None)
        try:
            self.ep.unregister(fd)
        except OSError:
            self.clean = False

    def drop(self, fd: int) -> None:
        """``fd`` is about to be closed: unregister it and end the wait."""
        self.ready.add(fd)
        self.remove(fd)
        if self.wake is not None:
            self.wake()

    def fire(self) -> None:
        """The loop found the instance readable (asyncio): end the current
        wait with the fds ready now. None may be: the loop can report the
        last wait's readiness once more, after the flow has handled it and
        begun its next wait; that wait goes on."""
        fut = self.fut
        if fut is None or fut.done():
            return
        ready = self.ready
        for fd, _ in self.ep.poll(0):
            ready.add(fd)
        if ready:
            fut.set_result(True)


class _EpollWaiter:
    """Waits for fds on an async library's event loop. A flow waits for
    several fds at once, and several tasks may wait on the same fd (a
    ``read`` and a ``wait`` both watch the control socket). So each flow
    registers its fds in an epoll instance of its own (taken from a small
    pool) and the library waits for that one fd to become readable, until
    the flow's deadline.

    A flow's fds stay registered from one of its waits to the next (only
    what changed is registered or removed) and no longer than the flow:
    :func:`adrive` ends with :meth:`finish`. A flow may outlive an fd it
    waited on (a daemon's flow outlives each command's control socket),
    and the number may be reused by the next one. So every fd registered
    is watched (``fds.watch``): its close, on any path and in any thread,
    first takes it out of every instance, while the number is still its,
    and a later wait on that number registers the new file. Under asyncio
    the instance is the loop's reader for as long as the flow runs, not
    per wait: a wait makes no call into the loop's selector but for its
    deadline's timer, and its wake-up asks the instance which fds are ready
    (the loop may report readiness the flow has already handled; that wait
    goes on).

    So a flow registers one fd with the loop however many it waits for:
    under asyncio, two calls into the loop's selector per flow rather than
    two per fd and wait (ADR 3, "Later: one epoll instance per wait", and
    "Later: one epoll instance per flow")."""

    __slots__ = ()

    @staticmethod
    def forget(fd: int) -> None:
        """``fd`` is about to be closed: wake whoever waits on it."""
        with fds.lock:
            waits = _registered.pop(fd, None)
            fds.unwatch(fd)
            if waits:
                for w in list(waits):
                    w.drop(fd)

    async def _readable(self, w: _Wait, deadline: float | None) -> bool:
        """Wait until ``w.ep`` is readable (True), or until the deadline or
        ``w.wake()`` (False)."""
        raise NotImplementedError

    def _stop_reading(self, w: _Wait) -> None:
        """The flow is over: the loop stops watching its instance."""

    def _register(self, w: _Wait, readers: tuple[int, ...], writers: tuple[int, ...]) -> None:
        """Make the fds registered in ``w.ep`` those of this wait."""
        want = dict.fromkeys(readers, _EPOLLIN)
        for fd in writers:
            want[fd] = want.get(fd, 0) | _EPOLLOUT
        have = w.masks
        if want == have:
            return
        with fds.lock:  # against a close of one of them in another thread
            for fd in [fd for fd in have if fd not in want]:
                _unregister(w, fd)
            for fd, events in want.items():
                old = have.get(fd)
                if old is None:
                    w.ep.register(fd, events)
                    have[fd] = events
                    waits = _registered.get(fd)
                    if waits is None:
                        waits = _registered[fd] = {}
                        fds.watch(fd, _closing)
                    waits[w] = None
                elif old != events:
                    w.ep.modify(fd, events)
                    have[fd] = events

    def start(self) -> _Wait:
        """The waits of a new flow."""
        return _Wait(_idle_epolls.pop() if _idle_epolls else fds.epoll("the epoll instance of a wait"))

    async def wait(
        self, w: _Wait, readers: tuple[int, ...], writers: tuple[int, ...], deadline: float | None
    ) -> set[int]:
        """One wait of the flow of ``w``: the fds found ready (empty when
        the deadline passed)."""
        ready = w.ready = set()
        self._register(w, readers, writers)
        while True:
            readable = await self._readable(w, deadline)
            if readable and not ready:  # asyncio's fire() has asked already
                for fd, _ in w.ep.poll(0):
                    ready.add(fd)
            if ready or not readable:
                return ready

    def finish(self, w: _Wait) -> None:
        """The flow is over: nothing of it stays registered; the instance
        goes back to the pool if it is clean."""
        self._stop_reading(w)
        with fds.lock:
            for fd in list(w.masks):
                _unregister(w, fd)
        if w.clean and len(_idle_epolls) < _IDLE_EPOLLS:
            _idle_epolls.append(w.ep)
        else:
            fds.close_epoll(w.ep)


#: fd -> the flows' waits it is registered in (across every waiter).
_registered: dict[int, dict[_Wait, None]] = {}


def _unregister(w: _Wait, fd: int) -> None:
    """Take ``fd`` out of ``w`` (under ``fds.lock``)."""
    waits = _registered.get(fd)
    if waits is not None:
        waits.pop(w, None)
        if not waits:
            del _registered[fd]
            fds.unwatch(fd)
    w.remove(fd)


def _closing(fd: int) -> None:
    """``fd`` is being closed (``fds.watch``, under ``fds.lock``): out of
    every instance it is registered in, while the number is still its. A
    flow that waits on it later registers whatever file the number is then.
    The waits are not woken: a closed fd reports nothing, as before."""
    for w in _registered.pop(fd, ()):
        w.remove(fd)


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
        w.fut = fut
        w.wake = functools.partial(_settle, fut, False)
        if w.loop is None:
            loop.add_reader(w.ep.fileno(), w.fire)
            w.loop = loop
        timer = None
        if deadline is not None:
            timer = loop.call_later(max(0.0, deadline - time.monotonic()), _settle, fut, False)
        try:
            return await fut
        finally:
            if timer is not None:
                timer.cancel()
            w.fut = None

    def _stop_reading(self, w: _Wait) -> None:
        if w.loop is not None:
            w.loop.remove_reader(w.ep.fileno())
            w.loop = None


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


def _forget_epolls() -> None:
    # Closed in the child with every netrunner fd (and their watches
    # cleared): no wait of the parent's goes on here.
    _idle_epolls.clear()
    _registered.clear()


fds.on_fork_in_child(_forget_epolls)


async def adrive(flow: Flow, waiter: AsyncWaiter | TrioWaiter) -> Any:
    """Run ``flow`` to completion with an async library's waiter. Under trio
    (``waiter.schedules``) it is a checkpoint, like trio's own calls: a
    cancellation is noticed before the flow starts, and a flow that ends
    without waiting still lets the other tasks run."""
    checkpoint = waiter.schedules
    ready: Any = None
    w = None
    try:
        if checkpoint:
            await waiter.before()
        while True:
            readers, writers, deadline = flow.send(ready)
            if w is None:
                w = waiter.start()
            ready = await waiter.wait(w, readers, writers, deadline)
    except StopIteration as stop:
        if checkpoint and ready is None:
            await waiter.after()
        return stop.value
    finally:
        flow.close()
        if w is not None:
            waiter.finish(w)


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
