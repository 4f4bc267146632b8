"""The asyncio API: the same names as the blocking one, on the running loop.

No thread and no child watcher: every wait is a reader or writer on the
running loop, registered only while someone waits. Cleanup never needs the
loop: a process dropped or left open when the loop closes is stopped by its
shepherd, which sees its control socket hang up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from ._api import (
    ProcessBase,
    StreamBase,
    check_kill_timeout,
    check_size,
    conclude,
    deadline_of,
    encode_input,
)
from ._command import resolve
from ._core.output import Capture, InputSource, Lines
from ._drivers import AsyncWaiter, adrive
from ._engine import Feeder, Handle, WaitTimeout, feeder_for, finalize_on_drop
from ._errors import Timeout
from ._results import Result

__all__ = ["run", "stream", "start", "Process", "Stream"]


async def _abort(h: Handle, waiter: AsyncWaiter) -> None:
    """Stop the tree after an error or cancellation; if cancelled again,
    leave the rest to the shepherd (release hangs up its socket)."""
    try:
        await adrive(h.flow_stop(None), waiter)
    except BaseException:
        pass
    finally:
        h.release()


async def run(cmd: Any, **options: Any) -> Result:
    """Run ``cmd`` to completion; the asyncio twin of :func:`netrunner.run`.
    Cancelling the awaiting task stops the tree, then re-raises."""
    args, argv, opts = resolve("run", cmd, options)
    h = Handle(args, argv, opts, keep_stdin=opts.input is not None, lazy_reap=True)
    waiter = AsyncWaiter()
    out = Capture(opts.max_output_size)
    err = Capture(opts.max_output_size) if h.stderr_fd is not None else None
    try:
        stopped = await adrive(
            h.flow_collect(feeder_for(h, opts), out, err, deadline_of(opts.timeout), stop_on_timeout=True),
            waiter,
        )
    except BaseException:
        await _abort(h, waiter)
        raise
    h.release()
    return conclude(h, out, err, stopped, check=opts.check)


async def start(cmd: Any, **options: Any) -> Process:
    """Start ``cmd``; return an :class:`aio.Process <Process>` once it has exec'd."""
    args, argv, opts = resolve("start", cmd, options)
    h = Handle(args, argv, opts, keep_stdin=True)
    waiter = AsyncWaiter()
    try:
        await adrive(h.flow_started(), waiter)
    except BaseException:
        await _abort(h, waiter)
        raise
    return Process._make(h, waiter)


def stream(cmd: Any, **options: Any) -> Stream:
    """An async iterator of stdout chunks and an async context manager.

    Not awaited: arguments are checked here; the command starts on ``async
    with`` entry or the first ``__anext__``, where exec errors are raised.
    """
    args, argv, opts = resolve("stream", cmd, options)
    return Stream(args, argv, opts)


class Process(ProcessBase):
    """A started command on the running loop; an async context manager."""

    __slots__ = ("_waiter", "_out_lock", "_err_lock", "_in_lock", "_comm")

    _waiter: AsyncWaiter
    _out_lock: asyncio.Lock
    _err_lock: asyncio.Lock
    _in_lock: asyncio.Lock
    _comm: tuple[Capture, Capture] | None

    def __init__(self) -> None:
        raise TypeError("aio.Process objects come from `await netrunner.aio.start()`")

    @classmethod
    def _make(cls, h: Handle, waiter: AsyncWaiter) -> Process:
        proc = object.__new__(cls)
        proc._h = h
        proc._waiter = waiter
        proc._out_lock = asyncio.Lock()
        proc._err_lock = asyncio.Lock()
        proc._in_lock = asyncio.Lock()
        proc._comm = None
        proc._finalizer = finalize_on_drop(proc, h)
        return proc

    async def __aenter__(self) -> Process:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def close_stdin(self) -> None:
        fd = self._h.stdin_fd
        if fd is not None:
            self._waiter.forget(fd)  # wake a pending write before the fd goes
        super().close_stdin()

    async def write(self, data: bytes | str) -> None:
        """Write all of ``data`` to stdin, waiting while the pipe is full."""
        payload = encode_input(data, self._h.opts)
        async with self._in_lock:
            await adrive(self._h.flow_write(payload), self._waiter)

    async def _read(self, which: int, lock: asyncio.Lock, max_bytes: int, timeout: float | None) -> Any:
        check_size(max_bytes)
        deadline = deadline_of(timeout)
        h = self._h
        decoder = h.text_out if which == 1 else h.text_err
        try:
            await asyncio.wait_for(lock.acquire(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"no output within {timeout} seconds") from None
        try:
            while True:
                try:
                    data = await adrive(h.flow_read(which, max_bytes, deadline), self._waiter)
                except WaitTimeout:
                    raise TimeoutError(f"no output within {timeout} seconds") from None
                if decoder is None:
                    return data
                text = decoder(data, final=not data)
                if text or not data:
                    return text
        finally:
            lock.release()

    async def read(self, max_bytes: int = 65536, *, timeout: float | None = None) -> Any:
        """The next available stdout bytes (at most ``max_bytes``); b"" at EOF."""
        return await self._read(1, self._out_lock, max_bytes, timeout)

    async def read_stderr(self, max_bytes: int = 65536, *, timeout: float | None = None) -> Any:
        """Like :meth:`read`, for stderr (``stderr="capture"`` only)."""
        if self._h.opts.stderr != "capture":
            raise ValueError(f"read_stderr() needs stderr='capture' (this process has stderr={self._h.opts.stderr!r})")
        return await self._read(2, self._err_lock, max_bytes, timeout)

    async def communicate(self, input: Any = None, timeout: float | None = None) -> tuple[Any, Any]:
        """Write ``input``, close stdin, read both pipes to EOF and wait."""
        h = self._h
        deadline = deadline_of(timeout)
        if self._comm is None:
            self._comm = (Capture(), Capture())
        out, err = self._comm
        async with self._in_lock, self._out_lock, self._err_lock:
            feeder = None
            if input is not None and h.stdin_fd is not None:
                feeder = Feeder(h, InputSource(encode_input(input, h.opts), h.opts.encoding))
            elif h.stdin_fd is not None:
                self.close_stdin()
            try:
                await adrive(h.flow_collect(feeder, out, err, deadline, stop_on_timeout=False), self._waiter)
            except WaitTimeout:
                raise Timeout(list(h.args), timeout or 0.0, *_decoded(h, out, err), h.stats()) from None
        self._comm = None
        return _decoded(h, out, err)

    async def wait(self, timeout: float | None = None) -> int:
        """Wait for the command (and its tree) to end; return the returncode."""
        deadline = deadline_of(timeout)
        try:
            return await adrive(self._h.flow_wait(deadline), self._waiter)  # type: ignore[no-any-return]
        except WaitTimeout:
            raise Timeout(list(self._h.args), timeout or 0.0, stats=self._h.stats()) from None

    async def stop(self, kill_timeout: float | None = None) -> int:
        """SIGTERM the tree, wait up to ``kill_timeout``, SIGKILL, reap."""
        kt = check_kill_timeout(kill_timeout)
        return await adrive(self._h.flow_stop(kt), self._waiter)  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        """``stop()`` if still running, then release every fd. Idempotent."""
        h = self._h
        try:
            if not h.finished:
                await adrive(h.flow_stop(None), self._waiter)
        finally:
            h.release()
            self._finalizer.detach()


def _decoded(h: Handle, out: Capture, err: Capture) -> tuple[Any, Any]:
    opts = h.opts
    if opts.encoding is None:
        return out.value(), err.value()
    return out.value().decode(opts.encoding, opts.errors), err.value().decode(opts.encoding, opts.errors)


class Stream(StreamBase):
    """``async with aio.stream(cmd) as s: async for chunk in s: ...``"""

    def __init__(self, args: tuple[Any, ...], argv: list[bytes], opts: Any) -> None:
        self._init_stream(args, opts)
        self._argv = argv
        self._waiter = AsyncWaiter()
        self._feeder: Feeder | None = None
        self._finalizer: Any = None

    async def _ensure_started(self) -> Handle:
        if self._h is not None:
            return self._h
        h = Handle(self._args, self._argv, self._opts, keep_stdin=self._opts.input is not None, lazy_reap=True,
                   stream_pipe=True)
        try:
            await adrive(h.flow_started(), self._waiter)
        except BaseException:
            self._done = True
            await _abort(h, self._waiter)
            raise
        self._attach(h)
        self._feeder = feeder_for(h, self._opts)
        self._finalizer = finalize_on_drop(self, h)
        return h

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> Any:
        if self._done:
            raise StopAsyncIteration
        h = await self._ensure_started()
        while not self._done:
            # Fast path: data already waiting in the pipe needs no flow.
            in_time = self._deadline is None or time.monotonic() < self._deadline
            data = h.read_once(1, self._opts.chunk_size) if in_time else None
            if data:
                if h.text_out is None:
                    return data
                chunk = h.text_out(data)
                if chunk:
                    return chunk
                continue
            try:
                data = await adrive(
                    h.flow_next_chunk(self._feeder, self._opts.chunk_size, self._err, self._deadline),
                    self._waiter,
                )
            except WaitTimeout:
                await self.aclose()
                raise self._timeout_error() from None
            except BaseException:
                await self.aclose()
                raise
            if data is None:
                self._finalizer.detach()
                self._finish()
                break
            chunk = self._decode(data)
            if chunk:
                return chunk
        raise StopAsyncIteration

    async def lines(self) -> AsyncIterator[Any]:
        """Iterate over lines (newline kept), whatever the chunk boundaries."""
        splitter = Lines(self._opts.encoding is not None)
        async for chunk in self:
            for line in splitter.feed(chunk):
                yield line
        for line in splitter.finish():
            yield line

    async def __aenter__(self) -> Stream:
        await self._ensure_started()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the tree if it is still running and release every fd."""
        h = self._h
        if h is None or self._done:
            self._done = True
            return
        self._done = True
        try:
            if not h.finished:
                await adrive(h.flow_stop(None), self._waiter)
        finally:
            h.release()
            self._finalizer.detach()
