"""SPEC 17: async iterables, an ``aio.Stream`` included, as ``input`` to
``aio.run`` and ``aio.stream`` -- consumed only as the command reads."""

from __future__ import annotations

import asyncio
import gzip
import os
from collections.abc import AsyncIterator

import pytest
from conftest import pids_with_marker, wait_until
from helpers_aio import arun

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
