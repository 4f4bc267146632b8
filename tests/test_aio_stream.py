"""Contract tests for ``netrunner.aio.stream`` (SPEC §4 and §5, asyncio twin).

``aio.stream(...)`` is not awaited: it validates at the call, spawns on
``async with`` entry or the first ``__anext__`` (where exec errors surface), and
is both an async iterator and an async context manager with ``aclose()`` and
``.lines()``."""

from __future__ import annotations

import asyncio
import gc
import inspect
import os
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from helpers_aio import arun, await_until, pid_alive, pids_with_marker, py, rss_bytes, wait_until

import netrunner
import netrunner.aio

ENDLESS = "import os, sys\nwhile True: os.write(1, b'y' * 4096)"
READY_SLEEPER = (
    "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); "
    "print('ready', flush=True); time.sleep(100)"
)


def read_pid(path: Path) -> int:
    assert wait_until(lambda: path.exists() and path.read_text() != "", timeout=10), "child never started"
    return int(path.read_text())


async def collect(s: Any) -> list[Any]:
    return [chunk async for chunk in s]


# --------------------------------------------------------------- shape & validation


def test_stream_is_not_awaited_and_has_the_protocols() -> None:
    async def main() -> None:
        s = netrunner.aio.stream(["echo", "hi"])
        assert not inspect.isawaitable(s)
        assert not inspect.isasyncgen(s)
        for name in ("__aiter__", "__anext__", "__aenter__", "__aexit__", "aclose", "lines"):
            assert hasattr(s, name), name
        async with s as entered:
            chunks = [chunk async for chunk in entered]
        assert b"".join(chunks) == b"hi\n"

    arun(main())


def test_invalid_command_raises_at_the_call() -> None:
    async def main() -> None:
        for bad in ("ls -l", b"ls", [], [""], ["ls", "a\0b"], [None]):
            with pytest.raises(netrunner.InvalidCommand):
                netrunner.aio.stream(bad)  # type: ignore[arg-type]

    arun(main())


def test_invalid_options_raise_at_the_call() -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="timeout"):
            netrunner.aio.stream(["true"], timeout=-1)
        with pytest.raises(ValueError, match="kill_timeout"):
            netrunner.aio.stream(["true"], kill_timeout=0)
        with pytest.raises(ValueError, match="chunk_size"):
            netrunner.aio.stream(["true"], chunk_size=0)
        with pytest.raises((ValueError, TypeError), match="stderr"):
            netrunner.aio.stream(["true"], stderr="bogus")

    arun(main())


def test_exec_error_raised_on_async_with_entry_not_at_the_call() -> None:
    async def main() -> None:
        s = netrunner.aio.stream(["no-such-program-netrunner-xyz"])  # no spawn yet: no error
        with pytest.raises(FileNotFoundError) as info:
            async with s:
                raise AssertionError("entered a stream whose program does not exist")
        assert info.value.filename == "no-such-program-netrunner-xyz"
        await s.aclose()  # harmless after a failed start

    arun(main())


def test_exec_error_raised_on_first_anext(tmp_path: Path) -> None:
    not_exec = tmp_path / "script"
    not_exec.write_text("#!/bin/sh\necho hi\n")
    not_exec.chmod(0o644)

    async def main() -> None:
        s = netrunner.aio.stream([str(not_exec)])
        with pytest.raises(PermissionError) as info:
            await s.__anext__()
        assert info.value.filename == str(not_exec)
        await s.aclose()

    arun(main())


def test_spawns_on_first_anext_without_async_with() -> None:
    async def main() -> bytes:
        s = netrunner.aio.stream(["echo", "hello"])
        try:
            return b"".join([chunk async for chunk in s])
        finally:
            await s.aclose()

    assert arun(main()) == b"hello\n"


# --------------------------------------------------------------- data


@pytest.mark.parametrize(
    ("cmd", "options"),
    [
        (["echo", "hello"], {}),
        (py("import sys; sys.stdout.write('a\\nbb\\n' * 5000 + 'tail')"), {}),
        (["cat"], {"input": os.urandom(1 << 20)}),
        (py("import sys; print('o'); print('e', file=sys.stderr)"), {"stderr": "redirect"}),
    ],
)
def test_output_equals_sync_api(cmd: list[str], options: dict[str, Any]) -> None:
    with netrunner.stream(cmd, **options) as s:
        sync_out = b"".join(s)
        sync_rc = s.result.returncode

    async def main() -> tuple[bytes, int]:
        async with netrunner.aio.stream(cmd, **options) as s:
            out = b"".join(await collect(s))
        return out, s.result.returncode

    aio_out, aio_rc = arun(main())
    assert aio_out == sync_out
    assert aio_rc == sync_rc == 0
    assert aio_out == netrunner.run(cmd, **options).stdout


def test_chunks_respect_chunk_size() -> None:
    async def main() -> list[bytes]:
        async with netrunner.aio.stream(py("import sys; sys.stdout.write('x' * 100000)"), chunk_size=1000) as s:
            return await collect(s)

    chunks = arun(main())
    assert b"".join(chunks) == b"x" * 100000
    assert all(1 <= len(c) <= 1000 for c in chunks)
    assert all(isinstance(c, bytes) for c in chunks)


def test_lines_across_chunk_boundaries() -> None:
    code = (
        "import os, time\n"
        "pieces = [b'al', b'pha\\nbe', b'ta\\n', b'\\n', b'gam', b'ma\\ndel', b'ta']\n"
        "for p in pieces:\n"
        "    os.write(1, p); time.sleep(0.01)\n"
    )
    expected = [b"alpha\n", b"beta\n", b"\n", b"gamma\n", b"delta"]

    async def main(chunk_size: int) -> list[bytes]:
        async with netrunner.aio.stream(py(code), chunk_size=chunk_size) as s:
            return [line async for line in s.lines()]

    for chunk_size in (1, 3, 7, 65536):
        assert arun(main(chunk_size)) == expected, chunk_size
    with netrunner.stream(py(code), chunk_size=3) as sync_s:
        assert list(sync_s.lines()) == expected


def test_a_long_line_is_one_item() -> None:
    code = "import sys; sys.stdout.write('a' * 3000000 + '\\nshort\\n')"

    async def main() -> list[bytes]:
        async with netrunner.aio.stream(py(code), chunk_size=4096) as s:
            return [line async for line in s.lines()]

    lines = arun(main())
    assert [len(line) for line in lines] == [3000001, 6]
    assert lines[1] == b"short\n"



def test_lines_end_at_newline_only_and_come_in_order() -> None:
    payload = "a\rb\r\nc\x0bd\x85e\u2028f\nlast\r"

    async def main() -> tuple[list[str], list[bytes]]:
        async with netrunner.aio.stream(["cat"], input=payload.encode(), text=True) as s:
            text = [line async for line in s.lines()]
        async with netrunner.aio.stream(["seq", "1", "200000"], timeout=60) as s:
            many = [line async for line in s.lines()]
        return text, many

    text, many = arun(main())
    assert text == ["a\rb\r\n", "c\x0bd\x85e\u2028f\n", "last\r"]
    assert many == [b"%d\n" % i for i in range(1, 200001)]

def test_text_mode_decodes_across_chunk_boundaries() -> None:
    text = "é€😀 mixed ✓\nsecond líne\n"
    code = f"import sys; sys.stdout.buffer.write({text.encode()!r})"

    async def main() -> tuple[list[str], list[str]]:
        async with netrunner.aio.stream(py(code), text=True, chunk_size=1) as s:
            chunks = await collect(s)
        async with netrunner.aio.stream(py(code), encoding="utf-8", chunk_size=1) as s:
            lines = [line async for line in s.lines()]
        return chunks, lines

    chunks, lines = arun(main())
    assert all(isinstance(c, str) for c in chunks)
    assert "".join(chunks) == text
    assert lines == ["é€😀 mixed ✓\n", "second líne\n"]


def test_text_character_cut_short_by_the_end_of_output() -> None:
    async def main() -> str:
        with pytest.raises(UnicodeDecodeError):
            async with netrunner.aio.stream(["printf", r"ab\342\202"], text=True) as s:
                await collect(s)
        async with netrunner.aio.stream(["printf", r"ab\342\202"], text=True, errors="replace") as s:
            return "".join(await collect(s))

    assert arun(main()) == "ab\ufffd"


def test_text_stderr_tail_cut_inside_a_character_is_counted() -> None:
    code = "import sys; sys.stderr.write('€' * 25_000); print('ok')"

    async def main() -> Any:
        async with netrunner.aio.stream(py(code), text=True) as s:
            assert await collect(s) == ["ok\n"]
        return s.result

    result = arun(main())
    assert result.stderr == "€" * (65536 // 3)
    assert result.stats.bytes_err_dropped == 75_000 - 3 * (65536 // 3)


def test_result_after_exhaustion() -> None:
    async def main() -> Any:
        async with netrunner.aio.stream(
            py("import sys; print('out'); print('err', file=sys.stderr)")
        ) as s:
            assert b"".join(await collect(s)) == b"out\n"
            return s.result

    result = arun(main())
    assert result.returncode == 0
    assert result.exit_status == 0
    assert result.stdout == b""
    assert result.stderr == b"err\n"
    assert result.stats.bytes_out == 4


def test_captured_stderr_keeps_its_tail_without_blocking_the_child() -> None:
    code = (
        "import sys\n"
        "for i in range(2000): sys.stderr.write(f'{i:07d}' * 128 + '\\n')\n"  # ~1.8 MB
        "sys.stderr.flush(); print('done')"
    )

    async def main() -> tuple[bytes, Any]:
        async with netrunner.aio.stream(py(code)) as s:
            out = b"".join(await collect(s))
            return out, s.result

    out, result = arun(main(), timeout=20)
    assert out == b"done\n"
    assert len(result.stderr) == 65536
    assert result.stderr.endswith(b"0001999" * 128 + b"\n")


def test_check_raises_abnormal_exit_when_iteration_ends() -> None:
    async def main() -> None:
        got: list[bytes] = []
        with pytest.raises(netrunner.AbnormalExit) as info:
            async with netrunner.aio.stream(py("import sys; print('x', flush=True); sys.exit(3)")) as s:
                async for chunk in s:
                    got.append(chunk)
        assert b"".join(got) == b"x\n"
        assert isinstance(info.value, netrunner.ProcessError)
        assert info.value.returncode == 3

        async with netrunner.aio.stream(["sh", "-c", "exit 3"], check=False) as s:
            assert await collect(s) == []
        assert s.result.returncode == 3

    arun(main())


def test_input_is_streamed_lazily() -> None:
    produced = 0

    def gen() -> Any:
        nonlocal produced
        for _ in range(200):
            produced += 1
            yield b"z" * 65536

    async def main() -> int:
        total = 0
        async with netrunner.aio.stream(["cat"], input=gen()) as s:
            first = await s.__anext__()
            total += len(first)
            # far less than the 12.5 MB the iterator could produce has been pulled
            assert produced < 100
            async for chunk in s:
                total += len(chunk)
        return total

    assert arun(main()) == 200 * 65536
    assert produced == 200


def test_timeout_during_iteration() -> None:
    async def main() -> None:
        got: list[bytes] = []
        t0 = time.monotonic()
        with pytest.raises(netrunner.Timeout):
            async with netrunner.aio.stream(
                py("import time; print('partial', flush=True); time.sleep(100)"), timeout=1.0
            ) as s:
                async for chunk in s:
                    got.append(chunk)
        assert b"".join(got) == b"partial\n"
        assert time.monotonic() - t0 < 4.0

    arun(main())



def test_timeout_comes_while_output_keeps_coming(marker: str) -> None:
    # A consumer slower than the command finds a chunk waiting at every call.
    async def main() -> None:
        t0 = time.monotonic()
        with pytest.raises(netrunner.Timeout) as ei:
            async with netrunner.aio.stream(["yes"], timeout=0.5, kill_timeout=1) as s:
                async for _ in s:
                    await asyncio.sleep(0.01)
        assert time.monotonic() - t0 < 0.5 + 1 + 2, "the timeout did not come while output was waiting"
        assert ei.value.kill_timeout == 1

    arun(main())

# --------------------------------------------------------------- stopping


def test_break_inside_async_with_stops_the_tree(marker: str) -> None:
    async def main() -> None:
        async with netrunner.aio.stream(py(ENDLESS)) as s:
            async for chunk in s:
                assert chunk
                break
        assert await await_until(lambda: not pids_with_marker(marker), timeout=3.0), "tree survived"

    arun(main())


def test_aclose_stops_the_tree(tmp_path: Path, marker: str) -> None:
    pidfile = tmp_path / "pid"

    async def main() -> None:
        s = netrunner.aio.stream(py(READY_SLEEPER, str(pidfile)))
        assert await s.__anext__() == b"ready\n"
        await s.aclose()
        await s.aclose()  # idempotent
        assert await await_until(lambda: not pid_alive(read_pid(pidfile)), timeout=3.0)
        with pytest.raises(StopAsyncIteration):
            await s.__anext__()

    arun(main())
    assert wait_until(lambda: not pids_with_marker(marker), timeout=5.0)


def test_exception_inside_async_with_stops_the_tree(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"

    async def main() -> None:
        with pytest.raises(RuntimeError, match="boom"):
            async with netrunner.aio.stream(py(READY_SLEEPER, str(pidfile))) as s:
                await s.__anext__()
                raise RuntimeError("boom")

    arun(main())
    assert wait_until(lambda: not pid_alive(read_pid(pidfile)), timeout=3.0)


def test_cancelling_the_owning_task_stops_the_tree(tmp_path: Path, marker: str) -> None:
    pidfile = tmp_path / "pid"

    async def consume() -> None:
        async with netrunner.aio.stream(py(READY_SLEEPER, str(pidfile))) as s:
            async for _ in s:
                pass

    async def main() -> None:
        task = asyncio.create_task(consume())
        assert await await_until(lambda: pidfile.exists() and pidfile.read_text() != "")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()

    arun(main())
    assert wait_until(lambda: not pid_alive(read_pid(pidfile)), timeout=3.0), "child survived cancellation"
    assert wait_until(lambda: not pids_with_marker(marker), timeout=5.0)


def test_dropping_an_open_stream_stops_the_tree(tmp_path: Path, marker: str) -> None:
    pidfile = tmp_path / "pid"

    async def main() -> None:
        s = netrunner.aio.stream(py(READY_SLEEPER, str(pidfile)))
        assert await s.__anext__() == b"ready\n"
        del s
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        arun(main())
        gc.collect()
    assert wait_until(lambda: not pid_alive(read_pid(pidfile)), timeout=10.0)
    assert wait_until(lambda: not pids_with_marker(marker), timeout=10.0)


def test_stream_left_open_when_the_loop_closes_is_stopped(
    tmp_path: Path, marker: str, capfd: pytest.CaptureFixture[str]
) -> None:
    pidfile = tmp_path / "pid"
    holder: list[Any] = []

    async def main() -> None:
        s = netrunner.aio.stream(py(READY_SLEEPER, str(pidfile)))
        holder.append(s)
        assert await s.__anext__() == b"ready\n"

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        arun(main())
        holder.clear()  # the last reference dies after the loop is closed
        gc.collect()
    assert wait_until(lambda: not pid_alive(read_pid(pidfile)), timeout=10.0)
    assert wait_until(lambda: not pids_with_marker(marker), timeout=10.0)
    err = capfd.readouterr().err
    assert "Event loop is closed" not in err
    assert "Traceback" not in err


ENDLESS_LINES = "import os\nwhile True: os.write(1, b'y\\n' * 2048)"


def test_break_out_of_lines_leaves_nothing_for_the_gc(marker: str) -> None:
    """``lines()`` is not an async generator: after ``break`` nothing is left
    suspended, so a stream nobody holds is dropped at once -- its tree
    stopped without the loop running again (an async generator would wait
    for the loop to close it), and no warning."""

    async def main() -> None:
        async for line in netrunner.aio.stream(py(ENDLESS_LINES)).lines():
            assert line == b"y\n"
            break
        # no await from here: the loop does not run
        assert wait_until(lambda: not pids_with_marker(marker), timeout=5.0), "the tree waits for the loop"

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        arun(main())
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_lines_has_aclose_and_is_an_async_context_manager(marker: str) -> None:
    async def main() -> None:
        async with netrunner.aio.stream(py(ENDLESS_LINES)).lines() as lines:
            async for line in lines:
                assert line == b"y\n"
                break
        assert await await_until(lambda: not pids_with_marker(marker), timeout=5.0), "leaving it left the tree"

        lines = netrunner.aio.stream(py(ENDLESS_LINES)).lines()
        assert await lines.__anext__() == b"y\n"
        await lines.aclose()
        await lines.aclose()  # idempotent
        with pytest.raises(StopAsyncIteration):
            await lines.__anext__()
        assert await await_until(lambda: not pids_with_marker(marker), timeout=5.0), "aclose left the tree"

        async with netrunner.aio.stream(["printf", "a\\nb"]) as s:
            it = s.lines()
            assert [line async for line in it] == [b"a\n", b"b"]
            with pytest.raises(StopAsyncIteration):  # it stays ended
                await it.__anext__()

    arun(main())


# --------------------------------------------------------------- backpressure & memory


def test_hundred_megabytes_with_flat_memory() -> None:
    total_size = 100 << 20
    code = "import sys\nb = b'\\xab' * (1 << 20)\nfor _ in range(100): sys.stdout.buffer.write(b)"

    async def main() -> tuple[int, int]:
        gc.collect()
        base = rss_bytes()
        peak = base
        total = 0
        async with netrunner.aio.stream(py(code)) as s:
            async for chunk in s:
                total += len(chunk)
                peak = max(peak, rss_bytes())
        return total, peak - base

    total, growth = arun(main(), timeout=60)
    assert total == total_size
    assert growth < 32 << 20, f"RSS grew by {growth / (1 << 20):.1f} MiB"


def test_slow_consumer_leaves_data_in_the_pipe(tmp_path: Path) -> None:
    """Demand-driven: a paused consumer means the child blocks, not that we buffer."""
    code = (
        "import sys\n"
        "n = 0\n"
        "while n < (64 << 20):\n"
        "    sys.stdout.buffer.write(b'q' * 65536); sys.stdout.flush(); n += 65536\n"
        "    open(sys.argv[1], 'w').write(str(n))\n"
    )

    async def main(progress: Path) -> tuple[int, int]:
        async with netrunner.aio.stream(py(code, str(progress)), chunk_size=65536) as s:
            await s.__anext__()
            await await_until(lambda: progress.exists() and progress.read_text() != "", timeout=5)
            # the loop keeps running; give the (absent) buffering a chance to drain the pipe
            for _ in range(20):
                await asyncio.sleep(0.01)
            written = int(progress.read_text() or 0)  # noqa: ASYNC240 -- a few bytes of a local file
            total = 0
            async for chunk in s:
                total += len(chunk)
        return written, total

    written, total = arun(main(tmp_path / "progress"))
    assert written < 8 << 20, f"the child wrote {written} bytes while nobody read"
    assert total > 0
