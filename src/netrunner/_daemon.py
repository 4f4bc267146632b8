"""What ``Daemon`` and ``aio.Daemon`` share: options, the supervision flow and
the members that never wait (SPEC section 12).

A daemon is a sequence of runs. Each run is a :class:`Handle`, exactly as
``start`` makes one; the supervision flow drains its output into
``on_output`` until its tree is gone, reports the run to ``on_exit``, asks
the restart policy (``_core/restart.py``) what follows, sleeps the backoff
and starts the next run. The flow waits like every other flow, on fds and a
deadline, so the same code runs in the sync hub thread and as an asyncio
task. Each daemon has an eventfd in its waits: ``stop()`` (from any thread)
sets a flag and writes it, and the flow, woken, hands the stop to the
shepherd of the current run -- or ends the backoff sleep at once.

A run's fds belong to the flow, except stdin while ``write()`` uses it (from
the caller's thread or task): a run that ends during a write is released by
the last writer, so no fd number is closed under a writer and reused.

Every run of one supervision gets the nice value and CPU affinity of the
thread that called ``start()`` (read there: restarts are started by the hub
thread or the event loop, whose own would otherwise apply), and the
process's umask and resource limits as they are when the run starts.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from ._api import check_kill_timeout, encode_input
from ._command import Command, resolve
from ._core import codec
from ._core.output import Decoder, Lines, Tail
from ._core.restart import Policy, Restarts
from ._core.state import Phase
from ._engine import READ_SIZE, STDERR_TAIL, Flow, Handle
from ._errors import NetRunnerError
from ._io import attrs, fds
from ._results import Result, Stats, decode_status

log = logging.getLogger("netrunner.daemon")
log.addHandler(logging.NullHandler())

_monotonic = time.monotonic


def _options_of(cmd: Any, options: dict[str, Any]) -> tuple[tuple[Any, ...], list[bytes], Any]:
    """The run's argv and options: ``start``'s, with stderr merged into the
    output unless it is asked for otherwise."""
    if "input" in options:
        raise TypeError("Daemon() does not take the option 'input': a daemon's stdin is Daemon.write()")
    merged = {**cmd.options, **options} if isinstance(cmd, Command) else dict(options)
    if "stderr" not in merged and merged.get("pty") in (None, False):
        merged["stderr"] = "redirect"
    if isinstance(cmd, Command):
        cmd = cmd.argv
    return resolve("Daemon", cmd, merged)


def _check_output(on_output: Any) -> Any:
    if callable(on_output):
        return on_output
    if not isinstance(on_output, str):
        raise TypeError(f"on_output must be 'discard', 'log' or a callable taking the output, got {on_output!r}")
    if on_output not in ("discard", "log"):
        raise ValueError(f"on_output must be 'discard', 'log' or a callable taking the output, got {on_output!r}")
    return on_output


class _Output:
    """Where the output of one run goes. stdout (with stderr merged, the
    default) goes to ``on_output``; a separately captured stderr keeps its
    last 64 KiB for the run's ``Result`` and, with ``"log"``, is logged as
    warnings."""

    __slots__ = ("_daemon", "_mode", "_decoder", "_lines", "_err_lines", "stderr")

    def __init__(self, daemon: DaemonBase, h: Handle) -> None:
        self._daemon = daemon
        self._mode = daemon._on_output
        opts = h.opts
        text = opts.encoding is not None and callable(self._mode)
        self._decoder = Decoder(opts.encoding, opts.errors) if text else None  # type: ignore[arg-type]
        self._lines = Lines(False) if self._mode == "log" else None
        self._err_lines = Lines(False) if self._mode == "log" else None
        self.stderr = Tail(STDERR_TAIL) if h.stderr_fd is not None else None

    def out(self, data: bytes) -> None:
        mode = self._mode
        if mode == "discard":
            return
        if self._lines is not None:
            for line in self._lines.feed(data):
                self._log(logging.INFO, "stdout", line)
            return
        chunk: Any = data if self._decoder is None else self._decoder(data)
        if chunk:
            self._daemon._call("on_output", mode, chunk)

    def err(self, data: bytes) -> None:
        assert self.stderr is not None
        self.stderr.add(data)
        if self._err_lines is not None:
            for line in self._err_lines.feed(data):
                self._log(logging.WARNING, "stderr", line)

    def finish(self) -> None:
        """The run is over: a last line without a newline, a last character."""
        if self._lines is not None and self._err_lines is not None:
            for line in self._lines.finish():
                self._log(logging.INFO, "stdout", line)
            for line in self._err_lines.finish():
                self._log(logging.WARNING, "stderr", line)
        elif self._decoder is not None:
            chunk = self._decoder(b"", final=True)
            if chunk:
                self._daemon._call("on_output", self._mode, chunk)

    def _log(self, level: int, stream: str, line: bytes) -> None:
        daemon = self._daemon
        opts = daemon._opts
        text = line.decode(opts.encoding or "utf-8", "replace" if opts.encoding else "backslashreplace")
        log.log(level, "%s: %s", daemon.name, text.rstrip("\r\n"), extra={"daemon": daemon.name, "stream": stream})

    # ``Handle.drain`` hands what is left to an object with ``add``.
    class _Sink:
        __slots__ = ("add",)

        def __init__(self, add: Callable[[bytes], None]) -> None:
            self.add = add


class DaemonBase:
    """The state of a daemon and the flow that supervises it."""

    def __init__(
        self,
        cmd: Any,
        *,
        on_output: Any = "discard",
        restart: str = "on-failure",
        max_restarts: int = 5,
        restart_window: float = 60.0,
        backoff: tuple[float, float] = (0.1, 30.0),
        on_exit: Callable[[Result], Any] | None = None,
        name: str | None = None,
        **options: Any,
    ) -> None:
        self._args, self._argv, self._opts = _options_of(cmd, options)
        self._policy = Policy.checked(restart, max_restarts, restart_window, backoff)
        self._on_output = _check_output(on_output)
        if on_exit is not None and not callable(on_exit):
            raise TypeError(f"on_exit must be a callable taking each run's Result, or None, got {on_exit!r}")
        self._on_exit = on_exit
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str, got {name!r}")
        first = self._args[0]
        self.name: str = name if name is not None else (os.fsdecode(first) if isinstance(first, bytes) else str(first))
        self._restarts = Restarts(self._policy)
        self._restart_count = 0
        self._h: Handle | None = None
        self._state = "new"  # "new", "supervised", "over"
        self._stopping = False
        self._stop_kt: float | None = None
        self._failed = False
        self._wake: int | None = None
        self._lock = threading.Lock()  # the run's stdin vs its release, and the wake fd
        self._writing: dict[Handle, int] = {}
        self._retired: set[Handle] = set()
        self._owner_pid = os.getpid()
        self._thread: attrs.Thread | None = None

    def __repr__(self) -> str:
        state = "failed" if self._failed else ("running" if self.alive else self._state)
        return f"<{type(self).__name__} {self.name!r} {state} pid={self.pid} restarts={self.restarts}>"

    # --- members that never wait ---------------------------------------------

    @property
    def pid(self) -> int | None:
        """The pid of the current run, or None when no run is alive."""
        h = self._h
        if h is None or not self.alive:
            return None
        return h.core.pid

    @property
    def alive(self) -> bool:
        """A run of the daemon is running now (False between runs, during a
        restart's backoff, and once the daemon has stopped)."""
        self._own()
        h = self._h
        if h is None or self._state != "supervised":
            return False
        h.pump_control()
        return not h.core.done

    @property
    def restarts(self) -> int:
        """How many restarted runs have started since ``start()`` (a restart
        still in its backoff, or that could not exec, is not counted)."""
        return self._restart_count

    @property
    def failed(self) -> bool:
        """True once the daemon has stopped for good other than by ``stop()``:
        it gave up (too many restarts inside ``restart_window``), could not be
        restarted (an exec failure), or ended with a non-zero status under a
        policy that does not restart it."""
        return self._failed

    @property
    def stats(self) -> Stats | None:
        """The statistics of the current run (of the last one once stopped);
        None before the first start."""
        h = self._h
        return h.stats() if h is not None else None

    # --- shared by the blocking and asyncio twins -----------------------------

    def _spawn(self, *, restart: bool = False) -> Handle:
        """A run: the first one from ``start()``, in the caller's thread,
        whose nice value and CPU affinity every restart then gets too."""
        self._own()
        if not restart:
            self._thread = attrs.thread_attrs()
        return Handle(self._args, self._argv, self._opts, keep_stdin=True, thread=self._thread)

    def _begin(self, h: Handle) -> None:
        """The first run has started: supervision begins."""
        self._h = h
        self._wake = fds.eventfd("a daemon's wake-up counter")
        self._stopping = False
        self._failed = False
        self._restarts = Restarts(self._policy)
        self._restart_count = 0
        self._state = "supervised"

    def _own(self) -> None:
        """Raise in a forked child: the daemon is the parent's, and so are
        its fds (closed in the child, their numbers free for reuse)."""
        if os.getpid() != self._owner_pid:
            raise NetRunnerError(
                f"this daemon belongs to the interpreter that started it (pid {self._owner_pid}); "
                f"it cannot be used in a forked child (pid {os.getpid()})"
            )

    def _request_stop(self, kill_timeout: Any) -> bool:
        """Ask the flow to stop the daemon; False if it is not supervised."""
        kt = check_kill_timeout(kill_timeout)
        self._own()
        with self._lock:
            if self._state != "supervised":
                return False
            if not self._stopping:
                self._stop_kt = kt
                self._stopping = True
            if self._wake is not None:
                os.eventfd_write(self._wake, 1)
        return True

    def _stdin_of_run(self, data: Any) -> tuple[Handle, bytes]:
        """The current run and ``data`` encoded, with the run's stdin held
        for a write until :meth:`_stdin_done`."""
        payload = encode_input(data, self._opts)
        self._own()
        with self._lock:
            h = self._h
            if self._state != "supervised" or h is None or h.core.done or self._stopping:
                raise BrokenPipeError(f"daemon {self.name!r} has no running process to write to")
            self._writing[h] = self._writing.get(h, 0) + 1
        return h, payload

    def _stdin_done(self, h: Handle) -> None:
        with self._lock:
            left = self._writing[h] - 1
            if left:
                self._writing[h] = left
                return
            del self._writing[h]
            if h in self._retired:
                self._retired.discard(h)
                h.release()

    def _retire(self, h: Handle) -> None:
        """A run is over (its tree gone, or handed to its shepherd): close
        its fds now, or when its last writer is done."""
        with self._lock:
            if h in self._writing:
                self._retired.add(h)
                return
        h.release()

    def _call(self, what: str, callback: Callable[[Any], Any], arg: Any) -> None:
        try:
            callback(arg)
        except Exception:
            log.exception("%s: %s raised; the daemon goes on", self.name, what)

    # --- the supervision flow ---------------------------------------------

    def _flow_supervise(self) -> Flow:
        """Supervise from the first run (already started) until the daemon
        stops for good; whatever way this ends, nothing is left running."""
        try:
            while True:
                h = self._h
                assert h is not None
                result = yield from self._flow_run(h)
                self._retire(h)
                if self._on_exit is not None:
                    self._call("on_exit", self._on_exit, result)
                if self._stopping:
                    return
                decision = self._restarts.after_run(result.returncode, h.core.t_start, _monotonic())
                if not decision.restart:
                    self._failed = decision.failed
                    if decision.gave_up:
                        log.error("%s: gave up after %d restarts inside %g seconds (last run: %s)",
                                  self.name, self._policy.max_restarts, self._policy.restart_window, _how(result))
                    elif decision.failed:
                        log.warning("%s: %s; restart=%r: not restarted", self.name, _how(result),
                                    self._policy.restart)
                    return
                log.info("%s: %s; restarting in %.3g s", self.name, _how(result), decision.delay)
                deadline = _monotonic() + decision.delay
                while not self._stopping and _monotonic() < deadline:
                    yield from self._sleep(deadline)
                if self._stopping:
                    return
                h = self._spawn(restart=True)
                self._h = h
                try:
                    yield from h.flow_started()
                except OSError as exc:  # never retried: the next attempt would fail the same way
                    self._failed = True
                    log.error("%s: could not be restarted: %s", self.name, exc)
                    return
                self._restart_count += 1
        except Exception:
            self._failed = True
            log.exception("%s: supervision failed; the daemon is stopped", self.name)
        finally:
            self._over()

    def _sleep(self, deadline: float) -> Flow:
        assert self._wake is not None
        ready = yield ((self._wake,), (), deadline)
        if self._wake in ready:
            self._drain_wake()

    def _drain_wake(self) -> None:
        assert self._wake is not None
        try:
            os.eventfd_read(self._wake)
        except BlockingIOError:
            pass

    def _flow_run(self, h: Handle) -> Flow:
        """Drain one run's output until its tree is gone; its ``Result``."""
        out = _Output(self, h)
        stop_sent = False
        assert self._wake is not None
        while True:
            h.pump_control()
            readers = h.readers()  # before the check: see _engine's invariants
            if h.core.done:
                h.drain(1, _Output._Sink(out.out))
                if out.stderr is not None:
                    h.drain(2, _Output._Sink(out.err))
                out.finish()
                yield from h.flow_reap()
                return self._result(h, out)
            if self._stopping and not stop_sent:
                h.send(codec.encode_stop(self._stop_kt))
                stop_sent = True
            ready = yield ((*readers, self._wake), (), None)
            if self._wake in ready:
                self._drain_wake()
            if h.stdout_fd in ready:
                data = h.read_once(1, READ_SIZE)
                if data:
                    out.out(data)
            if h.stderr_fd in ready:
                data = h.read_once(2, READ_SIZE)
                if data:
                    out.err(data)

    def _result(self, h: Handle, out: _Output) -> Result:
        core = h.core
        if core.phase is Phase.LOST:
            log.warning("%s: %s", self.name, h.shepherd_error())
        status = core.status if core.status is not None else 9  # lost before any status: killed
        returncode, exit_status, signal = decode_status(status)
        empty: Any = "" if self._opts.encoding is not None else b""
        stderr: Any = out.stderr.value() if out.stderr is not None else b""
        if self._opts.encoding is not None:
            stderr = stderr.decode(self._opts.encoding, "replace")
        return Result(h.args, empty, stderr, returncode, exit_status, signal, h.stats())

    def _over(self) -> None:
        """Supervision has ended: the current run, if any is left, is handed
        to its shepherd (which stops its tree), and the wake fd closed."""
        h = self._h
        if h is not None and not h.finished:
            self._retire(h)
        with self._lock:
            self._state = "over"
            wake, self._wake = self._wake, None
            if wake is not None:
                fds.close(wake)
        self._ended()

    def _ended(self) -> None:
        """Hook: supervision is over (the twins wake whoever waits)."""


def _how(result: Result) -> str:
    if result.signal is not None:
        name = getattr(result.signal, "name", str(result.signal))
        return f"killed by {name}"
    return f"exited with {result.returncode}"
