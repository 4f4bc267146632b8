"""Helpers for the tests that run ``netrunner.aio`` under trio and anyio.

Waiting goes through ``anyio.sleep`` (which is trio's or asyncio's sleep,
whichever library runs); nothing here sleeps to decide correctness."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from conftest import pids_with_marker
from helpers import PY, pid_alive, py

__all__ = ["PY", "await_file", "await_until", "pid_alive", "pids_with_marker", "py", "tree", "written"]


async def await_until(predicate: Callable[[], Any], patience: float = 10.0, interval: float = 0.01) -> Any:
    """Poll ``predicate`` until it is truthy or ``patience`` seconds pass,
    yielding to the running library between polls."""
    deadline = time.monotonic() + patience
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        await anyio.sleep(interval)


def written(path: Path) -> str | None:
    """The content of ``path`` once a command has written its line, else None."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    return text if text.endswith("\n") else None


async def await_file(path: Path, patience: float = 15.0) -> str:
    """The content of ``path`` once a command has written it."""
    text = await await_until(lambda: written(path), patience)
    assert text, f"{path} was never written"
    return str(text)


def tree(pidfile: Path, *, ignore_term: bool = False) -> list[str]:
    """A small tree: a shell with two background sleeps (one in a session of
    its own), which writes ``pidfile`` once they all run. With
    ``ignore_term`` the shell ignores SIGTERM (the stop has to escalate)."""
    trap = "trap '' TERM; " if ignore_term else ""
    script = f'{trap}sleep 1000 & setsid sleep 1000 & echo "$$" > "$0"; wait'
    return ["sh", "-c", script, str(pidfile)]
