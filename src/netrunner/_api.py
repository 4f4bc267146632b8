"""What the sync and asyncio front ends share: the members that never wait,
and turning a finished handle into a ``Result`` or the right error."""

from __future__ import annotations

import math
import signal as _signal
import time
import weakref
from typing import TYPE_CHECKING, Any, Generic

from ._core import codec
from ._core.output import Capture, InputSource, Lines, Tail, cut_head, decode_all, encode_text, finder
from ._core.state import Phase
from ._engine import EndOfOutput, Feeder, Handle, LimitReached, WaitTimeout, set_window_size, stdin_closed_error
from ._errors import AbnormalExit, OutputLimitExceeded, ProcessError, Timeout
from ._io import fds
from ._options import Options
from ._results import Result, Stats, decode_status
from .signals import resolve as resolve_signal

if TYPE_CHECKING:
    from ._types import Arg, OutT
else:
    from ._types import OutT


def deadline_of(timeout: float | None, name: str = "timeout") -> float | None:
    """The ``time.monotonic()`` deadline of a method's ``timeout``: None
    waits for ever, as ``float("inf")`` does (so does ``Popen.wait``)."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"{name} must be a number of seconds >= 0 or None, got {timeout!r}")
    if not timeout >= 0:  # NaN too
        raise ValueError(f"{name} must be a number of seconds >= 0 or None, got {timeout!r}")
    if timeout == math.inf:
        return None
    return time.monotonic() + timeout


def check_size(max_bytes: Any) -> int:
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int):
        raise TypeError(f"max_bytes must be an int >= 1, got {max_bytes!r}")
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be an int >= 1, got {max_bytes!r}")
    return max_bytes


def check_kill_timeout(kill_timeout: Any) -> float | None:
    if kill_timeout is None:
        return None
    if isinstance(kill_timeout, bool) or not isinstance(kill_timeout, (int, float)):
        raise TypeError(f"kill_timeout must be a number of seconds, got {kill_timeout!r}")
    if not 0 < kill_timeout <= 3600:
        raise ValueError(f"kill_timeout must be > 0 and <= 3600 seconds, got {kill_timeout!r}")
    return float(kill_timeout)


def encode_input(data: Any, opts: Options, what: str = "write() takes") -> bytes:
    """``data`` for the command's stdin, as bytes (``str`` encoded with the
    process's encoding); ``what`` starts the message of a wrong type."""
    if isinstance(data, str):
        return data.encode(opts.encoding or "utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"{what} bytes or str, got {type(data).__name__}")


def conclude(
    h: Handle, out: Capture | None, err: Capture | Tail | None, stopped: str | None, *, check: bool
) -> Result[Any]:
    """The ``Result`` of a command whose tree is gone, or the error it earned."""
    opts = h.opts
    if h.core.phase is Phase.FAILED:
        raise h.exec_error()
    if h.core.phase is Phase.LOST:
        raise h.shepherd_error()
    kept_err = _stderr_kept(h, err)
    stats = h.stats()
    if stopped == "timeout":  # partial output stays bytes: it may end inside a character
        raise Timeout(list(h.args), opts.timeout or 0.0, _raw(out), _raw(err), stats, kill_timeout=opts.kill_timeout)
    if stopped in ("stdout", "stderr"):
        assert opts.max_output_size is not None
        raise OutputLimitExceeded(list(h.args), opts.max_output_size, stopped, _raw(out), _raw(err), stats)
    stdout = decode_all(out.value(), opts.encoding, opts.errors) if out is not None else b""
    stderr = decode_all(kept_err, opts.encoding, opts.errors) if err is not None else b""
    if opts.encoding is not None:
        stdout = stdout or ""
        stderr = stderr or ""
    core = h.core
    assert core.status is not None
    rc, exit_status, sig = decode_status(core.status)
    if h.staged:  # a pipeline: every stage's status and statistics too
        result: Result[Any] = Result(
            h.args, stdout, stderr, rc, exit_status, sig, stats,
            core.pipestatus, h.stage_stats(),  # type: ignore[attr-defined]
        )
    else:
        result = Result(h.args, stdout, stderr, rc, exit_status, sig, stats, (rc,), (stats,))
    if check and result.returncode != 0:
        raise ProcessError(
            result.returncode, list(h.args), stdout, stderr,
            exit_status=result.exit_status, signal=result.signal, stats=stats,
        )
    return result


def _raw(capture: Capture | Tail | None) -> bytes:
    return capture.value() if capture is not None else b""


def _stderr_kept(h: Handle, err: Capture | Tail | None) -> bytes:
    """What is kept of captured stderr, as bytes; what was not kept is
    counted in ``Stats.bytes_err_dropped``: the oldest bytes a stream's tail
    let go (in text mode with the rest of a character they cut, dropped too
    so that decoding starts on a character: ``output.cut_head``), or what
    ``run``'s ``max_output_size`` turned away."""
    if err is None:
        return b""
    data = err.value()
    if isinstance(err, Tail):
        dropped = err.dropped  # also where the tail starts in the stream
        if dropped and h.opts.encoding is not None:
            cut = cut_head(data, h.opts.encoding, dropped)
            data, dropped = data[cut:], dropped + cut
        h.core.err_dropped = dropped
    elif err.exceeded:
        h.core.err_dropped = max(0, h.core.bytes_err - len(err))
    return data


class _Communication:
    """What ``communicate`` keeps across calls: the first call's input
    still to be written (``feeder``: a call cut short by its timeout leaves
    the rest for the next one, as ``Popen`` does), its captures, the stdout
    that ``readline``/``read_until`` had read ahead (``ahead``, in text
    mode; in binary mode it goes into ``out``), and once it is done, the
    pair it returns."""

    __slots__ = ("feeder", "out", "err", "ahead", "pair")

    def __init__(self, h: Handle, feeder: Feeder | None) -> None:
        self.feeder = feeder
        self.out = Capture()
        self.err = Capture()
        self.ahead: Any = h.pending[:0]
        self.pair: tuple[Any, Any] | None = None

    def unwritten(self) -> Feeder | None:
        """The first call's feeder while it has input left to write."""
        if self.feeder is not None and not self.feeder.active:
            self.feeder = None  # all written, or the command closed its stdin
        return self.feeder

    def take_ahead(self, h: Handle) -> None:
        """Take what was read ahead of stdout (before this call, or in
        between two calls): it comes first."""
        pending, h.pending = h.pending, h.pending[:0]
        if not pending:
            return
        if h.text_out is None:
            self.out.add(pending)
        elif not len(self.out):
            self.ahead += pending
        else:  # after bytes collected: as bytes again
            assert h.opts.encoding is not None
            self.out.add(encode_text(pending, h.opts.encoding))


class ProcessBase:
    """Members of ``Process`` and ``aio.Process`` that never block."""

    __slots__ = ("_h", "_finalizer", "_comm", "__weakref__")

    _h: Handle
    _finalizer: weakref.finalize[Any, Any]
    _comm: _Communication | None

    def __repr__(self) -> str:
        state = "running" if self._h.core.status is None else f"returncode={self._h.core.returncode}"
        return f"<{type(self).__name__} pid={self.pid} {state} args={list(self._h.args)!r}>"

    @property
    def args(self) -> tuple[Arg, ...]:
        """The argv as given."""
        return self._h.args

    @property
    def pid(self) -> int:
        """The OS pid of the command (also its process group id)."""
        pid = self._h.core.pid
        assert pid is not None
        return pid

    @property
    def cgroup(self) -> str | None:
        """The filesystem path of the command's cgroup-v2 directory (it exists
        while the command runs and is removed, if netrunner made it, when the
        command ends), or None without a cgroup."""
        p = self._h.placement
        return p.v2 if p is not None else None

    @property
    def alive(self) -> bool:
        """True until the command's exit has been observed."""
        return self.poll() is None

    def poll(self) -> int | None:
        """The returncode if the command has exited, else None; never blocks."""
        self._h.own()
        self._h.pump_control()
        return self._h.core.returncode

    @property
    def returncode(self) -> int | None:
        """``subprocess``'s convention: exit code, or -N for signal N; None while running."""
        self._h.own()
        return self._h.core.returncode

    @property
    def pipestatus(self) -> tuple[int, ...] | None:
        """Every stage's returncode, in order (one for a single command),
        once all have exited; else None."""
        h = self._h
        h.own()
        if h.staged:
            return h.core.pipestatus  # type: ignore[attr-defined, no-any-return]
        rc = h.core.returncode
        return None if rc is None else (rc,)

    @property
    def exit_status(self) -> int | None:
        """The shell's convention: exit code, or 128+N for signal N; None while running."""
        self._h.own()
        return self._h.core.exit_status

    @property
    def signal(self) -> _signal.Signals | int | None:
        """The signal that killed the command, else None."""
        self._h.own()
        return self._h.core.signal

    @property
    def stats(self) -> Stats:
        """A snapshot of the statistics so far."""
        self._h.own()
        stats: Stats = self._h.stats()
        return stats

    def send_signal(self, sig: int | str | _signal.Signals) -> None:
        """Send ``sig`` to the command's whole process group (a no-op after exit)."""
        signo = resolve_signal(sig)
        h = self._h
        h.own()
        h.pump_control()
        if not h.core.done:
            h.send(codec.encode_signal(signo))

    def terminate(self) -> None:
        """``send_signal(SIGTERM)``."""
        self.send_signal(15)

    def kill(self) -> None:
        """``send_signal(SIGKILL)``."""
        self.send_signal(9)

    def close_stdin(self) -> None:
        """Close the command's stdin: it sees EOF at once. Idempotent."""
        self._h.own()
        self._h.stdin_closed_by_user = True
        self._h.close_stdin()

    def set_window_size(self, rows: int, cols: int) -> None:
        """Resize the terminal of a ``pty=True`` process; the command (its
        terminal's foreground process group) gets SIGWINCH. Never blocks."""
        h = self._h
        h.own()
        if not h.tty:
            raise ValueError("set_window_size() needs a process started with pty=True")
        for name, value in (("rows", rows), ("cols", cols)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"set_window_size(): {name} must be an int, got {value!r}")
            if not 1 <= value <= 0xFFFF:
                raise ValueError(f"set_window_size(): {name} must be from 1 to 65535, got {value!r}")
        # Under the fd registry's lock, which closing the master takes too: a
        # close() in another thread cannot slip between reading the number
        # and the ioctl (the number could name another file by then).
        with fds.lock:
            master = h.stdout_fd
            if master is not None:
                set_window_size(master, rows, cols)

    # --- shared by the blocking and asyncio twins ---------------------------

    def _stderr_stream(self) -> int:
        if self._h.tty:
            raise ValueError("read_stderr(): with pty=True the command's stderr is the terminal, read with read()")
        if self._h.opts.stderr != "capture":
            raise ValueError(
                f"read_stderr() needs stderr='capture' (this process has stderr={self._h.opts.stderr!r})"
            )
        return 2

    def _communication(self, input: Any) -> tuple[Feeder | None, Capture, Capture]:
        """Start (or go on with) ``communicate``: its feeder and captures.
        Called with the process's stdout lock held."""
        h = self._h
        data = encode_input(input, h.opts, "communicate(): input must be") if input is not None else None
        comm = self._comm
        if comm is None:
            feeder = None
            if data is not None:
                if h.stdin_fd is None:  # the input would be lost: say why it cannot go in
                    raise stdin_closed_error(h)
                feeder = Feeder(h, InputSource(data, h.opts.encoding))
            elif h.stdin_fd is not None:
                self.close_stdin()
            comm = self._comm = _Communication(h, feeder)
        elif data:
            raise ValueError(
                "communicate(): input can only be given to the first call; call communicate() "
                "again without input to go on (what is left of the first call's input is still written)"
            )
        comm.take_ahead(h)
        return comm.unwritten(), comm.out, comm.err

    def _check_no_input_pending(self) -> None:
        """Before a ``write``: a ``communicate`` cut short by its timeout
        still has input to write, and a write now would cut into it."""
        if self._comm is not None and self._comm.unwritten() is not None:
            raise ValueError(
                "write(): communicate() was cut short before it wrote all of its input; "
                "call communicate() again to write the rest"
            )

    def _communicated(self) -> tuple[Any, Any]:
        """What ``communicate`` returns once both streams are at their end.
        In text mode the captures are decoded by the decoders ``read`` and
        ``read_stderr`` use, so a character they had begun is completed,
        and at the end (``final``): a character cut short is an error with
        ``errors="strict"``. The pair is kept: a second call returns it
        again (SPEC 5), as subprocess does."""
        comm = self._comm
        assert comm is not None
        if comm.pair is None:
            h = self._h
            if h.text_out is None or h.text_err is None:
                comm.pair = (comm.out.value(), comm.err.value())
            else:
                stdout = comm.ahead + h.text_out(comm.out.value(), final=True)
                comm.pair = (stdout, h.text_err(comm.err.value(), final=True))
        return comm.pair

    def _comm_timeout(self, timeout: float | None) -> Timeout:
        """The partial output, as bytes: what was read ahead and what the
        decoders hold (a character begun) come first, as bytes again."""
        comm = self._comm
        assert comm is not None
        h = self._h
        stdout, stderr = comm.out.value(), comm.err.value()
        if h.text_out is not None and h.text_err is not None:
            assert h.opts.encoding is not None
            stdout = encode_text(comm.ahead, h.opts.encoding) + h.text_out.held() + stdout
            stderr = h.text_err.held() + stderr
        return Timeout(list(h.args), timeout or 0.0, stdout, stderr, h.stats())

    def _finder(self, pattern: Any, max_bytes: int | None) -> Any:
        """Validate ``read_until``'s arguments; its search function."""
        self._h.own()
        if max_bytes is not None:
            check_size(max_bytes)
        return finder(pattern, self._h.opts.encoding is not None)

    #: How ``read_until``'s flow ends without a match.
    _UNTIL_ENDS = (WaitTimeout, LimitReached, EndOfOutput)

    def _newline(self) -> Any:
        return "\n" if self._h.opts.encoding is not None else b"\n"

    def _until_timeout(self, timeout: float | None) -> Timeout:
        """No match in time: what was read stays buffered, and rides along."""
        h = self._h
        return Timeout(list(h.args), timeout or 0.0, h.pending, b"", h.stats())

    def _until_failed(self, exc: Exception, pattern: Any, timeout: float | None, max_bytes: int | None) -> Exception:
        """The public error for how ``read_until``'s flow ended without a match."""
        h = self._h
        if isinstance(exc, WaitTimeout):
            return self._until_timeout(timeout)
        if isinstance(exc, LimitReached):
            return OutputLimitExceeded(
                list(h.args), max_bytes or 0, "stdout", h.pending, b"", h.stats(), option="max_bytes"
            )
        err = EOFError(f"the command's output ended before {pattern!r} appeared")
        err.partial = h.pending  # type: ignore[attr-defined]
        return err

    def _wait_timeout(self, timeout: float | None) -> Timeout:
        return Timeout(list(self._h.args), timeout or 0.0, stats=self._h.stats())


class StreamBase(Generic[OutT]):
    """State of ``Stream`` and ``aio.Stream`` that does not wait."""

    _h: Handle | None
    _opts: Options
    _args: tuple[Any, ...]
    _err: Tail | None
    _lines: Lines | None
    result: Result[OutT] | None

    def _init_stream(self, args: tuple[Any, ...], opts: Options) -> None:
        self._args = args
        self._opts = opts
        self._h = None
        self._err = None
        self._done = False
        self._undecodable: UnicodeDecodeError | None = None
        self.result = None

    def _attach(self, h: Handle) -> None:
        self._h = h
        self._err = Tail(self._opts.max_output_size or 65536) if h.stderr_fd is not None else None
        self._deadline = deadline_of(self._opts.timeout)

    def _finish(self) -> None:
        """Build ``result`` once the tree is gone; raise AbnormalExit if due."""
        h = self._h
        assert h is not None
        self._done = True
        try:
            result = conclude(h, None, self._err, None, check=False)
        finally:
            h.reap()
            h.release()
        self.result = result
        if self._undecodable is not None:  # as run does: the decoding error before the exit status
            raise self._undecodable
        if self._opts.check and result.returncode != 0:
            raise AbnormalExit(
                result.returncode, list(result.args), result.stdout, result.stderr,
                exit_status=result.exit_status, signal=result.signal, stats=result.stats,
            )

    def _timeout_error(self) -> Timeout:
        h = self._h
        assert h is not None
        opts = self._opts
        stderr = _stderr_kept(h, self._err)
        return Timeout(list(self._args), opts.timeout or 0.0, b"", stderr, h.stats(), kill_timeout=opts.kill_timeout)

    def _decode(self, data: bytes) -> Any:
        h = self._h
        assert h is not None
        if h.text_out is None:
            return data
        return h.text_out(data)

    def _last_chunk(self) -> Any:
        """At the end of stdout, in text mode, the end of what the decoder
        holds: a character cut short by the end of output is U+FFFD with
        ``errors="replace"`` (as ``run`` gives); with ``"strict"`` its
        ``UnicodeDecodeError`` is raised by :meth:`_finish`, once the stream
        is finished. Falsy when nothing is left (binary mode too); else the
        driver returns it, and finds the end again at the next call."""
        h = self._h
        if h is None or h.text_out is None:
            return None
        try:
            return h.text_out(b"", final=True)
        except UnicodeDecodeError as exc:
            self._undecodable = exc
            return None

    def _chunk_waiting(self, h: Handle) -> Any:
        """A chunk already waiting in the pipe, with no flow (the hot path), or
        None when the flow must run (nothing there, EOF, or a deadline passed)."""
        if self._deadline is not None and time.monotonic() >= self._deadline:
            return None
        while True:
            data = h.read_once(1, self._opts.chunk_size)
            if not data:
                return None
            if h.text_out is None:
                return data
            chunk = h.text_out(data)
            if chunk:
                return chunk
