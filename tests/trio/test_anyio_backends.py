"""SPEC 17: ``netrunner.aio`` under anyio, on both of its backends (asyncio
and trio). The core cases of the asyncio suite, written against anyio's
primitives: cancel scopes, ``move_on_after``/``fail_after`` and task
groups, whose cancellation is level-triggered on both backends.

A cancelled scope around a command stops its tree before the scope exits:
right after it, no process carrying the test's marker is alive (checked at
once, not polled). The autouse ``marker`` fixture checks nothing survives."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from libs_helpers import await_file, await_until, pid_alive, pids_with_marker, py, tree

import netrunner
import netrunner.aio as aio

pytestmark = pytest.mark.anyio

ECHO_LINES = "import sys\nfor line in sys.stdin:\n    print(line.strip().upper(), flush=True)"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# --------------------------------------------------------------- run


async def test_run_results_match_the_blocking_api() -> None:
    cases: list[tuple[list[str], dict[str, Any]]] = [
        (["echo", "hello"], {}),
        (py("import sys; sys.stdout.write('out'); sys.stderr.write('err'); sys.exit(3)"), {}),
        (["sh", "-c", "kill -TERM $$"], {}),
        (["cat"], {"input": b"abc\x00def"}),
        (["cat"], {"input": "h\u00e9llo", "text": True}),
    ]
    for cmd, options in cases:
        want = netrunner.run(cmd, **options)
        got = await aio.run(cmd, **options)
        assert (got.stdout, got.stderr, got.returncode, got.exit_status, got.signal) == (
            want.stdout, want.stderr, want.returncode, want.exit_status, want.signal,
        )


async def test_run_check_raises_process_error() -> None:
    with pytest.raises(netrunner.ProcessError) as info:
        await aio.run(py("import sys; print('x'); sys.exit(4)"), check=True)
    assert info.value.returncode == 4
    assert info.value.stdout == b"x\n"


async def test_large_input_and_output_interleave() -> None:
    data = os.urandom(4 << 20)
    result = await aio.run(["cat"], input=data)
    assert result.stdout == data
    assert result.stats.bytes_in == len(data)


async def test_exec_failures(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        await aio.run(["no-such-program-netrunner-xyz"])
    assert info.value.filename == "no-such-program-netrunner-xyz"
    missing = str(tmp_path / "missing")
    with pytest.raises(FileNotFoundError) as cinfo:
        await aio.start(["true"], cwd=missing)
    assert cinfo.value.filename == missing
    with pytest.raises(FileNotFoundError):
        await aio.stream(["no-such-program-netrunner-xyz"]).__aenter__()


async def test_run_timeout_stops_the_tree_and_keeps_partial_output(tmp_path: Path, marker: str) -> None:
    code = "import sys, time; print('partial', flush=True); print('err', file=sys.stderr, flush=True); time.sleep(100)"
    with pytest.raises(netrunner.Timeout) as info:
        await aio.run(py(code), timeout=1.0)
    assert isinstance(info.value, TimeoutError)
    assert info.value.stdout == b"partial\n"
    assert info.value.stderr == b"err\n"
    assert not pids_with_marker(marker)
    pidfile = tmp_path / "pid"
    with pytest.raises(netrunner.Timeout):
        await aio.run(tree(pidfile, ignore_term=True), timeout=1.0, kill_timeout=0.3)
    assert not pids_with_marker(marker)


# --------------------------------------------------------------- stream


async def test_stream_chunks_lines_and_result() -> None:
    async with aio.stream(["seq", "1", "20000"]) as s:
        data = b"".join([chunk async for chunk in s])
    assert data == b"".join(b"%d\n" % i for i in range(1, 20001))
    assert s.result is not None
    assert s.result.returncode == 0
    lines = [line async for line in aio.stream(["printf", "a\\nb\\nc"], text=True).lines()]
    assert lines == ["a\n", "b\n", "c"]


async def test_stream_early_break_stops_the_tree(marker: str) -> None:
    async with aio.stream(["sh", "-c", "sleep 1000 & while :; do echo y; done"]) as s:
        async for chunk in s:
            assert chunk.startswith(b"y\n")
            break
    assert not pids_with_marker(marker)


async def test_stream_timeout(marker: str) -> None:
    got: list[bytes] = []

    async def consume() -> None:
        async with aio.stream(["sh", "-c", "echo one; sleep 1000"], timeout=0.5) as s:
            async for chunk in s:
                got.append(chunk)

    with pytest.raises(netrunner.Timeout):
        await consume()
    assert got == [b"one\n"]
    assert not pids_with_marker(marker)


# --------------------------------------------------------------- start


async def test_start_dialogue() -> None:
    async with await aio.start(py(ECHO_LINES), text=True) as p:
        assert p.alive
        await p.write("hello\n")
        assert await p.readline() == "HELLO\n"
        await p.write("one\ntwo\n")
        assert await p.read_until("TWO\n") == "ONE\nTWO\n"
        with pytest.raises(TimeoutError):
            await p.read(timeout=0.2)
        await p.write("last\n")
        out, err = await p.communicate()
        assert out == "LAST\n"
        assert err == ""
        assert await p.wait() == 0
        assert p.returncode == 0


async def test_start_stop_and_signals() -> None:
    async with await aio.start(py("import time; print('ready', flush=True); time.sleep(100)")) as p:
        assert await p.readline() == b"ready\n"
        assert await p.stop() == -signal.SIGTERM
        assert await p.wait() == -signal.SIGTERM
        assert not p.alive
    async with await aio.start(["sleep", "100"]) as q:
        q.kill()
        assert await q.wait() == -signal.SIGKILL


async def test_a_cancelled_read_leaves_the_process_usable() -> None:
    async with await aio.start(["cat"]) as p:
        with anyio.move_on_after(0.2) as scope:
            await p.read()
        assert scope.cancelled_caught
        await p.write(b"still here\n")
        assert await p.readline() == b"still here\n"
        p.close_stdin()
        assert await p.wait() == 0


# --------------------------------------------------------------- cancellation


async def test_a_cancelled_scope_stops_run_before_it_exits(tmp_path: Path, marker: str) -> None:
    pidfile = tmp_path / "pid"
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:

            async def cancel_when_started() -> None:
                await await_file(pidfile)
                scope.cancel()

            tg.start_soon(cancel_when_started)
            await aio.run(tree(pidfile, ignore_term=True), kill_timeout=0.3)
    assert scope.cancelled_caught
    assert not pids_with_marker(marker), "the tree outlived the cancelled scope"


async def test_move_on_after_stops_a_term_ignoring_tree(tmp_path: Path, marker: str) -> None:
    pidfile = tmp_path / "pid"
    with anyio.move_on_after(1.0) as scope:
        await aio.run(tree(pidfile, ignore_term=True), kill_timeout=0.3)
    assert scope.cancelled_caught
    assert pidfile.exists()
    assert not pids_with_marker(marker)


async def test_fail_after_raises_and_stops_the_tree(tmp_path: Path, marker: str) -> None:
    async def too_slow() -> None:
        with anyio.fail_after(1.0):
            await aio.run(tree(tmp_path / "pid", ignore_term=True), kill_timeout=0.3)

    with pytest.raises(TimeoutError):
        await too_slow()
    assert not pids_with_marker(marker)


async def test_cancelled_stream_and_process_blocks_stop_their_trees(tmp_path: Path, marker: str) -> None:
    with anyio.move_on_after(1.0):
        async with aio.stream(tree(tmp_path / "a")) as s:
            async for _ in s:
                pass
    assert not pids_with_marker(marker)
    with anyio.move_on_after(1.0):
        async with await aio.start(tree(tmp_path / "b")) as p:
            await p.wait()
    assert not pids_with_marker(marker)


async def test_cancelling_one_run_leaves_its_siblings_alone(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    results: list[Any] = []
    async with anyio.create_task_group() as tg:
        with anyio.CancelScope() as victim:

            async def sibling() -> None:
                results.append(await aio.run(py("import time; time.sleep(0.5); print('done')")))

            tg.start_soon(sibling)

            async def cancel_when_started() -> None:
                await await_file(pidfile)
                victim.cancel()

            tg.start_soon(cancel_when_started)
            await aio.run(tree(pidfile))
    assert results[0].stdout == b"done\n"


# --------------------------------------------------------------- concurrency


async def test_200_concurrent_runs_without_a_thread_each() -> None:
    before = threading.active_count()
    peak = before
    results: list[Any] = []

    async def one(i: int) -> None:
        nonlocal peak
        results.append(await aio.run(["sh", "-c", f"sleep 0.2; echo {i}"]))
        peak = max(peak, threading.active_count())

    async with anyio.create_task_group() as tg:
        for i in range(200):
            tg.start_soon(one, i)
    assert sorted(int(r.stdout) for r in results) == list(range(200))
    assert all(r.returncode == 0 for r in results)
    assert peak <= before + 1, f"threads went from {before} to {peak}"


# --------------------------------------------------------------- async iterable input


async def test_async_iterable_input() -> None:
    async def source() -> AsyncIterator[bytes | str]:
        yield b"one\n"
        yield ""
        await anyio.sleep(0.01)
        yield "tw\u00f6\n"

    r = await aio.run(["cat"], input=source(), text=True)
    assert r.stdout == "one\ntw\u00f6\n"
    async with aio.stream(["tr", "a-z", "A-Z"], input=source(), text=True) as s:
        assert "".join([chunk async for chunk in s]) == "ONE\nTW\u00f6\n"


async def test_an_aio_stream_pipes_into_aio_run(marker: str) -> None:
    r = await aio.run(["wc", "-l"], input=aio.stream(["seq", "100000"]))
    assert int(r.stdout) == 100000
    upstream = aio.stream(["sh", "-c", "trap '' PIPE; while :; do echo y; done"], check=False)
    r = await aio.run(["head", "-n", "3"], input=upstream)
    assert r.stdout == b"y\ny\ny\n"
    assert not pids_with_marker(marker)


async def test_a_failing_source_fails_the_run(marker: str) -> None:
    async def source() -> AsyncIterator[bytes]:
        yield b"x\n"
        raise ValueError("the source broke")

    with pytest.raises(ValueError, match="the source broke"):
        await aio.run(["sh", "-c", "cat; sleep 1000"], input=source())
    assert not pids_with_marker(marker)


async def test_a_cancelled_run_with_async_input_stops_the_tree_and_closes_the_source(marker: str) -> None:
    closed: list[bool] = []

    async def endless() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"y" * 65536
        finally:
            closed.append(True)

    with anyio.move_on_after(0.5) as scope:
        await aio.run(["sh", "-c", "sleep 1000 & sleep 1000"], input=endless())
    assert scope.cancelled_caught
    assert closed == [True]
    assert not pids_with_marker(marker)


class _Endless:
    """An async iterator that never yields, and counts its ``aclose`` calls."""

    def __init__(self) -> None:
        self.closed = 0

    def __aiter__(self) -> _Endless:
        return self

    async def __anext__(self) -> bytes:
        await anyio.sleep(1000)
        return b"never\n"

    async def aclose(self) -> None:
        self.closed += 1


async def test_a_stream_closed_before_its_input_task_ran_closes_the_source(marker: str) -> None:
    """Entered and left with no await between: under asyncio the feeding
    task is cancelled before its first step, so its coroutine (and the
    ``finally`` that closes the source) never runs; the close comes from
    the stream's end instead. An ``aio.Stream`` source that runs is
    stopped by that close."""
    source = _Endless()
    async with aio.stream(["cat"], input=source):
        pass
    assert source.closed == 1

    upstream = aio.stream(["sh", "-c", "trap '' PIPE; while :; do echo y; done"], check=False)
    assert await upstream.__anext__()  # started: its tree runs
    async with aio.stream(["cat"], input=upstream):
        pass
    # ``upstream`` is still referenced: no finalizer stopped it
    assert not pids_with_marker(marker), "the upstream tree outlived the stream that took it as input"


# --------------------------------------------------------------- Daemon


async def test_daemon_restarts_writes_and_stops(marker: str) -> None:
    seen: list[bytes] = []
    daemon = aio.Daemon(py(ECHO_LINES), on_output=seen.append, restart="always", backoff=(0.05, 0.1))
    async with daemon as d:
        await d.write(b"hello\n")
        assert await await_until(lambda: b"".join(seen) == b"HELLO\n")
        first = d.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        assert await await_until(lambda: d.restarts == 1 and d.alive)
        await d.write(b"again\n")
        assert await await_until(lambda: b"".join(seen) == b"HELLO\nAGAIN\n")
    assert not d.alive
    assert not pid_alive(first)
    assert not pids_with_marker(marker)


async def test_daemon_run_cancelled_stops_its_tree(tmp_path: Path, marker: str) -> None:
    pidfile = tmp_path / "pid"
    daemon = aio.Daemon(tree(pidfile, ignore_term=True), kill_timeout=0.3)
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:

            async def cancel_when_started() -> None:
                await await_file(pidfile)
                scope.cancel()

            tg.start_soon(cancel_when_started)
            await daemon.run()
    assert scope.cancelled_caught
    assert not daemon.alive
    assert not pids_with_marker(marker), "the daemon's tree outlived the cancelled scope"


async def test_daemon_left_by_a_cancelled_scope_is_stopped(tmp_path: Path, marker: str) -> None:
    pidfile = tmp_path / "pid"
    with anyio.move_on_after(10) as scope:
        async with aio.Daemon(tree(pidfile)):
            await await_file(pidfile)
            scope.cancel()
            await anyio.sleep(1000)
    assert scope.cancelled_caught
    assert not pids_with_marker(marker)
