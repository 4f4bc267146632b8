"""Contract tests for ``netrunner.aio.run`` (SPEC §3 and §5, asyncio twin).

Every test drives the loop with plain ``asyncio.run`` (through ``arun``); the
autouse ``marker`` fixture proves nothing survives each test."""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from helpers_aio import arun, await_until, pid_alive, pids_with_marker, py, result_fields, wait_until

import netrunner
import netrunner.aio

SLEEPER = "import sys, time; open(sys.argv[1], 'w').write(str(__import__('os').getpid())); time.sleep(100)"
IGNORE_TERM_SLEEPER = (
    "import os, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(100)"
)


def read_pid(path: Path) -> int:
    assert wait_until(lambda: path.exists() and path.read_text() != "", timeout=10), "child never started"
    return int(path.read_text())


# --------------------------------------------------------------- same results


SAME_AS_SYNC: list[tuple[list[str], dict[str, Any]]] = [
    (["echo", "hello"], {}),
    (py("import sys; sys.stdout.write('out'); sys.stderr.write('err'); sys.exit(3)"), {}),
    (["sh", "-c", "kill -TERM $$"], {}),
    (["sh", "-c", "kill -KILL $$"], {}),
    (["cat"], {"input": b"abc\x00def"}),
    (["cat"], {"input": "héllo", "text": True}),
    (["cat"], {"input": [b"a", "b", b"c"]}),
    (py("import sys; print('o', flush=True); print('e', file=sys.stderr)"), {"stderr": "redirect"}),
    (py("import sys; print('o'); print('e', file=sys.stderr)"), {"stderr": "discard"}),
    (py("import sys; sys.stdout.buffer.write('€'.encode() * 3)"), {"encoding": "utf-8"}),
    (["sh", "-c", "exit 7"], {}),
]


@pytest.mark.parametrize(("cmd", "options"), SAME_AS_SYNC)
def test_results_equal_sync_api(cmd: list[str], options: dict[str, Any]) -> None:
    sync_result = netrunner.run(cmd, **options)
    aio_result = arun(netrunner.aio.run(cmd, **options))
    assert type(aio_result) is type(sync_result)
    assert result_fields(aio_result) == result_fields(sync_result)


def test_run_is_a_coroutine_and_returns_a_result() -> None:
    async def main() -> Any:
        coro = netrunner.aio.run(["echo", "hi"])
        assert inspect.isawaitable(coro)
        return await coro

    result = arun(main())
    assert result.stdout == b"hi\n"
    assert result.stderr == b""
    assert result.returncode == 0
    assert result.exit_status == 0
    assert result.signal is None
    assert result.ok
    assert result.args == ("echo", "hi")
    assert result.check() is result
    assert result.stats.returncode == 0
    assert result.stats.bytes_out == 3


def test_signal_fields() -> None:
    result = arun(netrunner.aio.run(["sh", "-c", "kill -TERM $$"]))
    assert result.returncode == -signal.SIGTERM
    assert result.exit_status == 128 + signal.SIGTERM
    assert result.signal == signal.SIGTERM
    assert isinstance(result.signal, signal.Signals)
    assert not result.ok


def test_check_raises_process_error() -> None:
    async def main() -> None:
        with pytest.raises(netrunner.ProcessError) as info:
            await netrunner.aio.run(py("import sys; print('x'); sys.exit(4)"), check=True)
        assert info.value.returncode == 4
        assert info.value.exit_status == 4
        assert info.value.stdout == b"x\n"

    arun(main())


def test_large_input_and_output_interleave() -> None:
    data = os.urandom(4 << 20)
    result = arun(netrunner.aio.run(["cat"], input=data))
    assert result.stdout == data
    assert result.stats.bytes_in == len(data)


def test_input_file_object(tmp_path: Path) -> None:
    path = tmp_path / "in.bin"
    data = os.urandom(300_000)
    path.write_bytes(data)
    with open(path, "rb") as f:
        result = arun(netrunner.aio.run(["cat"], input=f))
    assert result.stdout == data


def test_unread_input_is_dropped_silently() -> None:
    result = arun(netrunner.aio.run(["true"], input=b"x" * (4 << 20)))
    assert result.returncode == 0


# --------------------------------------------------------------- validation


def test_invalid_command() -> None:
    async def main() -> None:
        for bad in ("ls -l", b"ls", [], [""], ["ls", "a\0b"], [1]):
            with pytest.raises(netrunner.InvalidCommand):
                await netrunner.aio.run(bad)  # type: ignore[arg-type]

    arun(main())


def test_invalid_options() -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="timeout"):
            await netrunner.aio.run(["true"], timeout=0)
        with pytest.raises(ValueError, match="kill_timeout"):
            await netrunner.aio.run(["true"], kill_timeout=-1)
        with pytest.raises(ValueError, match="max_output_size"):
            await netrunner.aio.run(["true"], max_output_size=0)
        with pytest.raises(TypeError, match="chunk_size"):
            await netrunner.aio.run(["true"], chunk_size=10)  # type: ignore[call-arg]

    arun(main())


def test_exec_errors(tmp_path: Path) -> None:
    not_exec = tmp_path / "script"
    not_exec.write_text("#!/bin/sh\necho hi\n")
    not_exec.chmod(0o644)

    async def main() -> None:
        with pytest.raises(FileNotFoundError) as info:
            await netrunner.aio.run(["no-such-program-netrunner-xyz"])
        assert info.value.filename == "no-such-program-netrunner-xyz"
        with pytest.raises(PermissionError) as pinfo:
            await netrunner.aio.run([str(not_exec)])
        assert pinfo.value.filename == str(not_exec)
        missing = str(tmp_path / "missing")
        with pytest.raises(FileNotFoundError) as cinfo:
            await netrunner.aio.run(["true"], cwd=missing)
        assert cinfo.value.filename == missing

    arun(main())


# --------------------------------------------------------------- timeouts & limits


def test_timeout_with_partial_output() -> None:
    async def main() -> None:
        t0 = time.monotonic()
        with pytest.raises(netrunner.Timeout) as info:
            await netrunner.aio.run(
                py(
                    "import sys, time; print('partial', flush=True); print('err', file=sys.stderr, flush=True); "
                    "time.sleep(100)"
                ),
                timeout=1.0,
            )
        elapsed = time.monotonic() - t0
        assert 0.9 <= elapsed < 4.0
        exc = info.value
        assert isinstance(exc, TimeoutError)
        assert exc.stdout == b"partial\n"
        assert exc.stderr == b"err\n"
        assert exc.timeout == 1.0
        assert exc.stats is not None

    arun(main())


def test_timeout_escalates_to_kill(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"

    async def main() -> None:
        t0 = time.monotonic()
        with pytest.raises(netrunner.Timeout):
            await netrunner.aio.run(py(IGNORE_TERM_SLEEPER, str(pidfile)), timeout=1.0, kill_timeout=0.2)
        assert time.monotonic() - t0 < 4.0

    arun(main())
    assert not pid_alive(read_pid(pidfile))


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_max_output_size(stream: str) -> None:
    payload = bytes(range(256)) * 40  # 10240 bytes
    code = (
        f"import sys, time; sys.{stream}.buffer.write({payload!r}); sys.{stream}.flush(); time.sleep(100)"
    )

    async def main() -> None:
        t0 = time.monotonic()
        with pytest.raises(netrunner.OutputLimitExceeded) as info:
            await netrunner.aio.run(py(code), max_output_size=1000)
        assert time.monotonic() - t0 < 4.0
        exc = info.value
        assert exc.limit == 1000
        assert exc.stream == stream
        assert getattr(exc, stream) == payload[:1000]

    arun(main())


def test_max_output_size_exactly_at_limit_is_fine() -> None:
    result = arun(netrunner.aio.run(py("import sys; sys.stdout.write('x' * 1000)"), max_output_size=1000))
    assert result.stdout == b"x" * 1000


def test_background_job_does_not_hang() -> None:
    async def main() -> Any:
        t0 = time.monotonic()
        result = await netrunner.aio.run(["sh", "-c", "sleep 100 & echo hi"])
        return result, time.monotonic() - t0

    result, elapsed = arun(main())
    assert result.stdout == b"hi\n"
    assert result.returncode == 0
    assert elapsed < 3.0


# --------------------------------------------------------------- concurrency


def test_many_concurrent_runs_without_a_thread_each() -> None:
    async def main() -> tuple[float, int, int, list[Any]]:
        before = threading.active_count()
        peak = before
        done = False

        async def sample() -> None:
            nonlocal peak
            while not done:
                peak = max(peak, threading.active_count())
                await asyncio.sleep(0.002)

        sampler = asyncio.create_task(sample())
        t0 = time.monotonic()
        results = await asyncio.gather(*(netrunner.aio.run(["sleep", "0.2"]) for _ in range(50)))
        elapsed = time.monotonic() - t0
        peak = max(peak, threading.active_count())
        done = True
        await sampler
        return elapsed, before, peak, results

    elapsed, before, peak, results = arun(main())
    assert all(r.returncode == 0 for r in results)
    assert elapsed < 4.0, f"50 concurrent 0.2 s sleeps took {elapsed:.2f}s"
    assert peak <= before + 1, f"threads went from {before} to {peak}"


def test_loop_is_not_blocked_while_awaiting() -> None:
    async def main() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        result = await netrunner.aio.run(["sleep", "0.5"])
        task.cancel()
        assert result.returncode == 0
        return ticks

    assert arun(main()) >= 10


# --------------------------------------------------------------- cancellation


def test_cancelling_the_task_stops_the_tree(tmp_path: Path, marker: str) -> None:
    pidfile = tmp_path / "pid"

    async def main() -> None:
        task = asyncio.create_task(netrunner.aio.run(py(SLEEPER, str(pidfile))))
        assert await await_until(lambda: pidfile.exists() and pidfile.read_text() != "")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()

    arun(main())
    pid = read_pid(pidfile)
    assert wait_until(lambda: not pid_alive(pid), timeout=2.0), "child survived cancellation"
    assert wait_until(lambda: not pids_with_marker(marker), timeout=5.0)


def test_cancelling_stops_a_term_ignoring_tree(tmp_path: Path, marker: str) -> None:
    pidfile = tmp_path / "pid"

    async def main() -> None:
        task = asyncio.create_task(
            netrunner.aio.run(py(IGNORE_TERM_SLEEPER, str(pidfile)), kill_timeout=0.3)
        )
        assert await await_until(lambda: pidfile.exists() and pidfile.read_text() != "")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    t0 = time.monotonic()
    arun(main())
    pid = read_pid(pidfile)
    assert wait_until(lambda: not pid_alive(pid), timeout=3.0), "TERM-ignoring child survived cancellation"
    assert time.monotonic() - t0 < 5.0
    assert wait_until(lambda: not pids_with_marker(marker), timeout=5.0)


def test_wait_for_timeout_stops_the_tree(tmp_path: Path, marker: str) -> None:
    pidfile = tmp_path / "pid"

    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(netrunner.aio.run(py(SLEEPER, str(pidfile))), 1.0)

    arun(main())
    pid = read_pid(pidfile)
    assert wait_until(lambda: not pid_alive(pid), timeout=2.0)
    assert wait_until(lambda: not pids_with_marker(marker), timeout=5.0)


def test_cancelling_one_run_leaves_siblings_alone(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"

    async def main() -> Any:
        victim = asyncio.create_task(netrunner.aio.run(py(SLEEPER, str(pidfile))))
        sibling = asyncio.create_task(
            netrunner.aio.run(py("import time; time.sleep(0.5); print('done')"))
        )
        assert await await_until(lambda: pidfile.exists() and pidfile.read_text() != "")
        victim.cancel()
        with pytest.raises(asyncio.CancelledError):
            await victim
        return await sibling

    result = arun(main())
    assert result.stdout == b"done\n"
    assert result.returncode == 0
