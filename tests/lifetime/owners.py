"""Owner processes for the lifetime tests: a separate Python that starts a
process tree with netrunner (or, as a control, with plain subprocess), says
"ready", then meets the event under test."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time

from conftest import pids_with_marker, wait_until

#: A tree with every kind of member: the command (sh), a background job in its
#: group, a daemon that escaped with setsid (double fork), and a child that
#: ignores SIGTERM. It prints "armed" (the SIGTERM trap is set) and "ready".
TREE_SCRIPT = (
    "setsid sh -c 'sleep 1000 & exit'; "
    "sleep 1000 & "
    f"{sys.executable} -c 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print(\"armed\", flush=True); time.sleep(1000)' & "
    "echo ready; wait"
)
TREE_SIZE = 4  # sh, sleep, the setsid'd sleep, the SIGTERM-ignoring python

PRELUDE = textwrap.dedent(
    """
    import gc, os, signal, subprocess, sys, threading, time
    import netrunner
    TREE = ["sh", "-c", {tree!r}]

    def announce(*words):
        print(*words, flush=True)

    def wait_ready(read):
        seen = b""
        while not (b"armed" in seen and b"ready" in seen):
            chunk = read()
            if not chunk:
                raise SystemExit("the tree ended before it was ready")
            seen += chunk if isinstance(chunk, bytes) else chunk.encode()
    """
).format(tree=TREE_SCRIPT)


def start_owner(body: str) -> subprocess.Popen[str]:
    """Run ``body`` (after PRELUDE) in a new interpreter; its stdout is a pipe."""
    code = PRELUDE + textwrap.dedent(body)
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def expect_line(owner: subprocess.Popen[str], prefix: str, timeout: float = 15.0) -> str:
    """The owner's next line, which must start with ``prefix``."""
    assert owner.stdout is not None
    deadline = time.monotonic() + timeout
    line = owner.stdout.readline()
    assert time.monotonic() < deadline, f"owner was silent for {timeout} s"
    assert line.startswith(prefix), (
        f"expected {prefix!r} from the owner, got {line!r}; "
        f"stderr: {owner.stderr.read() if owner.poll() is not None else ''}"
    )
    return line.strip()


def tree_of(marker: str, *exclude: int) -> list[int]:
    """Live processes carrying the test's marker, except the owner(s)."""
    return [pid for pid in pids_with_marker(marker) if pid not in exclude]


def wait_tree_gone(marker: str, *exclude: int, timeout: float = 15.0) -> None:
    left = wait_until(lambda: not tree_of(marker, *exclude), timeout=timeout)
    assert left, f"survivors: {tree_of(marker, *exclude)}"


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def finish(owner: subprocess.Popen[str]) -> tuple[str, str]:
    """Let the owner end (killing it if it does not) and collect what it wrote.
    Its pipes are read only as far as they go: an orphan (in the controls, or
    a forked child) may hold them open forever."""
    try:
        owner.wait(timeout=20)
    except subprocess.TimeoutExpired:
        owner.kill()
        owner.wait()
    texts = []
    for pipe in (owner.stdout, owner.stderr):
        assert pipe is not None
        chunks = []
        fd = pipe.fileno()
        while select.select([fd], [], [], 0.2)[0]:
            data = os.read(fd, 65536)
            if not data:
                break
            chunks.append(data)
        pipe.close()
        texts.append(b"".join(chunks).decode(errors="replace"))
    if owner.stdin is not None:
        owner.stdin.close()
    return texts[0], texts[1]
