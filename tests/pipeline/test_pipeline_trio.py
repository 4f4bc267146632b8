"""SPEC 16 and 17 together: pipelines under trio and under anyio (both
backends). A cancel scope around a pipeline stops every stage before it
exits; the marker fixture proves nothing survives."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import anyio
import pytest
import trio
from conftest import pids_with_marker

import netrunner.aio as aio
from netrunner import pipe

sys.path.append(str(Path(__file__).resolve().parent.parent / "trio"))
from libs_helpers import await_until, py

SLEEPER = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid()) + '\\n'); time.sleep(1000)"


@pytest.fixture(params=["trio", "asyncio"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_run_stream_start_under_trio() -> None:
    async def main() -> None:
        r = await aio.run(pipe(["printf", "b\na\n"], ["sort"], ["sh", "-c", "cat; exit 2"]))
        assert r.stdout == b"a\nb\n"
        assert r.pipestatus == (0, 0, 2)
        async with aio.stream(pipe(["seq", "3"], ["tac"])) as s:
            assert [line async for line in s.lines()] == [b"3\n", b"2\n", b"1\n"]
        async with await aio.start(pipe(["cat"], ["sed", "-u", "s/a/A/"])) as p:
            await p.write(b"banana\n")
            assert await p.readline(timeout=10) == b"bAnana\n"
            p.close_stdin()
            assert await p.wait() == 0

    trio.run(main)


def test_a_cancel_scope_stops_every_stage(tmp_path: Path, marker: str, backend: str) -> None:
    a, b = tmp_path / "a", tmp_path / "b"

    async def main() -> None:
        with anyio.move_on_after(30) as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(aio.run, pipe(py(SLEEPER, str(a)), py(SLEEPER, str(b))))
                assert await await_until(lambda: a.exists() and b.exists() and a.read_text() and b.read_text())
                tg.cancel_scope.cancel()
        assert not scope.cancelled_caught
        assert not pids_with_marker(marker)  # stopped before the scope exited

    anyio.run(main, backend=backend)


def test_fail_after_gives_the_stop(marker: str, backend: str) -> None:
    async def main() -> None:
        with pytest.raises(TimeoutError):
            with anyio.fail_after(0.5):
                await aio.run(pipe(["sleep", "1000"], ["cat"], ["cat"]))
        assert not pids_with_marker(marker)

    anyio.run(main, backend=backend)


def test_no_thread_per_pipeline(backend: str) -> None:
    async def main() -> None:
        before = threading.active_count()
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(aio.run, pipe(["sleep", "0.2"], ["cat"]))
            await anyio.sleep(0.1)
            assert threading.active_count() == before

    anyio.run(main, backend=backend)
