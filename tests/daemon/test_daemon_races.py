"""Race loops for daemons: ``stop()`` colliding with a run's exit, a restart's
spawn and the backoff, sync and asyncio. Only true outcomes are accepted:
stop returns, nothing of any run is left, the daemon is stopped without being
failed. ``NETRUNNER_STRESS=1`` makes the loops 5x longer."""

from __future__ import annotations

import asyncio
import random
import time

from _stress import iterations
from conftest import pids_with_marker, wait_until
from helpers_aio import arun

import netrunner
import netrunner.aio

#: Exits at once (a restart every ~1 ms), or after a short random sleep.
COMMANDS = (["true"], ["sh", "-c", "exit 3"], ["sleep", "0.003"])


def _check_stopped(d: netrunner.Daemon | netrunner.aio.Daemon, marker: str, seed: int) -> None:
    assert d.alive is False, seed
    assert d.pid is None, seed
    assert d.failed is False, f"stop() colliding with an exit left failed=True (seed {seed})"
    assert wait_until(lambda: not pids_with_marker(marker), timeout=5), f"survivors (seed {seed})"


def test_stop_collides_with_exits_and_restarts(marker: str) -> None:
    rng = random.Random()
    for i in range(iterations(300)):
        seed = rng.randrange(1 << 30)
        r = random.Random(seed)
        d = netrunner.Daemon(r.choice(COMMANDS), restart="always", backoff=(0, r.choice((0, 0.001))),
                             max_restarts=10**6, kill_timeout=1)
        d.start()
        time.sleep(r.uniform(0, 0.005))
        t0 = time.monotonic()
        d.stop()
        assert time.monotonic() - t0 < 5, f"stop() took too long (seed {seed}, iteration {i})"
        assert d.wait(0), seed
        _check_stopped(d, marker, seed)


def test_aio_stop_collides_with_exits_and_restarts(marker: str) -> None:
    async def main() -> None:
        rng = random.Random()
        for _ in range(iterations(300)):
            seed = rng.randrange(1 << 30)
            r = random.Random(seed)
            d = netrunner.aio.Daemon(r.choice(COMMANDS), restart="always", backoff=(0, r.choice((0, 0.001))),
                                     max_restarts=10**6, kill_timeout=1)
            await d.start()
            await asyncio.sleep(r.uniform(0, 0.005))
            await asyncio.wait_for(d.stop(), 5)
            _check_stopped(d, marker, seed)

    # The net is for a hang (each stop has its own 5 s): as long as the loop.
    arun(main(), timeout=iterations(60))
