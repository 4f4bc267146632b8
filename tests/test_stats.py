"""SPEC section 11: ``netrunner.Stats``."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time

import pytest
from helpers import LineReader, py, wait_until

import netrunner

FIELDS = [
    "bytes_in",
    "bytes_out",
    "bytes_err",
    "read_count",
    "write_count",
    "started_at",
    "duration",
    "returncode",
    "exit_status",
    "cpu_user",
    "cpu_system",
    "max_rss",
    "peak_memory",
]

# user-space work between clock reads (reading the CPU clock is itself a syscall,
# expensive on some VMs, which would turn a bare polling loop into system time)
BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3:\n    sum(range(20000))\n"


def test_every_field_and_type_after_exit() -> None:
    before = dt.datetime.now(dt.timezone.utc)
    result = netrunner.run(["sh", "-c", "cat; echo err >&2"], input=b"12345")
    after = dt.datetime.now(dt.timezone.utc)
    stats = result.stats
    assert isinstance(stats, netrunner.Stats)
    for name in FIELDS:
        assert hasattr(stats, name), name
    counts = ("bytes_in", "bytes_out", "bytes_err", "read_count", "write_count", "returncode", "exit_status", "max_rss")
    for name in counts:
        value = getattr(stats, name)
        assert isinstance(value, int) and not isinstance(value, bool), (name, value)
    for name in ("duration", "cpu_user", "cpu_system"):
        value = getattr(stats, name)
        assert isinstance(value, (int, float)) and not isinstance(value, bool), (name, value)
        assert value >= 0, (name, value)
    assert isinstance(stats.started_at, dt.datetime)
    assert stats.started_at.tzinfo is not None
    assert stats.started_at.utcoffset() is not None
    assert before - dt.timedelta(seconds=1) <= stats.started_at <= after + dt.timedelta(seconds=1)
    assert stats.duration <= (after - before).total_seconds() + 1
    assert stats.peak_memory is None
    assert stats.returncode == 0
    assert stats.exit_status == 0


def test_byte_and_call_counts() -> None:
    echo = "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read()); sys.stderr.write('7 bytes')"
    result = netrunner.run(py(echo), input=b"x" * 100_000)
    stats = result.stats
    assert stats.bytes_in == 100_000
    assert stats.bytes_out == 100_000
    assert stats.bytes_err == 7
    assert stats.read_count >= 1
    assert stats.write_count >= 1


def test_bytes_err_zero_when_redirected() -> None:
    stats = netrunner.run(["sh", "-c", "echo o; echo e >&2"], stderr="redirect").stats
    assert stats.bytes_out == 4
    assert stats.bytes_err == 0


def test_counts_in_process() -> None:
    with netrunner.start(["cat"]) as proc:
        for part in (b"a", b"bb", b"ccc"):
            proc.write(part)
        got = b""
        while len(got) < 6:
            got += proc.read(timeout=10)
        stats = proc.stats
        assert stats.bytes_in == 6
        assert stats.bytes_out == 6
        assert stats.write_count >= 3
        assert stats.read_count >= 1
        proc.close_stdin()
        proc.wait(timeout=10)


def test_counts_in_stream() -> None:
    with netrunner.stream(["head", "-c", "300000", "/dev/zero"], chunk_size=1000) as s:
        n = sum(1 for _ in s)
    stats = s.result.stats
    assert stats.bytes_out == 300_000
    assert stats.read_count >= n >= 300


def test_duration_grows_while_running_and_is_fixed_after_exit() -> None:
    with netrunner.start(["cat"]) as proc:
        first = proc.stats
        assert first.returncode is None
        assert first.exit_status is None
        assert first.duration >= 0
        assert wait_until(lambda: proc.stats.duration > first.duration + 0.05, timeout=5)
        proc.close_stdin()
        proc.wait(timeout=10)
        final = proc.stats.duration
        assert final > first.duration
        time.sleep(0.1)  # a fixed wait can only hide a failure here, never cause one
        assert proc.stats.duration == final
        assert proc.stats.started_at == first.started_at


def test_duration_of_a_run() -> None:
    stats = netrunner.run(["sleep", "0.3"]).stats
    assert 0.25 <= stats.duration < 5


def test_cpu_user_for_a_cpu_burning_child() -> None:
    stats = netrunner.run(py(BURN)).stats
    assert stats.cpu_user > 0.1, stats
    assert stats.cpu_user < 30
    assert stats.cpu_system >= 0


def test_cpu_counts_descendants() -> None:
    cmd = ["sh", "-c", f"{py(BURN)[0]} -c '{BURN}'; true"]
    stats = netrunner.run(cmd).stats
    assert stats.cpu_user > 0.1, stats


def test_cpu_system() -> None:
    code = (
        "import os, time\nt = time.process_time()\n"
        "while time.process_time() - t < 0.3:\n    os.getppid(); os.stat('/')\n"
    )
    stats = netrunner.run(py(code)).stats
    assert stats.cpu_user + stats.cpu_system > 0.2
    assert stats.cpu_system > 0


def test_max_rss_in_bytes() -> None:
    stats = netrunner.run(py("b = b'x' * (100 * 1024 * 1024); print(len(b))")).stats
    assert stats.max_rss >= 90 * 1024 * 1024, stats.max_rss
    assert stats.max_rss < 4 * 1024**3, stats.max_rss


def test_max_rss_of_small_child_is_small() -> None:
    stats = netrunner.run(["true"]).stats
    assert 0 < stats.max_rss < 64 * 1024 * 1024, stats.max_rss


def test_peak_memory_none_without_cgroup() -> None:
    assert netrunner.run(["true"]).stats.peak_memory is None
    with netrunner.start(["true"]) as proc:
        proc.wait(timeout=10)
        assert proc.stats.peak_memory is None


def test_stats_frozen() -> None:
    stats = netrunner.run(["true"]).stats
    for name in FIELDS:
        with pytest.raises((AttributeError, dataclasses.FrozenInstanceError)):
            setattr(stats, name, 1)


def test_stats_on_signal_death() -> None:
    stats = netrunner.run(["sh", "-c", "kill -KILL $$"]).stats
    assert stats.returncode == -9
    assert stats.exit_status == 137


def test_stats_of_timeout() -> None:
    with pytest.raises(netrunner.Timeout) as ei:
        netrunner.run(["sh", "-c", "echo abc; exec sleep 100"], timeout=0.3)
    stats = ei.value.stats
    assert isinstance(stats, netrunner.Stats)
    assert stats.bytes_out == 4
    assert stats.duration >= 0.25


def test_process_stats_while_running_have_no_exit_fields() -> None:
    with netrunner.start(py("import sys; print('ready', flush=True); sys.stdin.read()")) as proc:
        assert LineReader(proc).readline() == b"ready\n"
        stats = proc.stats
        assert stats.returncode is None
        assert stats.exit_status is None
        assert stats.peak_memory is None
        proc.close_stdin()
        proc.wait(timeout=10)
        assert proc.stats.cpu_user is not None
        assert proc.stats.max_rss is not None
