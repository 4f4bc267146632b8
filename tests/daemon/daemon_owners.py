"""Owner processes for the Daemon lifetime tests: a separate Python starts a
daemon, says so on stdout, then meets the event under test (SIGKILL, normal
exit, Ctrl-C, its asyncio loop closing)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any

#: Run before every owner body. ``ARGS`` is the JSON the test passed;
#: ``announce`` prints a line at once; ``wait_pids`` waits until a file
#: lists ``n`` pids (the tree of daemon_helpers.tree_cmd records itself there).
PRELUDE = textwrap.dedent(
    """
    import asyncio, gc, json, os, signal, sys, threading, time
    import netrunner
    import netrunner.aio
    ARGS = json.loads(sys.argv[1])

    def announce(*words):
        print(*words, flush=True)

    def pids_in(path):
        try:
            with open(path) as f:
                return [int(w) for w in f.read().split("\\n")[:-1] if w]
        except FileNotFoundError:
            return []

    def wait_pids(path, n, timeout=15):
        deadline = time.monotonic() + timeout
        while len(pids_in(path)) < n:
            if time.monotonic() > deadline:
                raise SystemExit(f"the tree did not come up: {pids_in(path)}")
            time.sleep(0.01)

    def count_lines(path, word):
        try:
            with open(path) as f:
                return sum(1 for line in f if line.startswith(word + " "))
        except FileNotFoundError:
            return 0
    """
)


class Owner:
    """A running owner: its Popen and whatever of its stdout is not read yet."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.pid = proc.pid
        self._buf = b""

    def expect_line(self, prefix: str, timeout: float = 20.0) -> str:
        """The owner's next line, which must start with ``prefix``."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            ready = select.select([fd], [], [], max(0.0, left))[0] if left > 0 else []
            if not ready:
                raise AssertionError(f"the owner was silent for {timeout} s (waiting for {prefix!r}); "
                                     f"stderr: {self._stderr_if_dead()}")
            data = os.read(fd, 65536)
            if not data:
                raise AssertionError(f"the owner ended before {prefix!r}; stderr: {self._stderr_if_dead()}")
            self._buf += data
        raw, _, self._buf = self._buf.partition(b"\n")
        line = raw.decode(errors="replace")
        assert line.startswith(prefix), (
            f"expected {prefix!r} from the owner, got {line!r}; stderr: {self._stderr_if_dead()}"
        )
        return line.strip()

    def _stderr_if_dead(self) -> str:
        if self.proc.poll() is None:
            return "(owner still running)"
        assert self.proc.stderr is not None
        return _read_available(self.proc.stderr.fileno()).decode(errors="replace")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)

    def send_signal(self, sig: int) -> None:
        self.proc.send_signal(sig)


def start_owner(body: str, **args: Any) -> Owner:
    """Run ``body`` (after PRELUDE) in a new interpreter, with ``args`` as ARGS."""
    code = PRELUDE + textwrap.dedent(body)
    proc = subprocess.Popen(
        [sys.executable, "-c", code, json.dumps(args)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    return Owner(proc)


def _read_available(fd: int) -> bytes:
    chunks = []
    while select.select([fd], [], [], 0.2)[0]:
        data = os.read(fd, 65536)
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def finish(owner: Owner, timeout: float = 20.0) -> tuple[str, str, float]:
    """Let the owner end (killing it if it has not within ``timeout``) and
    return what it wrote and how long it took to end. Its pipes are read only as
    far as they go: nothing of the daemon may hold them, but a bug could."""
    proc = owner.proc
    t0 = time.monotonic()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    took = time.monotonic() - t0
    assert proc.stdout is not None
    assert proc.stderr is not None
    out = owner._buf + _read_available(proc.stdout.fileno())
    err = _read_available(proc.stderr.fileno())
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    return out.decode(errors="replace"), err.decode(errors="replace"), took
