"""Hardening item 11: dropping the last reference to a running Process emits
a ResourceWarning, and the shepherd is reaped within ``kill_timeout`` + 1 s
without any further netrunner call (SPEC sections 5 and 6)."""

from __future__ import annotations

import gc
import os
import warnings

from helpers import pid_alive, wait_until
from helpers_aio import arun, await_until

import netrunner
import netrunner.aio

KILL_TIMEOUT = 1.0


def _reaped(pid: int) -> bool:
    """``pid`` is no longer an unreaped child of ours: gone from /proc. The
    check itself must not reap it, so it never calls waitpid."""
    return not os.path.exists(f"/proc/{pid}")


def _zombie_report(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def _resource_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


def test_drop_running_process_warns_and_reaps_shepherd() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p = netrunner.start(["sleep", "30"], kill_timeout=KILL_TIMEOUT)
        command, shepherd = p.pid, p._h.shepherd_pid
        del p
        gc.collect()
    found = _resource_warnings(caught)
    assert wait_until(lambda: not pid_alive(command), timeout=KILL_TIMEOUT + 5), "the dropped command kept running"
    reaped = wait_until(lambda: _reaped(shepherd), timeout=KILL_TIMEOUT + 1.0)
    assert reaped, (
        f"shepherd {shepherd} still in /proc (state {_zombie_report(shepherd)}) {KILL_TIMEOUT + 1.0} s "
        "after the drop, with no further netrunner call"
    )
    assert found, "no ResourceWarning when the last reference to a running Process was dropped"


def test_aio_drop_running_process_warns_and_reaps_shepherd() -> None:
    async def main() -> tuple[list[str], int, int, bool]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            p = await netrunner.aio.start(["sleep", "30"], kill_timeout=KILL_TIMEOUT)
            command, shepherd = p.pid, p._h.shepherd_pid
            del p
            gc.collect()
        # the loop keeps running (it may do the reaping) while we poll
        await await_until(lambda: _reaped(shepherd), timeout=KILL_TIMEOUT + 1.0)
        return _resource_warnings(caught), command, shepherd, _reaped(shepherd)

    found, command, shepherd, reaped = arun(main())
    assert wait_until(lambda: not pid_alive(command), timeout=KILL_TIMEOUT + 5), "the dropped command kept running"
    assert reaped, (
        f"shepherd {shepherd} still in /proc (state {_zombie_report(shepherd)}) {KILL_TIMEOUT + 1.0} s "
        "after the drop, with the loop running and no further netrunner call"
    )
    assert found, "no ResourceWarning when the last reference to a running aio.Process was dropped"
