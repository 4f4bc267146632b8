"""SPEC section 16 on ``netrunner.aio``: pipelines on the running loop."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from helpers_aio import arun, await_until, pids_with_marker, py, wait_until

import netrunner
import netrunner.aio
from netrunner import pipe

SLEEPER = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(1000)"


def test_run() -> None:
    r = arun(netrunner.aio.run(pipe(["printf", "b\na\n"], ["sort"], ["sh", "-c", "cat; exit 3"])))
    assert r.stdout == b"a\nb\n"
    assert r.pipestatus == (0, 0, 3)
    assert r.returncode == 3


def test_stream_lines_and_async_input() -> None:
    async def source():  # type: ignore[no-untyped-def]
        for word in (b"pear\n", b"apple\n", b"fig\n"):
            yield word

    async def main() -> list[bytes]:
        async with netrunner.aio.stream(pipe(["sort"], ["cat"]), input=source()) as s:
            return [line async for line in s.lines()]

    assert arun(main()) == [b"apple\n", b"fig\n", b"pear\n"]


def test_an_aio_stream_feeds_a_pipeline() -> None:
    async def main() -> bytes:
        upstream = netrunner.aio.stream(["printf", "c\nb\na\n"])
        r = await netrunner.aio.run(pipe(["sort"], ["head", "-2"]), input=upstream)
        return r.stdout

    assert arun(main()) == b"a\nb\n"


def test_start_dialogue_and_stop(tmp_path: Path) -> None:
    async def main() -> tuple[bytes, tuple[int, ...] | None]:
        async with await netrunner.aio.start(pipe(["cat"], ["sed", "-u", "s/o/0/g"])) as p:
            await p.write(b"foo\n")
            line = await p.readline(timeout=10)
            await p.stop()
            return line, p.pipestatus

    line, status = arun(main())
    assert line == b"f00\n"
    assert status is not None
    assert status[0] in (0, -signal.SIGTERM)


def test_timeout_stops_every_stage(tmp_path: Path, marker: str) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    with pytest.raises(netrunner.Timeout):
        arun(netrunner.aio.run(pipe(py(SLEEPER, str(a)), py(SLEEPER, str(b))), timeout=1))
    assert a.exists()
    assert b.exists()
    assert not pids_with_marker(marker)


def test_cancelling_the_owner_task_stops_every_stage(tmp_path: Path, marker: str) -> None:
    a, b = tmp_path / "a", tmp_path / "b"

    async def main() -> None:
        task = asyncio.ensure_future(netrunner.aio.run(pipe(py(SLEEPER, str(a)), py(SLEEPER, str(b)))))
        started = await await_until(lambda: a.exists() and b.exists() and a.read_text() and b.read_text())
        assert started, "the stages never started"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    arun(main())
    assert wait_until(lambda: not pids_with_marker(marker), timeout=10)


def test_exec_failure_raises() -> None:
    with pytest.raises(FileNotFoundError):
        arun(netrunner.aio.run(pipe(["sleep", "1000"], ["netrunner-no-such-program"])))

    async def main() -> None:
        async with netrunner.aio.stream(pipe(["netrunner-no-such-program"], ["sleep", "1000"])) as s:
            async for _ in s:
                pass

    with pytest.raises(FileNotFoundError):
        arun(main())


def test_many_concurrent_pipelines() -> None:
    async def main() -> list[netrunner.Result]:
        return await asyncio.gather(*(
            netrunner.aio.run(pipe(["echo", str(i)], ["cat"], ["cat"])) for i in range(50)
        ))

    results = arun(main())
    assert [r.stdout for r in results] == [f"{i}\n".encode() for i in range(50)]
    assert all(r.pipestatus == (0, 0, 0) for r in results)
