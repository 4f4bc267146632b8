"""Helpers for the asyncio contract tests (test_aio_*.py).

Everything runs under plain ``asyncio.run`` inside sync test functions (no
pytest-asyncio).  Polling goes through ``conftest.wait_until`` or its async twin
``await_until``; nothing here sleeps to decide correctness."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from conftest import MARKER_VAR, pids_with_marker, wait_until
from helpers import PY, pid_alive, py, rss_bytes

__all__ = [
    "MARKER_VAR",
    "PY",
    "AsyncLineReader",
    "arun",
    "await_until",
    "pid_alive",
    "pids_with_marker",
    "py",
    "result_fields",
    "rss_bytes",
    "wait_until",
]

T = TypeVar("T")


def arun(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """``asyncio.run`` with a safety net: a hang fails the test instead of the suite."""

    async def guarded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(guarded())


async def await_until(
    predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01
) -> Any:
    """``wait_until`` that yields to the loop between polls."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        await asyncio.sleep(interval)


def result_fields(result: Any) -> dict[str, Any]:
    """The comparable part of a ``Result`` (everything but ``stats``)."""
    return {
        name: getattr(result, name)
        for name in ("args", "stdout", "stderr", "returncode", "exit_status", "signal", "ok")
    }


class AsyncLineReader:
    """Read whole lines from a ``netrunner.aio.Process`` (stdout or stderr)."""

    def __init__(self, proc: Any, stderr: bool = False) -> None:
        self._read: Callable[..., Awaitable[Any]] = proc.read_stderr if stderr else proc.read
        self.buf = b""

    async def readline(self, timeout: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no complete line within {timeout}s; have {self.buf!r}")
            try:
                data = await self._read(65536, timeout=remaining)
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

    async def read_until_eof(self, timeout: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout
        out, self.buf = self.buf, b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no EOF within {timeout}s; have {out!r}")
            try:
                data = await self._read(65536, timeout=remaining)
            except TimeoutError:
                continue
            if isinstance(data, str):
                data = data.encode()
            if not data:
                return out
            out += data


def marked(marker: str) -> list[int]:
    """Live processes carrying this test's marker (any netrunner helper included)."""
    return pids_with_marker(marker)


def env_with(marker: str, **extra: str) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", os.defpath), MARKER_VAR: marker}
    env.update(extra)
    return env
