"""The async library that runs the caller, and the little ``netrunner.aio``
needs of it (docs/async-libraries.md).

``netrunner.aio`` waits for fds only, through a waiter of ``_drivers``; the
rest is here: a lock, a lock taken within a timeout, shielded cleanup, a
background task (the feeder of an async-iterable ``input``, an
``aio.Daemon``'s supervision) and the library's cancellation exception.

The library is found at run time, never imported: trio when the calling
code runs in a trio task (trio itself, anyio's trio backend, trio's guest
mode), else asyncio when a loop runs in this thread (any loop; anyio's
asyncio backend). Neither is a dependency: trio is used only once it has
been imported and is running.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import sys
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from ._drivers import AsyncWaiter, TrioWaiter

__all__ = ["Library", "Lock", "Task", "current"]


class Lock(Protocol):
    """``asyncio.Lock`` or ``trio.Lock``: what of them is used."""

    def locked(self) -> bool: ...

    async def acquire(self) -> Any: ...

    def release(self) -> None: ...

    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, *exc: Any) -> Any: ...


class Task(Protocol):
    """A background task: the feeder of an async iterable, a daemon's
    supervision. It never outlives its owner, which cancels and awaits it."""

    def cancel(self) -> None: ...

    def done(self) -> bool: ...

    def failure(self) -> BaseException | None:
        """What it raised; None if it returned or was cancelled."""

    async def settled(self) -> None:
        """Wait until it has ended (cancelling this wait leaves the task be)."""

    async def joined(self) -> None:
        """:meth:`settled`, then raise what the task raised."""

    def on_done(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` (in the task's thread) once the task has ended,
        however it ended: cancelled before it ran a single step too, when
        the coroutine never ran and none of its ``finally`` clauses did."""


class Library(Protocol):
    name: str
    cancelled: type[BaseException]

    def waiter(self) -> Any: ...

    def lock(self) -> Lock: ...

    async def acquire(self, lock: Lock, timeout: float | None) -> bool: ...

    def shielded(self) -> contextlib.AbstractContextManager[Any]: ...

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any, name: str) -> Task: ...


# --- asyncio ---------------------------------------------------------------

_NOTHING = contextlib.nullcontext()


class _AsyncioTask:
    __slots__ = ("_task",)

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self._task = task

    def cancel(self) -> None:
        self._task.cancel()

    def done(self) -> bool:
        return self._task.done()

    def failure(self) -> BaseException | None:
        task = self._task
        return None if task.cancelled() else task.exception()

    async def settled(self) -> None:
        await asyncio.wait([self._task])

    async def joined(self) -> None:
        await asyncio.shield(self._task)

    def on_done(self, callback: Callable[[], object]) -> None:
        self._task.add_done_callback(lambda _: callback())


class _Asyncio:
    """asyncio's own cancellation is a single ``CancelledError``: a cleanup
    after it awaits normally. anyio's cancel scopes on asyncio cancel again
    at every await until the scope is left, as trio's do; so once anyio is
    imported, ``shielded`` is an anyio scope that shields (entering one
    takes a few microseconds, and works in any asyncio task)."""

    name = "asyncio"
    cancelled: type[BaseException] = asyncio.CancelledError

    @staticmethod
    def waiter() -> AsyncWaiter:
        return AsyncWaiter()

    @staticmethod
    def lock() -> asyncio.Lock:
        return asyncio.Lock()

    @staticmethod
    async def acquire(lock: Any, timeout: float | None) -> bool:
        """``lock.acquire()`` within ``timeout`` seconds; False if it did not come.

        Not ``asyncio.wait_for``: before Python 3.12 it can swallow a
        cancellation that arrives as the lock is granted, and the cancelled
        task runs on."""
        if timeout is None or not lock.locked():
            await lock.acquire()  # a free lock is taken without suspending
            return True
        acquiring = asyncio.ensure_future(lock.acquire())
        try:
            done, _ = await asyncio.wait([acquiring], timeout=timeout)
        except BaseException:
            _forgo(lock, acquiring)
            raise
        if done:
            return True
        _forgo(lock, acquiring)
        return False

    @staticmethod
    def shielded() -> contextlib.AbstractContextManager[Any]:
        anyio = sys.modules.get("anyio")
        if anyio is None:
            return _NOTHING
        scope: contextlib.AbstractContextManager[Any] = anyio.CancelScope(shield=True)
        return scope

    @staticmethod
    def spawn(fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any, name: str) -> _AsyncioTask:
        return _AsyncioTask(asyncio.get_running_loop().create_task(fn(*args), name=name))


def _forgo(lock: asyncio.Lock, acquiring: asyncio.Future[Any]) -> None:
    """Give up a pending acquisition; if it was granted meanwhile, hand the
    lock back."""
    acquiring.cancel()

    def _release_if_granted(fut: asyncio.Future[Any]) -> None:
        if not fut.cancelled() and fut.exception() is None:
            lock.release()

    acquiring.add_done_callback(_release_if_granted)


# --- trio ------------------------------------------------------------------


class _TrioTask:
    """A trio system task that its owner cancels and awaits: trio has no
    free-floating tasks, and a nursery cannot outlive the call that opened
    it, while a stream's feeder lives from its first ``__anext__`` to its
    ``aclose`` and a daemon from ``start()`` to ``stop()``. What the task
    raises is kept for its owner, never left to trio's system nursery (which
    would crash the run); it runs in a copy of the spawner's context."""

    __slots__ = ("_scope", "_ended", "_failure", "_callbacks")

    def __init__(
        self, trio: Any, fn: Callable[..., Coroutine[Any, Any, Any]], args: tuple[Any, ...], name: str
    ) -> None:
        self._scope = trio.CancelScope()
        self._ended = trio.Event()
        self._failure: BaseException | None = None
        self._callbacks: list[Callable[[], object]] = []
        trio.lowlevel.spawn_system_task(self._main, trio, fn, args, name=name, context=contextvars.copy_context())

    async def _main(self, trio: Any, fn: Callable[..., Coroutine[Any, Any, Any]], args: tuple[Any, ...]) -> None:
        try:
            with self._scope:
                await fn(*args)
        except trio.Cancelled:
            raise  # trio.run is ending: the system nursery cancels its tasks
        except BaseException as exc:
            self._failure = exc
        finally:
            self._ended.set()
            for callback in self._callbacks:
                callback()

    def cancel(self) -> None:
        self._scope.cancel()

    def done(self) -> bool:
        return bool(self._ended.is_set())

    def failure(self) -> BaseException | None:
        return self._failure

    async def settled(self) -> None:
        await self._ended.wait()

    async def joined(self) -> None:
        await self._ended.wait()
        if self._failure is not None:
            raise self._failure

    def on_done(self, callback: Callable[[], object]) -> None:
        if self._ended.is_set():
            callback()
        else:
            self._callbacks.append(callback)


class _Trio:
    """Under trio, a cancelled scope cancels every await inside it until the
    scope is left; so cleanup that must finish (stopping a tree before the
    scope that cancelled it exits) runs shielded."""

    name = "trio"

    def __init__(self, trio: Any) -> None:
        self._trio = trio
        self.cancelled: type[BaseException] = trio.Cancelled

    @staticmethod
    def waiter() -> TrioWaiter:
        return TrioWaiter()

    def lock(self) -> Lock:
        lock: Lock = self._trio.Lock()
        return lock

    async def acquire(self, lock: Lock, timeout: float | None) -> bool:
        if timeout is None or not lock.locked():
            await lock.acquire()
            return True
        with self._trio.move_on_after(timeout):
            await lock.acquire()
            return True
        return False

    def shielded(self) -> contextlib.AbstractContextManager[Any]:
        scope: contextlib.AbstractContextManager[Any] = self._trio.CancelScope(shield=True)
        return scope

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any, name: str) -> _TrioTask:
        return _TrioTask(self._trio, fn, args, name)


ASYNCIO: Library = _Asyncio()
_trio_library: Library | None = None


def _in_trio_task(trio: Any) -> bool:
    lowlevel = trio.lowlevel
    in_task = getattr(lowlevel, "in_trio_task", None)
    if in_task is not None:
        return bool(in_task())
    try:  # before trio 0.23
        lowlevel.current_task()
    except RuntimeError:
        return False
    return True


def current() -> Library:
    """The async library running the caller; RuntimeError if none is."""
    global _trio_library
    trio = sys.modules.get("trio")
    if trio is not None and _in_trio_task(trio):
        if _trio_library is None:
            _trio_library = _Trio(trio)
        return _trio_library
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "netrunner.aio needs a running async library: call it from asyncio (any loop), "
            "trio or anyio code; with no event loop, use the blocking netrunner API instead"
        ) from None
    return ASYNCIO
