"""SPEC section 4: ``netrunner.stream`` — lazy chunks, lines, stopping the tree,
result, check, stderr tail, interleaved input, flat memory (sync API)."""

from __future__ import annotations

import gc
import hashlib
import os
import signal
import time
from collections.abc import Iterator

import pytest
from helpers import gone, pids_with_marker, py, rss_bytes, settled_strays, stray_children, wait_until

import netrunner

# A tree that would run forever: sh (exec'd into `yes`) with a background sleep.
# The first two lines are the sleep's pid and the command's pid.
FOREVER = ["sh", "-c", "sleep 1000 & echo $!; echo $$; exec yes"]


def _two_pids(lines: Iterator[bytes]) -> tuple[int, int]:
    return int(next(lines)), int(next(lines))


def test_chunks_respect_chunk_size() -> None:
    data = os.urandom(1_000_000)
    with netrunner.stream(["cat"], input=data, chunk_size=1000) as s:
        chunks = list(s)
    assert all(isinstance(c, bytes) for c in chunks)
    assert all(0 < len(c) <= 1000 for c in chunks)
    assert b"".join(chunks) == data


def test_default_chunk_size_is_64k() -> None:
    with netrunner.stream(["head", "-c", "3000000", "/dev/zero"]) as s:
        sizes = [len(c) for c in s]
    assert sum(sizes) == 3_000_000
    assert max(sizes) <= 65536


def test_stream_is_iterator_and_context_manager() -> None:
    s = netrunner.stream(["echo", "hi"])
    assert iter(s) is s
    with s as entered:
        assert entered is s
        assert next(s) == b"hi\n"
        with pytest.raises(StopIteration):
            next(s)


def test_lines_across_chunk_boundaries() -> None:
    payload = b"one\ntwo\n\nthree-is-longer\nfour\n"
    with netrunner.stream(["cat"], input=payload, chunk_size=3) as s:
        lines = list(s.lines())
    assert lines == [b"one\n", b"two\n", b"\n", b"three-is-longer\n", b"four\n"]


def test_lines_written_slowly() -> None:
    code = (
        "import sys, time\nfor part in ['ab', 'c\\nd', 'e\\n', 'f']:\n"
        "    sys.stdout.write(part); sys.stdout.flush(); time.sleep(0.05)\n"
    )
    with netrunner.stream(py(code)) as s:
        assert list(s.lines()) == [b"abc\n", b"de\n", b"f"]


def test_last_line_without_newline() -> None:
    with netrunner.stream(["printf", "a\\nb"]) as s:
        assert list(s.lines()) == [b"a\n", b"b"]
    with netrunner.stream(["printf", "only"]) as s:
        assert list(s.lines()) == [b"only"]
    with netrunner.stream(["true"]) as s:
        assert list(s.lines()) == []


def test_ten_megabyte_line_is_one_item() -> None:
    code = "import sys; sys.stdout.buffer.write(b'x' * 10_000_000 + b'\\nshort\\n' + b'y' * 100)"
    with netrunner.stream(py(code), timeout=60) as s:
        lines = list(s.lines())
    assert [len(line) for line in lines] == [10_000_001, 6, 100]
    assert lines[0] == b"x" * 10_000_000 + b"\n"
    assert lines[1] == b"short\n"


def test_text_mode_chunks_and_lines() -> None:
    with netrunner.stream(["printf", "é\\nü"], text=True) as s:
        assert "".join(s) == "é\nü"
    with netrunner.stream(["printf", "é\\nü"], text=True) as s:
        assert list(s.lines()) == ["é\n", "ü"]



def test_lines_end_at_newline_only() -> None:
    # No newline translation, and none of the other characters str.splitlines()
    # or bytes.splitlines() would end a line at
    payload = "a\rb\r\nc\x0bd\x0ce\x1cf\x85g\u2028h\u2029i\nlast\r"
    expected = ["a\rb\r\n", "c\x0bd\x0ce\x1cf\x85g\u2028h\u2029i\n", "last\r"]
    with netrunner.stream(["cat"], input=payload.encode(), text=True) as s:
        assert list(s.lines()) == expected
    with netrunner.stream(["cat"], input=payload.encode()) as s:
        assert list(s.lines()) == [line.encode() for line in expected]


def test_text_lines_across_split_characters() -> None:
    text = "é€😀 mixed ✓\nsecond líne\n\nlast ü"
    for chunk_size in (1, 2, 3, 5, 65536):
        with netrunner.stream(["cat"], input=text.encode(), text=True, chunk_size=chunk_size) as s:
            assert list(s.lines()) == ["é€😀 mixed ✓\n", "second líne\n", "\n", "last ü"], chunk_size


def test_many_lines_in_order() -> None:
    # Hundreds of full chunks: every line, in order, whatever the reads' sizes
    with netrunner.stream(["seq", "1", "300000"], timeout=60) as s:
        lines = list(s.lines())
    assert lines == [b"%d\n" % i for i in range(1, 300001)]
    with netrunner.stream(["seq", "1", "300000"], text=True, timeout=60) as s:
        assert list(s.lines()) == [f"{i}\n" for i in range(1, 300001)]


def test_lines_is_lazy_and_shares_the_stream() -> None:
    # lines() reads only as it is consumed; what it has not split is still the stream's
    with netrunner.stream(["sh", "-c", "echo one; echo two"]) as s:
        lines = s.lines()
        assert next(lines) == b"one\n"
        assert next(lines) == b"two\n"
        with pytest.raises(StopIteration):
            next(lines)
        assert s.result is not None
        assert s.result.returncode == 0

def test_chunks_arrive_as_produced() -> None:
    """A chunk is delivered as soon as it is written, not when the child exits."""
    code = "import os, time; os.write(1, b'first\\n'); time.sleep(100)"
    start = time.monotonic()
    with netrunner.stream(py(code)) as s:
        assert next(s) == b"first\n"
        assert time.monotonic() - start < 5


# --- stopping the tree ------------------------------------------------------------


def test_with_exit_stops_the_tree() -> None:
    with netrunner.stream(FOREVER) as s:
        sleep_pid, cmd_pid = _two_pids(s.lines())
    assert gone(cmd_pid)
    assert gone(sleep_pid)


def test_break_and_close_stops_the_tree() -> None:
    s = netrunner.stream(FOREVER)
    pids = []
    for line in s.lines():
        pids.append(int(line))
        if len(pids) == 2:
            break
    s.close()
    assert gone(pids[0])
    assert gone(pids[1])
    s.close()  # idempotent


def test_break_from_chunk_iteration_and_close() -> None:
    s = netrunner.stream(["sh", "-c", "echo $$; exec yes"], chunk_size=16)
    first = b""
    for chunk in s:
        first += chunk
        if b"\n" in first:
            break
    s.close()
    assert gone(int(first.split(b"\n")[0]))


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_dropping_the_last_reference_stops_the_tree() -> None:
    s = netrunner.stream(FOREVER)
    lines = s.lines()
    sleep_pid, cmd_pid = _two_pids(lines)
    del lines, s
    gc.collect()
    assert gone(cmd_pid)
    assert gone(sleep_pid)


def test_exception_in_with_block_stops_the_tree() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with netrunner.stream(FOREVER) as s:
            sleep_pid, cmd_pid = _two_pids(s.lines())
            raise RuntimeError("boom")
    assert gone(cmd_pid)
    assert gone(sleep_pid)


def test_close_before_iterating(marker: str) -> None:
    s = netrunner.stream(["sleep", "100"])
    s.close()
    assert wait_until(lambda: not pids_with_marker(marker), timeout=10)


def test_leftovers_stopped_after_normal_end() -> None:
    with netrunner.stream(["sh", "-c", "sleep 100 & echo $!"]) as s:
        start = time.monotonic()
        out = b"".join(s)
        assert time.monotonic() - start < 3
    assert gone(int(out))


# --- result and check -------------------------------------------------------------


def test_result_after_exhaustion() -> None:
    with netrunner.stream(["sh", "-c", "printf abc; printf err >&2"]) as s:
        assert b"".join(s) == b"abc"
        result = s.result
    assert isinstance(result, netrunner.Result)
    assert result.stdout == b""
    assert result.stderr == b"err"
    assert result.returncode == 0
    assert result.exit_status == 0
    assert result.ok
    assert result.args == ("sh", "-c", "printf abc; printf err >&2")
    assert result.stats.bytes_out == 3
    assert result.stats.bytes_err == 3


def test_result_text_mode_stdout_empty() -> None:
    with netrunner.stream(["printf", "x"], text=True) as s:
        assert "".join(s) == "x"
    assert s.result.stdout in ("", b"")


def test_abnormal_exit_raised_when_iteration_ends() -> None:
    got = []
    with pytest.raises(netrunner.AbnormalExit) as ei:
        with netrunner.stream(["sh", "-c", "echo a; echo oops >&2; exit 3"]) as s:
            for chunk in s:
                got.append(chunk)
    assert b"".join(got) == b"a\n"
    err = ei.value
    assert isinstance(err, netrunner.ProcessError)
    assert err.returncode == 3
    assert err.exit_status == 3
    assert err.stderr == b"oops\n"
    assert list(err.cmd) == ["sh", "-c", "echo a; echo oops >&2; exit 3"]


def test_abnormal_exit_on_signal() -> None:
    with pytest.raises(netrunner.AbnormalExit) as ei:
        with netrunner.stream(["sh", "-c", "kill -TERM $$"]) as s:
            list(s)
    assert ei.value.returncode == -15
    assert ei.value.signal == signal.SIGTERM


def test_abnormal_exit_from_lines() -> None:
    with pytest.raises(netrunner.AbnormalExit):
        with netrunner.stream(["sh", "-c", "echo a; exit 1"]) as s:
            assert list(s.lines()) == [b"a\n"]


def test_check_false() -> None:
    with netrunner.stream(["sh", "-c", "echo a; exit 3"], check=False) as s:
        assert b"".join(s) == b"a\n"
    assert s.result.returncode == 3
    assert not s.result.ok


# --- errors at the call -----------------------------------------------------------


def test_exec_failure_raises_at_the_call() -> None:
    with pytest.raises(FileNotFoundError) as ei:
        netrunner.stream(["/nonexistent/program"])
    assert ei.value.filename == "/nonexistent/program"


def test_invalid_command_raises_at_the_call() -> None:
    with pytest.raises(netrunner.InvalidCommand):
        netrunner.stream("ls -l")


def test_stream_timeout() -> None:
    start = time.monotonic()
    got = []
    with pytest.raises(netrunner.Timeout) as ei:
        with netrunner.stream(["sh", "-c", "echo early; exec sleep 100"], timeout=0.5, kill_timeout=1) as s:
            for chunk in s:
                got.append(chunk)
    assert time.monotonic() - start < 0.5 + 1 + 2
    assert b"".join(got) == b"early\n"
    assert isinstance(ei.value, TimeoutError)



def test_stream_timeout_comes_while_output_keeps_coming(marker: str) -> None:
    # The consumer is slower than the command: a chunk is waiting at every
    # call, and the timeout must come all the same, with the tree stopped.
    start = time.monotonic()
    chunks = 0
    with pytest.raises(netrunner.Timeout) as ei:
        with netrunner.stream(["yes"], timeout=0.5, kill_timeout=1) as s:
            for _ in s:
                chunks += 1
                time.sleep(0.01)
    assert time.monotonic() - start < 0.5 + 1 + 2, "the timeout did not come while output was waiting"
    assert chunks > 0
    assert ei.value.kill_timeout == 1
    assert "kill_timeout=1" in str(ei.value), str(ei.value)


def test_stream_output_of_a_finished_command_outlasts_its_timeout(marker: str) -> None:
    # Once the tree is gone nothing is left to stop: what it wrote is read
    # to the end, however slowly, with no Timeout.
    with netrunner.stream(["head", "-c", "60000", "/dev/zero"], timeout=0.5, chunk_size=4096) as s:
        first = next(s)
        time.sleep(1.0)  # the command has exited, its output waits in the pipe
        got = [first, *s]
    assert len(b"".join(got)) == 60_000  # fits any pipe: the command is gone before the deadline
    assert s.result is not None
    assert s.result.returncode == 0

# --- stderr while streaming -------------------------------------------------------

STDERR_THEN_STDOUT = (
    "import sys\n"
    "data = b''.join(b'%07d\\n' % i for i in range({n}))\n"
    "sys.stderr.buffer.write(data); sys.stderr.flush()\n"
    "sys.stdout.buffer.write(b'done\\n')\n"
)


def _numbered(n: int) -> bytes:
    return b"".join(b"%07d\n" % i for i in range(n))


def test_stderr_keeps_last_64k() -> None:
    data = _numbered(50_000)  # 400 kB
    with netrunner.stream(py(STDERR_THEN_STDOUT.format(n=50_000)), timeout=30) as s:
        assert b"".join(s) == b"done\n"
    assert s.result.stderr == data[-65536:]


def test_stderr_keeps_last_max_output_size_bytes() -> None:
    data = _numbered(50_000)
    with netrunner.stream(py(STDERR_THEN_STDOUT.format(n=50_000)), max_output_size=1000, timeout=30) as s:
        assert b"".join(s) == b"done\n"
    assert s.result.stderr == data[-1000:]


def test_max_output_size_does_not_limit_stream_stdout() -> None:
    with netrunner.stream(["head", "-c", "100000", "/dev/zero"], max_output_size=10) as s:
        assert sum(len(c) for c in s) == 100_000


def test_stderr_drained_while_consumer_reads_stdout() -> None:
    # 1 MB of stderr interleaved with stdout: the child must never block on stderr
    code = (
        "import sys\nfor i in range(1000):\n"
        "    sys.stderr.buffer.write(b'e' * 1000); sys.stdout.buffer.write(b'o')\n"
    )
    with netrunner.stream(py(code), timeout=30) as s:
        assert b"".join(s) == b"o" * 1000
    assert s.result.stderr == b"e" * 65536


def test_stderr_abnormal_exit_keeps_tail() -> None:
    with pytest.raises(netrunner.AbnormalExit) as ei:
        with netrunner.stream(["sh", "-c", "head -c 100000 /dev/zero | tr '\\0' e >&2; echo tail >&2; exit 2"]) as s:
            list(s)
    assert ei.value.stderr.endswith(b"tail\n")
    assert len(ei.value.stderr) == 65536


def test_stderr_tail_counts_what_it_dropped() -> None:
    with netrunner.stream(["sh", "-c", "head -c 200000 /dev/zero >&2; echo out"]) as s:
        assert b"".join(s) == b"out\n"
    assert s.result is not None
    assert len(s.result.stderr) == 65536
    assert s.result.stats.bytes_err == 200_000
    assert s.result.stats.bytes_err_dropped == 200_000 - 65536


@pytest.mark.parametrize("keep", [None, 2, 1000])
def test_text_stderr_tail_cut_inside_a_character(keep: int | None) -> None:
    # 75,000 bytes of 3-byte euro signs: the tail (64 KiB, or max_output_size)
    # begins inside one, whose bytes are dropped (and counted) with the rest
    code = "import sys; sys.stderr.write('€' * 25_000); print('ok')"
    with netrunner.stream(py(code), text=True, max_output_size=keep) as s:
        assert list(s) == ["ok\n"]
    assert s.result is not None
    kept = (keep or 65536) // 3
    assert s.result.stderr == "€" * kept
    assert s.result.stats.bytes_err_dropped == 75_000 - 3 * kept


def test_text_character_cut_short_by_the_end_of_output() -> None:
    with pytest.raises(UnicodeDecodeError):
        list(netrunner.stream(["printf", r"ab\342\202"], text=True))
    with netrunner.stream(["printf", r"ab\342\202"], text=True, errors="replace") as s:
        assert "".join(s) == "ab\ufffd"
    assert "".join(netrunner.stream(["printf", r"ab\342\202"], text=True, errors="replace").lines()) == "ab\ufffd"
    assert s.result is not None and s.result.returncode == 0


# --- interleaved input ------------------------------------------------------------


def test_cat_fed_50mb_from_an_iterable() -> None:
    chunk_count = 800  # 800 * 64 KiB = 50 MiB

    def gen() -> Iterator[bytes]:
        for i in range(chunk_count):
            yield bytes([i % 256]) * 65536

    expected = hashlib.sha256()
    for i in range(chunk_count):
        expected.update(bytes([i % 256]) * 65536)
    got = hashlib.sha256()
    total = 0
    with netrunner.stream(["cat"], input=gen(), timeout=120) as s:
        for chunk in s:
            got.update(chunk)
            total += len(chunk)
    assert total == chunk_count * 65536
    assert got.hexdigest() == expected.hexdigest()


def test_input_bytes_interleaved() -> None:
    data = os.urandom(8_000_000)
    with netrunner.stream(["cat"], input=data, timeout=60) as s:
        assert b"".join(s) == data


# --- memory -----------------------------------------------------------------------


def test_streaming_a_gigabyte_keeps_memory_flat() -> None:
    total = 0
    peak = 0
    with netrunner.stream(["head", "-c", "1G", "/dev/zero"], timeout=300) as s:
        it = iter(s)
        total += len(next(it))
        gc.collect()
        baseline = rss_bytes()
        for n, chunk in enumerate(it):
            total += len(chunk)
            if n % 256 == 0:
                peak = max(peak, rss_bytes())
                # a slow-ish consumer: the producer is far ahead, data must wait in the pipe
                time.sleep(0.001)
    assert total == 1 << 30
    assert peak - baseline < 32 * 1024 * 1024, (baseline, peak)


def test_stream_does_not_read_ahead() -> None:
    """Nothing is read before the consumer asks: an unread producer stays blocked on
    a full pipe and this process does not buffer its output."""
    gc.collect()
    before = rss_bytes()
    with netrunner.stream(["head", "-c", "200M", "/dev/zero"], timeout=60) as s:
        assert len(next(s)) > 0
        # give a greedy implementation every chance to read ahead, then measure
        # (a fixed wait here can only hide a failure, never cause one)
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            time.sleep(0.05)
        assert rss_bytes() - before < 32 * 1024 * 1024


def test_no_children_left_after_stream() -> None:
    with netrunner.stream(["true"]) as s:
        list(s)
    before = stray_children(set())
    for _ in range(10):
        with netrunner.stream(["echo", "x"]) as s:
            assert b"".join(s) == b"x\n"
    assert settled_strays(before) == set()


def test_text_chunk_size_counts_bytes_read() -> None:
    # chunk_size=4 bytes per read; a decoded chunk may also carry up to 3 bytes of a
    # character split by the previous read, so never two 4-byte characters at once
    # (counting characters instead would give four per chunk)
    with netrunner.stream(["printf", "😀" * 20], text=True, chunk_size=4) as s:
        chunks = list(s)
    assert "".join(chunks) == "😀" * 20
    assert all(len(c.encode()) <= 4 + 3 for c in chunks), chunks


def test_no_thread_per_stream() -> None:
    import threading

    netrunner.run(["true"])
    before = threading.active_count()
    streams = [netrunner.stream(["cat"], input=(b"x" * 1000 for _ in range(100))) for _ in range(10)]
    try:
        for s in streams:
            next(s)
        assert threading.active_count() <= before + 1  # at most one shared helper thread
        for s in streams:
            assert sum(len(c) for c in s) > 0
    finally:
        for s in streams:
            s.close()
