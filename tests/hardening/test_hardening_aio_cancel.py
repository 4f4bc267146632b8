"""Cancellation at random moments of every kind of ``aio`` call, under
asyncio and trio (SPEC 17): a run of a tree, a stream, a dialogue and a
``read_until``, each in a cancel scope whose deadline falls anywhere from
before the spawn to well into the command's life. Whatever the moment, the
tree is gone when the scope exits (checked at once, not polled), and at
the end no fd stays registered in an epoll instance and the interpreter
holds as many fds as before, but for the idle epoll instances kept for
later waits. Loops; ``NETRUNNER_STRESS=1`` makes them 5x
longer."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

import anyio
import pytest
from _stress import iterations
from conftest import pids_with_marker
from helpers import settled_fd_count

import netrunner
import netrunner.aio as aio
from netrunner import _drivers


async def _run_tree() -> None:
    await aio.run(["sh", "-c", "sleep 2 & sleep 2; echo never"])


async def _stream() -> None:
    async with aio.stream(["sh", "-c", "while :; do echo y; sleep 0.001; done"]) as s:
        async for _ in s:
            pass


async def _dialogue() -> None:
    async with await aio.start(["cat"]) as p:
        while True:
            await p.write(b"z\n")
            await p.readline()


async def _read_until() -> None:
    async with await aio.start(["sh", "-c", "sleep 0.01; printf abc; sleep 2"]) as p:
        await p.read_until(b"never")


KINDS: dict[str, Callable[[], Awaitable[None]]] = {
    "run": _run_tree, "stream": _stream, "dialogue": _dialogue, "read_until": _read_until,
}


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_aio_calls_cancelled_at_random_moments_leave_nothing(backend: str, marker: str) -> None:
    seed = random.randrange(1 << 30)
    rnd = random.Random(seed)
    left: list[str] = []

    async def main() -> None:
        for i in range(iterations(100)):
            kind = rnd.choice(sorted(KINDS))
            with anyio.move_on_after(rnd.uniform(0, 0.03)) as scope:
                await KINDS[kind]()
            if not scope.cancelled_caught:
                left.append(f"seed {seed}, call {i}: {kind} ended on its own")
            alive = pids_with_marker(marker)
            if alive:
                left.append(f"seed {seed}, call {i}: {kind} cancelled, processes alive: {alive}")

    netrunner.run(["true"])  # the helpers exist: what is counted below is per call
    fds_before = settled_fd_count() - len(_drivers._idle_epolls)
    anyio.run(main, backend=backend)
    assert not left, "\n".join(left[:5])
    assert not _drivers._registered, f"fds still registered: {sorted(_drivers._registered)}"
    # the waits' idle epoll instances are kept for the next ones (ADR 3)
    assert settled_fd_count() - len(_drivers._idle_epolls) == fds_before
