"""Owner processes for the hardening tests: a separate Python that uses
netrunner under hostile conditions (its own pid or mount namespace, a foreign
or missing ``/proc``, closed standard fds, a low fd limit...) and reports what
it saw as one JSON line ``RESULT {...}`` on stdout (or in a result file when
its own stdout is the thing under test).

The owner inherits the test's environment, so the marker, and so does every
command it starts: the autouse fixture still proves nothing survives."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from conftest import pids_with_marker, wait_until

PY = sys.executable

PRELUDE = textwrap.dedent(
    """
    import gc, json, os, signal, subprocess, sys, threading, time

    def report(**fields):
        sys.stdout.write("RESULT " + json.dumps(fields) + "\\n")
        sys.stdout.flush()

    def until(predicate, timeout=10.0, interval=0.005):
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value or time.monotonic() >= deadline:
                return value
            time.sleep(interval)
    """
)


def owner_code(body: str) -> str:
    """The full source of an owner: PRELUDE, then ``body`` (dedented)."""
    return PRELUDE + textwrap.dedent(body)


class Owner:
    """A running owner process whose stdout and stderr go to files (a file
    never blocks on a leftover that keeps a pipe open)."""

    def __init__(
        self, body: str, tmp: Path, *, prefix: tuple[str, ...] = (), python: tuple[str, ...] = (PY,),
        env: dict[str, str] | None = None, stdin: int | None = subprocess.PIPE,
    ) -> None:
        self.out_path = tmp / f"owner-{id(self)}.out"
        self.err_path = tmp / f"owner-{id(self)}.err"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                [*prefix, *python, "-c", owner_code(body)],
                stdin=stdin, stdout=out, stderr=err, env=env,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def lines(self, prefix: str) -> list[str]:
        return [line for line in self.stdout().splitlines() if line.startswith(prefix)]

    def expect(self, prefix: str, timeout: float = 30.0) -> str:
        """Wait (polling the output file) for a line starting with ``prefix``."""
        found = wait_until(lambda: self.lines(prefix) or self.proc.poll() is not None, timeout=timeout)
        lines = self.lines(prefix)
        assert found, f"the owner never said {prefix!r} within {timeout} s; stderr: {self.stderr()!r}"
        assert lines, (
            f"the owner never said {prefix!r} within {timeout} s "
            f"(exit status {self.proc.poll()}); stdout: {self.stdout()!r}; stderr: {self.stderr()!r}"
        )
        return lines[0]

    def result(self, timeout: float = 30.0) -> dict[str, Any]:
        """The owner's ``RESULT`` JSON."""
        line = self.expect("RESULT ", timeout)
        value: dict[str, Any] = json.loads(line[len("RESULT "):])
        return value

    def tell(self, text: str = "go\n") -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def chain(self) -> set[int]:
        """The owner's own processes: the one we started and its descendants
        that are part of the launch chain (``unshare`` forks the real owner)."""
        pids = {self.proc.pid}
        frontier = [self.proc.pid]
        while frontier:
            pid = frontier.pop()
            for kid in children_of(pid):
                if _comm(kid) in {"python", "python3", "unshare", "sh", "setpriv"} or _comm(kid).startswith("python"):
                    if kid not in pids:
                        pids.add(kid)
                        frontier.append(kid)
        return pids

    def finish(self, timeout: float = 20.0) -> int:
        """Close its stdin, wait for it to end (SIGKILL after ``timeout``)."""
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.wait()

    def kill(self) -> None:
        """SIGKILL the launched process (with ``unshare --kill-child`` the
        namespace's init follows, and with it the whole namespace)."""
        try:
            self.proc.send_signal(signal.SIGKILL)
        except ProcessLookupError:
            pass


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's)."""
    kids: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids.extend(int(p) for p in f.read().split())
        except OSError:
            pass
    return kids


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def survivors(marker: str, exclude: set[int]) -> list[int]:
    """Live processes carrying the marker, other than ``exclude``."""
    return [pid for pid in pids_with_marker(marker) if pid not in exclude]


def wait_no_survivors(marker: str, exclude: set[int], timeout: float = 5.0) -> list[int]:
    """Poll until only ``exclude`` carries the marker; return what is left."""
    wait_until(lambda: not survivors(marker, exclude), timeout=timeout)
    return survivors(marker, exclude)


def kill_pids(pids: list[int] | set[int]) -> None:
    """SIGKILL ``pids`` (processes this test started), ignoring the gone."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def netrunner_src() -> str:
    """The directory that holds the ``netrunner`` package under test."""
    import netrunner

    return str(Path(netrunner.__file__).resolve().parent.parent)


def shepherd_binary() -> str:
    from netrunner._io.shepherd import find_shepherd

    return find_shepherd()


def elapsed_since(t0: float) -> float:
    return round(time.monotonic() - t0, 3)
