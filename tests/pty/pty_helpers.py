"""Helpers shared by the PTY contract tests (SPEC section 8): children, the
environment for an interactive Python, reading a ``Process`` to the end.

Everything is real: real processes on real pseudo-terminals, no mocks.
Polling goes through ``conftest.wait_until``; nothing here sleeps to decide
correctness."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from conftest import MARKER_VAR

PY = sys.executable


def py(code: str, *args: str) -> list[str]:
    """argv for a ``python -c`` child."""
    return [PY, "-c", code, *args]


def repl_env() -> dict[str, str]:
    """The environment for a ``python -i -q`` on a terminal: the test's (its
    marker included) without PYTHONSTARTUP, with the basic REPL (Python 3.13+
    would start its colourful one otherwise) and a terminal that asks for no
    escape sequences."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSTARTUP"}
    env.update(PYTHON_BASIC_REPL="1", TERM="dumb", PYTHON_COLORS="0")
    assert MARKER_VAR in env, "the marker fixture's variable is missing"
    return env


def crlf_to_lf(data: bytes) -> bytes:
    """Undo the terminal's ONLCR output processing ("\\n" -> "\\r\\n")."""
    return data.replace(b"\r\n", b"\n")


def read_to_eof(proc: Any, timeout: float = 30.0, max_bytes: int = 65536) -> bytes:
    """Everything ``proc.read()`` returns until b"" (sync ``Process``)."""
    deadline = time.monotonic() + timeout
    chunks = []
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no end of output within {timeout}s; have {len(b''.join(chunks))} bytes"
        try:
            data = proc.read(max_bytes, timeout=remaining)
        except TimeoutError:
            continue
        if isinstance(data, str):
            data = data.encode()
        if not data:
            return b"".join(chunks)
        chunks.append(data)


async def aread_to_eof(proc: Any, timeout: float = 30.0, max_bytes: int = 65536) -> bytes:
    """Everything ``await proc.read()`` returns until b"" (``aio.Process``)."""
    deadline = time.monotonic() + timeout
    chunks = []
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no end of output within {timeout}s; have {len(b''.join(chunks))} bytes"
        try:
            data = await proc.read(max_bytes, timeout=remaining)
        except TimeoutError:
            continue
        if isinstance(data, str):
            data = data.encode()
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def numbered_lines(total: int) -> bytes:
    """``total`` bytes of distinct 8-byte lines ("0000000\\n", ...): a lost,
    repeated or reordered piece shows; ``total`` is a multiple of 8."""
    assert total % 8 == 0
    return b"".join(b"%07d\n" % i for i in range(total // 8))


def writer_code(total: int) -> str:
    """A child that writes ``numbered_lines(total)`` in one go, then exits at once."""
    return (
        "import os, sys\n"
        f"data = b''.join(b'%07d\\n' % i for i in range({total} // 8))\n"
        "sys.stdout.buffer.write(data)\n"
        "sys.stdout.flush()\n"
        "os._exit(0)\n"
    )


def describe(data: bytes, expected: bytes) -> str:
    """Where two byte strings differ, for an assertion message."""
    if data == expected:
        return "equal"
    n = next((i for i, (a, b) in enumerate(zip(data, expected, strict=False)) if a != b), min(len(data), len(expected)))
    return (
        f"got {len(data)} bytes, expected {len(expected)}; first difference at {n}: "
        f"got {data[max(0, n - 20):n + 20]!r}, expected {expected[max(0, n - 20):n + 20]!r}"
    )
