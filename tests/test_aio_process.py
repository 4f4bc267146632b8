"""Contract tests for ``netrunner.aio.start`` / ``netrunner.aio.Process`` (SPEC §5).

``write``, ``read``, ``read_stderr``, ``wait``, ``stop``, ``communicate`` and
``aclose`` are coroutines; ``close_stdin``, ``send_signal``, ``terminate``,
``kill``, ``poll`` and ``set_window_size`` are plain methods.  Cancelling a task
that awaits any coroutine leaves the process usable."""

from __future__ import annotations

import asyncio
import gc
import inspect
import os
import signal
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from helpers_aio import PY, AsyncLineReader, arun, await_until, pid_alive, pids_with_marker, py, wait_until

import netrunner
import netrunner.aio

READY_SLEEPER = (
    "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); "
    "print('ready', flush=True); time.sleep(100)"
)
IGNORE_TERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(100)"
)
EXIT_ON_EOF = "import sys; sys.stdin.buffer.read(); sys.exit(int(sys.argv[1]))"


def read_pid(path: Path) -> int:
    assert wait_until(lambda: path.exists() and path.read_text() != "", timeout=10), "child never started"
    return int(path.read_text())


# --------------------------------------------------------------- basics


def test_start_is_awaited_and_returns_an_async_process() -> None:
    async def main() -> None:
        coro = netrunner.aio.start(["cat"])
        assert inspect.isawaitable(coro)
        proc = await coro
        async with proc as entered:
            assert entered is proc
            assert isinstance(proc, netrunner.aio.Process)
            assert isinstance(proc.pid, int)
            assert pid_alive(proc.pid)
            assert proc.alive
            assert proc.poll() is None
            assert proc.returncode is None
            assert proc.exit_status is None
            assert proc.signal is None

            await proc.write(b"hello\n")
            assert await AsyncLineReader(proc).readline() == b"hello\n"
            assert proc.close_stdin() is None
            assert await proc.read(timeout=5) == b""
            assert await proc.wait() == 0
            assert not proc.alive
            assert proc.poll() == 0
            assert proc.returncode == 0
            assert proc.exit_status == 0
            assert proc.signal is None
            assert proc.stats.bytes_in == 6
            assert proc.stats.returncode == 0

    arun(main())


def test_plain_methods_do_not_return_awaitables() -> None:
    async def main() -> None:
        async with await netrunner.aio.start(py(IGNORE_TERM)) as proc:
            assert await AsyncLineReader(proc).readline() == b"ready\n"
            for result in (proc.poll(), proc.send_signal(signal.SIGCONT), proc.terminate()):
                assert not inspect.isawaitable(result)
            with pytest.raises(ValueError, match="pty=True"):
                proc.set_window_size(24, 80)  # not a pty
            assert not inspect.isawaitable(proc.kill())
            assert await proc.wait() == -signal.SIGKILL
            assert proc.signal == signal.SIGKILL
            assert proc.exit_status == 128 + signal.SIGKILL
            assert proc.send_signal("TERM") is None  # a no-op after exit
            assert proc.close_stdin() is None
            assert proc.close_stdin() is None  # idempotent

    arun(main())


def test_start_validation() -> None:
    async def main() -> None:
        with pytest.raises(netrunner.InvalidCommand):
            await netrunner.aio.start("cat")  # type: ignore[arg-type]
        for option in ("timeout", "input", "check", "max_output_size"):
            with pytest.raises(TypeError, match=option):
                await netrunner.aio.start(["cat"], **{option: 1})
        with pytest.raises(ValueError, match="kill_timeout"):
            await netrunner.aio.start(["cat"], kill_timeout=0)
        with pytest.raises(FileNotFoundError) as info:
            await netrunner.aio.start(["no-such-program-netrunner-xyz"])
        assert info.value.filename == "no-such-program-netrunner-xyz"

    arun(main())


def test_read_timeout_then_still_usable() -> None:
    async def main() -> None:
        async with await netrunner.aio.start(["cat"]) as proc:
            t0 = time.monotonic()
            with pytest.raises(TimeoutError):
                await proc.read(timeout=0.2)
            assert time.monotonic() - t0 < 2.0
            await proc.write(b"ok\n")
            assert await AsyncLineReader(proc).readline() == b"ok\n"

    arun(main())


def test_read_respects_max_bytes_and_returns_leftovers_after_exit() -> None:
    async def main() -> None:
        async with await netrunner.aio.start(py("print('0123456789')")) as proc:
            assert await proc.wait() == 0
            first = await proc.read(4)
            assert first == b"0123"
            rest = b""
            while True:
                data = await proc.read(timeout=5)
                if not data:
                    break
                rest += data
            assert first + rest == b"0123456789\n"
            assert await proc.read() == b""

    arun(main())


def test_read_stderr_and_redirect() -> None:
    code = "import sys; print('out', flush=True); print('err', file=sys.stderr, flush=True)"

    async def main() -> None:
        async with await netrunner.aio.start(py(code)) as proc:
            assert await AsyncLineReader(proc, stderr=True).readline() == b"err\n"
            assert await AsyncLineReader(proc).read_until_eof() == b"out\n"
            assert await proc.wait() == 0
        async with await netrunner.aio.start(py(code), stderr="redirect") as proc:
            assert await AsyncLineReader(proc).read_until_eof() == b"out\nerr\n"
            assert await proc.wait() == 0

    arun(main())


def test_text_mode() -> None:
    async def main() -> None:
        async with await netrunner.aio.start(["cat"], text=True) as proc:
            await proc.write("héllo €\n")
            proc.close_stdin()
            out = ""
            while True:
                chunk = await proc.read(timeout=5)
                assert isinstance(chunk, str)
                if not chunk:
                    break
                out += chunk
            assert out == "héllo €\n"
            assert await proc.wait() == 0

    arun(main())


def test_communicate() -> None:
    code = (
        "import sys\n"
        "data = sys.stdin.buffer.read()\n"
        "sys.stdout.buffer.write(data); sys.stderr.buffer.write(data[::-1]); sys.exit(5)"
    )
    data = os.urandom(2 << 20)

    async def main() -> None:
        async with await netrunner.aio.start(py(code)) as proc:
            out, err = await proc.communicate(data)
            assert out == data
            assert err == data[::-1]
            assert await proc.communicate() == (out, err)  # a second call: the same pair
            assert await proc.wait() == 5
            assert proc.returncode == 5

    arun(main())


def test_communicate_after_reading_ahead_and_inside_a_character() -> None:
    async def main() -> None:
        async with await netrunner.aio.start(["printf", "l1\nl2\nl3\n"], text=True) as proc:
            assert await proc.readline(timeout=10) == "l1\n"
            assert await proc.communicate(timeout=10) == ("l2\nl3\n", "")
        async with await netrunner.aio.start(["printf", "l1\nl2\nl3\n"]) as proc:
            assert await proc.readline(timeout=10) == b"l1\n"
            assert await proc.communicate(timeout=10) == (b"l2\nl3\n", b"")
        cmd = ["sh", "-c", r"printf 'a\342\202'; sleep .3; printf '\254\n'"]
        async with await netrunner.aio.start(cmd, text=True) as proc:
            assert await proc.read(timeout=10) == "a"
            assert await proc.communicate(timeout=10) == ("€\n", "")

    arun(main())


def test_communicate_after_a_timeout_writes_the_rest_of_the_first_input(tmp_path: Path) -> None:
    code = (
        "import os, sys, time\n"
        "while not os.path.exists(sys.argv[1]): time.sleep(0.01)\n"
        "sys.stdout.buffer.write(sys.stdin.buffer.read())"
    )
    data = os.urandom(1 << 20)  # far more than a pipe holds
    go = tmp_path / "go"

    async def main() -> None:
        async with await netrunner.aio.start(py(code, str(go))) as proc:
            with pytest.raises(netrunner.Timeout):
                await proc.communicate(data, timeout=0.3)
            with pytest.raises(ValueError, match="input can only be given to the first call"):
                await proc.communicate(b"again", timeout=0.3)
            with pytest.raises(ValueError, match="cut short before it wrote all of its input"):
                await proc.write(b"cut in")
            go.touch()
            assert await proc.communicate(timeout=30) == (data, b"")  # each byte once, in order
            assert proc.returncode == 0
        async with await netrunner.aio.start(["cat"]) as proc:
            proc.close_stdin()
            with pytest.raises(netrunner.StdinClosed):
                await proc.communicate(b"lost?")
            assert await proc.communicate(timeout=10) == (b"", b"")

    arun(main())


def test_communicate_timeout_leaves_the_process_running() -> None:
    async def main() -> None:
        async with await netrunner.aio.start(py(IGNORE_TERM)) as proc:
            with pytest.raises(netrunner.Timeout):
                await proc.communicate(timeout=0.5)
            assert proc.alive
            assert proc.poll() is None
            assert await proc.stop(kill_timeout=0.2) == -signal.SIGKILL

    arun(main())


def test_wait_timeout() -> None:
    async def main() -> None:
        async with await netrunner.aio.start(["cat"]) as proc:
            t0 = time.monotonic()
            with pytest.raises(netrunner.Timeout):
                await proc.wait(timeout=0.2)
            assert time.monotonic() - t0 < 2.0
            assert proc.alive
            proc.close_stdin()
            assert await proc.wait(timeout=5) == 0

    arun(main())


def test_stop_terminates_and_is_idempotent(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"

    async def main() -> None:
        proc = await netrunner.aio.start(py(READY_SLEEPER, str(pidfile)))
        try:
            assert await AsyncLineReader(proc).readline() == b"ready\n"
            assert await proc.stop() == -signal.SIGTERM
            assert not pid_alive(read_pid(pidfile))
            assert await proc.stop() == -signal.SIGTERM
            assert proc.signal == signal.SIGTERM
        finally:
            await proc.aclose()

    arun(main())


def test_stop_escalates_to_kill() -> None:
    async def main() -> None:
        async with await netrunner.aio.start(py(IGNORE_TERM)) as proc:
            assert await AsyncLineReader(proc).readline() == b"ready\n"
            t0 = time.monotonic()
            assert await proc.stop(kill_timeout=0.3) == -signal.SIGKILL
            assert 0.25 <= time.monotonic() - t0 < 3.0

    arun(main())


def test_send_signal_by_name() -> None:
    code = (
        "import os, signal, sys, time\n"
        "signal.signal(signal.SIGUSR1, lambda *a: (os.write(1, b'usr1\\n'), sys.exit(9)))\n"
        "print('ready', flush=True)\n"
        "while True: time.sleep(0.05)"
    )

    async def main() -> None:
        async with await netrunner.aio.start(py(code)) as proc:
            reader = AsyncLineReader(proc)
            assert await reader.readline() == b"ready\n"
            proc.send_signal("usr1")
            assert await reader.readline() == b"usr1\n"
            assert await proc.wait() == 9

    arun(main())


def test_write_errors() -> None:
    async def main() -> None:
        async with await netrunner.aio.start(["cat"]) as proc:
            proc.close_stdin()
            with pytest.raises(netrunner.StdinClosed):
                await proc.write(b"late")
            with pytest.raises(BrokenPipeError):
                await proc.write(b"late")
        code = "import os, time; os.close(0); print('ready', flush=True); time.sleep(100)"
        async with await netrunner.aio.start(py(code)) as proc:
            assert await AsyncLineReader(proc).readline() == b"ready\n"
            with pytest.raises(BrokenPipeError):
                await proc.write(b"x" * (1 << 20))

    arun(main())


def test_aclose_and_context_exit_stop_the_tree(tmp_path: Path, marker: str) -> None:
    first, second = tmp_path / "first", tmp_path / "second"

    async def main() -> None:
        proc = await netrunner.aio.start(py(READY_SLEEPER, str(first)))
        assert await AsyncLineReader(proc).readline() == b"ready\n"
        await proc.aclose()
        await proc.aclose()  # idempotent
        assert not proc.alive
        assert proc.returncode == -signal.SIGTERM
        assert not pid_alive(read_pid(first))

        async with await netrunner.aio.start(
            ["sh", "-c", '"$0" -c "$1" "$2" & sleep 100', PY, READY_SLEEPER, str(second)]
        ) as proc:
            await await_until(lambda: second.exists() and second.read_text() != "", timeout=10)
        assert not proc.alive
        assert await await_until(lambda: not pid_alive(read_pid(second)), timeout=3.0)

    arun(main())
    assert wait_until(lambda: not pids_with_marker(marker), timeout=5.0)


def test_pty_size_given_at_start() -> None:
    async def main() -> None:
        async with await netrunner.aio.start(["stty", "size"], pty=(33, 111)) as p:
            assert await p.read_until(b"\n", timeout=5) == b"33 111\r\n"
            assert await p.wait(timeout=5) == 0

    arun(main())


# --------------------------------------------------------------- cancellation


def test_cancelled_read_leaves_the_process_usable() -> None:
    async def main() -> None:
        async with await netrunner.aio.start(["cat"]) as proc:
            task = asyncio.create_task(proc.read())
            await asyncio.sleep(0.05)  # let it block on the empty pipe
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert proc.alive
            await proc.write(b"after\n")
            assert await AsyncLineReader(proc).readline() == b"after\n"
            proc.close_stdin()
            assert await proc.wait() == 0

    arun(main())


def test_cancelled_wait_leaves_the_process_usable() -> None:
    async def main() -> None:
        async with await netrunner.aio.start(py(EXIT_ON_EOF, "6")) as proc:
            task = asyncio.create_task(proc.wait())
            await asyncio.sleep(0.05)
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert proc.alive
            assert proc.poll() is None
            proc.close_stdin()
            assert await proc.wait() == 6
            assert await proc.wait() == 6

    arun(main())


def test_wait_for_wait_times_out_cleanly() -> None:
    async def main() -> None:
        async with await netrunner.aio.start(py(EXIT_ON_EOF, "4")) as proc:
            t0 = time.monotonic()
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(proc.wait(), 0.1)
            assert time.monotonic() - t0 < 2.0
            assert proc.alive
            assert proc.poll() is None
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(proc.read(), 0.1)
            proc.close_stdin()
            assert await asyncio.wait_for(proc.wait(), 5) == 4

    arun(main())


def test_many_tasks_wait_at_once() -> None:
    async def main() -> None:
        async with await netrunner.aio.start(py(EXIT_ON_EOF, "7")) as proc:
            waiters = [asyncio.create_task(proc.wait()) for _ in range(10)]
            await asyncio.sleep(0.05)
            assert not any(w.done() for w in waiters)
            proc.close_stdin()
            assert await asyncio.gather(*waiters) == [7] * 10

    arun(main())


def test_cancelled_stop_leaves_a_consistent_state() -> None:
    async def main() -> None:
        async with await netrunner.aio.start(py(IGNORE_TERM), kill_timeout=5) as proc:
            assert await AsyncLineReader(proc).readline() == b"ready\n"
            task = asyncio.create_task(proc.stop())
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await proc.stop(kill_timeout=0.2) == -signal.SIGKILL
            assert not proc.alive

    arun(main())


def test_cancelling_the_owner_of_an_open_process_then_closing(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"

    async def owner() -> None:
        async with await netrunner.aio.start(py(READY_SLEEPER, str(pidfile))) as proc:
            await proc.wait()

    async def main() -> None:
        task = asyncio.create_task(owner())
        assert await await_until(lambda: pidfile.exists() and pidfile.read_text() != "")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    arun(main())
    assert wait_until(lambda: not pid_alive(read_pid(pidfile)), timeout=3.0)


# --------------------------------------------------------------- backpressure & loop


def test_write_backpressure_does_not_block_the_loop(tmp_path: Path) -> None:
    go = tmp_path / "go"
    size = 4 << 20
    code = (
        "import os, sys, time\n"
        "print('ready', flush=True)\n"
        "while not os.path.exists(sys.argv[1]): time.sleep(0.01)\n"
        "n = 0\n"
        "while True:\n"
        "    d = os.read(0, 65536)\n"
        "    if not d: break\n"
        "    n += len(d)\n"
        "print(n, flush=True)\n"
    )

    async def main() -> None:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        async with await netrunner.aio.start(py(code, str(go))) as proc:
            reader = AsyncLineReader(proc)
            assert await reader.readline() == b"ready\n"
            tick_task = asyncio.create_task(ticker())
            write = asyncio.create_task(proc.write(b"w" * size))
            assert await await_until(lambda: ticks >= 30, timeout=10), "the loop is blocked"
            assert not write.done(), "write completed although nobody read the data"
            go.touch()
            await write
            assert write.exception() is None
            proc.close_stdin()
            assert await reader.readline() == f"{size}\n".encode()
            assert await proc.wait() == 0
            tick_task.cancel()
            assert proc.stats.bytes_in == size

    arun(main())


def test_concurrent_reader_and_writer_tasks() -> None:
    data = os.urandom(8 << 20)

    async def main() -> None:
        async with await netrunner.aio.start(["cat"]) as proc:

            async def writer() -> None:
                for i in range(0, len(data), 1 << 20):
                    await proc.write(data[i : i + (1 << 20)])
                proc.close_stdin()

            async def reader() -> bytes:
                out = bytearray()
                while True:
                    chunk = await proc.read()
                    if not chunk:
                        return bytes(out)
                    out += chunk

            _, out = await asyncio.gather(writer(), reader())
            assert out == data
            assert await proc.wait() == 0

    arun(main())


def test_many_processes_at_once() -> None:
    async def one(i: int) -> bytes:
        async with await netrunner.aio.start(["cat"]) as proc:
            out, _ = await proc.communicate(f"{i}\n".encode())
            return out

    async def main() -> list[bytes]:
        return await asyncio.gather(*(one(i) for i in range(40)))

    assert arun(main()) == [f"{i}\n".encode() for i in range(40)]


# --------------------------------------------------------------- loop shutdown


def test_process_dropped_inside_the_loop_is_stopped(
    tmp_path: Path, marker: str, capfd: pytest.CaptureFixture[str]
) -> None:
    pidfile = tmp_path / "pid"

    async def main() -> None:
        proc = await netrunner.aio.start(py(READY_SLEEPER, str(pidfile)))
        assert await AsyncLineReader(proc).readline() == b"ready\n"
        # returns without closing: the last reference dies with this frame

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        arun(main())
        gc.collect()
    assert wait_until(lambda: not pid_alive(read_pid(pidfile)), timeout=10.0)
    assert wait_until(lambda: not pids_with_marker(marker), timeout=10.0)
    err = capfd.readouterr().err
    assert "Event loop is closed" not in err
    assert "Traceback" not in err


def test_process_left_open_when_the_loop_closes_is_stopped(
    tmp_path: Path, marker: str, capfd: pytest.CaptureFixture[str]
) -> None:
    pidfile = tmp_path / "pid"
    holder: list[Any] = []

    async def main() -> None:
        proc = await netrunner.aio.start(py(READY_SLEEPER, str(pidfile)))
        holder.append(proc)
        assert await AsyncLineReader(proc).readline() == b"ready\n"

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        arun(main())
        assert pid_alive(read_pid(pidfile))
        holder.clear()  # the owner drops it after its loop is gone
        gc.collect()
    assert wait_until(lambda: not pid_alive(read_pid(pidfile)), timeout=10.0)
    assert wait_until(lambda: not pids_with_marker(marker), timeout=10.0)
    err = capfd.readouterr().err
    assert "Event loop is closed" not in err
    assert "Traceback" not in err
