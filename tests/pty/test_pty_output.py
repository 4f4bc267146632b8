"""SPEC section 8: terminal output is never lost.

A PTY master reads EIO once the slave side is closed; netrunner treats it as
end of output, *after* every byte still buffered in the kernel. The terminal
turns "\\n" into "\\r\\n" (ONLCR), so payloads are compared after undoing that.

Large payloads (1 MiB, 8 MiB) are read while the command writes: a
pseudo-terminal buffers only a few KiB, past which the writer blocks until
someone reads. A command can therefore exit before anybody reads only when
its output fits that buffer — see ``KERNEL_BUFFERED``."""

from __future__ import annotations

import pytest
from helpers import wait_until
from helpers_aio import arun
from pty_helpers import aread_to_eof, crlf_to_lf, describe, numbered_lines, py, read_to_eof, writer_code

import netrunner
import netrunner.aio

MiB = 1 << 20

#: What a command can write to its terminal and exit with nobody reading.
#: Linux (measured on 6.18) buffers about 12 KiB on the master side of a pty
#: (the line discipline's 4 KiB read buffer plus the 8 KiB flip-buffer limit
#: that pty.c sets); at 11-12 KiB a writer sometimes already blocks, at 13 KiB
#: and above always. 8 KiB never blocked in hundreds of runs, so that is what
#: the read-after-exit tests write (without newlines, which ONLCR would double).
KERNEL_BUFFERED = 8 * 1024

#: A payload of exactly KERNEL_BUFFERED printable bytes with no newline.
SMALL = (bytes(range(33, 127)) * (KERNEL_BUFFERED // 94 + 1))[:KERNEL_BUFFERED]
SMALL_WRITER = (
    "import os, sys\n"
    f"sys.stdout.buffer.write({SMALL!r})\n"
    "sys.stdout.flush()\n"
    "os._exit(0)\n"
)


# --------------------------------------------------------------- small output


def test_echo_via_run() -> None:
    result = netrunner.run(["echo", "hi"], pty=True, timeout=30)
    assert result.stdout == b"hi\r\n", f"echo hi on a terminal: {result!r}"
    assert result.returncode == 0
    assert result.stderr == b""


def test_echo_via_run_text_mode() -> None:
    result = netrunner.run(["echo", "hé"], pty=True, text=True, timeout=30)
    assert result.stdout == "hé\r\n", f"echo hé on a terminal, text=True: {result!r}"


def test_true_has_no_output() -> None:
    result = netrunner.run(["true"], pty=True, timeout=30)
    assert result.stdout == b"" and result.returncode == 0, result


def test_exit_status_is_the_commands() -> None:
    result = netrunner.run(["sh", "-c", "echo out; exit 7"], pty=True, timeout=30)
    assert (result.stdout, result.returncode) == (b"out\r\n", 7), result


def test_stream_echo() -> None:
    with netrunner.stream(["echo", "hi"], pty=True) as s:
        chunks = list(s)
    assert b"".join(chunks) == b"hi\r\n", f"stream chunks: {chunks!r}"
    assert s.result is not None
    assert s.result.returncode == 0


def test_stream_lines() -> None:
    with netrunner.stream(["printf", "a\\nb\\nlast"], pty=True) as s:
        lines = list(s.lines())
    assert lines == [b"a\r\n", b"b\r\n", b"last"], f"stream lines on a terminal: {lines!r}"


# --------------------------------------------------------------- the command exits before the first read


def test_start_read_after_wait_returned() -> None:
    """The command writes KERNEL_BUFFERED bytes and exits; only after wait()
    returned does anyone read: every byte is there, then b"" (EIO is EOF)."""
    with netrunner.start(py(SMALL_WRITER), pty=True) as proc:
        assert proc.wait(timeout=15) == 0, (
            f"a {KERNEL_BUFFERED}-byte writer did not exit without a reader: the kernel buffers less than that here"
        )
        out = read_to_eof(proc)
        assert out == SMALL, describe(out, SMALL)
        assert proc.read(timeout=5) == b"", "a read after end of output must return b''"


def test_start_read_after_exit_seen_by_poll() -> None:
    with netrunner.start(py(SMALL_WRITER), pty=True) as proc:
        assert wait_until(lambda: proc.poll() is not None, timeout=15), "the writer did not exit without a reader"
        assert proc.returncode == 0
        out = read_to_eof(proc)
    assert out == SMALL, describe(out, SMALL)


def test_start_small_reads_after_exit() -> None:
    # many small reads across the buffered data: nothing skipped, nothing repeated
    with netrunner.start(py(SMALL_WRITER), pty=True) as proc:
        assert proc.wait(timeout=15) == 0
        out = read_to_eof(proc, max_bytes=100)
    assert out == SMALL, describe(out, SMALL)


def test_start_read_until_after_exit() -> None:
    with netrunner.start(["sh", "-c", "echo first; echo second; echo third"], pty=True) as proc:
        assert proc.wait(timeout=15) == 0
        assert proc.read_until(b"second\r\n", timeout=5) == b"first\r\nsecond\r\n"
        assert proc.readline(timeout=5) == b"third\r\n"
        assert proc.readline(timeout=5) == b"", "readline at the end of terminal output must return b''"
        with pytest.raises(EOFError):
            proc.read_until(b"more", timeout=5)


def test_read_until_after_exit_without_a_match_is_eof_error() -> None:
    with netrunner.start(["echo", "only"], pty=True) as proc:
        proc.wait(timeout=15)
        with pytest.raises(EOFError) as info:
            proc.read_until(b"absent", timeout=5)
        assert getattr(info.value, "partial", None) == b"only\r\n", f"EOFError.partial: {info.value!r}"


def test_aio_start_read_after_wait_returned() -> None:
    async def main() -> None:
        async with await netrunner.aio.start(py(SMALL_WRITER), pty=True) as proc:
            assert await proc.wait(timeout=15) == 0
            out = await aread_to_eof(proc)
            assert out == SMALL, describe(out, SMALL)

    arun(main())


def test_late_reader_gets_everything_from_a_blocked_writer() -> None:
    """1 MiB does not fit the terminal's buffer: the writer waits for the
    reader (backpressure), and a reader that starts late still gets it all."""
    expected = numbered_lines(MiB)
    with netrunner.start(py(writer_code(MiB)), pty=True) as proc:
        try:
            proc.wait(timeout=0.5)
        except netrunner.Timeout:
            pass  # blocked on the full terminal, as expected
        out = crlf_to_lf(read_to_eof(proc))
        assert proc.wait(timeout=15) == 0
    assert out == expected, describe(out, expected)


# --------------------------------------------------------------- large output, read concurrently


@pytest.mark.parametrize("size", [MiB, 8 * MiB], ids=["1MiB", "8MiB"])
def test_run_large_output(size: int) -> None:
    expected = numbered_lines(size)
    result = netrunner.run(py(writer_code(size)), pty=True, timeout=60)
    assert result.returncode == 0, f"writer failed: returncode {result.returncode}"
    out = crlf_to_lf(result.stdout)
    assert out == expected, describe(out, expected)
    assert result.stdout.count(b"\r\n") == size // 8, "every line ends with \\r\\n on a terminal"


@pytest.mark.parametrize("size", [MiB, 8 * MiB], ids=["1MiB", "8MiB"])
def test_stream_large_output(size: int) -> None:
    expected = numbered_lines(size)
    total = 0
    chunks = []
    with netrunner.stream(py(writer_code(size)), pty=True, timeout=60) as s:
        for chunk in s:
            assert chunk, "a stream never yields an empty chunk"
            total += len(chunk)
            chunks.append(chunk)
    assert total == size + size // 8, f"sum of chunks {total}, expected {size + size // 8} (with \\r)"
    out = crlf_to_lf(b"".join(chunks))
    assert out == expected, describe(out, expected)
    assert s.result is not None
    assert s.result.returncode == 0


@pytest.mark.parametrize("size", [MiB, 8 * MiB], ids=["1MiB", "8MiB"])
def test_start_large_output(size: int) -> None:
    expected = numbered_lines(size)
    with netrunner.start(py(writer_code(size)), pty=True) as proc:
        out = crlf_to_lf(read_to_eof(proc, timeout=60))
        assert proc.wait(timeout=15) == 0
    assert out == expected, describe(out, expected)


def test_aio_run_large_output() -> None:
    size = 8 * MiB
    expected = numbered_lines(size)

    async def main() -> None:
        result = await netrunner.aio.run(py(writer_code(size)), pty=True, timeout=60)
        assert result.returncode == 0, result.returncode
        out = crlf_to_lf(result.stdout)
        assert out == expected, describe(out, expected)
        small = await netrunner.aio.run(["echo", "hi"], pty=True, timeout=30)
        assert small.stdout == b"hi\r\n", small

    arun(main(), timeout=90)


def test_aio_stream_large_output() -> None:
    size = 8 * MiB
    expected = numbered_lines(size)

    async def main() -> None:
        chunks = []
        async with netrunner.aio.stream(py(writer_code(size)), pty=True, timeout=60) as s:
            async for chunk in s:
                chunks.append(chunk)
        total = sum(map(len, chunks))
        assert total == size + size // 8, f"sum of chunks {total}, expected {size + size // 8} (with \\r)"
        out = crlf_to_lf(b"".join(chunks))
        assert out == expected, describe(out, expected)
        assert s.result is not None
        assert s.result.returncode == 0

    arun(main(), timeout=90)


def test_aio_start_large_output() -> None:
    size = MiB
    expected = numbered_lines(size)

    async def main() -> None:
        async with await netrunner.aio.start(py(writer_code(size)), pty=True) as proc:
            out = crlf_to_lf(await aread_to_eof(proc, timeout=60))
            assert await proc.wait(timeout=15) == 0
        assert out == expected, describe(out, expected)

    arun(main(), timeout=90)


def test_run_binary_bytes_survive() -> None:
    # every byte value but "\n" (ONLCR) passes a terminal's output unchanged
    payload = bytes(b for b in range(256) if b != 0x0A) * 64
    code = f"import sys; sys.stdout.buffer.write({payload!r}); sys.stdout.flush()"
    with netrunner.start(py(code), pty=True) as proc:
        out = read_to_eof(proc)
        assert proc.wait(timeout=15) == 0
    assert out == payload, describe(out, payload)


def test_output_of_a_background_child_after_the_command_exits_is_not_waited_for() -> None:
    # the command exits while a background job still holds the terminal:
    # run returns at once with what the command wrote (SPEC 3 and 6)
    result = netrunner.run(["sh", "-c", "sleep 100 & echo hi"], pty=True, timeout=30, kill_timeout=1)
    assert result.stdout == b"hi\r\n", result
    assert result.stats.duration < 5, f"run waited for the background job: {result.stats.duration:.1f} s"


def test_max_output_size_counts_terminal_output() -> None:
    with pytest.raises(netrunner.OutputLimitExceeded) as info:
        netrunner.run(["yes"], pty=True, max_output_size=1000, timeout=30)
    expected = (b"y\r\n" * 334)[:1000]
    assert info.value.stdout == expected, f"partial output: {describe(info.value.stdout, expected)}"
