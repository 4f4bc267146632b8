"""Hardening item 8: a ``start``ed command with captured stderr never
deadlocks on it; the 1 MiB buffer keeps the newest bytes and counts the
dropped ones in ``Stats.bytes_err_dropped`` (SPEC section 5)."""

from __future__ import annotations

import time

from helpers import py

import netrunner

N = 10 * 1000 * 1000
MIB = 1024 * 1024
PATTERN = f"bytes(range(251)) * ({N} // 251 + 1)"
WRITER = py(
    f"import sys; data = ({PATTERN})[:{N}]; sys.stderr.buffer.write(data); sys.stderr.flush(); "
    "sys.stdout.write('done\\n'); sys.stdout.flush()"
)
DATA = (bytes(range(251)) * (N // 251 + 1))[:N]


def test_read_stdout_while_stderr_floods() -> None:
    with netrunner.start(WRITER, kill_timeout=1) as p:
        out = b""
        deadline = time.monotonic() + 15
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"read() did not reach EOF in 15 s (have {out!r}): stderr deadlock"
            try:
                chunk = p.read(timeout=remaining)
            except TimeoutError:
                continue
            if not chunk:
                break
            out += chunk
        assert out == b"done\n"
        assert p.wait(timeout=15) == 0
        err = b""
        while True:
            chunk = p.read_stderr(timeout=10)
            if not chunk:
                break
            err += chunk
        stats = p.stats
    assert len(err) >= MIB, f"only {len(err)} bytes of stderr kept"
    assert err == DATA[-len(err):], "read_stderr did not return the newest bytes"
    dropped = stats.bytes_err_dropped
    assert dropped == N - len(err), f"bytes_err_dropped={dropped}, but {N - len(err)} were never seen"
    assert dropped == N - MIB, f"bytes_err_dropped={dropped}, expected {N - MIB} (10 MB minus the 1 MiB buffer)"


def test_wait_alone_while_stderr_floods() -> None:
    with netrunner.start(WRITER, kill_timeout=1) as p:
        try:
            rc = p.wait(timeout=15)
        except netrunner.Timeout as exc:
            raise AssertionError("wait() did not return in 15 s: the command blocked on its stderr pipe") from exc
        assert rc == 0
