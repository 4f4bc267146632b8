"""The async API: the same names as the blocking one, on whatever async
library runs the caller -- asyncio (any loop) or trio, directly or through
anyio (``_backends`` finds which, docs/async-libraries.md).

No thread and no child watcher: every wait is a wait for fds (a reader or
writer on the running asyncio loop, or trio's wait on an epoll instance),
registered only while someone waits. Cleanup never needs the loop: a process
dropped or left open when the loop closes is stopped by its shepherd, which
sees its control socket hang up. Under trio, the cleanup that stops a tree
after a cancellation runs shielded, so the tree is gone before the cancelled
scope exits.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import re
import sys
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, Generic, Literal, cast, overload

from ._api import (
    ProcessBase,
    StreamBase,
    check_kill_timeout,
    check_size,
    conclude,
    deadline_of,
    encode_input,
)
from ._backends import Library, Lock, Task, current
from ._command import resolve
from ._core import codec
from ._core.output import Capture, Lines, input_chunk
from ._daemon import DaemonBase
from ._drivers import AsyncWaiter, TrioWaiter, adrive
from ._engine import Feeder, Handle, WaitTimeout, feeder_for, finalize_on_drop
from ._errors import AbnormalExit
from ._help import document, params
from ._options import is_async_input
from ._pipeline import handle_for
from ._results import Result

if TYPE_CHECKING:
    from ._types import (
        AsyncInput,
        BytesCmd,
        CgroupSpec,
        Cmd,
        Env,
        Leftovers,
        OneBytesCmd,
        OneCmd,
        OneTextCmd,
        OnExitBytes,
        OnExitEither,
        OnExitText,
        OnOutputBytes,
        OnOutputEither,
        OnOutputText,
        OutT,
        Pty,
        RestartPolicy,
        StderrTarget,
        StdinTarget,
        StdoutTarget,
        StrOrBytesPath,
        TextCmd,
    )
else:
    from ._types import OutT

__all__ = ["run", "stream", "start", "Process", "Stream", "Daemon"]

log = logging.getLogger("netrunner.aio")
log.addHandler(logging.NullHandler())


Waiter = AsyncWaiter | TrioWaiter


async def _abort(h: Handle, waiter: Waiter, lib: Library) -> None:
    """Stop the tree after an error or cancellation (shielded under trio);
    if cancelled again, leave the rest to the shepherd (release hangs up
    its socket)."""
    try:
        with lib.shielded():
            await adrive(h.flow_stop(None), waiter)
    except BaseException:
        pass
    finally:
        h.release()


class _AsyncInput:
    """An async iterable ``input`` (an ``aio.Stream`` too), written to stdin by
    a background task (``Library.spawn``): the next item is taken only once
    the last one is written, so the source is consumed as the command reads.
    When the command stops reading, the rest is dropped; the source is closed
    at the end (``aclose``: an ``aio.Stream``'s tree is stopped), by
    :meth:`finish` if the task was cancelled before its first step. The task
    never outlives the command's ``run``/``Stream``: every way out of them
    ends it (:meth:`finish`, :meth:`abandon`) and waits for its end; a
    dropped ``Stream`` ends it through :meth:`dropped`."""

    __slots__ = ("_h", "_waiter", "_lib", "_task", "_closing", "_soon", "_dropped", "_source", "_started")

    def __init__(self, source: Any, h: Handle, waiter: Waiter, lib: Library) -> None:
        self._h = h
        self._waiter = waiter
        self._lib = lib
        #: Kept until the task has run a step: an asyncio task cancelled
        #: before its first step never runs its coroutine, whose ``finally``
        #: would have closed the source; finish() closes it then.
        self._source: Any = source
        self._started = False
        #: The task is in its cleanup (closing the source, which may stop a
        #: stream's tree): finish() waits for it instead of cancelling it.
        #: Under asyncio ``shielded()`` shields nothing, and a cancellation
        #: arriving in the middle of that stop would abandon it.
        self._closing = False
        #: Its owner was dropped: nobody will ask for its outcome (dropped()).
        self._dropped = False
        self._soon = _threadsafe_soon(lib)
        self._task: Task = lib.spawn(self._feed, source, name=f"netrunner input of {h.args[0]!r}")

    async def _feed(self, source: Any) -> None:
        self._started = True
        self._source = None  # the coroutine closes it from now on
        try:
            await self._write_all(source)
        except Exception as exc:
            if not self._dropped:
                raise  # for finish()
            _report_dropped(self._h, exc)  # nobody is left to raise it to

    async def _write_all(self, source: Any) -> None:
        h = self._h
        encoding = h.opts.encoding or "utf-8"
        try:
            async for item in source:
                data = input_chunk(item, encoding)
                if not data:
                    continue
                if h.stdin_fd is None:
                    break
                try:
                    await adrive(h.flow_write(data), self._waiter)
                except BrokenPipeError:
                    break  # the command stopped reading: the rest is dropped (SPEC 2)
        except BaseException:
            # the source failed (a BrokenPipeError of its own too), or the
            # task is cancelled: the command would wait for the rest forever
            h.send(codec.encode_stop(None))
            raise
        finally:
            await self._close(source)

    async def _close(self, source: Any) -> None:
        """The end of feeding: the command's stdin closed, the source too."""
        self._closing = True
        h = self._h
        fd = h.stdin_fd
        if fd is not None:
            self._waiter.forget(fd)
            h.close_stdin()
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            with self._lib.shielded():
                await aclose()

    async def finish(self) -> None:
        """The tree is gone: stop feeding; raise what the source raised."""
        task = self._task
        if not task.done() and not self._closing:
            task.cancel()
        with self._lib.shielded():
            await task.settled()
            if not self._started:  # cancelled before its first step
                source, self._source = self._source, None
                await self._close(source)
        failure = task.failure()
        if failure is not None:
            raise failure

    async def abandon(self) -> None:
        """Stop feeding after an error elsewhere: its own outcome is dropped."""
        try:
            await self.finish()
        except Exception:
            pass

    def dropped(self) -> None:
        """The owning ``Stream`` was garbage-collected (its tree is handed to
        its shepherd): end the task on its loop, which may be another
        thread's, or closed. Runs in a finalizer: nothing here blocks or
        needs the loop; the rest is :meth:`_end_dropped`, on the loop."""
        if self._soon is not None and not self._h.foreign:
            self._soon(self._end_dropped)

    def _end_dropped(self) -> None:
        self._dropped = True
        task = self._task
        if not task.done():
            if not self._closing:
                task.cancel()  # its own cleanup closes the source
            return  # what it raises from now on is reported by _feed
        failure = task.failure()  # retrieved: asyncio does not log it as lost
        if isinstance(failure, Exception):
            _report_dropped(self._h, failure)


def _threadsafe_soon(lib: Library) -> Callable[[Callable[[], object]], None] | None:
    """A function that has a callback run soon on the running loop (asyncio)
    or run (trio), callable from any thread and from a finalizer; a no-op
    once that loop is closed or that run has ended."""
    if lib.name == "asyncio":
        loop = asyncio.get_running_loop()

        def soon_on_loop(fn: Callable[[], object]) -> None:
            if not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(fn)
                except RuntimeError:  # closed meanwhile
                    pass

        return soon_on_loop
    trio = sys.modules.get("trio")
    if trio is None:
        return None
    token = trio.lowlevel.current_trio_token()

    def soon_in_run(fn: Callable[[], object]) -> None:
        try:
            token.run_sync_soon(fn)
        except trio.RunFinishedError:
            pass

    return soon_in_run


def _report_dropped(h: Handle, exc: BaseException) -> None:
    log.warning(
        "netrunner: the input source of a dropped aio.stream of %r failed", list(h.args), exc_info=exc
    )


def _feeding(h: Handle, opts: Any, waiter: Waiter, lib: Library) -> tuple[Feeder | None, _AsyncInput | None]:
    """What writes ``input``: the engine's feeder, or a task for an async iterable."""
    if is_async_input(opts.input):
        return None, _AsyncInput(opts.input, h, waiter, lib)
    return feeder_for(h, opts), None


@overload
async def run(
    cmd: TextCmd,
    *,
    input: AsyncInput = None,
    stdin: StdinTarget = None,
    stdout: StdoutTarget = "capture",
    stderr: StderrTarget = "capture",
    leftovers: Leftovers = "kill",
    pty: Pty = False,
    kill_timeout: float = 5.0,
    timeout: float | None = None,
    max_output_size: int | None = None,
    cgroup: CgroupSpec = None,
    cwd: StrOrBytesPath | None = None,
    env: Env = None,
    check: bool = False,
) -> Result[str]: ...
@overload
async def run(
    cmd: BytesCmd,
    *,
    input: AsyncInput = None,
    stdin: StdinTarget = None,
    stdout: StdoutTarget = "capture",
    stderr: StderrTarget = "capture",
    text: Literal[False] = False,
    encoding: None = None,
    errors: None = None,
    leftovers: Leftovers = "kill",
    pty: Pty = False,
    kill_timeout: float = 5.0,
    timeout: float | None = None,
    max_output_size: int | None = None,
    cgroup: CgroupSpec = None,
    cwd: StrOrBytesPath | None = None,
    env: Env = None,
    check: bool = False,
) -> Result[bytes]: ...
@overload
async def run(
    cmd: Cmd,
    *,
    input: AsyncInput = None,
    stdin: StdinTarget = None,
    stdout: StdoutTarget = "capture",
    stderr: StderrTarget = "capture",
    text: Literal[True],
    encoding: str | None = None,
    errors: str | None = None,
    leftovers: Leftovers = "kill",
    pty: Pty = False,
    kill_timeout: float = 5.0,
    timeout: float | None = None,
    max_output_size: int | None = None,
    cgroup: CgroupSpec = None,
    cwd: StrOrBytesPath | None = None,
    env: Env = None,
    check: bool = False,
) -> Result[str]: ...
@overload
async def run(
    cmd: Cmd,
    *,
    input: AsyncInput = None,
    stdin: StdinTarget = None,
    stdout: StdoutTarget = "capture",
    stderr: StderrTarget = "capture",
    text: bool = False,
    encoding: str,
    errors: str | None = None,
    leftovers: Leftovers = "kill",
    pty: Pty = False,
    kill_timeout: float = 5.0,
    timeout: float | None = None,
    max_output_size: int | None = None,
    cgroup: CgroupSpec = None,
    cwd: StrOrBytesPath | None = None,
    env: Env = None,
    check: bool = False,
) -> Result[str]: ...
@overload
async def run(
    cmd: Cmd,
    *,
    input: AsyncInput = None,
    stdin: StdinTarget = None,
    stdout: StdoutTarget = "capture",
    stderr: StderrTarget = "capture",
    text: bool = False,
    encoding: str | None = None,
    errors: str,
    leftovers: Leftovers = "kill",
    pty: Pty = False,
    kill_timeout: float = 5.0,
    timeout: float | None = None,
    max_output_size: int | None = None,
    cgroup: CgroupSpec = None,
    cwd: StrOrBytesPath | None = None,
    env: Env = None,
    check: bool = False,
) -> Result[str]: ...
@overload
async def run(
    cmd: Cmd,
    *,
    input: AsyncInput = None,
    stdin: StdinTarget = None,
    stdout: StdoutTarget = "capture",
    stderr: StderrTarget = "capture",
    text: bool = False,
    encoding: str | None = None,
    errors: str | None = None,
    leftovers: Leftovers = "kill",
    pty: Pty = False,
    kill_timeout: float = 5.0,
    timeout: float | None = None,
    max_output_size: int | None = None,
    cgroup: CgroupSpec = None,
    cwd: StrOrBytesPath | None = None,
    env: Env = None,
    check: bool = False,
) -> Result[bytes] | Result[str]: ...
async def run(cmd: Any, **options: Any) -> Result[Any]:
    """Run ``cmd`` to completion; the async twin of :func:`netrunner.run`.
    Cancelling the awaiting task stops the tree, then re-raises. ``input``
    may also be an async iterable (an ``aio.Stream`` too), consumed only as
    the command reads."""
    args, argv, opts = resolve("run", cmd, options)
    lib = current()
    h = handle_for(args, argv, opts, keep_stdin=opts.input is not None, lazy_reap=True, hold_output=True)
    waiter = lib.waiter()
    out = Capture(opts.max_output_size)
    err = Capture(opts.max_output_size) if h.stderr_fd is not None else None
    feeder, fed = _feeding(h, opts, waiter, lib)
    try:
        stopped = await adrive(
            h.flow_collect(feeder, out, err, deadline_of(opts.timeout), stop_on_timeout=True), waiter
        )
        if fed is not None:
            await fed.finish()
    except BaseException:
        try:
            if fed is not None:
                await fed.abandon()  # a second cancellation may end this (asyncio) ...
        finally:
            await _abort(h, waiter, lib)  # ... never this: the tree is stopped, the fds released
        raise
    try:
        return conclude(h, out, err, stopped, check=opts.check)
    finally:
        h.reap()
        h.release()


@overload
async def start(
    cmd: TextCmd,
    *,
    stdin: StdinTarget = None,
    stdout: StdoutTarget = "capture",
    stderr: StderrTarget = "capture",
    leftovers: Leftovers = "kill",
    pty: Pty = False,
    kill_timeout: float = 5.0,
    cgroup: CgroupSpec = None,
    cwd: StrOrBytesPath | None = None,
    env: Env = None,
) -> Process[str]: ...
@overload
async def start(
    cmd: BytesCmd,
    *,
    stdin: StdinTarget = None,
    stdout: StdoutTarget = "capture",
    stderr: StderrTarget = "capture",
    text: Literal[False] = False,
    encoding: None = None,
    errors: None = None,
    leftovers: Leftovers = "kill",
    pty: Pty = False,
    kill_timeout: float = 5.0,
    cgroup: CgroupSpec = None,
    cwd: StrOrBytesPath | None = None,
    env: Env = None,
) -> Process[bytes]: ...
@overload
async def start(
    cmd: Cmd,
    *,
    stdin: StdinTarget = None,
    stdout: StdoutTarget = "capture",
    stderr: StderrTarget = "capture",
    text: Literal[True],
    encoding: str | None = None,
    errors: str | None = None,
    leftovers: Leftovers = "kill",
    pty: Pty = False,
    kill_timeout: float = 5.0,
    cgroup: CgroupSpec = None,
    cwd: StrOrBytesPath | None = None,
    env: Env = None,
) -> Process[str]: ...
@overload
async def start(
    cmd: Cmd,
    *,
    stdin: StdinTarget = None,
    stdout: StdoutTarget = "capture",
    stderr: StderrTarget = "capture",
    text: bool = False,
    encoding: str,
    errors: str | None = None,
    leftovers: Leftovers = "kill",
    pty: Pty = False,
    kill_timeout: float = 5.0,
    cgroup: CgroupSpec = None,
    cwd: StrOrBytesPath | None = None,
    env: Env = None,
) -> Process[str]: ...
@overload
async def start(
    cmd: Cmd,
    *,
    stdin: StdinTarget = None,
    stdout: StdoutTarget = "capture",
    stderr: StderrTarget = "capture",
    text: bool = False,
    encoding: str | None = None,
    errors: str,
    leftovers: Leftovers = "kill",
    pty: Pty = False,
    kill_timeout: float = 5.0,
    cgroup: CgroupSpec = None,
    cwd: StrOrBytesPath | None = None,
    env: Env = None,
) -> Process[str]: ...
@overload
async def start(
    cmd: Cmd,
    *,
    stdin: StdinTarget = None,
    stdout: StdoutTarget = "capture",
    stderr: StderrTarget = "capture",
    text: bool = False,
    encoding: str | None = None,
    errors: str | None = None,
    leftovers: Leftovers = "kill",
    pty: Pty = False,
    kill_timeout: float = 5.0,
    cgroup: CgroupSpec = None,
    cwd: StrOrBytesPath | None = None,
    env: Env = None,
) -> Process[bytes] | Process[str]: ...
async def start(cmd: Any, **options: Any) -> Process[Any]:
    """Start ``cmd``; return an :class:`aio.Process <Process>` once it has exec'd."""
    args, argv, opts = resolve("start", cmd, options)
    lib = current()
    h = handle_for(args, argv, opts, keep_stdin=True, drain_stderr=True)
    waiter = lib.waiter()
    try:
        await adrive(h.flow_started(), waiter)
    except BaseException:
        await _abort(h, waiter, lib)
        raise
    return Process._make(h, waiter, lib)


@overload
def stream(
    cmd: TextCmd,
    *,
    input: AsyncInput = None,
    stdin: StdinTarget = None,
    stdout: StdoutTarget = "capture",
    stderr: StderrTarget = "capture",
    leftovers: Leftovers = "kill",
    pty: Pty = False,
    kill_timeout: float = 5.0,
    timeout: float | None = None,
    max_output_size: int | None = None,
    chunk_size: int = 65536,
    cgroup: CgroupSpec = None,
    cwd: StrOrBytesPath | None = None,
    env: Env = None,
    check: bool = True,
) -> Stream[str]: ...
@overload
def stream(
    cmd: BytesCmd,
    *,
    input: AsyncInput = None,
    stdin: StdinTarget = None,
    stdout: StdoutTarget = "capture",
    stderr: StderrTarget = "capture",
    text: Literal[False] = False,
    encoding: None = None,
    errors: None = None,
    leftovers: Leftovers = "kill",
    pty: Pty = False,
    kill_timeout: float = 5.0,
    timeout: float | None = None,
    max_output_size: int | None = None,
    chunk_size: int = 65536,
    cgroup: CgroupSpec = None,
    cwd: StrOrBytesPath | None = None,
    env: Env = None,
    check: bool = True,
) -> Stream[bytes]: ...
@overload
def stream(
    cmd: Cmd,
    *,
    input: AsyncInput = None,
    stdin: StdinTarget = None,
    stdout: StdoutTarget = "capture",
    stderr: StderrTarget = "capture",
    text: Literal[True],
    encoding: str | None = None,
    errors: str | None = None,
    leftovers: Leftovers = "kill",
    pty: Pty = False,
    kill_timeout: float = 5.0,
    timeout: float | None = None,
    max_output_size: int | None = None,
    chunk_size: int = 65536,
    cgroup: CgroupSpec = None,
    cwd: StrOrBytesPath | None = None,
    env: Env = None,
    check: bool = True,
) -> Stream[str]: ...
@overload
def stream(
    cmd: Cmd,
    *,
    input: AsyncInput = None,
    stdin: StdinTarget = None,
    stdout: StdoutTarget = "capture",
    stderr: StderrTarget = "capture",
    text: bool = False,
    encoding: str,
    errors: str | None = None,
    leftovers: Leftovers = "kill",
    pty: Pty = False,
    kill_timeout: float = 5.0,
    timeout: float | None = None,
    max_output_size: int | None = None,
    chunk_size: int = 65536,
    cgroup: CgroupSpec = None,
    cwd: StrOrBytesPath | None = None,
    env: Env = None,
    check: bool = True,
) -> Stream[str]: ...
@overload
def stream(
    cmd: Cmd,
    *,
    input: AsyncInput = None,
    stdin: StdinTarget = None,
    stdout: StdoutTarget = "capture",
    stderr: StderrTarget = "capture",
    text: bool = False,
    encoding: str | None = None,
    errors: str,
    leftovers: Leftovers = "kill",
    pty: Pty = False,
    kill_timeout: float = 5.0,
    timeout: float | None = None,
    max_output_size: int | None = None,
    chunk_size: int = 65536,
    cgroup: CgroupSpec = None,
    cwd: StrOrBytesPath | None = None,
    env: Env = None,
    check: bool = True,
) -> Stream[str]: ...
@overload
def stream(
    cmd: Cmd,
    *,
    input: AsyncInput = None,
    stdin: StdinTarget = None,
    stdout: StdoutTarget = "capture",
    stderr: StderrTarget = "capture",
    text: bool = False,
    encoding: str | None = None,
    errors: str | None = None,
    leftovers: Leftovers = "kill",
    pty: Pty = False,
    kill_timeout: float = 5.0,
    timeout: float | None = None,
    max_output_size: int | None = None,
    chunk_size: int = 65536,
    cgroup: CgroupSpec = None,
    cwd: StrOrBytesPath | None = None,
    env: Env = None,
    check: bool = True,
) -> Stream[bytes] | Stream[str]: ...
def stream(cmd: Any, **options: Any) -> Stream[Any]:
    """An async iterator of stdout chunks and an async context manager.

    Not awaited: arguments are checked here; the command starts on ``async
    with`` entry or the first ``__anext__``, where exec errors are raised.
    """
    args, argv, opts = resolve("stream", cmd, options)
    return Stream(args, argv, opts)


class Process(ProcessBase, Generic[OutT]):
    """A started command under the running async library; an async context manager."""

    __slots__ = ("_waiter", "_lib", "_out_lock", "_err_lock", "_in_lock")

    _waiter: Waiter
    _lib: Library
    _out_lock: Lock
    _err_lock: Lock
    _in_lock: Lock

    def __init__(self) -> None:
        raise TypeError("aio.Process objects come from `await netrunner.aio.start()`")

    @classmethod
    def _make(cls, h: Handle, waiter: Waiter, lib: Library) -> Process[Any]:
        proc = object.__new__(cls)
        proc._h = h
        proc._waiter = waiter
        proc._lib = lib
        proc._out_lock = lib.lock()
        proc._err_lock = lib.lock()
        proc._in_lock = lib.lock()
        proc._comm = None
        proc._finalizer = finalize_on_drop(proc, h, warn=True)
        return proc

    async def __aenter__(self) -> Process[OutT]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self._h.foreign:  # in a forked child: the command is the parent's
            await self.aclose()

    def close_stdin(self) -> None:
        self._h.own()
        fd = self._h.stdin_fd
        if fd is not None:
            self._waiter.forget(fd)  # wake a pending write before the fd goes
        super().close_stdin()

    async def write(self, data: bytes | str) -> None:
        """Write all of ``data`` to stdin, waiting while the pipe is full."""
        self._h.own()
        payload = encode_input(data, self._h.opts)
        async with self._in_lock:
            self._check_no_input_pending()
            await adrive(self._h.flow_write(payload), self._waiter)

    async def _read(self, which: int, lock: Lock, max_bytes: int, timeout: float | None) -> Any:
        self._h.own()
        check_size(max_bytes)
        deadline = deadline_of(timeout)
        if timeout is None or not lock.locked():
            await lock.acquire()  # the common case, without a call in between
        elif not await self._lib.acquire(lock, timeout):
            raise TimeoutError(f"no output within {timeout} seconds")
        try:
            return await adrive(self._h.flow_read_output(which, max_bytes, deadline), self._waiter)
        except WaitTimeout:
            raise TimeoutError(f"no output within {timeout} seconds") from None
        finally:
            lock.release()

    async def read(self, max_bytes: int = 65536, *, timeout: float | None = None) -> OutT:
        """The next available stdout bytes (at most ``max_bytes``); b"" at EOF."""
        return cast("OutT", await self._read(1, self._out_lock, max_bytes, timeout))

    async def read_stderr(self, max_bytes: int = 65536, *, timeout: float | None = None) -> OutT:
        """Like :meth:`read`, for stderr (``stderr="capture"`` only)."""
        return cast("OutT", await self._read(self._stderr_stream(), self._err_lock, max_bytes, timeout))

    async def readline(self, *, timeout: float | None = None) -> OutT:
        """The next line of stdout, newline kept; see :meth:`netrunner.Process.readline`."""
        return cast("OutT", await self._until(self._newline(), timeout, None, eof_ok=True))

    async def read_until(
        self, pattern: OutT | re.Pattern[OutT], *, timeout: float | None = None, max_bytes: int | None = None
    ) -> OutT:
        """stdout up to and including ``pattern``; see :meth:`netrunner.Process.read_until`."""
        return cast("OutT", await self._until(pattern, timeout, max_bytes, eof_ok=False))

    async def _until(self, pattern: Any, timeout: float | None, max_bytes: int | None, *, eof_ok: bool) -> Any:
        find = self._finder(pattern, max_bytes)
        deadline = deadline_of(timeout)
        lock = self._out_lock
        if timeout is None or not lock.locked():
            await lock.acquire()
        elif not await self._lib.acquire(lock, timeout):
            raise self._until_timeout(timeout)
        try:
            return await adrive(self._h.flow_read_until(find, deadline, max_bytes, eof_ok), self._waiter)
        except self._UNTIL_ENDS as exc:
            raise self._until_failed(exc, pattern, timeout, max_bytes) from None
        finally:
            lock.release()

    async def communicate(
        self, input: bytes | str | None = None, timeout: float | None = None
    ) -> tuple[OutT, OutT]:
        """Write ``input``, close stdin, read both pipes to EOF and wait;
        after a :class:`netrunner.Timeout`, call again without ``input`` to go
        on (what is left of the first call's input is still written)."""
        self._h.own()
        deadline = deadline_of(timeout)
        async with self._in_lock, self._out_lock, self._err_lock:
            feeder, out, err = self._communication(input)
            try:
                await adrive(self._h.flow_collect(feeder, out, err, deadline, stop_on_timeout=False), self._waiter)
            except WaitTimeout:
                raise self._comm_timeout(timeout) from None
            return self._communicated()

    async def wait(self, timeout: float | None = None) -> int:
        """Wait for the command (and its tree) to end; return the returncode."""
        self._h.own()
        try:
            return await adrive(self._h.flow_wait(deadline_of(timeout)), self._waiter)  # type: ignore[no-any-return]
        except WaitTimeout:
            raise self._wait_timeout(timeout) from None

    async def stop(self, kill_timeout: float | None = None) -> int:
        """SIGTERM the tree, wait up to ``kill_timeout``, SIGKILL, reap."""
        self._h.own()
        kt = check_kill_timeout(kill_timeout)
        return await adrive(self._h.flow_stop(kt), self._waiter)  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        """``stop()`` if still running, then release every fd. Idempotent.
        In a forked child it raises: the command is the parent's. Under trio
        the stop is shielded: leaving a cancelled scope, the tree is gone."""
        h = self._h
        h.own()
        try:
            if not h.finished:
                with self._lib.shielded():
                    await adrive(h.flow_stop(None), self._waiter)
        finally:
            h.release()
            self._finalizer.detach()


class Stream(StreamBase[OutT]):
    """``async with aio.stream(cmd) as s: async for chunk in s: ...``"""

    def __init__(self, args: tuple[Any, ...], argv: list[bytes], opts: Any) -> None:
        self._init_stream(args, opts)
        self._argv = argv
        self._waiter: Waiter | None = None  # and _lib: on start, under the library running then
        self._lib: Library | None = None
        self._feeder: Feeder | None = None
        self._fed: _AsyncInput | None = None
        self._finalizer: Any = None
        self._fed_finalizer: weakref.finalize[Any, Any] | None = None

    async def _ensure_started(self) -> Handle:
        if self._h is not None:
            return self._h
        lib = self._lib = current()
        waiter = self._waiter = lib.waiter()
        h = handle_for(self._args, self._argv, self._opts, keep_stdin=self._opts.input is not None, lazy_reap=True,
                       stream_pipe=True)
        try:
            await adrive(h.flow_started(), waiter)
        except BaseException:
            self._done = True
            await _abort(h, waiter, lib)
            raise
        self._attach(h)
        self._feeder, self._fed = _feeding(h, self._opts, waiter, lib)
        self._finalizer = finalize_on_drop(self, h)
        if self._fed is not None:  # dropped: the feeding task ends too
            fin = self._fed_finalizer = weakref.finalize(self, self._fed.dropped)
            fin.atexit = False  # the loop is gone by then, and the task with it
        return h

    def _detach(self) -> None:
        """The stream is ended or closed: no finalizer is due."""
        self._finalizer.detach()
        if self._fed_finalizer is not None:
            self._fed_finalizer.detach()

    def __aiter__(self) -> Stream[OutT]:
        return self

    async def __anext__(self) -> OutT:
        if self._done:
            raise StopAsyncIteration
        h = self._h
        if h is None:
            h = await self._ensure_started()
        h.own()
        waiter = self._waiter
        assert waiter is not None
        if waiter.schedules:  # trio: a checkpoint, even with a chunk waiting
            await waiter.before()
        while not self._done:
            chunk: OutT | None = self._chunk_waiting(h)
            if chunk is not None:
                if waiter.schedules:
                    await waiter.after()
                return chunk
            try:
                data = await adrive(
                    h.flow_next_chunk(self._feeder, self._opts.chunk_size, self._err, self._deadline), waiter
                )
            except WaitTimeout:
                await self.aclose()
                raise self._timeout_error() from None
            except BaseException:
                await self.aclose()
                raise
            if data is None:
                rest = self._last_chunk()  # text mode: a character cut short by the end
                if rest:
                    return cast("OutT", rest)
                self._detach()
                if self._fed is not None:
                    try:
                        await self._fed.finish()
                    except BaseException:
                        # the source failed (and stopped the tree: the
                        # command's own exit, a SIGTERM, is no news), or
                        # this task is cancelled: that is what is raised
                        try:
                            self._finish()
                        except AbnormalExit:
                            pass
                        raise
                self._finish()
                break
            chunk = self._decode(data)
            if chunk:
                return chunk
        raise StopAsyncIteration

    def lines(self) -> StreamLines[OutT]:
        """Iterate over lines (newline kept), whatever the chunk boundaries:
        ``async for line in s.lines()``. Not an async generator: leaving the
        loop early leaves nothing for the garbage collector to finish (see
        :class:`StreamLines`)."""
        return StreamLines(self)

    async def __aenter__(self) -> Stream[OutT]:
        await self._ensure_started()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._h is None or not self._h.foreign:  # in a forked child: the parent's
            await self.aclose()

    async def aclose(self) -> None:
        """Stop the tree if it is still running and release every fd."""
        h = self._h
        if h is not None:
            h.own()
        if h is None or self._done:
            self._done = True
            return
        self._done = True
        lib = self._lib
        assert lib is not None
        assert self._waiter is not None
        try:
            try:
                if self._fed is not None:
                    await self._fed.abandon()  # a second cancellation may end this (asyncio) ...
            finally:
                if not h.finished:  # ... never this
                    with lib.shielded():
                        await adrive(h.flow_stop(None), self._waiter)
        finally:
            h.release()
            self._detach()


class StreamLines(AsyncIterator[OutT], Generic[OutT]):
    """The lines of an :class:`aio.Stream <Stream>`, newline kept, whatever
    the chunk boundaries; what ``Stream.lines()`` returns.

    An async iterator object rather than an async generator: ``break`` out
    of ``async for line in s.lines()`` leaves nothing suspended for the
    garbage collector to finalize (trio warns about such a generator, and
    asyncio closes it only later, keeping the stream and its tree alive
    until then). The lines *are* the stream: ``aclose()``, or leaving
    ``async with s.lines() as lines``, closes the stream (its tree is
    stopped), as leaving ``async with s`` does."""

    __slots__ = ("_stream", "_splitter", "_batch")

    def __init__(self, stream: Stream[OutT]) -> None:
        self._stream: Stream[OutT] = stream
        #: None once the stream has ended: only ``_batch`` is left.
        self._splitter: Lines | None = Lines(stream._opts.encoding is not None)
        self._batch: Iterator[OutT] = iter(())

    def __aiter__(self) -> StreamLines[OutT]:
        return self

    async def __anext__(self) -> OutT:
        for line in self._batch:  # the hot path: a line of the last chunk
            return line
        return await self._next_chunk()

    async def _next_chunk(self) -> OutT:
        while True:
            splitter = self._splitter
            if splitter is None:
                raise StopAsyncIteration
            try:
                chunk = await self._stream.__anext__()
            except StopAsyncIteration:
                self._splitter = None
                self._batch = iter(splitter.finish())  # a last line without a newline
            except BaseException:
                self._splitter = None  # the stream is closed: no line is left
                raise
            else:
                self._batch = iter(splitter.split(chunk))
            for line in self._batch:
                return line

    async def aclose(self) -> None:
        """Close the stream: stop its tree if still running, release every fd."""
        self._splitter = None
        self._batch = iter(())
        await self._stream.aclose()

    async def __aenter__(self) -> StreamLines[OutT]:
        await self._stream.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._splitter = None
        self._batch = iter(())
        await self._stream.__aexit__(*exc)


class Daemon(DaemonBase):
    """A supervised long-running command under the running async library;
    the async twin of :class:`netrunner.Daemon`. Its supervision is a
    background task (a task on the asyncio loop; under trio a system task,
    see docs/async-libraries.md); the callbacks run in it. ``async with``
    starts and stops it; ``await d.run()`` supervises it until it ends, and
    cancelling that (a ``TaskGroup`` that fails, ``asyncio.timeout``, a trio
    cancel scope) stops its tree."""

    @overload
    def __init__(
        self,
        cmd: OneTextCmd,
        *,
        on_output: OnOutputText = "discard",
        restart: RestartPolicy = "on-failure",
        max_restarts: int = 5,
        restart_window: float = 60.0,
        backoff: tuple[float, float] = (0.1, 30.0),
        on_exit: OnExitText = None,
        name: str | None = None,
        stdin: StdinTarget = None,
        stdout: StdoutTarget = "capture",
        stderr: StderrTarget = "redirect",
        leftovers: Leftovers = "kill",
        pty: Pty = False,
        kill_timeout: float = 5.0,
        cgroup: CgroupSpec = None,
        cwd: StrOrBytesPath | None = None,
        env: Env = None,
    ) -> None: ...
    @overload
    def __init__(
        self,
        cmd: OneBytesCmd,
        *,
        on_output: OnOutputBytes = "discard",
        restart: RestartPolicy = "on-failure",
        max_restarts: int = 5,
        restart_window: float = 60.0,
        backoff: tuple[float, float] = (0.1, 30.0),
        on_exit: OnExitBytes = None,
        name: str | None = None,
        stdin: StdinTarget = None,
        stdout: StdoutTarget = "capture",
        stderr: StderrTarget = "redirect",
        text: Literal[False] = False,
        encoding: None = None,
        errors: None = None,
        leftovers: Leftovers = "kill",
        pty: Pty = False,
        kill_timeout: float = 5.0,
        cgroup: CgroupSpec = None,
        cwd: StrOrBytesPath | None = None,
        env: Env = None,
    ) -> None: ...
    @overload
    def __init__(
        self,
        cmd: OneCmd,
        *,
        on_output: OnOutputText = "discard",
        restart: RestartPolicy = "on-failure",
        max_restarts: int = 5,
        restart_window: float = 60.0,
        backoff: tuple[float, float] = (0.1, 30.0),
        on_exit: OnExitText = None,
        name: str | None = None,
        stdin: StdinTarget = None,
        stdout: StdoutTarget = "capture",
        stderr: StderrTarget = "redirect",
        text: Literal[True],
        encoding: str | None = None,
        errors: str | None = None,
        leftovers: Leftovers = "kill",
        pty: Pty = False,
        kill_timeout: float = 5.0,
        cgroup: CgroupSpec = None,
        cwd: StrOrBytesPath | None = None,
        env: Env = None,
    ) -> None: ...
    @overload
    def __init__(
        self,
        cmd: OneCmd,
        *,
        on_output: OnOutputText = "discard",
        restart: RestartPolicy = "on-failure",
        max_restarts: int = 5,
        restart_window: float = 60.0,
        backoff: tuple[float, float] = (0.1, 30.0),
        on_exit: OnExitText = None,
        name: str | None = None,
        stdin: StdinTarget = None,
        stdout: StdoutTarget = "capture",
        stderr: StderrTarget = "redirect",
        text: bool = False,
        encoding: str,
        errors: str | None = None,
        leftovers: Leftovers = "kill",
        pty: Pty = False,
        kill_timeout: float = 5.0,
        cgroup: CgroupSpec = None,
        cwd: StrOrBytesPath | None = None,
        env: Env = None,
    ) -> None: ...
    @overload
    def __init__(
        self,
        cmd: OneCmd,
        *,
        on_output: OnOutputText = "discard",
        restart: RestartPolicy = "on-failure",
        max_restarts: int = 5,
        restart_window: float = 60.0,
        backoff: tuple[float, float] = (0.1, 30.0),
        on_exit: OnExitText = None,
        name: str | None = None,
        stdin: StdinTarget = None,
        stdout: StdoutTarget = "capture",
        stderr: StderrTarget = "redirect",
        text: bool = False,
        encoding: str | None = None,
        errors: str,
        leftovers: Leftovers = "kill",
        pty: Pty = False,
        kill_timeout: float = 5.0,
        cgroup: CgroupSpec = None,
        cwd: StrOrBytesPath | None = None,
        env: Env = None,
    ) -> None: ...
    @overload
    def __init__(
        self,
        cmd: OneCmd,
        *,
        on_output: OnOutputEither = "discard",
        restart: RestartPolicy = "on-failure",
        max_restarts: int = 5,
        restart_window: float = 60.0,
        backoff: tuple[float, float] = (0.1, 30.0),
        on_exit: OnExitEither = None,
        name: str | None = None,
        stdin: StdinTarget = None,
        stdout: StdoutTarget = "capture",
        stderr: StderrTarget = "redirect",
        text: bool = False,
        encoding: str | None = None,
        errors: str | None = None,
        leftovers: Leftovers = "kill",
        pty: Pty = False,
        kill_timeout: float = 5.0,
        cgroup: CgroupSpec = None,
        cwd: StrOrBytesPath | None = None,
        env: Env = None,
    ) -> None: ...
    def __init__(self, cmd: Any, **options: Any) -> None:
        super().__init__(cmd, **options)
        self._lib: Library | None = None  # and _waiter: set by start()
        self._waiter: Waiter | None = None
        self._task: Task | None = None
        self._in_lock: Lock | None = None

    async def start(self) -> Daemon:
        """Start the first run and return once it has exec'd (an exec error
        is raised here, and never retried). A daemon that is already
        supervised is left as it is; one that has stopped starts afresh."""
        if self._state == "supervised":
            return self
        lib = current()
        if lib is not self._lib:
            self._lib, self._waiter, self._in_lock = lib, lib.waiter(), None
        waiter = self._waiter
        assert waiter is not None
        h = self._spawn()
        try:
            await adrive(h.flow_started(), waiter)
        except BaseException:
            await _abort(h, waiter, lib)
            raise
        self._begin(h)
        task = self._task = lib.spawn(adrive, self._flow_supervise(), waiter, name=f"netrunner daemon {self.name}")
        task.on_done(functools.partial(self._task_ended, task))
        return self

    def _task_ended(self, task: Task) -> None:
        """The supervision task has ended. Supervision not over means its
        flow never ran: the task was cancelled before its first step (an
        ``asyncio.run`` or ``trio.run`` that ends right after ``start()``),
        and a generator closed before it starts runs no ``finally``. The
        current run is handed to its shepherd here, as the flow's end would."""
        if self._task is task and self._state == "supervised":
            self._over()

    async def stop(self, kill_timeout: float | None = None) -> None:
        """Stop the daemon for good: SIGTERM the current run's tree, wait up
        to ``kill_timeout``, SIGKILL what is left, reap. Returns at once during
        a restart's backoff; idempotent. If the caller is cancelled while it
        waits, the stop goes on without it."""
        self._request_stop(kill_timeout)
        if self._task is not None:
            await self._task.joined()

    async def wait(self) -> None:
        """Wait until the daemon has stopped for good (``stop()``, giving up,
        or a run its policy does not restart). Cancelling the wait does not
        stop the daemon (``run()`` does)."""
        if self._task is None:
            raise RuntimeError("Daemon.wait(): the daemon was never started")
        await self._task.joined()

    async def run(self) -> None:
        """Start (unless supervised already) and wait until the daemon has
        stopped for good; cancelled, it stops the daemon's tree, then
        re-raises."""
        await self.start()
        try:
            await self.wait()
        finally:
            await _stop_even_if_cancelled(self)

    async def write(self, data: bytes | str) -> None:
        """Write all of ``data`` to the current run's stdin, waiting while
        the pipe is full. ``BrokenPipeError`` when no run is alive (between
        runs, after stop) or the run ends before reading it all."""
        h, payload = self._stdin_of_run(data)
        assert self._lib is not None  # supervised: started
        assert self._waiter is not None
        try:
            if self._in_lock is None:
                self._in_lock = self._lib.lock()
            async with self._in_lock:
                await adrive(h.flow_write(payload), self._waiter)
        finally:
            self._stdin_done(h)

    async def __aenter__(self) -> Daemon:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        if os.getpid() == self._owner_pid:  # in a forked child: the parent's
            await _stop_even_if_cancelled(self)


async def _stop_even_if_cancelled(d: Daemon) -> None:
    """``d.stop()``, shielded under trio; if this task is cancelled again
    meanwhile (asyncio), the current run is handed to its shepherd (which
    stops the tree) instead."""
    lib = d._lib
    if lib is None:  # never started
        await d.stop()
        return
    try:
        with lib.shielded():
            await d.stop()
    except lib.cancelled:
        if d._task is not None and not d._task.done():
            d._task.cancel()  # the flow's end releases the run: its shepherd stops the tree
        raise


document(run, "run", params("cmd"), "Result", aio=True)
document(stream, "stream", params("cmd"), "Stream", aio=True)
document(start, "start", params("cmd"), "Process", aio=True)
document(Daemon.__init__, "Daemon", params("self", "cmd"), inspect.Signature.empty, doc_of=Daemon, aio=True)
