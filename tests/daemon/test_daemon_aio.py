"""SPEC sections 12 and 17: ``netrunner.aio.Daemon`` -- the sync Daemon's
behaviour with coroutines (``await d.start()``, ``await d.stop()``, ``async
with``, ``write``), supervision as a task on the running loop, and
cancellation: a cancelled TaskGroup, owner task or ``asyncio.timeout`` stops the
daemon's tree before the cancellation completes.

Everything runs under plain ``asyncio.run`` (``arun``) inside sync tests."""

from __future__ import annotations

import asyncio
import inspect
import logging
import pathlib
import signal
import time
import uuid
from collections.abc import Coroutine
from typing import Any

import pytest
from daemon_helpers import (
    IGNORE_TERM,
    OverlapMonitor,
    RunLog,
    pid_alive,
    plan_cmd,
    pys,
    settle,
    still_alive,
    tree_cmd,
    tree_pids,
    wait_until,
)
from helpers_aio import arun, await_until

import netrunner
import netrunner.aio

LOGGER = "netrunner.daemon"


@pytest.fixture
def runlog(tmp_path: pathlib.Path) -> RunLog:
    return RunLog(tmp_path / "runs.log")


async def maybe_await(value: Any) -> Any:
    """``write`` may be a coroutine or a plain method: accept both."""
    if inspect.isawaitable(value):
        return await value
    return value


async def tree_pids_async(pidfile: pathlib.Path, n: int = 4) -> set[int]:
    """``tree_pids`` without blocking the loop."""
    assert await await_until(lambda: len(pidfile.read_text().split()) >= n if pidfile.exists() else False,
                             timeout=15), "the tree did not come up"
    return tree_pids(pidfile, n)


def daemon_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER or r.name.startswith(LOGGER + ".")]


# --------------------------------------------------------------- the basics


def test_start_and_stop_are_coroutines(runlog: RunLog) -> None:
    async def main() -> None:
        d = netrunner.aio.Daemon(plan_cmd(runlog.path, "hang"))
        assert isinstance(d, netrunner.aio.Daemon)
        assert d.pid is None
        assert d.alive is False
        coro = d.start()
        assert inspect.isawaitable(coro)
        await coro
        (start,) = await asyncio.to_thread(runlog.wait_runs, 1)
        assert d.pid == start.pid
        assert d.alive is True
        assert pid_alive(start.pid)
        stop = d.stop()
        assert inspect.isawaitable(stop)
        await stop
        assert not pid_alive(start.pid), "stop() returned with the run alive"
        assert d.alive is False
        assert d.pid is None
        assert d.failed is False
        for _ in range(2):  # idempotent and prompt
            t0 = time.monotonic()
            await d.stop()
            assert time.monotonic() - t0 < 0.5

    arun(main())


def test_restarts_with_growing_delays_then_gives_up(runlog: RunLog) -> None:
    exits: list[Any] = []

    async def main() -> None:
        d = netrunner.aio.Daemon(plan_cmd(runlog.path, "exit:1"), backoff=(0.1, 0.4), max_restarts=4,
                                 on_exit=exits.append)
        async with d:
            assert await await_until(lambda: d.failed, timeout=20), runlog.lines()
            assert d.restarts == 4
            assert d.alive is False
            assert d.pid is None
            assert d.stats.returncode == 1
        assert d.failed is True

    arun(main())
    assert runlog.runs() == 5, runlog.lines()
    assert [e.returncode for e in exits] == [1] * 5
    gaps = runlog.gaps()
    for gap, want in zip(gaps, [0.1, 0.2, 0.4, 0.4], strict=True):
        assert want * 0.9 <= gap <= want + 0.7, gaps
    assert still_alive([s.pid for s in runlog.starts()]) == []
    runlog.assert_no_new_run(within=0.3)


def test_always_and_never(tmp_path: pathlib.Path) -> None:
    always = RunLog(tmp_path / "always.log")
    never = RunLog(tmp_path / "never.log")

    async def main() -> None:
        a = netrunner.aio.Daemon(plan_cmd(always.path, "exit:0"), restart="always", backoff=(0.01, 0.01),
                                 max_restarts=1000)
        n = netrunner.aio.Daemon(plan_cmd(never.path, "exit:2"), restart="never", backoff=(0.01, 0.01))
        async with a, n:
            assert await await_until(lambda: always.runs() >= 4, timeout=15)
            assert await await_until(lambda: n.failed, timeout=15)
            assert a.failed is False
        assert never.runs() == 1
        assert n.restarts == 0

    arun(main())


def test_on_output_and_on_exit_in_order(runlog: RunLog) -> None:
    n = 30_000
    code = (
        "import sys\n"
        f"for i in range(0, {n}, 1000):\n"
        "    sys.stdout.write(''.join('%07d\\n' % j for j in range(i, i + 1000)))\n"
        "    sys.stdout.flush()\n"
        "sys.exit(int(sys.argv[1]))\n"
    )
    expected = b"".join(b"%07d\n" % j for j in range(n))
    chunks: list[Any] = []
    exits: list[Any] = []

    async def main() -> None:
        cmd = pys(code, "5")
        async with netrunner.aio.Daemon(cmd, on_output=chunks.append, on_exit=exits.append,
                                        backoff=(0.01, 0.01), max_restarts=1) as d:
            assert await await_until(lambda: d.failed, timeout=20)
        assert [e.returncode for e in exits] == [5, 5]
        assert all(tuple(e.args) == tuple(cmd) for e in exits)

    arun(main())
    assert all(isinstance(c, bytes) for c in chunks)
    assert b"".join(chunks) == expected * 2


def test_log_output_carries_the_name(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)

    async def main() -> None:
        async with netrunner.aio.Daemon(pys("print('aio-alpha'); print('aio-beta')"), restart="never",
                                        on_output="log", name="aio-web") as d:
            assert d.name == "aio-web"
            assert await await_until(
                lambda: sum(("aio-alpha" in r.getMessage() or "aio-beta" in r.getMessage())
                            for r in daemon_records(caplog)) >= 2,
                timeout=15,
            )

    arun(main())
    for line in ("aio-alpha", "aio-beta"):
        (record,) = [r for r in daemon_records(caplog) if line in r.getMessage()]
        assert "aio-web" in record.getMessage() or "aio-web" in vars(record).values()


def test_raising_callbacks_are_logged_and_the_daemon_goes_on(caplog: pytest.LogCaptureFixture,
                                                            runlog: RunLog) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    seen: list[bytes] = []
    exits: list[int] = []

    def on_output(data: bytes) -> None:
        seen.append(data)
        raise RuntimeError("aio-output-boom")

    def on_exit(info: Any) -> None:
        exits.append(info.returncode)
        raise RuntimeError("aio-exit-boom")

    code = "import sys; sys.stdout.buffer.write(b'z' * (1 << 20)); sys.exit(1)"

    async def main() -> None:
        async with netrunner.aio.Daemon(pys(code), on_output=on_output, on_exit=on_exit,
                                        backoff=(0.01, 0.01), max_restarts=2) as d:
            assert await await_until(lambda: d.failed, timeout=20)

    arun(main())
    assert exits == [1, 1, 1]
    assert sum(len(c) for c in seen) == 3 << 20
    text = [r.getMessage() + (r.exc_text or "") + repr(r.exc_info) for r in daemon_records(caplog)]
    assert any("aio-output-boom" in t for t in text)
    assert sum("aio-exit-boom" in t for t in text) >= 3


# --------------------------------------------------------------- stdin


def test_write_reaches_the_current_run(runlog: RunLog) -> None:
    async def main() -> None:
        async with netrunner.aio.Daemon(plan_cmd(runlog.path, "read:1"), backoff=(0.01, 0.01),
                                        max_restarts=10) as d:
            for n, data in enumerate([b"first\n", "second\n"]):
                assert await await_until(lambda: runlog.runs() > n and d.pid == runlog.starts()[n].pid,  # noqa: B023
                                         timeout=10)
                await maybe_await(d.write(data))
                assert await await_until(lambda: len(runlog.got()) == n + 1, timeout=10)  # noqa: B023
        assert runlog.got() == [(0, "first"), (1, "second")]

    arun(main())


def test_a_blocked_write_does_not_block_the_loop(tmp_path: pathlib.Path) -> None:
    go = tmp_path / "go"
    out = tmp_path / "out"
    data = b"".join(b"%09d\n" % i for i in range(400_000))  # 4 MB, far more than a pipe holds
    # the run reads nothing until "go" exists, then copies its stdin to "out"
    script = 'while [ ! -e "$0" ]; do sleep 0.01; done; exec cat > "$1"'

    async def main() -> None:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        async with netrunner.aio.Daemon(["sh", "-c", script, str(go), str(out)]) as d:
            tick_task = asyncio.create_task(ticker())
            write = asyncio.create_task(maybe_await(d.write(data)))
            assert await await_until(lambda: ticks >= 30, timeout=10), "the loop is blocked"
            assert not write.done(), "write completed although nobody read the data"
            go.touch()
            await asyncio.wait_for(write, 30)
            assert await await_until(lambda: out.exists() and out.stat().st_size >= len(data), timeout=30)
            tick_task.cancel()

    arun(main())
    assert out.read_bytes() == data


# --------------------------------------------------------------- stop and cancellation


def test_stop_returns_at_once_during_backoff(runlog: RunLog) -> None:
    async def main() -> None:
        exited = asyncio.Event()
        d = netrunner.aio.Daemon(plan_cmd(runlog.path, "exit:1,hang"), backoff=(5.0, 5.0),
                                 on_exit=lambda info: exited.set())
        await d.start()
        await asyncio.wait_for(exited.wait(), 15)
        await asyncio.sleep(0.2)  # the daemon is now sleeping its 5 s
        t0 = time.monotonic()
        await d.stop()
        elapsed = time.monotonic() - t0
        assert elapsed < 0.5, f"stop() waited {elapsed:.2f} s for the backoff"
        assert d.failed is False
        assert d.alive is False
        assert d.pid is None

    arun(main())
    runlog.assert_no_new_run(within=1.0)


def test_stop_leaves_no_survivors(tmp_path: pathlib.Path) -> None:
    pidfile = tmp_path / "pids"

    async def main() -> set[int]:
        d = netrunner.aio.Daemon(tree_cmd(pidfile), restart="always", backoff=(0.01, 0.01), kill_timeout=0.5)
        await d.start()
        pids = await tree_pids_async(pidfile)
        await d.stop()
        assert still_alive(pids) == [], "stop() returned with members of the tree alive"
        assert d.pid is None
        return pids

    pids = arun(main())
    settle(0.3)
    assert len(pidfile.read_text().split()) == len(pids), "restarted after stop()"


class _Group:
    """``asyncio.TaskGroup`` where it exists (3.11+); on 3.10 the same
    behaviour for this test: the body's exception cancels the children, and
    they are awaited before it propagates."""

    def __init__(self) -> None:
        self._native = asyncio.TaskGroup() if hasattr(asyncio, "TaskGroup") else None
        self._tasks: list[asyncio.Task[Any]] = []

    async def __aenter__(self) -> _Group:
        if self._native is not None:
            await self._native.__aenter__()
        return self

    def create_task(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        if self._native is not None:
            return self._native.create_task(coro)
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.append(task)
        return task

    async def __aexit__(self, *exc: Any) -> Any:
        if self._native is not None:
            return await self._native.__aexit__(*exc)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        return None


def _contains(exc: BaseException, kind: type[BaseException]) -> bool:
    if isinstance(exc, kind):
        return True
    return any(_contains(e, kind) for e in getattr(exc, "exceptions", ()))


@pytest.mark.parametrize("how", ["async-with", "run"])
@pytest.mark.parametrize("cancel", ["a-sibling-raises", "the-enclosing-task-is-cancelled"])
def test_a_cancelled_task_group_stops_the_tree(tmp_path: pathlib.Path, how: str, cancel: str) -> None:
    pidfile = tmp_path / "pids"
    seen: set[int] = set()

    class Boom(Exception):
        pass

    async def supervised() -> None:
        d = netrunner.aio.Daemon(tree_cmd(pidfile), kill_timeout=0.5)
        if how == "async-with":
            async with d:
                await asyncio.sleep(1000)
        else:
            await d.run()

    async def group() -> None:
        async with _Group() as tg:
            tg.create_task(supervised())
            seen.update(await tree_pids_async(pidfile))
            if cancel == "a-sibling-raises":
                raise Boom
            await asyncio.sleep(1000)

    async def main() -> None:
        task = asyncio.create_task(group())
        if cancel == "a-sibling-raises":
            await task
        else:
            await await_until(lambda: len(seen) == 4, timeout=15)
            task.cancel()
            await task

    expected = Boom if cancel == "a-sibling-raises" else asyncio.CancelledError
    with pytest.raises(BaseException) as info:  # noqa: PT011  # Boom (in an ExceptionGroup) or CancelledError
        arun(main())
    assert _contains(info.value, expected), repr(info.value)
    assert len(seen) == 4
    assert still_alive(seen) == [], "the task group ended with the daemon's tree alive"


def test_cancelling_the_owner_task_stops_the_tree(tmp_path: pathlib.Path) -> None:
    pidfile = tmp_path / "pids"

    async def owner() -> None:
        async with netrunner.aio.Daemon(tree_cmd(pidfile), kill_timeout=0.5, restart="always",
                                        backoff=(0.01, 0.01)):
            await asyncio.sleep(1000)

    async def main() -> set[int]:
        task = asyncio.create_task(owner())
        pids = await tree_pids_async(pidfile)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert still_alive(pids) == [], "the cancelled owner ended with the daemon's tree alive"
        return pids

    pids = arun(main())
    settle(0.3)
    assert len(pidfile.read_text().split()) == len(pids), "restarted after the cancellation"


def test_a_wait_for_timeout_stops_the_tree(tmp_path: pathlib.Path) -> None:
    pidfile = tmp_path / "pids"

    pids: set[int] = set()

    async def body() -> None:
        async with netrunner.aio.Daemon(tree_cmd(pidfile), kill_timeout=0.3):
            pids.update(await tree_pids_async(pidfile))
            await asyncio.sleep(1000)

    async def main() -> set[int]:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(body(), 2.0)
        assert still_alive(pids) == []
        return pids

    assert len(arun(main())) == 4


def test_a_daemon_left_running_when_the_loop_closes_is_stopped(tmp_path: pathlib.Path) -> None:
    pidfile = tmp_path / "pids"
    box: list[Any] = []

    async def main() -> None:
        d = netrunner.aio.Daemon(tree_cmd(pidfile), kill_timeout=0.5, restart="always", backoff=(0.01, 0.01))
        await d.start()
        await tree_pids_async(pidfile)
        box.append(d)  # keep it referenced: only the loop's end may stop it

    arun(main())
    pids = tree_pids(pidfile)
    assert wait_until(lambda: not still_alive(pids), timeout=10), f"survivors: {still_alive(pids)}"
    settle(0.3)
    assert len(pidfile.read_text().split()) == len(pids), "restarted after the loop closed"
    box.clear()


def test_a_restart_never_overlaps_two_runs(tmp_path: pathlib.Path) -> None:
    tag = f"run-{uuid.uuid4().hex}"
    armed = tmp_path / "armed"
    armed.mkdir()
    leftover = " ".join(["'" + a.replace("'", "'\"'\"'") + "'" for a in pys(IGNORE_TERM)])
    script = f'{leftover} "$1/$$" "$0" > /dev/null & while [ ! -s "$1/$$" ]; do sleep 0.01; done; exit 1'

    async def main() -> None:
        async with netrunner.aio.Daemon(["sh", "-c", script, tag, str(armed)], backoff=(0.01, 0.01),
                                        max_restarts=100, kill_timeout=0.3):
            assert await await_until(lambda: len(list(armed.iterdir())) >= 4, timeout=30)

    with OverlapMonitor(tag) as monitor:
        arun(main())
    assert len(monitor.groups) >= 4
    assert monitor.overlaps == [], f"two runs alive at once: {monitor.overlaps}"


def test_the_loop_stays_responsive_while_output_is_drained(tmp_path: pathlib.Path) -> None:
    # 1.5 s of steady output (64 KiB every 10 ms), then the run lives on: a
    # supervision that drove the run in the loop's thread would freeze the loop
    done = tmp_path / "done"
    code = (
        "import sys, time\n"
        "b = b'y' * 65536\n"
        "for _ in range(150):\n"
        "    sys.stdout.buffer.write(b); sys.stdout.buffer.flush(); time.sleep(0.01)\n"
        "open(sys.argv[1], 'w').close()\n"
        "time.sleep(1000)\n"
    )
    total = 150 * 65536
    received = 0

    def count(data: bytes) -> None:
        nonlocal received
        received += len(data)

    async def main() -> float:
        worst = 0.0
        async with netrunner.aio.Daemon(pys(code, str(done)), on_output=count):
            last = time.monotonic()
            while received < total or not done.exists():
                await asyncio.sleep(0.005)
                now = time.monotonic()
                worst = max(worst, now - last)
                last = now
        return worst

    worst = arun(main(), timeout=60)
    assert received == total
    assert worst < 0.5, f"the loop was blocked for {worst:.2f} s"


# --------------------------------------------------------------- errors and options


def test_missing_program_raises_at_start_and_is_never_retried(tmp_path: pathlib.Path) -> None:
    prog = tmp_path / "prog"
    ran = tmp_path / "ran"

    async def main() -> None:
        d = netrunner.aio.Daemon([str(prog), str(ran)], backoff=(0.01, 0.01))
        with pytest.raises(FileNotFoundError) as info:
            await d.start()
        assert info.value.filename == str(prog)
        assert d.restarts == 0
        assert d.alive is False
        prog.write_text('#!/bin/sh\ntouch "$1"\n')
        prog.chmod(0o755)
        await asyncio.sleep(0.5)  # a retry would run the program now
        assert not ran.exists(), "the daemon retried a start that failed"
        assert d.restarts == 0
        with pytest.raises(FileNotFoundError):
            async with netrunner.aio.Daemon(["no-such-program-netrunner-xyz"]):
                raise AssertionError("the block ran although the program is missing")

    arun(main())


def test_entering_a_started_daemon_does_not_start_it_again(runlog: RunLog) -> None:
    async def main() -> None:
        d = netrunner.aio.Daemon(plan_cmd(runlog.path, "hang"))
        await d.start()
        (start,) = await asyncio.to_thread(runlog.wait_runs, 1)
        async with d as entered:
            assert entered is d
            assert d.pid == start.pid
            await asyncio.to_thread(runlog.assert_no_new_run, 0.3)
        assert not pid_alive(start.pid)
        assert d.alive is False

    arun(main())
    assert runlog.runs() == 1


@pytest.mark.parametrize(
    ("option", "value"),
    [("input", b"x"), ("restart", "sometimes"), ("max_restarts", -1), ("restart_window", 0),
     ("backoff", (1.0,)), ("on_output", "print"), ("on_exit", 1), ("timeout", 1)],
)
def test_bad_options_name_the_option(option: str, value: Any) -> None:
    expected: Any = TypeError if option in ("input", "timeout") else (TypeError, ValueError)
    with pytest.raises(expected, match=option):
        netrunner.aio.Daemon(["cat"], **{option: value})


def test_signal_death_is_restarted_under_on_failure(runlog: RunLog) -> None:
    exits: list[Any] = []

    async def main() -> None:
        async with netrunner.aio.Daemon(plan_cmd(runlog.path, "kill,hang"), backoff=(0.01, 0.01),
                                        on_exit=exits.append) as d:
            assert await await_until(lambda: runlog.runs() == 2 and d.pid == runlog.starts()[1].pid, timeout=10)
            assert d.restarts == 1

    arun(main())
    assert exits[0].signal == signal.SIGKILL
    assert exits[0].returncode == -signal.SIGKILL
    assert len(exits) == 2  # the run stopped at the end is a run too
