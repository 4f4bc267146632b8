"""SPEC 17: ``netrunner.aio`` under trio itself (``trio.run``, no anyio):
detection, trio's cancellation rules (cancel scopes, ``move_on_after``,
``fail_after``: the tree is stopped before the scope exits), nurseries,
several tasks waiting on one process, ``aio.Daemon`` and async-iterable
input in trio, guest mode, and an owner running trio that is SIGKILLed."""

from __future__ import annotations

import ast
import asyncio
import gc
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

import pytest
import trio
import trio.testing
from conftest import wait_until
from libs_helpers import await_file, await_until, pid_alive, pids_with_marker, py, tree

import netrunner
import netrunner.aio as aio
from netrunner import _backends

T = TypeVar("T")


def trun(fn: Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:
    """``trio.run`` with a safety net: a hang fails the test instead of the suite."""

    async def guarded() -> T:
        with trio.fail_after(timeout):
            return await fn()

    return trio.run(guarded)


# --------------------------------------------------------------- detection


def test_the_running_library_is_detected() -> None:
    async def under_trio() -> str:
        r = await aio.run(["echo", "hi"])
        assert r.stdout == b"hi\n"
        return _backends.current().name

    async def under_asyncio() -> str:
        r = await aio.run(["echo", "hi"])  # trio is imported, but not running here
        assert r.stdout == b"hi\n"
        return _backends.current().name

    assert trun(under_trio) == "trio"
    assert asyncio.run(under_asyncio()) == "asyncio"


def test_no_running_library_is_a_clear_error(marker: str) -> None:
    coro = aio.run(["true"])
    with pytest.raises(RuntimeError, match="needs a running async library"):
        coro.send(None)
    assert not pids_with_marker(marker)


def test_trio_guest_mode_on_an_asyncio_loop() -> None:
    async def trio_main() -> tuple[str, bytes]:
        r = await aio.run(["cat"], input=b"guest")
        async with await aio.start(["cat"]) as p:
            await p.write(b"x\n")
            assert await p.readline() == b"x\n"
        return _backends.current().name, r.stdout

    async def host() -> Any:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        trio.lowlevel.start_guest_run(
            trio_main, run_sync_soon_threadsafe=loop.call_soon_threadsafe, done_callback=done.set_result
        )
        return (await done).unwrap()

    assert asyncio.run(host()) == ("trio", b"guest")


# --------------------------------------------------------------- cancellation


def test_a_cancel_scope_cancelled_by_another_task(tmp_path: Path, marker: str) -> None:
    pidfile = tmp_path / "pid"

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()

            async def cancel_when_started() -> None:
                await await_file(pidfile)
                scope.cancel()

            nursery.start_soon(cancel_when_started)
            with scope:
                await aio.run(tree(pidfile, ignore_term=True), kill_timeout=0.3)
            assert scope.cancelled_caught
            assert not pids_with_marker(marker), "the tree outlived the cancelled scope"

    trun(main)


def test_move_on_after_and_fail_after(tmp_path: Path, marker: str) -> None:
    async def main() -> None:
        with trio.move_on_after(0.5) as scope:
            await aio.run(tree(tmp_path / "a", ignore_term=True), kill_timeout=0.3)
        assert scope.cancelled_caught
        assert not pids_with_marker(marker)
        async def too_slow() -> None:
            with trio.fail_after(0.5):
                async with await aio.start(tree(tmp_path / "b", ignore_term=True), kill_timeout=0.3) as p:
                    await p.wait()

        with pytest.raises(trio.TooSlowError):
            await too_slow()
        assert not pids_with_marker(marker)
        with trio.move_on_after(0.5):
            async with aio.stream(tree(tmp_path / "c", ignore_term=True), kill_timeout=0.3) as s:
                async for _ in s:
                    pass
        assert not pids_with_marker(marker)

    trun(main)


def test_a_nursery_failing_stops_its_runs(tmp_path: Path, marker: str) -> None:
    async def main() -> None:
        async def fail_soon() -> None:
            await await_file(tmp_path / "0")
            raise KeyError("boom")

        async def group() -> None:
            async with trio.open_nursery() as nursery:
                for i in range(3):
                    nursery.start_soon(aio.run, tree(tmp_path / str(i)))
                nursery.start_soon(fail_soon)

        with pytest.raises(BaseExceptionGroup) as info:
            await group()
        assert info.group_contains(KeyError)
        assert not pids_with_marker(marker)

    trun(main)


def test_cancelled_waits_leave_the_process_usable() -> None:
    async def main() -> None:
        async with await aio.start(["cat"]) as p:
            with trio.move_on_after(0.1):
                await p.readline()
            with trio.move_on_after(0.1):
                await p.wait()
            await p.write(b"ok\n")
            assert await p.readline() == b"ok\n"

    trun(main)


def test_every_call_is_a_checkpoint_even_without_waiting() -> None:
    """trio's convention: a call notices a cancellation and lets other tasks
    run even when what it needs is there already (data in the pipe, room
    to write); a chunk read is never lost to the cancellation."""

    async def main() -> None:
        async with await aio.start(["cat"]) as p:
            with trio.testing.assert_checkpoints():
                await p.write(b"one\ntwo\n")  # the pipe has room: no wait
            assert await p.readline() == b"one\n"
            assert await await_until(lambda: p.stats.bytes_out == 8)
            with trio.CancelScope() as scope:
                scope.cancel()
                await p.read()
            assert scope.cancelled_caught
            with trio.testing.assert_checkpoints():
                assert await p.read() == b"two\n"  # nothing was taken by the cancelled read
        async with aio.stream(["head", "-c", "1000000", "/dev/zero"]) as s:
            first = await s.__anext__()
            await trio.sleep(0.2)  # the producer fills the pipe: the next chunk is there already
            with trio.testing.assert_checkpoints():
                second = await s.__anext__()
            assert first + second == bytes(len(first) + len(second))

    trun(main)


def _work_on(chunk: bytes) -> None:
    time.sleep(0.001)  # slower than the producer: the pipe stays full


def test_a_deadline_reaches_a_consumer_that_never_empties_the_pipe(marker: str) -> None:
    async def main() -> None:
        with trio.move_on_after(0.5) as scope:
            async with aio.stream(["cat", "/dev/zero"]) as s:
                async for chunk in s:
                    _work_on(chunk)
        assert scope.cancelled_caught
        assert not pids_with_marker(marker)

    trun(main)


# --------------------------------------------------------------- several tasks, one process


def test_several_tasks_wait_on_one_process_at_once() -> None:
    """trio lets one task at a time wait on an fd; netrunner's waits do not
    collide (a read, two waits and a read of stderr all watch the control
    socket)."""

    async def main() -> list[Any]:
        code = "import sys; sys.stdin.readline(); print('out'); print('err', file=sys.stderr)"
        got: list[Any] = []
        async with await aio.start(py(code), stderr="capture") as p:
            async with trio.open_nursery() as nursery:
                async def keep(fn: Callable[[], Awaitable[Any]]) -> None:
                    got.append(await fn())

                nursery.start_soon(keep, p.wait)
                nursery.start_soon(keep, p.wait)
                nursery.start_soon(keep, p.read)
                nursery.start_soon(keep, p.read_stderr)
                await trio.sleep(0.2)
                await p.write(b"go\n")
        return got

    assert sorted(map(repr, trun(main))) == sorted(map(repr, [0, 0, b"out\n", b"err\n"]))


def test_close_stdin_wakes_a_blocked_write() -> None:
    async def main() -> None:
        async with await aio.start(["sleep", "100"]) as p:
            async with trio.open_nursery() as nursery:
                failures: list[BaseException] = []

                async def write_too_much() -> None:
                    try:
                        await p.write(b"x" * (4 << 20))  # the pipe fills: nobody reads
                    except BrokenPipeError as exc:
                        failures.append(exc)

                nursery.start_soon(write_too_much)
                assert await await_until(lambda: p.stats.bytes_in > 0)
                p.close_stdin()
            assert len(failures) == 1
            assert isinstance(failures[0], netrunner.StdinClosed)

    trun(main)


def test_200_runs_in_a_nursery() -> None:
    async def main() -> list[int]:
        codes: list[int] = []

        async def one() -> None:
            codes.append((await aio.run(["sleep", "0.2"])).returncode)

        async with trio.open_nursery() as nursery:
            for _ in range(200):
                nursery.start_soon(one)
        return codes

    assert trun(main) == [0] * 200


def test_a_pty_dialogue() -> None:
    """On a PTY stdin is a copy of the terminal's master: both numbers of
    one file in the same wait."""

    async def main() -> None:
        r = await aio.run(["cat"], pty=True, input=b"hello\n")
        assert r.stdout == b"hello\r\nhello\r\n"
        async with await aio.start(py("x = input('> '); print('got', x)"), pty=True) as p:
            assert await p.read_until(b"> ") == b"> "
            await p.write(b"abc\n")
            assert (await p.read_until(b"got abc")).endswith(b"got abc")
            assert await p.wait() == 0

    trun(main)


# --------------------------------------------------------------- input, Daemon


def test_async_input_is_consumed_as_the_command_reads() -> None:
    pulled: list[int] = []
    finished: list[bool] = []

    async def endless() -> AsyncIterator[bytes]:
        try:
            for i in range(10_000):
                pulled.append(i)
                yield b"x" * (1 << 20)
        finally:
            finished.append(True)

    async def main() -> netrunner.Result:
        r = await aio.run(["sh", "-c", "sleep 0.5; head -c 3000000 >/dev/null"], input=endless())
        assert len(pulled) <= 8, f"{len(pulled)} MiB taken for a command that read 3 MB"
        return r

    assert trun(main).returncode == 0
    assert finished == [True]


def test_a_stream_piped_into_a_stream(marker: str) -> None:
    async def main() -> bytes:
        async with aio.stream(["tr", "a-z", "A-Z"], input=aio.stream(["echo", "piped"])) as s:
            return b"".join([c async for c in s])

    assert trun(main) == b"PIPED\n"
    assert not pids_with_marker(marker)


@pytest.mark.parametrize("how", ["command", "pipeline"])
def test_a_stream_raises_the_error_of_its_source_not_its_own_stop(how: str, marker: str) -> None:
    """The failing source stops the command (SIGTERM); the stream raises the
    source's error, not an ``AbnormalExit`` for that SIGTERM."""

    class Broken(Exception):
        pass

    async def main() -> list[bytes]:
        got: list[bytes] = []
        first_read = trio.Event()

        async def source() -> AsyncIterator[bytes]:
            yield b"hello\n"
            await first_read.wait()
            raise Broken("boom")

        cmd: Any = ["cat"] if how == "command" else netrunner.pipe(["cat"], ["cat"])
        with pytest.raises(Broken, match="boom"):
            async with aio.stream(cmd, input=source()) as s:
                async for chunk in s:
                    got.append(chunk)
                    first_read.set()
        upstream = aio.stream(["sh", "-c", "echo up; exit 3"])
        with pytest.raises(netrunner.AbnormalExit) as info:
            async with aio.stream(["sh", "-c", "cat; sleep 100"], input=upstream) as s:
                async for _ in s:
                    pass
        assert info.value.returncode == 3, info.value
        return got

    assert trun(main) == [b"hello\n"]
    assert not pids_with_marker(marker)


def test_dropping_a_started_stream_ends_its_input_task(marker: str) -> None:
    """A stream dropped while its feeding (system) task waits for room in
    the pipe: the task is cancelled, and closes the source, within the run
    rather than when ``trio.run`` ends."""
    pulled: list[int] = []
    closed: list[bool] = []

    async def endless() -> AsyncIterator[bytes]:
        try:
            while True:
                pulled.append(1)
                yield b"x" * 65536
        finally:
            closed.append(True)

    async def main() -> None:
        s = aio.stream(["sh", "-c", "echo hi; sleep 100"], input=endless())
        assert await s.__anext__() == b"hi\n"
        assert await await_until(lambda: len(pulled) >= 2), "the feeding task never blocked"
        del s
        gc.collect()
        assert await await_until(lambda: closed, patience=5), "the feeding task of a dropped stream still waits"
        assert await await_until(lambda: not pids_with_marker(marker), patience=10)

    trun(main)


def test_break_out_of_lines_leaves_no_async_generator_behind(marker: str) -> None:
    """``lines()`` is not an async generator, which trio would warn about
    when ``break`` leaves it unexhausted."""
    async def main() -> None:
        async with aio.stream(["seq", "100000"]) as s:
            async for line in s.lines():
                assert line == b"1\n"
                break
        async for line in aio.stream(["seq", "100000"]).lines():
            assert line == b"1\n"
            break
        gc.collect()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trun(main)
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert wait_until(lambda: not pids_with_marker(marker), timeout=10)


def test_daemon_stop_from_another_task(marker: str) -> None:
    async def main() -> None:
        results: list[netrunner.Result] = []
        d = aio.Daemon(["sleep", "100"], on_exit=results.append)
        await d.start()
        first = d.pid
        assert first is not None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(d.wait)
            await trio.sleep(0.1)
            await d.stop()
        assert not d.alive
        assert not pid_alive(first)
        assert [r.signal for r in results] == [signal.SIGTERM]
        assert not pids_with_marker(marker)

    trun(main)


def test_daemon_whose_trio_run_ends_right_after_start_is_stopped(marker: str) -> None:
    """``trio.run`` ending right after ``start()``: the supervision task is
    cancelled before its first step, so its flow never runs (a generator
    closed before it starts runs no ``finally``); the run is handed to its
    shepherd all the same."""

    async def main() -> None:
        await aio.Daemon(["sleep", "1000"], kill_timeout=0.3).start()

    for _ in range(3):
        trun(main)
        assert wait_until(lambda: not pids_with_marker(marker), timeout=5.0)


def test_daemon_left_running_when_trio_run_ends_is_stopped(tmp_path: Path, marker: str) -> None:
    """A supervision is a system task: when ``trio.run`` ends it is cancelled,
    and the current run is handed to its shepherd, which stops the tree."""
    pidfile = tmp_path / "pid"

    async def main() -> None:
        await aio.Daemon(tree(pidfile), kill_timeout=0.3).start()
        await await_file(pidfile)

    trun(main)
    assert wait_until(lambda: not pids_with_marker(marker), timeout=5.0)


def test_a_dropped_process_is_stopped_without_the_loop(tmp_path: Path, marker: str) -> None:
    """The finalizer hands the stop to the shepherd: no trio call is needed,
    during the run or after it."""

    async def main() -> None:
        procs = [await aio.start(tree(tmp_path / "pid"))]
        await await_file(tmp_path / "pid")
        with pytest.warns(ResourceWarning, match="dropped while still running"):
            procs.clear()  # the last reference

    trun(main)
    assert wait_until(lambda: not pids_with_marker(marker), timeout=10.0)


# --------------------------------------------------------------- owner SIGKILLed


OWNER = """
import os, sys, trio
import netrunner.aio as aio

async def main(where):
    async with trio.open_nursery() as nursery:
        nursery.start_soon(aio.run, {run!r})
        p = await aio.start({start!r})
        d = await aio.Daemon({daemon!r}).start()
        async with aio.stream({stream!r}) as s:
            for name in "rpds":
                path = os.path.join(where, name)
                while not (os.path.exists(path) and open(path).read().endswith("\\n")):
                    await trio.sleep(0.01)
            print("ready", flush=True)
            await trio.sleep(1000)

trio.run(main, sys.argv[1])
"""


def test_owner_running_trio_sigkilled(tmp_path: Path, marker: str) -> None:
    code = textwrap.dedent(OWNER).format(
        run=tree(tmp_path / "r"), start=tree(tmp_path / "p"), daemon=tree(tmp_path / "d"), stream=tree(tmp_path / "s")
    )
    owner = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        assert owner.stdout.readline() == "ready\n"
        pids = [int((tmp_path / name).read_text()) for name in "rpds"]
        assert all(pid_alive(pid) for pid in pids)
        assert len(set(pids_with_marker(marker)) - {owner.pid}) >= 4 * 3
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait()
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()
    assert wait_until(lambda: not pids_with_marker(marker), timeout=10.0), "the trees outlived their owner"


# --------------------------------------------------------------- fds


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_sequential_runs_leave_the_fd_count_unchanged() -> None:
    async def main() -> tuple[int, int]:
        async def some() -> None:
            for _ in range(50):
                await aio.run(["true"])
            async with trio.open_nursery() as nursery:
                for _ in range(40):  # more waits at once than idle epoll instances are kept
                    nursery.start_soon(aio.run, ["sleep", "0.1"])

        await some()
        before = _open_fds()
        for _ in range(5):
            await some()
        return before, _open_fds()

    before, after = trun(main, timeout=120)
    assert after == before


def _still_open_in_a_fork(fds: list[int]) -> list[int]:
    """Fork; the child reports which of ``fds`` it has open."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        still = [fd for fd in fds if os.path.exists(f"/proc/self/fd/{fd}")]
        os.write(w, repr(still).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        report = f.read()
    os.waitpid(pid, 0)
    return list(ast.literal_eval(report.decode()))


def test_a_forked_child_keeps_no_epoll_instance() -> None:
    from netrunner import _drivers

    async def main() -> tuple[list[int], list[int]]:
        await aio.run(["true"])
        ours = [ep.fileno() for ep in _drivers._idle_epolls]
        assert ours, "a wait under trio left no idle epoll instance to reuse"
        return ours, _still_open_in_a_fork(ours)  # forked inside the trio run

    ours, left_in_child = trun(main)
    assert left_in_child == []
    assert all(os.path.exists(f"/proc/self/fd/{fd}") for fd in ours)
