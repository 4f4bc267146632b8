"""Small helpers shared by the sync contract tests (children, /proc probes,
line reading from a ``Process``).  Polling goes through ``conftest.wait_until``;
nothing here sleeps to decide correctness."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from conftest import helper_pids, own_children, pids_with_marker, wait_until

__all__ = [
    "PY",
    "LineReader",
    "gone",
    "helper_pids",
    "own_children",
    "pid_alive",
    "pids_with_marker",
    "py",
    "rss_bytes",
    "settled_fd_count",
    "stray_children",
    "switching_often",
    "wait_until",
]

PY = sys.executable


def py(code: str, *args: str) -> list[str]:
    """argv for a ``python -c`` child."""
    return [PY, "-c", code, *args]


def pid_alive(pid: int) -> bool:
    """``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != b"Z"


def gone(pid: int, timeout: float = 10.0) -> bool:
    """Wait (polling) until ``pid`` is dead; return whether it is."""
    return bool(wait_until(lambda: not pid_alive(pid), timeout=timeout))


def rss_bytes() -> int:
    """This process's resident set size, from /proc/self/status."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def stray_children(before: set[int]) -> set[int]:
    """Children of this process that are neither pre-existing nor netrunner helpers.

    ``helper_pids()`` runs first: it reaps detached shepherds and settles the
    spare, so what ``own_children()`` lists afterwards is really left over."""
    helpers = helper_pids()
    return own_children() - before - helpers


def settled_strays(before: set[int], timeout: float = 5.0) -> set[int]:
    """``stray_children`` once deferred reaping has had ``timeout`` to happen
    (``run`` and ``stream`` may leave their exiting shepherd to the next spawn)."""
    wait_until(lambda: not stray_children(before), timeout=timeout)
    return stray_children(before)


def status_field(pid: int | str, name: str) -> str:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {name} in /proc/{pid}/status")


class LineReader:
    """Read whole lines from a netrunner ``Process`` (stdout or stderr)."""

    def __init__(self, proc: Any, stderr: bool = False) -> None:
        self._read = proc.read_stderr if stderr else proc.read
        self.buf = b""

    def readline(self, timeout: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no complete line within {timeout}s; have {self.buf!r}")
            try:
                data = self._read(65536, timeout=remaining)
            except TimeoutError:
                continue
            if isinstance(data, str):
                data = data.encode()
            if not data:
                line, self.buf = self.buf, b""
                if line:
                    return line
                raise EOFError("end of output before a line arrived")
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def read_until_eof(self, timeout: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout
        out = self.buf
        self.buf = b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no EOF within {timeout}s; have {out!r}")
            try:
                data = self._read(65536, timeout=remaining)
            except TimeoutError:
                continue
            if isinstance(data, str):
                data = data.encode()
            if not data:
                return out
            out += data


def open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


def settled_fd_count() -> int:
    """This process's fd count, netrunner's helpers brought to one state
    first: a run gives its shepherd back, or hangs up when one is idle or on
    its way already, so one helper socket is left either way; a shepherd
    that was told to exit holds a pidfd here until it is reaped."""
    import netrunner
    from netrunner import _lifetime

    def reaped_all() -> bool:
        _lifetime.reap_detached()
        return not _lifetime._detached

    netrunner.run(["true"])
    assert wait_until(reaped_all, timeout=10), "a detached shepherd was never reaped"
    return len(os.listdir("/proc/self/fd"))


def in_forked_child(body: Callable[[], bytes]) -> bytes:
    """What ``body()`` returns when run in a child forked from this process;
    an exception in it fails the child, and so this call."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        code = 1
        try:
            os.close(r)
            os.write(w, body())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        report = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, report
    return report


def at_once(
    n: int, call: Callable[[], Any], *, action: Callable[[], None] | None = None, timeout: float = 20.0
) -> tuple[list[Any], int]:
    """Run ``call()`` in ``n`` threads released together: see
    :func:`each_at_once`."""
    return each_at_once([call] * n, action=action, timeout=timeout)


def each_at_once(
    calls: Sequence[Callable[[], Any]], *, action: Callable[[], None] | None = None, timeout: float = 20.0
) -> tuple[list[Any], int]:
    """Run each of ``calls`` in a thread of its own, the threads released
    together by a barrier (``action`` runs once as they are released: a
    delay that varies the phase). Returns what each call returned or
    raised, in the order they finished, and how many calls were still
    running after ``timeout`` s."""
    barrier = threading.Barrier(len(calls), action=action)
    outcomes: list[Any] = []

    def run(call: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            outcomes.append(call())
        except BaseException as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=run, args=(call,), daemon=True) for call in calls]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return outcomes, sum(t.is_alive() for t in threads)


@contextlib.contextmanager
def switching_often() -> Iterator[None]:
    """Threads switch every microsecond inside the block (instead of every
    5 ms): racing threads interleave inside the calls they race, not only
    between them."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
