"""Shared pieces of the Daemon tests (SPEC section 12): the plan-following
command, its run log, a monitor that proves two runs never coexist, and tree
commands whose members record their pids.

Nothing here sleeps to decide correctness: positive facts are polled with
``wait_until``; a negative fact ("no further run starts") is a bounded wait
that fails the test if the thing happens."""

from __future__ import annotations

import os
import pathlib
import sys
import threading
import time
from dataclasses import dataclass

from conftest import MARKER_VAR, pids_with_marker, wait_until
from helpers import pid_alive

__all__ = [
    "IGNORE_TERM",
    "MARKER_VAR",
    "PY",
    "TREE_SIZE",
    "OverlapMonitor",
    "RunLog",
    "pid_alive",
    "pids_with_marker",
    "plan_cmd",
    "pys",
    "settle",
    "still_alive",
    "tree_cmd",
    "tree_pids",
    "wait_until",
]

PY = sys.executable
HERE = pathlib.Path(__file__).resolve().parent
PLAN_CHILD = str(HERE / "plan_child.py")


def pys(code: str, *args: str) -> list[str]:
    """argv for a quick ``python -S -c`` child (no site: ~10 ms to start)."""
    return [PY, "-S", "-c", code, *args]


def plan_cmd(log: pathlib.Path, plan: str) -> list[str]:
    """The command of a daemon whose runs follow ``plan`` (see plan_child.py)."""
    return [PY, "-S", PLAN_CHILD, str(log), plan]


@dataclass(frozen=True)
class Event:
    kind: str
    run: int
    pid: int
    t: float


class RunLog:
    """The log written by plan_child.py."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def lines(self) -> list[str]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        # a line being appended is complete once its newline is there
        return [line for line in text.split("\n")[:-1] if line]

    def events(self, kind: str) -> list[Event]:
        out = []
        for line in self.lines():
            words = line.split()
            if words[0] == kind:
                out.append(Event(kind, int(words[1]), int(words[2]), float(words[3])))
        return out

    def starts(self) -> list[Event]:
        return self.events("start")

    def ends(self) -> list[Event]:
        return self.events("end")

    def got(self) -> list[tuple[int, str]]:
        """``(run, line)`` for every stdin line a run read."""
        out = []
        for line in self.lines():
            words = line.split(" ", 2)
            if words[0] == "got":
                out.append((int(words[1]), words[2] if len(words) > 2 else ""))
        return out

    def runs(self) -> int:
        return len(self.starts())

    def wait_runs(self, n: int, timeout: float = 15.0) -> list[Event]:
        """Wait until at least ``n`` runs have started; return the starts."""
        assert wait_until(lambda: self.runs() >= n, timeout=timeout), (
            f"only {self.runs()} of {n} runs started within {timeout} s: {self.lines()}"
        )
        return self.starts()

    def wait_ends(self, n: int, timeout: float = 15.0) -> list[Event]:
        assert wait_until(lambda: len(self.ends()) >= n, timeout=timeout), (
            f"only {len(self.ends())} of {n} runs ended within {timeout} s: {self.lines()}"
        )
        return self.ends()

    def assert_no_new_run(self, within: float) -> None:
        """Fail if a run starts in the next ``within`` seconds."""
        before = self.runs()
        started = wait_until(lambda: self.runs() > before, timeout=within, interval=0.02)
        assert not started, f"a run started although the daemon was done: {self.lines()}"

    def gaps(self) -> list[float]:
        """For each restart, the seconds from the end of run N to the start of run N+1."""
        ends = {e.run: e.t for e in self.ends()}
        starts = {s.run: s.t for s in self.starts()}
        return [starts[n + 1] - ends[n] for n in sorted(ends) if n + 1 in starts]


def still_alive(pids: list[int] | set[int]) -> list[int]:
    """Those of ``pids`` that are still alive (not zombies): usually expected empty."""
    return [pid for pid in pids if pid_alive(pid)]


# --- trees whose members record their pids ------------------------------------------

#: A SIGTERM-ignoring Python: records its pid, says "armed" on stdout, sleeps.
IGNORE_TERM = (
    "import os, signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT)\n"
    "os.write(fd, b'%d\\n' % os.getpid())\n"
    "os.close(fd)\n"
    "print('armed', flush=True)\n"
    "time.sleep(1000)\n"
)


def tree_cmd(pidfile: pathlib.Path) -> list[str]:
    """A tree of four: the command (sh), a background job in its group, a
    ``setsid`` escapee, and a child that ignores SIGTERM. Each member appends
    its pid to ``pidfile``; the command then prints "ready" and waits."""
    p = str(pidfile)
    ignore = " ".join(_sh_quote(a) for a in [PY, "-S", "-c", IGNORE_TERM, p])
    script = (
        f"echo $$ >> {_sh_quote(p)}; "
        f"setsid sh -c 'echo $$ >> \"$1\"; exec sleep 1000' sh {_sh_quote(p)} & "
        f"sh -c 'echo $$ >> \"$1\"; exec sleep 1000' sh {_sh_quote(p)} & "
        f"{ignore} & "
        "echo ready; wait"
    )
    return ["sh", "-c", script]


TREE_SIZE = 4


def tree_pids(pidfile: pathlib.Path, n: int = TREE_SIZE, timeout: float = 15.0) -> set[int]:
    """Wait until the tree's ``n`` members have recorded their pids; return them."""

    def read() -> set[int]:
        try:
            return {int(w) for w in pidfile.read_text().split("\n")[:-1] if w}
        except FileNotFoundError:
            return set()

    assert wait_until(lambda: len(read()) >= n, timeout=timeout), f"tree incomplete: {read()}"
    return read()


def _sh_quote(s: str) -> str:
    return "'" + s.replace("'", "'\"'\"'") + "'"


# --- overlap monitor ----------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, int] | None:
    """(process group, start time) of a live process, None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == b"Z":
        return None
    return int(fields[2]), int(fields[19])


def _has_tag(pid: int, tag: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return tag in f.read().split(b"\0")
    except OSError:
        return False


class OverlapMonitor:
    """Samples /proc continuously for processes whose argv contains ``tag``.

    A daemon runs each command in its own process group, and every member of a
    run shares it (none of them calls setsid), so two live process groups among
    the tagged processes are two runs alive at once. A scan of /proc is not a
    snapshot, so a suspected overlap is confirmed by reading the first process,
    then the second, then the first again: if the first is alive (same start
    time) before and after the second was seen alive, both lived at that moment.
    """

    def __init__(self, tag: str) -> None:
        self.tag = tag.encode()
        self.overlaps: list[tuple[int, int]] = []
        self.groups: set[int] = set()
        self.scans = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="overlap-monitor", daemon=True)

    def __enter__(self) -> OverlapMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            seen: dict[int, tuple[int, int]] = {}  # pgid -> (pid, starttime)
            for name in os.listdir("/proc"):
                if not name.isdigit() or int(name) == me:
                    continue
                pid = int(name)
                if not _has_tag(pid, self.tag):
                    continue
                st = _stat(pid)
                if st is None:
                    continue
                self.groups.add(st[0])
                seen.setdefault(st[0], (pid, st[1]))
            if len(seen) > 1:
                self._confirm(list(seen.values()))
            self.scans += 1

    def _confirm(self, members: list[tuple[int, int]]) -> None:
        for i, (a, a_start) in enumerate(members):
            for b, b_start in members[i + 1 :]:
                if self._alive(a, a_start) and self._alive(b, b_start) and self._alive(a, a_start):
                    self.overlaps.append((a, b))

    @staticmethod
    def _alive(pid: int, start: int) -> bool:
        st = _stat(pid)
        return st is not None and st[1] == start


def settle(seconds: float) -> None:
    """Give a background mechanism time to misbehave (a negative check)."""
    time.sleep(seconds)
