"""``netrunner run [options] -- CMD [ARG...]`` (SPEC section 14).

Runs one command with every netrunner guarantee, passes its stdout and stderr
through as they come, forwards SIGINT/SIGTERM/SIGHUP to its tree, and exits
like ``timeout(1)``/``env(1)``: the command's status, 128+N for signal N, 124
on timeout, 125 for netrunner's own failure (and ``--max-output``), 126 when
the program cannot run, 127 when it is not found.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import select
import signal
import sys
import time
from typing import Any, NoReturn

from ._core import codec
from ._engine import Handle
from ._options import argv_of, validate
from ._results import Stats

EXIT_TIMEOUT = 124
EXIT_FAILURE = 125
EXIT_CANNOT_RUN = 126
EXIT_NOT_FOUND = 127
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"netrunner: {message}", file=sys.stderr)
        raise SystemExit(EXIT_FAILURE)


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
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser(
        "run",
        help="run one command with netrunner's guarantees",
        description="Run CMD; stream its output; stop its whole tree on timeout, signal or exit.",
    )
    run.add_argument("--timeout", type=_seconds, metavar="S", help="stop the tree after S seconds (exit 124)")
    run.add_argument("--kill-timeout", type=_seconds, default=5.0, metavar="S",
                     help="seconds between SIGTERM and SIGKILL (default 5)")
    run.add_argument("--max-output", type=parse_size, metavar="BYTES",
                     help="stop the tree once stdout or stderr passes BYTES (exit 125)")
    run.add_argument("--pty", action="store_true", help="run on a pseudo-terminal (not supported yet)")
    run.add_argument("--cgroup", metavar="PATH", help="run in a cgroup (not supported yet)")
    run.add_argument("--memory-max", metavar="SIZE", help="cgroup memory limit (not supported yet)")
    run.add_argument("--cpu-max", metavar="CPUS", help="cgroup CPU limit (not supported yet)")
    run.add_argument("--pids-max", metavar="N", help="cgroup process limit (not supported yet)")
    run.add_argument("--cwd", metavar="DIR", help="working directory")
    run.add_argument("--env", type=_env_pair, action="append", default=[], metavar="K=V",
                     help="set an environment variable (repeatable)")
    run.add_argument("--clear-env", action="store_true", help="start from an empty environment")
    run.add_argument("--stats", action="store_true", help="print statistics on stderr at the end")
    run.add_argument("--stats-json", metavar="FILE", help="write statistics as JSON to FILE")
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD [ARG...]")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cmd = list(args.argv)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        return _fail("no command given: netrunner run [options] -- CMD [ARG...]")
    unsupported = [flag for flag, value in (
        ("--pty", args.pty), ("--cgroup", args.cgroup), ("--memory-max", args.memory_max),
        ("--cpu-max", args.cpu_max), ("--pids-max", args.pids_max)) if value]
    if unsupported:
        return _fail(f"{', '.join(unsupported)}: not supported yet in this version of netrunner")
    env = {} if args.clear_env else dict(os.environ)
    env.update(dict(args.env))
    options: dict[str, Any] = {"env": env, "kill_timeout": args.kill_timeout, "stderr": "capture"}
    if args.cwd is not None:
        options["cwd"] = args.cwd
    try:
        given, encoded = argv_of(cmd)
        opts = validate("start", options)
        if args.cwd is not None and not os.path.isdir(args.cwd):
            return _fail(f"--cwd {args.cwd}: no such directory")
        runner = _Runner(Handle(given, encoded, opts, keep_stdin=True), args)
    except OSError as exc:
        return _fail(str(exc))
    except (ValueError, TypeError) as exc:
        return _fail(str(exc))
    return runner.run()


def _fail(message: str) -> int:
    print(f"netrunner: {message}", file=sys.stderr)
    return EXIT_FAILURE


class _Runner:
    """Pumps one command's pipes to ours until its tree is gone."""

    def __init__(self, h: Handle, args: argparse.Namespace) -> None:
        self.h = h
        self.args = args
        self.limit: int | None = args.max_output
        self.counts = {1: 0, 2: 0}
        self.stopped: str | None = None  # "timeout" or "stdout"/"stderr"
        self.pending = b""  # our stdin, read but not yet written to the command
        self.stdin_open = True
        self.deadline = time.monotonic() + args.timeout if args.timeout else None

    def _forward(self, signum: int, frame: Any) -> None:
        self.h.send(codec.encode_signal(signum))

    def run(self) -> int:
        h = self.h
        previous = {sig: signal.signal(sig, self._forward) for sig in FORWARDED}
        try:
            code = self._loop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            h.release()
        self._report_stats()
        return code

    def _loop(self) -> int:
        h = self.h
        while True:
            h.pump_control()
            if h.core.done:
                self._drain()
                while h.ctl_open:
                    select.select([h.ctl_fd], [], [], 1.0)
                    h.pump_control()
                return self._exit_code()
            poller = select.poll()
            for fd in h.readers():
                poller.register(fd, select.POLLIN)
            if self.pending and h.stdin_fd is not None:
                poller.register(h.stdin_fd, select.POLLOUT)
            elif self.stdin_open and h.stdin_fd is not None and h.core.pid is not None:
                poller.register(0, select.POLLIN)
            timeout = None
            if self.deadline is not None and self.stopped is None:
                timeout = max(0.0, (self.deadline - time.monotonic()) * 1000)
            events = dict(poller.poll(timeout))
            streams: tuple[tuple[int, int | None], ...] = ((1, h.stdout_fd), (2, h.stderr_fd))
            for which, out_fd in streams:
                if out_fd is not None and out_fd in events:
                    data = h.read_once(which, 65536)
                    if data:
                        self._pass(which, data)
            if 0 in events:
                self._read_stdin()
            if h.stdin_fd is not None and h.stdin_fd in events:
                self._write_stdin()
            if self.deadline is not None and self.stopped is None and time.monotonic() >= self.deadline:
                self.stopped = "timeout"
                h.send(codec.encode_stop(None))

    def _pass(self, which: int, data: bytes) -> None:
        if self.limit is not None:
            room = self.limit - self.counts[which]
            if room <= 0:
                return
            if len(data) > room:
                data = data[:room]
                if self.stopped is None:
                    self.stopped = "stdout" if which == 1 else "stderr"
                    self.h.send(codec.encode_stop(None))
            self.counts[which] += len(data)
        _write_all(which, data)

    def _drain(self) -> None:
        for which in (1, 2):
            while True:
                data = self.h.read_once(which, 65536)
                if not data:
                    break
                self._pass(which, data)

    def _read_stdin(self) -> None:
        try:
            data = os.read(0, 65536)
        except OSError:
            data = b""
        if data:
            self.pending = data
            self._write_stdin()
        else:
            self.stdin_open = False
            self.h.close_stdin()

    def _write_stdin(self) -> None:
        fd = self.h.stdin_fd
        if fd is None:
            self.pending = b""
            return
        try:
            n = os.write(fd, self.pending)
        except BlockingIOError:
            return
        except OSError:  # the command closed its stdin
            self.pending = b""
            self.stdin_open = False
            self.h.close_stdin()
            return
        self.pending = self.pending[n:]

    def _exit_code(self) -> int:
        h = self.h
        core = h.core
        if core.exec_error is not None:
            err = h.exec_error()
            print(f"netrunner: {err.filename}: {err.strerror}", file=sys.stderr)
            return EXIT_NOT_FOUND if err.errno == errno.ENOENT and core.exec_error.stage != 2 else EXIT_CANNOT_RUN
        if core.status is None:
            print(f"netrunner: {core.fault}", file=sys.stderr)
            return EXIT_FAILURE
        if self.stopped == "timeout":
            print(f"netrunner: timed out after {self.args.timeout:g} s; the process tree was stopped",
                  file=sys.stderr)
            return EXIT_TIMEOUT
        if self.stopped is not None:
            print(f"netrunner: {self.stopped} exceeded --max-output {self.limit} bytes; "
                  "the process tree was stopped", file=sys.stderr)
            return EXIT_FAILURE
        assert core.exit_status is not None
        return core.exit_status

    def _report_stats(self) -> None:
        if not (self.args.stats or self.args.stats_json):
            return
        stats = self.h.stats()
        if self.args.stats:
            print(format_stats(stats), file=sys.stderr)
        if self.args.stats_json:
            doc = {"args": list(self.h.args), **stats.as_dict()}
            with open(self.args.stats_json, "w") as f:
                json.dump(doc, f, indent=2)
                f.write("\n")


def format_stats(stats: Stats) -> str:
    rows = stats.as_dict()
    width = max(len(k) for k in rows)
    return "\n".join(f"{k:<{width}}  {'-' if v is None else v}" for k, v in rows.items())


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:  # our own stdout was left non-blocking
            select.select([], [fd], [])
            continue
        except BrokenPipeError:
            return
        view = view[n:]


if __name__ == "__main__":
    raise SystemExit(main())
