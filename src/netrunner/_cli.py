"""``netrunner run [options] -- CMD [ARG...]`` (SPEC section 14).

Runs one command with every netrunner guarantee and exits like
``timeout(1)``/``env(1)``: the command's status, 128+N for signal N, 124 on
timeout, 125 for netrunner's own failure (and ``--max-output``), 126 when the
program cannot run, 127 when it is not found.

Like ``timeout(1)``, the command gets the CLI's own stdin, stdout and stderr:
it sees the same terminal, and the CLI reads nothing of stdin. Only with
``--max-output`` are stdout and stderr relayed through pipes, unbuffered and
counted; stdin is handed over all the same. The CLI itself waits on the
shepherd's control socket (and the relayed pipes), forwards SIGINT, SIGTERM
and SIGHUP to the command's tree, and writes its own output (messages,
``--stats``, ``--stats-json``) with plain ``os.write``: an error writing them
is one line on stderr at most, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import select
import signal
import stat
import sys
import termios
import time
import tty
from typing import Any, NoReturn

from ._cgroup import Cgroup
from ._core import codec, wire
from ._core.state import Phase
from ._drivers import drive
from ._engine import READ_SIZE, Flow, Handle, set_window_size
from ._options import Options, argv_of, validate
from ._results import Stats

EXIT_TIMEOUT = 124
EXIT_FAILURE = 125
EXIT_CANNOT_RUN = 126
EXIT_NOT_FOUND = 127
EXIT_SIGPIPE = 128 + signal.SIGPIPE
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
DISTRIBUTION = "pynetrunner"
_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


# --- our own output -------------------------------------------------------------


def _write_fd(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd``, waiting while it is full (it may be
    non-blocking: the file description is shared with other processes)."""
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            poller = select.poll()
            poller.register(fd, select.POLLOUT)
            poller.poll()
            continue
        view = view[n:]


def _say(message: str) -> None:
    """One line on our stderr; if even that fails there is nowhere to tell."""
    try:
        _write_fd(2, f"netrunner: {message}\n".encode(errors="backslashreplace"))
    except OSError:
        pass


def _fail(message: str) -> int:
    _say(message)
    return EXIT_FAILURE


def _emit(fd: int, text: str, what: str) -> bool:
    """Write ``text`` to our ``fd``; on failure say so in one line."""
    try:
        _write_fd(fd, text.encode(errors="backslashreplace"))
    except OSError as exc:
        _say(f"cannot write {what}: {exc.strerror or exc}")
        return False
    return True


def _ensure_std_fds() -> None:
    """Put ``/dev/null`` on any of fds 0-2 that is closed, so no fd opened
    later takes its number and is mistaken for stdin, stdout or stderr."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            try:
                null = os.open(os.devnull, os.O_RDWR)
            except OSError:
                return
            if null != fd:  # a lower number was free after all
                os.dup2(null, fd, inheritable=False)
                os.close(null)


def version() -> str:
    """The installed distribution's version (the package's own as a fallback)."""
    try:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as dist_version

        return dist_version(DISTRIBUTION)
    except (ImportError, PackageNotFoundError):
        from . import __version__

        return __version__


# --- arguments --------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, with its output written like the rest of ours and every usage
    error exiting 125."""

    def error(self, message: str) -> NoReturn:
        _emit(2, self.format_usage(), "the usage")
        _say(message)
        raise SystemExit(EXIT_FAILURE)

    def print_usage(self, file: Any = None) -> None:
        _emit(2 if file is sys.stderr else 1, self.format_usage(), "the usage")

    def print_help(self, file: Any = None) -> None:
        if not _emit(2 if file is sys.stderr else 1, self.format_help(), "the help"):
            raise SystemExit(EXIT_FAILURE)


class _Version(argparse.Action):
    """``--version``: ``netrunner <version>`` on stdout."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> NoReturn:
        raise SystemExit(0 if _emit(1, f"netrunner {version()}\n", "the version") else EXIT_FAILURE)


def parse_size(text: str) -> int:
    """``"512M"`` -> 536870912; plain numbers are bytes."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = t[-1:] if t[-1:] in _SIZE_UNITS else ""
    try:
        value = float(t[: len(t) - len(unit)])
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use e.g. 1048576, 512K, 64M)") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"size must be at least 1 byte, got {text!r}")
    return int(value * _SIZE_UNITS[unit])


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="netrunner", description="Safe OS process execution.")
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser(
        "run",
        help="run one command with netrunner's guarantees",
        description="Run CMD on this terminal (its stdin, stdout and stderr are the CLI's); "
        "stop its whole tree on timeout, signal or exit.",
    )
    run.add_argument("--timeout", type=_seconds, metavar="S", help="stop the tree after S seconds (exit 124)")
    run.add_argument("--kill-timeout", type=_seconds, default=5.0, metavar="S",
                     help="seconds between SIGTERM and SIGKILL (default 5)")
    run.add_argument("--max-output", type=parse_size, metavar="BYTES",
                     help="relay stdout and stderr through pipes and stop the tree once either "
                     "passes BYTES (exit 125)")
    run.add_argument("--pty", action="store_true",
                     help="run on a pseudo-terminal, relayed to and from this one (put in raw mode "
                     "meanwhile; its size is followed)")
    run.add_argument("--cgroup", metavar="PATH",
                     help="run in the cgroup PATH under netrunner's cgroup root; everything in it is "
                     "killed at the end (default with a limit: a unique path)")
    run.add_argument("--memory-max", metavar="SIZE", help="cgroup memory limit, e.g. 512M (swap included)")
    run.add_argument("--cpu-max", metavar="CPUS", help="cgroup CPU limit in CPUs, e.g. 0.5")
    run.add_argument("--pids-max", metavar="N", help="cgroup limit on the number of processes")
    run.add_argument("--cwd", metavar="DIR", help="working directory")
    run.add_argument("--env", type=_env_pair, action="append", default=[], metavar="K=V",
                     help="set an environment variable (repeatable)")
    run.add_argument("--clear-env", action="store_true", help="start from an empty environment")
    run.add_argument("--stats", action="store_true", help="print statistics on stderr at the end")
    run.add_argument("--stats-json", metavar="FILE",
                     help="write statistics as JSON to FILE ('-' for stdout, after the command's output)")
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD [ARG...]")
    return parser


# --- running ------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    _ensure_std_fds()
    args = build_parser().parse_args(argv)
    cmd = list(args.argv)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        return _fail("no command given: netrunner run [options] -- CMD [ARG...]")
    env = {} if args.clear_env else dict(os.environ)
    env.update(dict(args.env))
    relayed = "capture" if args.max_output is not None else "inherit"
    options: dict[str, Any] = {"env": env, "kill_timeout": args.kill_timeout}
    if args.pty:
        options["pty"] = _terminal_size()
    else:
        options.update(stdin="inherit", stdout=relayed, stderr=relayed)
    if args.cwd is not None:
        options["cwd"] = args.cwd
    try:
        group = _cgroup_of(args)
        if group is not None:
            options["cgroup"] = group
        given, encoded = argv_of(cmd)
        opts = validate("start", options)
    except (ValueError, TypeError) as exc:
        return _fail(str(exc))
    if args.cwd is not None and not os.path.isdir(args.cwd):
        return _fail(f"--cwd {args.cwd}: no such directory")
    return _Runner(args).run(given, encoded, opts)


def _terminal_size() -> tuple[int, int]:
    """(rows, cols) of our terminal, or 24x80 without one."""
    for fd in (0, 1, 2):
        try:
            size = os.get_terminal_size(fd)
        except OSError:
            continue
        if size.lines > 0 and size.columns > 0:
            return size.lines, size.columns
    return 24, 80


def _cgroup_of(args: argparse.Namespace) -> Cgroup | None:
    """--cgroup and the limits as a Cgroup (None when none is given); errors
    name the flag."""
    limits: dict[str, Any] = {}
    for flag, name, convert in (("--memory-max", "memory_max", str), ("--cpu-max", "cpu_max", float),
                                ("--pids-max", "pids_max", int)):
        value = getattr(args, name)
        if value is None:
            continue
        try:
            limits[name] = convert(value)
        except ValueError:
            raise ValueError(f"{flag} {value}: not a number") from None
        try:
            Cgroup(**{name: limits[name]})
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{flag} {value}: {exc}") from None
    if args.cgroup is None and not limits:
        return None
    try:
        return Cgroup(args.cgroup, **limits)
    except ValueError as exc:
        raise ValueError(f"--cgroup {args.cgroup}: {exc}") from None


class _Relay:
    """One of the command's output pipes, copied to our fd of the same number."""

    __slots__ = ("which", "name", "target", "chunk", "pending", "count", "ended", "dropping")

    def __init__(self, which: int) -> None:
        self.which = which
        self.name = "stdout" if which == 1 else "stderr"
        self.target = which
        # A write to a pipe, socket or terminal blocks until all of it fits;
        # at most PIPE_BUF bytes after poll() said "writable" never do, so the
        # control socket and the deadline are always attended to.
        mode = os.fstat(which).st_mode
        self.chunk = None if stat.S_ISREG(mode) or stat.S_ISBLK(mode) else select.PIPE_BUF
        self.pending = memoryview(b"")
        self.count = 0
        self.ended = False
        self.dropping = False  # our side of it is gone: read and discard


class _Runner:
    """Runs one command until its tree is gone and its shepherd is reaped."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.h: Handle | None = None
        self.early: list[int] = []  # signals that arrived before the command was handed over
        if args.pty:
            self.relays = [_Relay(1)]  # the terminal's output, stderr included
        else:
            self.relays = [_Relay(1), _Relay(2)] if args.max_output is not None else []
        # --pty: what we read of our stdin, on its way to the terminal.
        self.typed = memoryview(b"")
        self.typed_end = not args.pty
        self.saved_mode: list[Any] | None = None  # our terminal's mode, while it is raw
        self.limit: int | None = args.max_output
        # Why netrunner stopped the tree, first cause only: "timeout",
        # "output-limit", "sigpipe" (a relayed reader went away) or
        # "write-error" (relaying failed otherwise).
        self.stopped: str | None = None
        self.over: str | None = None  # the stream that passed --max-output
        self.deadline: float | None = None
        self.tty: int | None = None  # our controlling terminal, if we have one (not with --pty)
        self.stops = 0  # the command's stops acted on (S_STOPPED)
        self.background = False  # the terminal is not ours: started in the background, or `bg` after a stop
        self.tstp_waits = False  # a SIGTSTP came before the command exec'd: sent once it has
        self.hung_up = False  # stopped by the terminal in an orphaned job: SIGHUP sent (_orphaned)

    def _forward(self, signum: int, frame: Any) -> None:
        if self.h is None:
            self.early.append(signum)
        else:
            self._pass_on(signum)

    def _pass_on(self, signum: int) -> None:
        """Send a signal the CLI received to the command's group, then SIGCONT,
        as timeout(1) does: a stopped command would otherwise keep it pending
        (and the CLI wait) until something continued it. SIGTSTP goes alone:
        the command's stop is then the job's (see ``_on_tstp``)."""
        assert self.h is not None
        self.h.send(codec.encode_signal(signum))
        if signum != signal.SIGTSTP:
            self.h.send(codec.encode_signal(signal.SIGCONT))

    def _on_tstp(self, signum: int, frame: Any) -> None:
        """SIGTSTP for the CLI: Ctrl-Z typed while our group had the terminal
        (around the handover, say: the command may run already) or a ``kill
        -TSTP``. It stops the command, and the command's stop stops the job
        (``_suspend``), so the command is never left running in a job the
        shell shows stopped. Before the command has exec'd it waits for the
        exec (``_flow`` sends it then): a stop before would hold the exec,
        and its shepherd reports the stops of the command only. With the
        command gone, or without a controlling terminal (its stops are not
        acted on then), the CLI just stops."""
        h = self.h
        if self.tty is None or (h is not None and h.core.done):
            _stop_by(signal.SIGTSTP, group=False)
        elif h is None or h.core.pid is None:
            self.tstp_waits = True
        else:
            self._pass_on(signum)

    def run(self, given: tuple[Any, ...], encoded: list[bytes], opts: Options) -> int:
        previous = {sig: signal.signal(sig, self._forward) for sig in FORWARDED}
        if self.args.pty:
            previous[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, self._resize)
        else:  # on a PTY the command has a terminal of its own, and Ctrl-Z is a key
            self.tty, foreground = _controlling_terminal()
            self.background = not foreground  # the terminal is not ours to take back at the end
            previous[signal.SIGTSTP] = signal.signal(signal.SIGTSTP, self._on_tstp)
        try:
            try:
                self.h = h = Handle(given, encoded, opts, keep_stdin=True, report_stops=not self.args.pty)
            except OSError as exc:
                self._give_back_terminal()
                return _fail(str(exc))
            if self.args.pty:
                self._raw_mode()
            if self.args.timeout is not None:
                self.deadline = time.monotonic() + self.args.timeout
            try:
                for signum in self.early:
                    self._pass_on(signum)
                drive(self._flow())
            finally:
                self._restore_mode()
                self._give_back_terminal()
                h.release()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        code, reason = self._outcome()
        self._report_stats(code, reason)
        return code

    def _resize(self, signum: int, frame: Any) -> None:
        """Our terminal changed size: so does the command's."""
        h = self.h
        if h is not None and h.stdout_fd is not None and not h.core.done:
            rows, cols = _terminal_size()
            try:
                set_window_size(h.stdout_fd, rows, cols)
            except OSError:
                pass

    def _raw_mode(self) -> None:
        """Keys typed go to the command's terminal as they are (Ctrl-C
        included: its terminal turns it into SIGINT for the command)."""
        try:
            if not os.isatty(0):
                return
            self.saved_mode = termios.tcgetattr(0)
            tty.setraw(0, termios.TCSANOW)
        except (OSError, termios.error):
            self.saved_mode = None

    def _restore_mode(self) -> None:
        mode, self.saved_mode = self.saved_mode, None
        if mode is not None:
            try:
                termios.tcsetattr(0, termios.TCSAFLUSH, mode)
            except (OSError, termios.error):
                pass

    def _type(self, ready: set[int]) -> None:
        """--pty: copy our stdin to the command's terminal; at its end, the
        terminal's end-of-file."""
        h = self.h
        assert h is not None
        if self.typed and h.stdin_fd is not None and h.stdin_fd in ready:
            try:
                n = os.write(h.stdin_fd, self.typed)
            except BlockingIOError:
                n = 0
            except OSError:  # the terminal is gone
                self.typed, self.typed_end = memoryview(b""), True
                return
            if n:
                h.last_in = self.typed[n - 1]
            self.typed = self.typed[n:]
        if not self.typed and not self.typed_end and 0 in ready:
            try:
                data = os.read(0, READ_SIZE)  # poll() said readable: this does not block
            except OSError:
                data = b""
            if data:
                self.typed = memoryview(data)
            else:
                self.typed_end = True
                h.close_stdin()

    def _stop(self, why: str) -> None:
        if self.stopped is None:
            self.stopped = why
            assert self.h is not None
            self.h.send(codec.encode_stop(None))

    def _flow(self) -> Flow:
        """Relay output (with ``--max-output``) and watch the control socket
        and the deadline until the tree is gone; then reap the shepherd."""
        h = self.h
        assert h is not None
        ready: set[int] = set()
        handed = False
        while True:
            h.pump_control()
            if not handed and h.core.pid is not None:
                handed = True
                if not h.core.done and not self.args.pty:  # on a PTY it has a terminal of its own
                    self._hand_over_terminal(h.core.pid)
            if self.tstp_waits and h.core.pid is not None:
                self.tstp_waits = False
                self._pass_on(signal.SIGTSTP)  # dropped if the command is gone
            if h.core.stops != self.stops:
                self.stops = h.core.stops
                if self.tty is not None and not h.core.done:
                    self._on_stop(self.tty, h, h.core.stop_signal)
            if self.args.pty and not h.core.done:
                self._type(ready)
            for relay in self.relays:
                if relay.pending and relay.target in ready:
                    self._push(relay)
                if not relay.pending and not relay.ended:
                    self._pull(relay)
            if h.core.done and not any(r.pending or not r.ended for r in self.relays):
                break
            if (self.deadline is not None and self.stopped is None and not h.core.done
                    and time.monotonic() >= self.deadline):
                self._stop("timeout")
            readers = [self._source(r) for r in self.relays if not r.pending and not r.ended]
            if h.ctl_open:
                readers.append(h.ctl_fd)
            writers = tuple(r.target for r in self.relays if r.pending)
            if self.args.pty and not h.core.done:
                if self.typed and h.stdin_fd is not None:
                    writers += (h.stdin_fd,)
                elif not self.typed_end:
                    readers.append(0)
            deadline = self.deadline if self.stopped is None and not h.core.done else None
            ready = yield (tuple(readers), writers, deadline)
        yield from h.flow_reap()

    def _hand_over_terminal(self, pgid: int) -> None:
        """Make the command's process group the foreground of our controlling
        terminal, if we hold it: keys typed then reach the command (it would
        be stopped by SIGTTIN otherwise), and so do Ctrl-C and Ctrl-\\, as
        under a shell. Taken back when the command has exited."""
        if self.tty is None:
            return  # no terminal whose foreground was ours when we started
        try:
            handed = os.tcgetpgrp(self.tty) == os.getpgrp() and _set_foreground(self.tty, pgid)
        except OSError:
            handed = False
        self.background = not handed

    def _on_stop(self, tty: int, h: Handle, signo: int) -> None:
        """The command was stopped. By SIGTTIN or SIGTTOU, it touched the
        terminal without the foreground: if it has it now, that was before
        the handover; if our group has it (``fg`` after ``bg``, or after we
        alone were stopped), it is handed over again. Either way the command
        goes on, continued now -- not blindly at the handover, which would
        undo a Ctrl-Z typed in that instant. Any other stop, or one for a
        terminal the shell holds, is the job's."""
        if signo in (signal.SIGTTIN, signal.SIGTTOU):
            try:
                holder = os.tcgetpgrp(tty)
            except OSError:
                holder = -1
            if holder == os.getpgrp() and h.core.pid is not None and _set_foreground(tty, h.core.pid):
                holder = h.core.pid
                self.background = False  # in the foreground again: the terminal is ours at the end
            if holder == h.core.pid:
                h.send(codec.encode_signal(signal.SIGCONT))
                return
        self._suspend(tty, h, signo)

    def _suspend(self, tty: int, h: Handle, signo: int) -> None:
        """The command was stopped (Ctrl-Z typed on the terminal it has, say):
        do what a shell's job does, since under the shell it is ours. The
        terminal goes back to our process group and the whole group stops
        by the same signal (SIGTSTP for a SIGSTOP, which no shell sends), so
        the shell sees the job stopped and why, and takes the terminal.
        Continued by ``fg``, the command gets the terminal again; by ``bg``,
        it runs on without it (and a read of it stops it, and us, again).
        Either way it is continued, through its shepherd."""
        assert h.core.pid is not None
        took = False
        try:
            if os.tcgetpgrp(tty) == h.core.pid:
                took = _set_foreground(tty, os.getpgrp())
        except OSError:
            pass
        own = signo if signo in (signal.SIGTTIN, signal.SIGTTOU) else signal.SIGTSTP
        if not _stop_by(own, group=True):  # else it returns once we are continued
            if took:
                _set_foreground(tty, h.core.pid)
            self._orphaned(h, signo)
            return
        try:
            self.background = os.tcgetpgrp(tty) != os.getpgrp()
        except OSError:
            self.background = True
        if not self.background:
            _set_foreground(tty, h.core.pid)
        h.send(codec.encode_signal(signal.SIGCONT))

    def _orphaned(self, h: Handle, signo: int) -> None:
        """The command stopped, and the job cannot: our process group is
        orphaned (its shell is gone), so the kernel dropped our stop. A
        stop by a key or a signal is dropped for the command too, as the
        kernel drops it for an orphan: it goes on. One by the terminal
        (SIGTTIN, SIGTTOU: it touched the terminal from the background)
        would only come again if it went on; an orphan would get EIO there
        instead, which we cannot give. The command is hung up, SIGHUP then
        SIGCONT, as the kernel does for an orphaned group with a stopped
        member, once: if it goes on and stops so again, it stays stopped
        until a signal sent to the CLI (forwarded with SIGCONT) ends it."""
        if signo in (signal.SIGTTIN, signal.SIGTTOU):
            if self.hung_up:
                return
            self.hung_up = True
            h.send(codec.encode_signal(signal.SIGHUP))
        h.send(codec.encode_signal(signal.SIGCONT))

    def _give_back_terminal(self) -> None:
        """At the end: the terminal back to our process group -- unless we
        were continued in the background (``bg``): the shell has it then."""
        tty, self.tty = self.tty, None
        if tty is not None:
            if not self.background:
                _set_foreground(tty, os.getpgrp())
            os.close(tty)

    def _source(self, relay: _Relay) -> int:
        assert self.h is not None
        fd = self.h.stdout_fd if relay.which == 1 else self.h.stderr_fd
        assert fd is not None
        return fd

    def _pull(self, relay: _Relay) -> None:
        """One non-blocking read of a relayed pipe."""
        h = self.h
        assert h is not None
        data = h.read_once(relay.which, READ_SIZE)
        if data is None:
            # Nothing yet; once the tree is gone nothing more can come.
            relay.ended = h.core.done
            return
        if not data:
            relay.ended = True
            return
        if relay.dropping:
            return
        room = len(data) if self.limit is None else self.limit - relay.count
        if len(data) > room:
            data = data[:room]
            relay.dropping = True
            self.over = self.over or relay.name
            self._stop("output-limit")
        relay.count += len(data)
        relay.pending = memoryview(data)

    def _push(self, relay: _Relay) -> None:
        """Write what poll() said fits of a relayed chunk to our fd."""
        chunk = relay.pending if relay.chunk is None else relay.pending[: relay.chunk]
        try:
            n = os.write(relay.target, chunk)
        except BlockingIOError:
            return
        except BrokenPipeError:
            # The reader went away: as in a shell pipeline, the writer's end.
            relay.pending = memoryview(b"")
            relay.dropping = True
            self._stop("sigpipe")
            return
        except OSError as exc:
            relay.pending = memoryview(b"")
            relay.dropping = True
            if self.stopped is None:
                _say(f"cannot write the command's {relay.name}: {exc.strerror or exc}; "
                     "the process tree was stopped")
            self._stop("write-error")
            return
        relay.pending = relay.pending[n:]

    def _outcome(self) -> tuple[int, str]:
        """Our exit status, and why the command ended (the ``reason`` of
        ``--stats-json``)."""
        h = self.h
        assert h is not None
        core = h.core
        if core.exec_error is not None:
            err = h.exec_error()
            if core.exec_error.stage == wire.STAGE_CGROUP:
                _say(str(err))
                return EXIT_FAILURE, "exec-failed"
            _say(f"{err.filename}: {err.strerror}")
            not_found = err.errno == errno.ENOENT and core.exec_error.stage != wire.STAGE_CHDIR
            return (EXIT_NOT_FOUND if not_found else EXIT_CANNOT_RUN), "exec-failed"
        reason = "signal" if core.returncode is not None and core.returncode < 0 else "exit"
        if core.phase is Phase.LOST or core.status is None:
            _say(f"{core.fault}; the command's process group was killed")
            return EXIT_FAILURE, reason
        if self.stopped == "timeout":
            _say(f"timed out after {self.args.timeout:g} s; the process tree was stopped")
            return EXIT_TIMEOUT, "timeout"
        if self.stopped == "output-limit":
            _say(f"{self.over} exceeded --max-output {self.limit} bytes; the process tree was stopped")
            return EXIT_FAILURE, "output-limit"
        if self.stopped == "write-error":
            return EXIT_FAILURE, reason
        if self.stopped == "sigpipe":
            return EXIT_SIGPIPE, "signal"
        assert core.exit_status is not None
        return core.exit_status, reason

    def _report_stats(self, code: int, reason: str) -> None:
        if not (self.args.stats or self.args.stats_json):
            return
        assert self.h is not None
        stats = self.h.stats()
        if self.args.stats:
            _emit(2, format_stats(stats) + "\n", "the statistics")
        if self.args.stats_json:
            doc = stats_document(self.h.args, stats, code, reason)
            write_stats_json(self.args.stats_json, json.dumps(doc, indent=2) + "\n")


def stats_document(args: tuple[Any, ...], stats: Stats, code: int, reason: str) -> dict[str, Any]:
    """What ``--stats-json`` writes: the ``Stats`` fields (counts not
    observed are None; CPU times are floats, 0.0 when nothing ran), ``args``,
    ``exit_code`` (the CLI's) and ``reason``."""
    doc: dict[str, Any] = {"args": [os.fsdecode(a) if isinstance(a, bytes) else os.fspath(a) for a in args]}
    doc.update(stats.as_dict())
    for name in ("cpu_user", "cpu_system"):
        value = doc[name]
        doc[name] = float(value) if value is not None else (0.0 if reason == "exec-failed" else None)
    doc["exit_code"] = code
    doc["reason"] = reason
    return doc


def write_stats_json(path: str, text: str) -> None:
    """Write ``--stats-json``. ``-``, or a path naming the very file our
    stdout (or stderr) is, goes through that fd, after what the command
    wrote there: reopening it would truncate a log the shell redirected us
    into. Any other path is created or truncated. A failure is one line on
    stderr."""
    fd = _same_as_std(path)
    what = f"--stats-json {path}"
    if fd is not None:
        _emit(fd, text, what)
        return
    try:
        out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        _say(f"cannot write {what}: {exc.strerror or exc}")
        return
    try:
        _emit(out, text, what)
    finally:
        os.close(out)


def _same_as_std(path: str) -> int | None:
    """1 or 2 when ``path`` is ``-`` or the file our stdout or stderr is."""
    if path == "-":
        return 1
    try:
        st = os.stat(path)
    except OSError:
        return None
    for fd in (1, 2):
        try:
            ours = os.fstat(fd)
        except OSError:
            continue
        if (ours.st_dev, ours.st_ino) == (st.st_dev, st.st_ino):
            return fd
    return None


def format_stats(stats: Stats) -> str:
    rows = stats.as_dict()
    width = max(len(k) for k in rows)
    return "\n".join(f"{k:<{width}}  {_cell(v)}" for k, v in rows.items())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6f}".rstrip("0").rstrip(".") if value else "0"
    return str(value)


def _controlling_terminal() -> tuple[int | None, bool]:
    """Our controlling terminal (None without one), and whether our process
    group is its foreground (a job the shell runs in the foreground, which
    hands the terminal to the command at once). With a terminal, the CLI
    acts on the command's stops as a job's, in the background too: a
    command that reads the terminal there stops the job, and `fg`
    continues it with the terminal."""
    try:
        tty = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None, False  # no controlling terminal
    try:
        return tty, os.tcgetpgrp(tty) == os.getpgrp()
    except OSError:
        os.close(tty)
        return None, False


def _stop_by(signo: int, group: bool) -> bool:
    """Stop the CLI (``group``: its whole process group, the job) by
    ``signo``'s default action, our SIGTSTP handler set aside meanwhile.
    Returns True once continued; False at once if the kernel dropped the
    stop, as it drops every stop signal to a process of an orphaned
    process group (the shell that ran the job is gone: nothing would
    continue it). Told apart by SIGCONT, held pending meanwhile: only a
    SIGCONT ends a stop. (No other thread of the CLI takes it: netrunner's
    reaper thread blocks every signal.)"""
    handler = signal.signal(signal.SIGTSTP, signal.SIG_DFL) if signo == signal.SIGTSTP else None
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCONT})
    try:
        while signal.sigtimedwait({signal.SIGCONT}, 0) is not None:
            pass  # an earlier one, which continued nothing of this stop
        if group:
            os.killpg(os.getpgrp(), signo)
        else:
            os.kill(os.getpid(), signo)
        return signal.sigtimedwait({signal.SIGCONT}, 0) is not None
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        if handler is not None:
            signal.signal(signal.SIGTSTP, handler)


def _set_foreground(tty: int, pgid: int) -> bool:
    """``tcsetpgrp`` with SIGTTOU blocked (a background process asking would
    otherwise be stopped); False if the terminal refused."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTTOU})
    try:
        os.tcsetpgrp(tty, pgid)
        return True
    except OSError:
        return False
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


if __name__ == "__main__":
    raise SystemExit(main())
