"""The blocking API: ``run``, ``stream``, ``start``, ``Process``, ``Stream``."""

from __future__ import annotations

import atexit
import inspect
import itertools
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator
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
from ._command import resolve
from ._core.output import Capture, Lines
from ._daemon import DaemonBase
from ._drivers import drive, hub, wait_in_steps
from ._engine import Handle, WaitTimeout, feeder_for, finalize_on_drop
from ._help import document, params
from ._io import fds
from ._options import refuse_async_input
from ._pipeline import handle_for
from ._results import Result

if TYPE_CHECKING:
    from ._types import (
        BytesCmd,
        CgroupSpec,
        Cmd,
        Env,
        Input,
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


def _abort(h: Handle) -> None:
    """Stop the tree after an error or KeyboardInterrupt; if interrupted again,
    leave the rest to the shepherd (release hangs up its socket)."""
    try:
        drive(h.flow_stop(None))
    except BaseException:
        pass
    finally:
        h.release()


@overload
def run(
    cmd: TextCmd,
    *,
    input: Input = None,
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
def run(
    cmd: BytesCmd,
    *,
    input: Input = None,
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
def run(
    cmd: Cmd,
    *,
    input: Input = None,
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
def run(
    cmd: Cmd,
    *,
    input: Input = None,
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
def run(
    cmd: Cmd,
    *,
    input: Input = None,
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
def run(
    cmd: Cmd,
    *,
    input: Input = None,
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
def run(cmd: Any, **options: Any) -> Result[Any]:
    """Run ``cmd`` to completion and return its :class:`Result`.

    stdout (and stderr, by default) are captured; ``input`` is fed as the
    command reads it. On ``timeout`` the whole tree is stopped and
    :class:`netrunner.Timeout` raised; past ``max_output_size`` likewise with
    :class:`netrunner.OutputLimitExceeded`. Descendants still running when
    the command exits are stopped, so this never hangs on a grandchild that
    holds the pipes open.
    """
    args, argv, opts = resolve("run", cmd, options)
    refuse_async_input("run", opts)
    h = handle_for(args, argv, opts, keep_stdin=opts.input is not None, lazy_reap=True, hold_output=True)
    out = Capture(opts.max_output_size)
    err = Capture(opts.max_output_size) if h.stderr_fd is not None else None
    try:
        stopped = drive(
            h.flow_collect(feeder_for(h, opts), out, err, deadline_of(opts.timeout), stop_on_timeout=True)
        )
    except BaseException:
        _abort(h)
        raise
    try:
        return conclude(h, out, err, stopped, check=opts.check)
    finally:
        h.reap()
        h.release()


@overload
def start(
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
def start(
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
def start(
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
def start(
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
def start(
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
def start(
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
def start(cmd: Any, **options: Any) -> Process[Any]:
    """Start ``cmd`` and return a :class:`Process` once it has exec'd."""
    args, argv, opts = resolve("start", cmd, options)
    return Process._start(handle_for(args, argv, opts, keep_stdin=True, drain_stderr=True))


@overload
def stream(
    cmd: TextCmd,
    *,
    input: Input = None,
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
    input: Input = None,
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
    input: Input = None,
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
    input: Input = None,
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
    input: Input = None,
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
    input: Input = None,
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
    """Start ``cmd`` and return a :class:`Stream` of its stdout chunks, read
    only as the consumer asks for them."""
    args, argv, opts = resolve("stream", cmd, options)
    refuse_async_input("stream", opts)
    h = handle_for(args, argv, opts, keep_stdin=opts.input is not None, lazy_reap=True, stream_pipe=True)
    try:
        drive(h.flow_started())
    except BaseException:
        _abort(h)
        raise
    return Stream(h)


def _take(lock: threading.Lock, deadline: float | None) -> bool:
    """Acquire ``lock`` by ``deadline`` (None: however long it takes)."""
    if deadline is None:
        return lock.acquire()
    return bool(wait_in_steps(lambda seconds: lock.acquire(timeout=seconds), deadline))


class Process(ProcessBase, Generic[OutT]):
    """A started command. Thread-safe; a context manager whose exit stops the
    tree (if still running) and releases every fd."""

    __slots__ = ("_out_lock", "_err_lock", "_in_lock")

    _out_lock: threading.Lock
    _err_lock: threading.Lock
    _in_lock: threading.Lock

    def __init__(self) -> None:
        raise TypeError("Process objects come from netrunner.start()")

    @classmethod
    def _start(cls, h: Handle) -> Process[Any]:
        try:
            drive(h.flow_started())
        except BaseException:
            _abort(h)
            raise
        proc = object.__new__(cls)
        proc._h = h
        proc._out_lock = threading.Lock()
        proc._err_lock = threading.Lock()
        proc._in_lock = threading.Lock()
        proc._comm = None
        proc._finalizer = finalize_on_drop(proc, h, warn=True)
        return proc

    def __enter__(self) -> Process[OutT]:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._h.foreign:  # in a forked child: the command is the parent's
            self.close()

    def write(self, data: bytes | str) -> None:
        """Write all of ``data`` to stdin, blocking while the pipe is full."""
        self._h.own()
        payload = encode_input(data, self._h.opts)
        with self._in_lock:
            self._check_no_input_pending()
            drive(self._h.flow_write(payload))

    def _read(self, which: int, lock: threading.Lock, max_bytes: int, timeout: float | None) -> Any:
        self._h.own()
        check_size(max_bytes)
        deadline = deadline_of(timeout)
        if not _take(lock, deadline):
            raise TimeoutError(f"no output within {timeout} seconds")
        try:
            return drive(self._h.flow_read_output(which, max_bytes, deadline))
        except WaitTimeout:
            raise TimeoutError(f"no output within {timeout} seconds") from None
        finally:
            lock.release()

    def read(self, max_bytes: int = 65536, *, timeout: float | None = None) -> OutT:
        """The next available stdout bytes (at most ``max_bytes``); b"" at EOF;
        ``TimeoutError`` if nothing arrives within ``timeout`` seconds."""
        return cast("OutT", self._read(1, self._out_lock, max_bytes, timeout))

    def read_stderr(self, max_bytes: int = 65536, *, timeout: float | None = None) -> OutT:
        """Like :meth:`read`, for stderr (``stderr="capture"`` only)."""
        return cast("OutT", self._read(self._stderr_stream(), self._err_lock, max_bytes, timeout))

    def readline(self, *, timeout: float | None = None) -> OutT:
        """The next line of stdout, newline kept (``b""``/``""`` at the end,
        the last line as it is if it has none); no length limit.
        :class:`netrunner.Timeout` carries what was read so far, which stays
        buffered for the next read."""
        return cast("OutT", self._until(self._newline(), timeout, None, eof_ok=True))

    def read_until(
        self, pattern: OutT | re.Pattern[OutT], *, timeout: float | None = None, max_bytes: int | None = None
    ) -> OutT:
        """Read stdout until ``pattern`` (bytes/str, or a compiled regex) has
        appeared; return everything up to and including it. What follows
        stays buffered for the next read. On timeout, :class:`netrunner.Timeout`
        carries what was read so far (still buffered); past ``max_bytes``
        without a match, :class:`netrunner.OutputLimitExceeded` (the process
        runs on); at the end of output without a match, ``EOFError``."""
        return cast("OutT", self._until(pattern, timeout, max_bytes, eof_ok=False))

    def _until(self, pattern: Any, timeout: float | None, max_bytes: int | None, *, eof_ok: bool) -> Any:
        find = self._finder(pattern, max_bytes)
        deadline = deadline_of(timeout)
        if not _take(self._out_lock, deadline):
            raise self._until_timeout(timeout)
        try:
            return drive(self._h.flow_read_until(find, deadline, max_bytes, eof_ok))
        except self._UNTIL_ENDS as exc:
            raise self._until_failed(exc, pattern, timeout, max_bytes) from None
        finally:
            self._out_lock.release()

    def communicate(self, input: bytes | str | None = None, timeout: float | None = None) -> tuple[OutT, OutT]:
        """Write ``input``, close stdin, read stdout and stderr to EOF and wait.
        Raises :class:`netrunner.Timeout` (tree left running) if it takes
        longer than ``timeout``; call again without ``input`` to go on (what
        is left of the first call's input is still written). Input given to
        a later call is a ``ValueError``; a second call returns the same pair."""
        self._h.own()
        deadline = deadline_of(timeout)
        with self._in_lock, self._out_lock, self._err_lock:
            feeder, out, err = self._communication(input)
            try:
                drive(self._h.flow_collect(feeder, out, err, deadline, stop_on_timeout=False))
            except WaitTimeout:
                raise self._comm_timeout(timeout) from None
            return self._communicated()

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the command (and its tree) to end; return the returncode.
        Any number of threads may wait at once."""
        self._h.own()
        try:
            return drive(self._h.flow_wait(deadline_of(timeout)))  # type: ignore[no-any-return]
        except WaitTimeout:
            raise self._wait_timeout(timeout) from None

    def stop(self, kill_timeout: float | None = None) -> int:
        """SIGTERM the tree, wait up to ``kill_timeout`` (default: the
        process's), SIGKILL what is left, reap; return the returncode."""
        self._h.own()
        kt = check_kill_timeout(kill_timeout)
        return drive(self._h.flow_stop(kt))  # type: ignore[no-any-return]

    def close(self) -> None:
        """``stop()`` if still running, then release every fd. Idempotent.
        In a forked child it raises: the command is the parent's."""
        h = self._h
        h.own()
        try:
            if not h.finished:
                drive(h.flow_stop(None))
        finally:
            h.release()
            self._finalizer.detach()


class Stream(StreamBase[OutT]):
    """An iterator of stdout chunks and a context manager; closing it (or
    dropping it) stops the tree if it is still running."""

    def __init__(self, h: Handle) -> None:
        self._init_stream(h.args, h.opts)
        self._attach(h)
        self._feeder = feeder_for(h, h.opts)
        self._finalizer = finalize_on_drop(self, h)

    def __iter__(self) -> Stream[OutT]:
        return self

    def __next__(self) -> OutT:
        h = self._h
        assert h is not None
        h.own()
        while not self._done:
            chunk: OutT | None = self._chunk_waiting(h)
            if chunk is not None:
                return chunk
            try:
                data = drive(h.flow_next_chunk(self._feeder, self._opts.chunk_size, self._err, self._deadline))
            except WaitTimeout:
                self.close()
                raise self._timeout_error() from None
            except BaseException:
                self.close()
                raise
            if data is None:
                rest = self._last_chunk()  # text mode: a character cut short by the end
                if rest:
                    return cast("OutT", rest)
                self._finalizer.detach()
                self._finish()
                break
            chunk = self._decode(data)
            if chunk:
                return chunk
        raise StopIteration

    def lines(self) -> Iterator[OutT]:
        """Iterate over lines (newline kept), whatever the chunk boundaries."""
        # A Python step per chunk, none per line: chain hands out the lines
        # of each chunk's split in C.
        return itertools.chain.from_iterable(self._line_batches())

    def _line_batches(self) -> Iterator[Iterable[Any]]:
        splitter = Lines(self._opts.encoding is not None)
        for chunk in self:
            yield splitter.split(chunk)
        yield splitter.finish()

    def __enter__(self) -> Stream[OutT]:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._h is None or not self._h.foreign:  # in a forked child: the parent's
            self.close()

    def close(self) -> None:
        """Stop the tree if it is still running and release every fd."""
        h = self._h
        if h is not None:
            h.own()
        if h is None or self._done:
            return
        self._done = True
        try:
            if not h.finished:
                drive(h.flow_stop(None))
        finally:
            h.release()
            self._finalizer.detach()


class Daemon(DaemonBase):
    """A supervised long-running command (SPEC section 12): its output is
    drained continuously, it is restarted by its ``restart`` policy, and it
    is stopped -- tree and all -- by :meth:`stop`, the context manager's exit,
    interpreter exit, or its owner's death.

    Every sync daemon of the interpreter is supervised by one background
    thread, which also runs the ``on_output`` and ``on_exit`` callbacks:
    keep them short, as on an event loop. Thread-safe."""

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
        self._over_event = threading.Event()
        self._in_lock = threading.Lock()
        self._start_lock = threading.Lock()

    def start(self) -> Daemon:
        """Start the first run and return once it has exec'd (an exec error
        is raised here, and never retried). A daemon that is already
        supervised is left as it is; one that has stopped starts afresh."""
        with self._start_lock:
            if self._state == "supervised":
                return self
            if self._state == "over":
                self._over_event.wait()  # the last step of the previous supervision
            h = self._spawn()
            try:
                drive(h.flow_started())
            except BaseException:
                _abort(h)
                raise
            self._over_event.clear()
            self._begin(h)
            _daemons.add(self)
            hub.add(self._flow_supervise())
        return self

    def stop(self, kill_timeout: float | None = None) -> None:
        """Stop the daemon for good: SIGTERM the current run's tree, wait up
        to ``kill_timeout`` (default: the daemon's), SIGKILL what is left,
        reap. Returns at once during a restart's backoff; idempotent. Called
        from an ``on_output``/``on_exit`` callback it asks for the stop and
        returns without waiting for it."""
        if self._request_stop(kill_timeout) and not hub.running_here():
            self._over_event.wait()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the daemon has stopped for good (``stop()``, giving up,
        or a run its policy does not restart); False if ``timeout`` seconds
        passed first."""
        deadline = deadline_of(timeout)
        if self._state == "new":
            raise RuntimeError("Daemon.wait(): the daemon was never started")
        if deadline is None:
            return self._over_event.wait()
        return bool(wait_in_steps(self._over_event.wait, deadline))

    def run(self) -> None:
        """Start (unless supervised already) and wait until the daemon has
        stopped for good; an exception here (``KeyboardInterrupt``) stops it."""
        self.start()
        try:
            self._over_event.wait()
        finally:
            self.stop()

    def write(self, data: bytes | str) -> None:
        """Write all of ``data`` to the current run's stdin, blocking while
        the pipe is full. ``BrokenPipeError`` when no run is alive (between
        runs, after stop) or the run ends before reading it all."""
        h, payload = self._stdin_of_run(data)
        try:
            with self._in_lock:
                drive(h.flow_write(payload))
        finally:
            self._stdin_done(h)

    def _ended(self) -> None:
        _daemons.discard(self)
        self._over_event.set()

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if os.getpid() == self._owner_pid:  # in a forked child: the parent's
            self.stop()


#: Sync daemons under supervision: stopped at interpreter exit.
_daemons: set[Daemon] = set()


def _stop_daemons_at_exit() -> None:
    """Stop every supervised daemon, all at once, before the interpreter's
    other cleanup (``atexit`` runs this before ``_lifetime``'s): none may be
    restarted while it goes. Bounded: a daemon whose callback hangs is left
    to ``_lifetime``, whose hang-up makes its shepherd stop the tree."""
    daemons = list(_daemons)
    deadline = time.monotonic()
    for d in daemons:
        if d._request_stop(None):
            deadline = max(deadline, time.monotonic() + d._opts.kill_timeout + 1.0)
    for d in daemons:
        d._over_event.wait(max(0.0, deadline - time.monotonic()))


document(run, "run", params("cmd"), "Result")
document(stream, "stream", params("cmd"), "Stream")
document(start, "start", params("cmd"), "Process")
document(Daemon.__init__, "Daemon", params("self", "cmd"), inspect.Signature.empty, doc_of=Daemon)

atexit.register(_stop_daemons_at_exit)
fds.on_fork_in_child(_daemons.clear)  # a forked child's exit must not touch the parent's daemons
