"""Load and soak (slow): nothing accumulates, nothing is lost."""

from __future__ import annotations

import asyncio
import os
import resource
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import helper_pids, own_children, wait_until

import netrunner
from netrunner import aio


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def settled_children() -> set[int]:
    """Children beyond the long-lived helpers, after deferred reaps ran."""
    wait_until(lambda: not (own_children() - helper_pids()), timeout=5.0)
    return own_children() - helper_pids()


@pytest.mark.slow
def test_ten_thousand_sequential_runs_leak_nothing() -> None:
    netrunner.run(["true"])
    fds, children = fd_count(), settled_children()
    for i in range(10_000):
        assert netrunner.run(["true"]).returncode == 0
        if i % 1000 == 0:  # bounded all along, not only at the end
            assert fd_count() <= fds + 2
            assert len(own_children()) <= len(children) + len(helper_pids()) + 2
    assert fd_count() == fds
    assert settled_children() == children


@pytest.mark.slow
def test_a_thousand_concurrent_aio_processes() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 8192:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(8192, hard), hard))
    threads_before = threading.active_count()
    peak = [threads_before]

    async def main() -> list[netrunner.Result]:
        async def watch() -> None:
            while True:
                peak[0] = max(peak[0], threading.active_count())
                await asyncio.sleep(0.05)

        watcher = asyncio.ensure_future(watch())
        try:
            return await asyncio.gather(*(aio.run(["sh", "-c", f"sleep 1; echo {i}"]) for i in range(1000)))
        finally:
            watcher.cancel()

    try:
        results = asyncio.run(main())
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert [r.returncode for r in results] == [0] * 1000
    assert [r.stdout for r in results] == [f"{i}\n".encode() for i in range(1000)]
    assert peak[0] == threads_before


@pytest.mark.slow
def test_start_stop_cycles_from_eight_threads() -> None:
    fds = fd_count()

    def cycle(i: int) -> int:
        with netrunner.start(["sleep", "100"], kill_timeout=1) as p:
            assert p.alive
            return p.stop()

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(cycle, range(500)))
    assert codes == [-15] * 500
    assert wait_until(lambda: fd_count() == fds, timeout=5.0)
    assert settled_children() == set()
