"""SPEC 17: async iterables, an ``aio.Stream`` included, as ``input`` to
``aio.run`` and ``aio.stream`` -- consumed only as the command reads."""

from __future__ import annotations

import asyncio
import gc
import gzip
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from conftest import pids_with_marker, wait_until
from helpers_aio import arun, await_until

import netrunner
import netrunner.aio as aio

MIB = 1024 * 1024


def test_an_aio_stream_pipes_into_aio_run() -> None:
    async def main() -> bytes:
        r = await aio.run(["gzip", "-c"], input=aio.stream(["seq", "200000"]))
        assert r.returncode == 0
        return r.stdout  # type: ignore[no-any-return]

    expected = b"".join(b"%d\n" % i for i in range(1, 200001))
    assert gzip.decompress(arun(main())) == expected


def test_an_async_generator_of_bytes_and_str() -> None:
    async def source() -> AsyncIterator[bytes | str]:
        yield b"one\n"
        yield ""
        yield "tw\u00f6\n"
        await asyncio.sleep(0.01)
        yield bytearray(b"three\n")

    async def main() -> str:
        r = await aio.run(["cat"], input=source(), text=True)
        return r.stdout  # type: ignore[no-any-return]

    assert arun(main()) == "one\ntw\u00f6\nthree\n"


def test_the_source_is_consumed_only_as_the_command_reads() -> None:
    """Backpressure: while the command does not read, at most a pipe's worth
    plus the chunk being written is taken from the source."""
    pulled: list[int] = []
    finished: list[bool] = []

    async def endless() -> AsyncIterator[bytes]:
        try:
            for i in range(10_000):
                pulled.append(i)
                yield b"x" * MIB
        finally:
            finished.append(True)

    async def main() -> netrunner.Result:
        task = asyncio.ensure_future(
            aio.run(["sh", "-c", "sleep 1; head -c 3000000 >/dev/null"], input=endless())
        )
        await asyncio.sleep(0.6)
        while_sleeping = len(pulled)
        result = await task
        assert while_sleeping <= 3, f"{while_sleeping} MiB taken while the command read nothing"
        return result

    result = arun(main())
    assert result.returncode == 0
    assert len(pulled) <= 8, f"{len(pulled)} MiB taken for a command that read 3 MB"
    assert finished == [True], "the source was not closed when the command stopped reading"


def test_an_aio_stream_input_is_stopped_when_the_reader_exits(marker: str) -> None:
    async def main() -> netrunner.Result:
        upstream = aio.stream(["sh", "-c", "trap '' PIPE; while :; do echo y; done"], check=False)
        r = await aio.run(["head", "-n", "3"], input=upstream)
        # ``upstream`` is still referenced: no finalizer did this
        assert wait_until(lambda: not pids_with_marker(marker), timeout=5), "the upstream tree still runs"
        return r

    assert arun(main()).stdout == b"y\ny\ny\n"


def test_the_upstream_tree_is_gone_when_run_returns(marker: str) -> None:
    """The reader exits, the feeding task meets the broken pipe and closes
    the upstream stream, which stops its tree; the run's end, coming at the
    same moment, must wait for that stop rather than cancel it (asyncio has
    no shield: a cancellation arriving during it abandoned the stop, and the
    shepherd stopped the tree only later, after its owner hung up)."""
    rounds = 300 * (10 if os.environ.get("NETRUNNER_STRESS") == "1" else 1)

    async def main() -> None:
        for i in range(rounds):
            upstream = aio.stream(["sh", "-c", "trap '' PIPE; while :; do echo y; done"], check=False)
            r = await aio.run(["head", "-n", "1000"], input=upstream)
            assert r.stdout == b"y\n" * 1000
            assert not pids_with_marker(marker), f"round {i}: the upstream tree outlived the run"

    arun(main())


def test_aio_stream_takes_an_async_input() -> None:
    async def main() -> list[bytes]:
        async with aio.stream(["tr", "a-z", "A-Z"], input=aio.stream(["printf", "abc\\ndef\\n"])) as s:
            return [line async for line in s.lines()]

    assert arun(main()) == [b"ABC\n", b"DEF\n"]


def test_a_bad_item_stops_the_tree_and_raises() -> None:
    async def bad() -> AsyncIterator[object]:
        yield b"fine\n"
        yield 42

    async def main() -> None:
        await aio.run(["cat"], input=bad(), timeout=30)

    with pytest.raises(TypeError, match="bytes or str, got int"):
        arun(main())


def test_an_error_in_the_source_stops_the_tree_and_raises() -> None:
    class Broken(Exception):
        pass

    async def source() -> AsyncIterator[bytes]:
        yield b"x"
        raise Broken("upstream failed")

    async def main() -> None:
        await aio.run(["sh", "-c", "cat; sleep 100"], input=source())

    with pytest.raises(Broken):
        arun(main())


def test_cancelling_run_closes_the_source_and_stops_the_tree() -> None:
    closed: list[bool] = []

    async def slow() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"tick\n"
                await asyncio.sleep(0.05)
        finally:
            closed.append(True)

    async def main() -> None:
        task = asyncio.ensure_future(aio.run(["cat"], input=slow()))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    arun(main())
    assert closed == [True]


def test_the_fds_are_left_as_they_were() -> None:
    async def source() -> AsyncIterator[bytes]:
        yield b"data\n"

    async def main() -> None:
        for _ in range(20):
            await aio.run(["cat"], input=source())
            await aio.run(["cat"], input=aio.stream(["echo", "hi"]))

    arun(main())  # warm up the helpers
    before = len(os.listdir("/proc/self/fd"))
    arun(main())
    assert wait_until(lambda: len(os.listdir("/proc/self/fd")) == before, timeout=5)


@pytest.mark.parametrize("entry", ["run", "stream"])
def test_blocking_calls_refuse_an_async_input_before_spawning(entry: str, marker: str) -> None:
    async def source() -> AsyncIterator[bytes]:
        yield b"x"

    gen = source()
    with pytest.raises(TypeError, match=rf"input is an async iterable.*netrunner\.aio\.{entry}\(\)"):
        getattr(netrunner, entry)(["cat"], input=gen)
    assert pids_with_marker(marker) == []
    arun(gen.aclose())


@pytest.mark.parametrize("entry", ["run", "stream"])
def test_a_broken_pipe_error_of_the_source_is_raised(entry: str) -> None:
    """Only a ``BrokenPipeError`` of the write to the command's stdin means
    that it stopped reading (SPEC 2); one the source raises is its failure."""

    async def source() -> AsyncIterator[bytes]:
        yield b"first part\n"
        raise BrokenPipeError("upstream")

    async def main() -> None:
        if entry == "run":
            await aio.run(["cat"], input=source())
            return
        async with aio.stream(["cat"], input=source()) as s:
            async for _ in s:
                pass

    with pytest.raises(BrokenPipeError, match="upstream"):
        arun(main())


def test_cancelling_run_twice_still_stops_the_tree_and_releases_the_fds() -> None:
    """asyncio: a second cancellation, arriving while the feeding task is
    being ended, must not skip stopping the tree and releasing its fds (the
    marker fixture finds the commands and shepherds that would be left)."""

    async def main() -> None:
        waiting = asyncio.Event()

        async def forever() -> AsyncIterator[bytes]:
            yield b"x"
            waiting.set()
            await asyncio.Event().wait()

        for _ in range(10):
            waiting.clear()
            task = asyncio.ensure_future(aio.run(["cat"], input=forever()))
            await waiting.wait()
            task.cancel()
            await asyncio.sleep(0)  # the task is ending the feeding task now
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    arun(main())  # warm up the helpers
    before = len(os.listdir("/proc/self/fd"))
    arun(main())
    assert wait_until(lambda: len(os.listdir("/proc/self/fd")) <= before, timeout=5), (
        f"{len(os.listdir('/proc/self/fd')) - before} fds left open"
    )


@pytest.mark.parametrize("how", ["command", "pipeline"])
def test_a_stream_raises_the_error_of_its_source_not_its_own_stop(how: str) -> None:
    """The source's failure stops the command (SIGTERM): the stream raises
    the source's error, as ``aio.run`` and the blocking stream do, not an
    ``AbnormalExit`` for that SIGTERM."""

    class Broken(Exception):
        pass

    got: list[bytes] = []

    async def main() -> None:
        first_read = asyncio.Event()

        async def source() -> AsyncIterator[bytes]:
            yield b"hello\n"
            await first_read.wait()
            raise Broken("boom")

        cmd: Any = ["cat"] if how == "command" else netrunner.pipe(["cat"], ["cat"])
        async with aio.stream(cmd, input=source()) as s:
            async for chunk in s:
                got.append(chunk)
                first_read.set()

    with pytest.raises(Broken, match="boom"):
        arun(main())
    assert got == [b"hello\n"]


def test_a_failing_upstream_stream_fails_the_downstream_with_its_exit() -> None:
    async def main() -> None:
        upstream = aio.stream(["sh", "-c", "echo up; exit 3"])
        async with aio.stream(["sh", "-c", "cat; sleep 100"], input=upstream) as s:
            async for _ in s:
                pass

    with pytest.raises(netrunner.AbnormalExit) as info:
        arun(main())
    assert info.value.returncode == 3, info.value


def _feeding_task(name: str) -> asyncio.Task[Any]:
    (task,) = [t for t in asyncio.all_tasks() if t.get_name() == f"netrunner input of {name!r}"]
    return task


def test_dropping_a_started_stream_ends_its_blocked_input_task(marker: str) -> None:
    """The stream is dropped while its feeding task waits for room in the
    pipe: the tree is handed to the shepherd, and the task is cancelled on
    the loop (it closes the source) rather than left pending for ever."""
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
        task = _feeding_task("sh")
        assert await await_until(lambda: len(pulled) >= 2), "the feeding task never blocked"
        assert not task.done()
        del s
        gc.collect()
        assert await await_until(task.done, timeout=5), "the feeding task of a dropped stream is still pending"
        assert task.cancelled()
        assert closed == [True]
        assert await await_until(lambda: not pids_with_marker(marker), timeout=10)

    arun(main())


def test_a_dropped_stream_whose_source_failed_reports_it_once(caplog: pytest.LogCaptureFixture) -> None:
    """The source failed and nobody iterates any more: its error is logged
    to ``netrunner.aio``, and asyncio has no "Task exception was never
    retrieved" to report."""

    class Broken(Exception):
        pass

    unhandled: list[dict[str, Any]] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: unhandled.append(ctx))
        fail = asyncio.Event()

        async def failing() -> AsyncIterator[bytes]:
            yield b"x"
            await fail.wait()
            raise Broken("upstream failed")

        s = aio.stream(["sh", "-c", "echo hi; sleep 100"], input=failing())
        assert await s.__anext__() == b"hi\n"
        task = _feeding_task("sh")
        fail.set()
        assert await await_until(task.done)
        del s
        gc.collect()
        assert await await_until(lambda: caplog.records, timeout=5), "the failure was not reported"
        del task
        gc.collect()  # an asyncio task whose exception was never retrieved reports it now

    with caplog.at_level(logging.WARNING, logger="netrunner.aio"):
        arun(main())
    assert unhandled == []
    (record,) = caplog.records
    assert "dropped aio.stream" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], Broken)
