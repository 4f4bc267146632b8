"""Pipelines: stops, timeouts, exec failures and cancellations colliding with
the stages' own exits. Only true outcomes are accepted: each stage's real
status or the stop netrunner sent, never ``ShepherdError``, never a hang;
no stage and no fd is left behind. ``NETRUNNER_STRESS=1`` makes each loop
five times longer."""

from __future__ import annotations

import asyncio
import functools
import random
import signal
import threading
import time

import pytest
from _stress import iterations
from conftest import pids_with_marker
from helpers import at_once, settled_fd_count, switching_often

import netrunner
import netrunner.aio
from netrunner import pipe

STOPPED = -signal.SIGTERM




def pipefail(statuses: tuple[int, ...]) -> int:
    return next((s for s in reversed(statuses) if s != 0), 0)


def test_exit_against_stop() -> None:
    seed = random.randrange(1 << 30)
    rnd = random.Random(seed)
    seen = set()
    netrunner.run(pipe(["true"], ["true"]))
    fds_before = settled_fd_count()
    for i in range(iterations(300)):
        with netrunner.start(pipe(["true"], ["cat"], ["cat"])) as p:
            time.sleep(rnd.random() * 0.004)
            rc = p.stop()
            status = p.pipestatus
        assert status is not None, (seed, i)
        assert all(s in (0, STOPPED) for s in status), (seed, i, status)
        assert rc == p.returncode == pipefail(status), (seed, i, rc, status)
        seen.add(status)
    assert settled_fd_count() == fds_before
    assert seen  # which outcomes occurred depends on the machine; each was a true one


def test_stop_and_wait_from_threads_while_the_stages_exit() -> None:
    """Three threads stop and three wait on a started pipeline whose stages
    exit at about that moment. Each of them finds the last stage's last
    record read by another thread at some point; all six must return the
    same true status (a wait that then had nothing left to wait on hung)."""
    seed = random.randrange(1 << 30)
    rnd = random.Random(seed)
    for i in range(iterations(300)):
        p = netrunner.start(pipe(["sleep", "0.004"], ["cat"]), kill_timeout=1)
        barrier = threading.Barrier(6, action=functools.partial(time.sleep, rnd.random() * 0.008))
        results: list[object] = []

        def call(
            method: str,
            p: netrunner.Process[bytes] = p,
            barrier: threading.Barrier = barrier,
            results: list[object] = results,
        ) -> None:
            barrier.wait()
            try:
                results.append(getattr(p, method)())
            except BaseException as exc:
                results.append(exc)

        threads = [threading.Thread(target=call, args=(m,), daemon=True) for m in ("stop", "wait") * 3]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        hung = sum(t.is_alive() for t in threads)
        if hung:
            p.kill()
        p.close()
        assert not hung, (seed, i, f"{hung} calls still blocked after 10 s")
        assert len(results) == 6 and len(set(results)) == 1, (seed, i, results)
        assert results[0] == pipefail(p.pipestatus or ()), (seed, i, results, p.pipestatus)
        assert all(s in (0, STOPPED) for s in p.pipestatus or (None,)), (seed, i, p.pipestatus)


def test_a_pipeline_closed_from_several_threads_closes_each_fd_once() -> None:
    """close() from four threads at once on a pipeline, running or over:
    every call returns, none raises (a number closed twice raises EBADF, or
    closes what reused it), and no fd of ours is left open. The threads
    switch every microsecond, so that they interleave inside the releases."""
    fds_before = settled_fd_count()
    with switching_often():
        for i in range(iterations(300)):
            p = netrunner.start(pipe(["sleep", "0.002"], ["cat"]), kill_timeout=1)
            if i % 2:
                p.wait(timeout=30)  # over: each close() goes straight to the release
            outcomes, hung = at_once(4, p.close, action=functools.partial(time.sleep, 0.0005 * (i % 6)))
            assert not hung, f"iteration {i}: close() still running after 20 s"
            assert outcomes == [None] * 4, f"iteration {i}: {outcomes!r}"
    assert settled_fd_count() == fds_before

def test_timeout_at_the_moment_of_exit() -> None:
    seed = random.randrange(1 << 30)
    rnd = random.Random(seed)
    outcomes = {"result": 0, "timeout": 0}
    for i in range(iterations(150)):
        delay = 0.02 + rnd.random() * 0.01
        timed_out: netrunner.Timeout | None = None
        try:
            r = netrunner.run(pipe(["sleep", "0.025"], ["cat"]), timeout=delay, kill_timeout=5)
        except netrunner.Timeout as exc:  # anything else is a false outcome and fails the test
            timed_out = exc
        if timed_out is not None:
            assert timed_out.stdout == b"", (seed, i)
            outcomes["timeout"] += 1
        else:
            assert r.pipestatus == (0, 0), (seed, i, r.pipestatus)
            outcomes["result"] += 1
    assert sum(outcomes.values()) == iterations(150)


@pytest.mark.parametrize("failing", [0, 1, 2])
def test_exec_failure_against_the_others_exiting(failing: int) -> None:
    fds_before = settled_fd_count()
    for i in range(iterations(100)):
        stages: list[list[str]] = [["true"], ["true"], ["true"]]
        stages[failing] = ["netrunner-no-such-program"]
        with pytest.raises(FileNotFoundError) as info:
            netrunner.run(pipe(*stages))
        assert info.value.filename == "netrunner-no-such-program", i
        with pytest.raises(FileNotFoundError):
            netrunner.start(pipe(*stages))
    assert settled_fd_count() == fds_before


def test_signal_against_exit() -> None:
    for i in range(iterations(200)):
        with netrunner.start(pipe(["true"], ["cat"])) as p:
            p.send_signal(signal.SIGUSR1)
            p.wait(timeout=30)
            status = p.pipestatus
        assert status is not None
        assert all(s in (0, -signal.SIGUSR1) for s in status), (i, status)


def test_aio_cancelled_at_random_moments(marker: str) -> None:
    seed = random.randrange(1 << 30)
    rnd = random.Random(seed)

    async def main() -> None:
        for i in range(iterations(150)):
            task = asyncio.ensure_future(netrunner.aio.run(pipe(["sleep", "0.01"], ["cat"], ["cat"])))
            await asyncio.sleep(rnd.random() * 0.02)
            task.cancel()
            try:
                r = await task
            except asyncio.CancelledError:
                pass
            else:
                assert r.pipestatus == (0, 0, 0), (seed, i, r.pipestatus)
            assert not pids_with_marker(marker), (seed, i)  # stopped before the cancellation surfaced

    netrunner.run(pipe(["true"], ["true"]))
    fds_before = settled_fd_count()
    asyncio.run(main())
    assert settled_fd_count() == fds_before
