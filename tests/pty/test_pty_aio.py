"""SPEC sections 5, 8 and 17: the asyncio twins on a pseudo-terminal, where
the API differs from the sync one — ``aio.start`` is awaited, ``read_until``
is a coroutine, ``set_window_size``/``close_stdin``/``send_signal`` are plain
methods, and cancelling a task that awaits ``read_until`` leaves the process
consistent (what it had read stays buffered)."""

from __future__ import annotations

import asyncio
import gc
import inspect
import re
import signal
import warnings

import pytest
from helpers import helper_pids
from helpers_aio import arun, await_until, pids_with_marker, wait_until
from pty_helpers import aread_to_eof, py

import netrunner
import netrunner.aio

#: sh and a background job, both ignoring HUP and TERM.
HARD_TREE = "trap '' HUP TERM; sleep 1000 & echo ready; wait"


def tree(marker: str) -> list[int]:
    """Live processes carrying this test's marker, netrunner's helpers left out."""
    return sorted(set(pids_with_marker(marker)) - helper_pids())

WINCH_REPORTER = r"""
import os, signal, sys
def on_winch(signum, frame):
    size = os.get_terminal_size(0)
    os.write(1, f"winch {size.lines} {size.columns}\n".encode())
signal.signal(signal.SIGWINCH, on_winch)
print("ready", flush=True)
for line in sys.stdin:
    print("got", line.strip(), flush=True)
"""


def test_aio_start_gives_a_terminal() -> None:
    async def main() -> None:
        code = "import os; print(os.isatty(0), os.isatty(1), os.isatty(2), os.getsid(0) == os.getpid(), flush=True)"
        async with await netrunner.aio.start(py(code), pty=True) as proc:
            assert isinstance(proc, netrunner.aio.Process)
            out = await aread_to_eof(proc)
            assert out == b"True True True True\r\n", f"the command's view of its terminal: {out!r}"
            assert await proc.wait(timeout=10) == 0
            with pytest.raises(ValueError, match="pty"):
                await proc.read_stderr(timeout=1)

    arun(main())


def test_aio_read_until_dialogue_with_plain_methods() -> None:
    async def main() -> None:
        async with await netrunner.aio.start(py(WINCH_REPORTER), pty=(20, 60)) as proc:
            assert await proc.read_until(b"ready\r\n", timeout=15) == b"ready\r\n"
            await proc.write(b"one\n")
            out = await proc.read_until(re.compile(rb"got \w+\r\n"), timeout=10)
            assert out == b"one\r\ngot one\r\n", f"echo, then the answer: {out!r}"
            for result in (proc.set_window_size(21, 61), proc.send_signal(signal.SIGCONT)):
                assert result is None and not inspect.isawaitable(result), result
            assert await proc.read_until(b"winch 21 61\r\n", timeout=10) == b"winch 21 61\r\n"
            closed = proc.close_stdin()
            assert closed is None
            assert not inspect.isawaitable(closed)
            assert await proc.wait(timeout=10) == 0, "the reader did not see the terminal's EOF"

    arun(main())


def test_aio_cancelled_read_until_keeps_what_it_read() -> None:
    async def main() -> None:
        async with await netrunner.aio.start(["cat"], pty=True) as proc:
            await proc.write(b"first\n")
            task = asyncio.create_task(proc.read_until(b"never", timeout=30))
            # let it read the echo and cat's copy, and block for more
            assert await await_until(lambda: proc.stats.bytes_out >= len(b"first\r\nfirst\r\n"), timeout=10), (
                f"read_until read only {proc.stats.bytes_out} bytes"
            )
            await asyncio.sleep(0.05)
            assert not task.done(), "read_until returned without its pattern"
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert proc.alive and proc.poll() is None, "cancelling read_until changed the process"
            # what the cancelled call had read is still there, in order
            assert await proc.read_until(b"first\r\nfirst\r\n", timeout=5) == b"first\r\nfirst\r\n"
            await proc.write(b"second\n")
            assert await proc.read_until(b"second\r\nsecond\r\n", timeout=10) == b"second\r\nsecond\r\n"
            proc.close_stdin()
            assert await proc.wait(timeout=10) == 0
            assert await aread_to_eof(proc) == b""

    arun(main())


def test_aio_wait_for_read_until_times_out_cleanly() -> None:
    async def main() -> None:
        async with await netrunner.aio.start(["cat"], pty=True) as proc:
            await proc.write(b"abc\n")
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(proc.read_until(b"zzz"), 0.3)
            proc.set_window_size(30, 90)  # still usable
            await proc.write(b"zzz\n")
            out = await proc.read_until(b"zzz\r\nzzz\r\n", timeout=10)
            assert out.replace(b"\r\n", b"\n") == b"abc\nabc\nzzz\nzzz\n", f"output after the timeout: {out!r}"
            proc.close_stdin()
            assert await proc.wait(timeout=10) == 0

    arun(main())


def test_aio_read_until_timeout_carries_and_keeps_the_output() -> None:
    async def main() -> None:
        async with await netrunner.aio.start(["cat"], pty=True) as proc:
            await proc.write(b"partial\n")
            with pytest.raises(netrunner.Timeout) as info:
                await proc.read_until(b"never", timeout=2)  # the echo and cat's copy come long before
            assert info.value.stdout == b"partial\r\npartial\r\n", f"Timeout.stdout: {info.value.stdout!r}"
            assert await proc.read(timeout=5) == b"partial\r\npartial\r\n", "the timed-out read_until lost its data"
            proc.close_stdin()
            assert await proc.wait(timeout=10) == 0

    arun(main())


def test_aio_cancelled_wait_then_close_stdin() -> None:
    async def main() -> None:
        async with await netrunner.aio.start(["cat"], pty=True) as proc:
            task = asyncio.create_task(proc.wait())
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            proc.close_stdin()
            assert await proc.wait(timeout=10) == 0

    arun(main())


def test_aio_run_output_and_text_mode() -> None:
    async def main() -> None:
        result = await netrunner.aio.run(["sh", "-c", "echo out; echo err >&2; exit 3"], pty=True, timeout=30)
        assert (result.stdout, result.stderr, result.returncode) == (b"out\r\nerr\r\n", b"", 3), result
        text = await netrunner.aio.run(["echo", "żółw"], pty=True, text=True, timeout=30)
        assert text.stdout == "żółw\r\n", text
        with pytest.raises(netrunner.ProcessError):
            await netrunner.aio.run(["false"], pty=True, check=True, timeout=30)

    arun(main())


def test_aio_stream_lines() -> None:
    async def main() -> None:
        async with netrunner.aio.stream(["printf", "a\\nb\\nlast"], pty=True) as s:
            lines = [line async for line in s.lines()]
        assert lines == [b"a\r\n", b"b\r\n", b"last"], f"aio stream lines on a terminal: {lines!r}"

    arun(main())


def test_aio_command_template_with_pty() -> None:
    async def main() -> None:
        cmd = netrunner.Command("stty", ["size"], pty=(11, 22))
        assert (await netrunner.aio.run(cmd, timeout=30)).stdout == b"11 22\r\n"
        async with await netrunner.aio.start(cmd) as proc:
            assert await aread_to_eof(proc) == b"11 22\r\n"
            assert await proc.wait(timeout=10) == 0

    arun(main())


def test_aio_process_left_open_when_the_loop_closes_is_stopped(
    marker: str, capfd: pytest.CaptureFixture[str]
) -> None:
    # the loop closes with a pty process (ignoring HUP and TERM, with a
    # background job) still running and never closed; dropped afterwards, it
    # is stopped all the same: its cleanup needs no event loop
    holder: list[netrunner.aio.Process] = []

    async def main() -> None:
        proc = await netrunner.aio.start(["sh", "-c", HARD_TREE], pty=True, kill_timeout=0.5)
        holder.append(proc)
        await proc.read_until(b"ready\r\n", timeout=15)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        arun(main())
        assert holder[0].alive
        assert wait_until(lambda: len(tree(marker)) == 2), f"expected sh and its background sleep: {tree(marker)}"
        holder.clear()
        gc.collect()
    assert wait_until(lambda: not tree(marker), timeout=10), f"survivors after the loop closed: {tree(marker)}"
    err = capfd.readouterr().err
    assert "Event loop is closed" not in err and "Traceback" not in err, err


def test_aio_process_dropped_inside_the_loop_is_stopped(marker: str, capfd: pytest.CaptureFixture[str]) -> None:
    async def main() -> None:
        proc = await netrunner.aio.start(["sh", "-c", HARD_TREE], pty=True, kill_timeout=0.5)
        await proc.read_until(b"ready\r\n", timeout=15)
        # returns without closing: the last reference dies with this frame

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        arun(main())
        gc.collect()
    assert wait_until(lambda: not tree(marker), timeout=10), f"survivors of the dropped process: {tree(marker)}"
    err = capfd.readouterr().err
    assert "Event loop is closed" not in err and "Traceback" not in err, err
