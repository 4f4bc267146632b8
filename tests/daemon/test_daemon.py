"""SPEC section 12: ``netrunner.Daemon`` (sync API) -- restart policies, backoff,
giving up, output draining, callbacks, stdin, stop, the context manager and
option validation.

Each daemon's command is either ``plan_child.py`` (every run logs its start and
end with a CLOCK_MONOTONIC timestamp and then does what the plan says for its
run number) or a small tree whose members record their pids. Everything runs
under the autouse ``marker`` fixture, so a run that survives its test fails it."""

from __future__ import annotations

import logging
import os
import pathlib
import signal
import stat
import threading
import time
import uuid
from typing import Any

import pytest
from daemon_helpers import (
    IGNORE_TERM,
    OverlapMonitor,
    RunLog,
    pid_alive,
    plan_cmd,
    pys,
    settle,
    still_alive,
    tree_cmd,
    tree_pids,
    wait_until,
)

import netrunner

LOGGER = "netrunner.daemon"


@pytest.fixture
def runlog(tmp_path: pathlib.Path) -> RunLog:
    return RunLog(tmp_path / "runs.log")


def daemon_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER or r.name.startswith(LOGGER + ".")]


def mentions(record: logging.LogRecord, text: str) -> bool:
    """``text`` is in the record's message or is the value of one of its attributes."""
    if text in record.getMessage():
        return True
    return any(value == text for value in vars(record).values() if isinstance(value, str))


# --------------------------------------------------------------- restart policies


def test_failing_run_is_restarted_with_doubling_delays_then_gives_up(runlog: RunLog) -> None:
    d = netrunner.Daemon(plan_cmd(runlog.path, "exit:1"), backoff=(0.1, 1.0), max_restarts=6)
    try:
        d.start()
        assert wait_until(lambda: d.failed, timeout=30), f"never gave up: {runlog.lines()}"
        # 1 run + 6 restarts; the 7th failure is one restart too many
        assert runlog.runs() == 7, runlog.lines()
        assert d.restarts == 6
        assert d.failed is True
        assert d.alive is False
        assert d.pid is None
        assert d.stats.returncode == 1
        assert still_alive([s.pid for s in runlog.starts()]) == []
        gaps = runlog.gaps()
        expected = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]  # doubling from 0.1, capped at 1.0
        assert len(gaps) == len(expected)
        for gap, want in zip(gaps, expected, strict=True):
            # never shorter than the delay; longer only by the machine's noise
            assert want * 0.9 <= gap <= want + 0.7, f"gaps {gaps}, expected about {expected}"
        assert gaps[5] < 2.0, f"the delay is not capped at 1.0: {gaps}"
        runlog.assert_no_new_run(within=0.5)
    finally:
        d.stop()
    assert d.failed is True  # stop() after giving up does not clear it


def test_always_restarts_after_exit_0(runlog: RunLog) -> None:
    d = netrunner.Daemon(plan_cmd(runlog.path, "exit:0"), restart="always", backoff=(0.01, 0.02), max_restarts=1000)
    with d:
        runlog.wait_runs(4)
        assert d.failed is False
        assert d.restarts >= 3
    runs = runlog.runs()
    assert d.failed is False
    assert d.alive is False
    assert d.pid is None
    runlog.assert_no_new_run(within=0.3)
    assert runlog.runs() == runs


def test_on_failure_does_not_restart_after_exit_0(runlog: RunLog) -> None:
    exits: list[Any] = []
    with netrunner.Daemon(plan_cmd(runlog.path, "exit:0"), backoff=(0.01, 0.01), on_exit=exits.append) as d:
        assert d.failed is False
        assert wait_until(lambda: not d.alive and exits, timeout=15)
        runlog.assert_no_new_run(within=0.5)
        assert runlog.runs() == 1
        assert d.restarts == 0
        assert d.failed is False  # stopped for good, but with status 0
        assert d.pid is None
        assert [e.returncode for e in exits] == [0]


def test_on_failure_restarts_after_a_signal_death(runlog: RunLog) -> None:
    exits: list[Any] = []
    with netrunner.Daemon(plan_cmd(runlog.path, "kill,hang"), backoff=(0.01, 0.01), on_exit=exits.append) as d:
        starts = runlog.wait_runs(2)
        assert wait_until(lambda: d.pid == starts[1].pid, timeout=10)
        assert d.restarts == 1
        assert d.failed is False
        assert [e.returncode for e in exits] == [-signal.SIGKILL]
        assert exits[0].signal == signal.SIGKILL
        assert exits[0].exit_status == 128 + signal.SIGKILL


@pytest.mark.parametrize("policy", ["never", "no"])
def test_never_does_not_restart_and_fails_only_on_a_non_zero_exit(policy: str, tmp_path: pathlib.Path) -> None:
    for code, failed in ((3, True), (0, False)):
        runlog = RunLog(tmp_path / f"runs-{code}.log")
        exits: list[Any] = []
        d = netrunner.Daemon(plan_cmd(runlog.path, f"exit:{code}"), restart=policy, backoff=(0.01, 0.01),
                             on_exit=exits.append)
        with d:
            assert wait_until(lambda: not d.alive and exits, timeout=15), runlog.lines()  # noqa: B023
            assert wait_until(lambda: d.failed is failed, timeout=5), (code, d.failed)  # noqa: B023
            runlog.assert_no_new_run(within=0.4)
            assert runlog.runs() == 1
            assert d.restarts == 0
            assert d.stats.returncode == code
            assert [e.returncode for e in exits] == [code]
        assert d.failed is failed


def test_a_long_run_resets_the_restart_count(runlog: RunLog) -> None:
    # max 2 restarts inside 1 s: runs 0 and 1 fail at once (2 restarts), run 2
    # lasts 1.6 s (> the window: the count starts again), runs 3 and 4 fail at
    # once (2 restarts), the failure of run 4 is one too many.
    d = netrunner.Daemon(
        plan_cmd(runlog.path, "exit:1,exit:1,sleep:1.6:1,exit:1"),
        max_restarts=2, restart_window=1.0, backoff=(0.05, 0.05),
    )
    with d:
        assert wait_until(lambda: d.failed, timeout=20), runlog.lines()
        runlog.assert_no_new_run(within=0.3)
        assert runlog.runs() == 5, runlog.lines()
        assert d.restarts == 4
        assert d.pid is None


def test_without_a_long_run_the_count_is_not_reset(runlog: RunLog) -> None:
    # control for the test above: the same burst with a 0.2 s run gives up at run 2
    d = netrunner.Daemon(
        plan_cmd(runlog.path, "exit:1,exit:1,sleep:0.2:1,exit:1"),
        max_restarts=2, restart_window=10.0, backoff=(0.05, 0.05),
    )
    with d:
        assert wait_until(lambda: d.failed, timeout=20), runlog.lines()
        runlog.assert_no_new_run(within=0.3)
        assert runlog.runs() == 3, runlog.lines()
        assert d.restarts == 2


def test_a_long_run_resets_the_backoff(runlog: RunLog) -> None:
    d = netrunner.Daemon(
        plan_cmd(runlog.path, "exit:1,exit:1,exit:1,sleep:1.5:1,hang"),
        backoff=(0.2, 10.0), restart_window=1.0, max_restarts=10,
    )
    with d:
        runlog.wait_runs(5, timeout=20)
        gaps = runlog.gaps()
        assert len(gaps) == 4, runlog.lines()
        for gap, want in zip(gaps[:3], (0.2, 0.4, 0.8), strict=True):
            assert want * 0.9 <= gap <= want + 0.7, gaps
        # after a run longer than the window the delay is the first one again, not 1.6
        assert 0.18 <= gaps[3] < 0.9, gaps
        assert d.failed is False


def test_a_restart_never_overlaps_two_runs(tmp_path: pathlib.Path) -> None:
    # Each run leaves a background child that ignores SIGTERM: the run is over
    # only once that child has been SIGKILLed (kill_timeout later). A restart
    # that started the next run before would show two process groups at once.
    tag = f"run-{uuid.uuid4().hex}"
    armed = tmp_path / "armed"
    armed.mkdir()
    leftover = " ".join(["'" + a.replace("'", "'\"'\"'") + "'" for a in pys(IGNORE_TERM)])
    script = (
        f'{leftover} "$1/$$" "$0" > /dev/null & '
        'while [ ! -s "$1/$$" ]; do sleep 0.01; done; exit 1'
    )
    cmd = ["sh", "-c", script, tag, str(armed)]
    with OverlapMonitor(tag) as monitor:
        with netrunner.Daemon(cmd, backoff=(0.01, 0.01), max_restarts=100, kill_timeout=0.3) as d:
            assert wait_until(lambda: len(os.listdir(armed)) >= 6, timeout=30)
            assert d.restarts >= 5
    assert monitor.scans > 10
    assert len(monitor.groups) >= 6, "the monitor did not see the runs"
    assert monitor.overlaps == [], f"two runs alive at once: {monitor.overlaps}"


def test_control_the_overlap_monitor_sees_two_runs_at_once() -> None:
    # proves the monitor of the test above can fail: two commands, two groups, alive together
    tag = f"run-{uuid.uuid4().hex}"
    cmd = ["sh", "-c", "sleep 1000", tag]
    with OverlapMonitor(tag) as monitor, netrunner.start(cmd) as a, netrunner.start(cmd) as b:
        assert wait_until(lambda: monitor.overlaps, timeout=10)
        a.kill()
        b.kill()
    assert {a.pid, b.pid} <= monitor.groups


# --------------------------------------------------------------- pid, stats, on_exit


def test_pid_alive_and_stats_follow_the_current_run(runlog: RunLog) -> None:
    d = netrunner.Daemon(plan_cmd(runlog.path, "go:1"), backoff=(0.01, 0.01), max_restarts=10)
    assert d.pid is None
    assert d.alive is False
    d.start()
    try:
        seen: list[int] = []
        for n in range(3):
            start = runlog.wait_runs(n + 1)[n]
            assert wait_until(lambda: d.pid == start.pid, timeout=10), (d.pid, start)  # noqa: B023
            assert d.alive is True
            assert pid_alive(d.pid)
            assert d.restarts == n
            assert d.stats.returncode is None
            seen.append(d.pid)
            (runlog.path.parent / f"{runlog.path.name}.go{n}").touch()
        assert len(set(seen)) == 3
        assert still_alive(seen[:2]) == []
    finally:
        d.stop()
    assert d.alive is False
    assert d.pid is None
    assert d.failed is False
    assert still_alive(seen) == []


def test_on_exit_receives_each_run_in_order(runlog: RunLog) -> None:
    cmd = plan_cmd(runlog.path, "exit:3,kill,exit:0")
    exits: list[Any] = []
    with netrunner.Daemon(cmd, backoff=(0.01, 0.01), on_exit=exits.append) as d:
        assert wait_until(lambda: len(exits) == 3 and not d.alive, timeout=15), (exits, runlog.lines())
        runlog.assert_no_new_run(within=0.3)
        assert [e.returncode for e in exits] == [3, -signal.SIGKILL, 0]
        assert [e.exit_status for e in exits] == [3, 128 + signal.SIGKILL, 0]
        assert [e.signal for e in exits] == [None, signal.SIGKILL, None]
        assert all(tuple(e.args) == tuple(cmd) for e in exits)
        assert [e.stats.returncode for e in exits] == [3, -signal.SIGKILL, 0]
        assert all(e.stats.duration >= 0 for e in exits)
        assert d.restarts == 2
        assert d.failed is False
        assert d.stats.returncode == 0


# --------------------------------------------------------------- output


def test_callable_on_output_receives_every_byte_in_order() -> None:
    n = 60_000
    code = (
        "import sys\n"
        f"for i in range(0, {n}, 1000):\n"
        "    sys.stdout.write(''.join('%07d\\n' % j for j in range(i, i + 1000)))\n"
        "    sys.stdout.flush()\n"
    )
    expected = b"".join(b"%07d\n" % j for j in range(n))
    chunks: list[Any] = []
    with netrunner.Daemon(pys(code), restart="never", on_output=chunks.append) as d:
        assert wait_until(lambda: sum(len(c) for c in chunks) >= len(expected) and not d.alive, timeout=30)
        assert all(isinstance(c, bytes) for c in chunks)
        assert b"".join(chunks) == expected
        assert d.failed is False


def test_text_on_output_receives_str_with_characters_whole() -> None:
    # a 2-byte character split across two writes (and two reads)
    code = (
        "import os, time\n"
        "for _ in range(3):\n"
        "    os.write(1, 'caf'.encode() + b'\\xc3')\n"
        "    time.sleep(0.05)\n"
        "    os.write(1, b'\\xa9 ')\n"
    )
    chunks: list[Any] = []
    with netrunner.Daemon(pys(code), restart="never", text=True, on_output=chunks.append) as d:
        assert wait_until(lambda: "".join(chunks) == "café " * 3 and not d.alive, timeout=15), chunks
        assert all(isinstance(c, str) for c in chunks)


def test_discarded_output_of_100_mb_never_stalls(tmp_path: pathlib.Path) -> None:
    progress = tmp_path / "progress"
    total_mb = 100
    code = (
        "import os, sys\n"
        "block = b'x' * (1 << 20)\n"
        f"for i in range(1, {total_mb} + 1):\n"
        "    sys.stdout.buffer.write(block)\n"
        "    sys.stdout.buffer.flush()\n"
        "    if i % 5 == 0:\n"
        "        fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT)\n"
        "        os.write(fd, b'%d\\n' % i)\n"
        "        os.close(fd)\n"
        "import time; time.sleep(1000)\n"
    )

    def written() -> int:
        try:
            lines = progress.read_text().split("\n")[:-1]
        except FileNotFoundError:
            return 0
        return int(lines[-1]) if lines else 0

    with netrunner.Daemon(pys(code, str(progress))) as d:
        deadline = time.monotonic() + 60
        last, last_change = 0, time.monotonic()
        while (now := written()) < total_mb:
            t = time.monotonic()
            if now > last:
                last, last_change = now, t
            assert t - last_change < 10, f"no progress for 10 s at {last} MB"
            assert t < deadline, f"only {last} MB in 60 s"
            time.sleep(0.05)
        assert d.alive
        assert d.stats.bytes_out is None or d.stats.bytes_out >= total_mb << 20


@pytest.mark.parametrize("stderr", [None, "capture"])
def test_stderr_is_drained_too(tmp_path: pathlib.Path, stderr: str | None) -> None:
    done = tmp_path / "done"
    code = (
        "import os, sys\n"
        "for _ in range(16):\n"
        "    sys.stderr.buffer.write(b'e' * (1 << 18)); sys.stderr.buffer.flush()\n"
        "    sys.stdout.buffer.write(b'o' * (1 << 18)); sys.stdout.buffer.flush()\n"
        "open(sys.argv[1], 'w').close()\n"
        "import time; time.sleep(1000)\n"
    )
    options = {} if stderr is None else {"stderr": stderr}
    with netrunner.Daemon(pys(code, str(done)), **options) as d:
        assert wait_until(done.exists, timeout=30), "the daemon blocked on a full pipe"
        assert d.alive


def test_log_output_goes_to_the_netrunner_daemon_logger_with_the_name(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    code = "print('alpha-line'); print('beta-line'); print('gamma-line', flush=True)"
    with netrunner.Daemon(pys(code), restart="never", on_output="log", name="web-1") as d:
        assert d.name == "web-1"
        lines = ("alpha-line", "beta-line", "gamma-line")
        assert wait_until(
            lambda: all(any(ln in r.getMessage() for r in daemon_records(caplog)) for ln in lines) and not d.alive,
            timeout=15,
        ), [r.getMessage() for r in daemon_records(caplog)]
    for line in lines:
        records = [r for r in daemon_records(caplog) if line in r.getMessage()]
        assert len(records) == 1, f"{line!r} logged {len(records)} times"
        (record,) = records
        assert mentions(record, "web-1"), f"the record of {line!r} does not carry the daemon's name"
        assert sum(other in record.getMessage() for other in lines) == 1, "lines are logged one per record"


def test_log_output_logs_a_long_line_as_one_record(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    # a 300 KB line arrives in several reads; it is still one line, one record
    code = "import sys; sys.stdout.write('L' * 300000 + '-end\\n' + 'short-line\\n'); sys.stdout.flush()"
    with netrunner.Daemon(pys(code), restart="never", on_output="log", name="longline") as d:
        assert wait_until(lambda: any("short-line" in r.getMessage() for r in daemon_records(caplog)), timeout=15)
        assert wait_until(lambda: not d.alive, timeout=15)
    long_records = [r for r in daemon_records(caplog) if "LLLL" in r.getMessage()]
    assert len(long_records) == 1, f"the long line was logged in {len(long_records)} records"
    assert "L" * 300000 + "-end" in long_records[0].getMessage()


def test_name_defaults_to_argv0(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    d = netrunner.Daemon(["sh", "-c", "echo delta-line"], restart="never", on_output="log")
    assert d.name == "sh"
    with d:
        assert wait_until(lambda: any("delta-line" in r.getMessage() for r in daemon_records(caplog)), timeout=15)
    (record,) = [r for r in daemon_records(caplog) if "delta-line" in r.getMessage()]
    assert mentions(record, "sh")
    assert netrunner.Daemon(netrunner.Command("echo", ["x"])).name == "echo"


def test_raising_on_output_is_logged_and_draining_goes_on(caplog: pytest.LogCaptureFixture,
                                                          tmp_path: pathlib.Path) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    done = tmp_path / "done"
    code = (
        "import sys\n"
        "for i in range(64):\n"
        "    sys.stdout.buffer.write(b'%04d' % i + b'.' * 16379 + b'\\n'); sys.stdout.buffer.flush()\n"
        "open(sys.argv[1], 'w').close()\n"
    )
    expected = b"".join(b"%04d" % i + b"." * 16379 + b"\n" for i in range(64))
    received: list[bytes] = []

    class Boom(Exception):
        pass

    def on_output(data: bytes) -> None:
        received.append(data)
        raise Boom("on_output-boom")

    with netrunner.Daemon(pys(code, str(done)), restart="never", on_output=on_output) as d:
        assert wait_until(done.exists, timeout=30), "draining stopped after on_output raised"
        assert wait_until(lambda: b"".join(received) == expected and not d.alive, timeout=15), len(b"".join(received))
        assert d.failed is False
    assert any(_about(r, Boom, "on_output-boom") for r in daemon_records(caplog)), caplog.records


def test_raising_on_exit_is_logged_and_restarts_go_on(caplog: pytest.LogCaptureFixture, runlog: RunLog) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    calls: list[int] = []

    class Boom(Exception):
        pass

    def on_exit(info: Any) -> None:
        calls.append(info.returncode)
        raise Boom("on_exit-boom")

    with netrunner.Daemon(plan_cmd(runlog.path, "exit:1"), backoff=(0.01, 0.01), max_restarts=2,
                          on_exit=on_exit) as d:
        assert wait_until(lambda: d.failed, timeout=15), runlog.lines()
        assert runlog.runs() == 3
        assert wait_until(lambda: len(calls) == 3, timeout=5)
        assert calls == [1, 1, 1]
    assert sum(_about(r, Boom, "on_exit-boom") for r in daemon_records(caplog)) >= 3


def _about(record: logging.LogRecord, exc_type: type, text: str) -> bool:
    if record.exc_info and isinstance(record.exc_info[1], exc_type):
        return True
    return text in record.getMessage() or text in (record.exc_text or "")


# --------------------------------------------------------------- stdin


def test_write_reaches_the_current_run(runlog: RunLog) -> None:
    with netrunner.Daemon(plan_cmd(runlog.path, "read:1"), backoff=(0.01, 0.01), max_restarts=10) as d:
        # bytes, str, and a line in two writes: each run reads one line and exits 1
        writes: list[list[bytes | str]] = [[b"first\n"], ["second\n"], [b"thi", b"rd\n"]]
        for n, pieces in enumerate(writes):
            start = runlog.wait_runs(n + 1)[n]
            assert wait_until(lambda: d.pid == start.pid, timeout=10)  # noqa: B023
            for piece in pieces:
                d.write(piece)
            assert wait_until(lambda: len(runlog.got()) == n + 1, timeout=10), runlog.lines()  # noqa: B023
        assert runlog.got() == [(0, "first"), (1, "second"), (2, "third")]


def test_write_is_complete_and_in_order(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "out"
    data = os.urandom(3 << 20)
    with netrunner.Daemon(["sh", "-c", 'exec cat > "$0"', str(out)]) as d:
        for i in range(0, len(data), 1 << 19):
            d.write(data[i : i + (1 << 19)])
        assert wait_until(lambda: out.exists() and out.stat().st_size >= len(data), timeout=30)
        assert out.read_bytes() == data
        assert d.alive


# --------------------------------------------------------------- stop


def test_stop_leaves_no_survivors(tmp_path: pathlib.Path) -> None:
    pidfile = tmp_path / "pids"
    d = netrunner.Daemon(tree_cmd(pidfile), restart="always", backoff=(0.01, 0.01), kill_timeout=0.5)
    d.start()
    pids = tree_pids(pidfile)
    assert d.pid in pids
    t0 = time.monotonic()
    d.stop()
    elapsed = time.monotonic() - t0
    assert still_alive(pids) == [], "stop() returned with members of the tree alive"
    assert 0.4 <= elapsed < 4.0, f"stop took {elapsed:.2f} s with kill_timeout=0.5 and a SIGTERM-ignoring child"
    assert d.alive is False
    assert d.pid is None
    assert d.failed is False
    settle(0.5)
    assert len(pidfile.read_text().split()) == len(pids), "the daemon restarted after stop()"


def test_stop_kill_timeout_overrides(tmp_path: pathlib.Path) -> None:
    pidfile = tmp_path / "pids"
    d = netrunner.Daemon(tree_cmd(pidfile), kill_timeout=60)
    d.start()
    pids = tree_pids(pidfile)
    t0 = time.monotonic()
    d.stop(kill_timeout=0.2)
    assert time.monotonic() - t0 < 5.0
    assert still_alive(pids) == []
    with pytest.raises(ValueError, match="kill_timeout"):
        d.stop(kill_timeout=0)


def test_stop_is_idempotent(runlog: RunLog) -> None:
    d = netrunner.Daemon(plan_cmd(runlog.path, "hang"))
    d.stop()  # never started: nothing to do
    d.start()
    (start,) = runlog.wait_runs(1)
    d.stop()
    for _ in range(2):
        t0 = time.monotonic()
        d.stop()
        assert time.monotonic() - t0 < 0.5
    assert still_alive([start.pid]) == []
    assert d.alive is False
    assert d.failed is False


def test_stop_returns_at_once_during_backoff(runlog: RunLog) -> None:
    exited = threading.Event()
    d = netrunner.Daemon(plan_cmd(runlog.path, "exit:1,hang"), backoff=(5.0, 5.0),
                         on_exit=lambda info: exited.set())
    d.start()
    assert exited.wait(15)
    settle(0.2)  # the daemon is now sleeping its 5 s
    t0 = time.monotonic()
    d.stop()
    elapsed = time.monotonic() - t0
    assert elapsed < 0.5, f"stop() waited {elapsed:.2f} s for the backoff"
    assert d.failed is False
    assert d.alive is False
    assert d.pid is None
    runlog.assert_no_new_run(within=1.0)


def test_restarts_counts_only_restarts_that_happened(runlog: RunLog) -> None:
    # a restart cancelled by stop() during its backoff never happened: one run, no restart
    exited = threading.Event()
    d = netrunner.Daemon(plan_cmd(runlog.path, "exit:1,hang"), backoff=(5.0, 5.0),
                         on_exit=lambda info: exited.set())
    d.start()
    assert exited.wait(15)
    settle(0.2)
    d.stop()
    assert runlog.runs() == 1
    assert d.restarts == 0, f"restarts is {d.restarts} after a single run"


def test_stop_called_from_on_exit_stops_without_a_deadlock(runlog: RunLog) -> None:
    box: list[Any] = []
    calls: list[int] = []

    def on_exit(info: Any) -> None:
        calls.append(info.returncode)
        box[0].stop()

    d = netrunner.Daemon(plan_cmd(runlog.path, "exit:1,hang"), backoff=(0.05, 0.05), on_exit=on_exit)
    box.append(d)
    d.start()
    try:
        assert wait_until(lambda: calls and not d.alive, timeout=15)
        runlog.assert_no_new_run(within=0.5)
        assert runlog.runs() == 1
        assert d.failed is False
        assert calls == [1]
    finally:
        t0 = time.monotonic()
        d.stop()
        assert time.monotonic() - t0 < 5


def test_stop_while_a_write_is_blocked(runlog: RunLog) -> None:
    # the run never reads its stdin: a big write blocks until stop() ends the run
    d = netrunner.Daemon(plan_cmd(runlog.path, "hang"), kill_timeout=0.5)
    d.start()
    outcome: list[BaseException | None] = []
    (start,) = runlog.wait_runs(1)
    assert wait_until(lambda: d.pid == start.pid, timeout=10)

    def writer() -> None:
        try:
            d.write(b"w" * (8 << 20))
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    t = threading.Thread(target=writer)
    t.start()
    try:
        assert not wait_until(lambda: outcome, timeout=0.3), "write() returned although nothing reads"
        t0 = time.monotonic()
        d.stop()
        assert time.monotonic() - t0 < 5
        t.join(10)
        assert not t.is_alive(), "write() is still blocked after stop()"
        assert len(outcome) == 1
        assert isinstance(outcome[0], BrokenPipeError), outcome
        assert still_alive([start.pid]) == []
    finally:
        d.stop()
        t.join(10)


def test_a_restart_that_cannot_exec_fails_the_daemon_without_retrying(tmp_path: pathlib.Path) -> None:
    prog = tmp_path / "prog"
    count = tmp_path / "count"
    body = '#!/bin/sh\necho run >> "$1"\nrm -f -- "$0"\nexit 1\n'
    prog.write_text(body)
    prog.chmod(0o755)
    with netrunner.Daemon([str(prog), str(count)], backoff=(0.05, 0.05)) as d:
        assert wait_until(lambda: d.failed, timeout=15), "the failed restart was not reported"
        assert d.alive is False
        assert d.pid is None
        # the program is back: a retry would run it
        prog.write_text(body)
        prog.chmod(0o755)
        settle(0.5)
        assert count.read_text() == "run\n", "an exec failure was retried"


def test_stop_while_restarting_quickly_leaves_nothing(runlog: RunLog) -> None:
    d = netrunner.Daemon(plan_cmd(runlog.path, "exit:0"), restart="always", backoff=(0.001, 0.001),
                         max_restarts=10_000)
    d.start()
    runlog.wait_runs(10)
    d.stop()
    runs = runlog.starts()
    assert still_alive([s.pid for s in runs]) == []
    settle(0.3)
    assert runlog.runs() == len(runs)


# --------------------------------------------------------------- exec errors


def test_missing_program_raises_at_start_and_is_never_retried(tmp_path: pathlib.Path) -> None:
    prog = tmp_path / "prog"
    ran = tmp_path / "ran"
    exits: list[Any] = []
    d = netrunner.Daemon([str(prog), str(ran)], backoff=(0.01, 0.01), on_exit=exits.append)
    with pytest.raises(FileNotFoundError) as info:
        d.start()
    assert isinstance(info.value, OSError)
    assert info.value.filename == str(prog)
    assert d.restarts == 0
    assert d.alive is False
    assert d.pid is None
    # the program appears: a retry would run it now
    prog.write_text('#!/bin/sh\ntouch "$1"\n')
    prog.chmod(0o755)
    settle(0.5)
    assert not ran.exists(), "the daemon retried a start that failed"
    assert exits == []
    assert d.restarts == 0
    d.stop()


def test_program_not_on_path_raises_file_not_found() -> None:
    with pytest.raises(FileNotFoundError) as info:
        netrunner.Daemon(["no-such-program-netrunner-xyz"]).start()
    assert info.value.filename == "no-such-program-netrunner-xyz"


def test_not_executable_raises_permission_error(tmp_path: pathlib.Path) -> None:
    prog = tmp_path / "prog"
    prog.write_text("#!/bin/sh\nexit 0\n")
    prog.chmod(stat.S_IRUSR | stat.S_IWUSR)
    d = netrunner.Daemon([str(prog)])
    with pytest.raises(PermissionError):
        d.start()
    assert d.restarts == 0
    assert d.alive is False


def test_missing_program_raises_when_entering_the_with_block() -> None:
    with pytest.raises(FileNotFoundError), netrunner.Daemon(["no-such-program-netrunner-xyz"]):
        raise AssertionError("the block ran although the program is missing")


# --------------------------------------------------------------- context manager, options


def test_context_manager_starts_and_stops(runlog: RunLog) -> None:
    d = netrunner.Daemon(plan_cmd(runlog.path, "hang"))
    with d as entered:
        assert entered is d
        (start,) = runlog.wait_runs(1)
        assert wait_until(lambda: d.pid == start.pid, timeout=10)
        assert d.alive is True
    assert still_alive([start.pid]) == []
    assert d.alive is False
    assert d.pid is None
    assert d.failed is False


def test_entering_a_started_daemon_does_not_start_it_again(runlog: RunLog) -> None:
    d = netrunner.Daemon(plan_cmd(runlog.path, "hang"))
    d.start()
    try:
        (start,) = runlog.wait_runs(1)
        with d:
            assert wait_until(lambda: d.pid == start.pid, timeout=10)
            runlog.assert_no_new_run(within=0.3)
    finally:
        d.stop()
    assert still_alive([start.pid]) == []
    assert runlog.runs() == 1


def test_exception_in_the_with_block_stops_the_tree(tmp_path: pathlib.Path) -> None:
    pidfile = tmp_path / "pids"
    pids: set[int] = set()

    def body() -> None:
        with netrunner.Daemon(tree_cmd(pidfile), kill_timeout=0.5):
            pids.update(tree_pids(pidfile))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        body()
    assert len(pids) == 4
    assert still_alive(pids) == []


def test_start_options_are_passed_to_each_run(tmp_path: pathlib.Path, marker_env: dict[str, str]) -> None:
    code = "import os; print(os.getcwd(), os.environ.get('DAEMON_OPT'), flush=True)"
    chunks: list[str] = []
    env = dict(marker_env, DAEMON_OPT="yes")
    with netrunner.Daemon(pys(code), env=env, cwd=tmp_path, text=True, restart="never",
                          on_output=chunks.append) as d:
        assert wait_until(lambda: "\n" in "".join(chunks) and not d.alive, timeout=15)
    assert "".join(chunks) == f"{tmp_path} yes\n"


def test_command_template_is_accepted(runlog: RunLog) -> None:
    executable, *args = plan_cmd(runlog.path, "unused")[:-1]
    template = netrunner.Command(executable, args)
    with netrunner.Daemon(template("hang")) as d:
        (start,) = runlog.wait_runs(1)
        assert wait_until(lambda: d.pid == start.pid, timeout=10)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("restart", "sometimes"),
        ("restart", 1),
        ("restart", None),
        ("max_restarts", -1),
        ("max_restarts", "5"),
        ("max_restarts", 1.5),
        ("restart_window", 0),
        ("restart_window", -1.0),
        ("restart_window", "60"),
        ("backoff", 0.1),
        ("backoff", (0.1,)),
        ("backoff", (0.1, 1.0, 2.0)),
        ("backoff", (-0.1, 1.0)),
        ("backoff", (2.0, 1.0)),
        ("backoff", ("0.1", 1.0)),
        ("on_output", "print"),
        ("on_output", 42),
        ("on_exit", 42),
        ("kill_timeout", 0),
    ],
)
def test_bad_option_values_name_the_option(option: str, value: Any) -> None:
    with pytest.raises((TypeError, ValueError), match=option):
        netrunner.Daemon(["cat"], **{option: value})


@pytest.mark.parametrize("option", ["input", "timeout", "check", "max_output_size"])
def test_options_that_do_not_apply_are_type_errors(option: str) -> None:
    with pytest.raises(TypeError, match=option):
        netrunner.Daemon(["cat"], **{option: b"x" if option == "input" else 1})


def test_unknown_option_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="no_such_option"):
        netrunner.Daemon(["cat"], no_such_option=1)


def test_bad_command_is_refused_at_construction() -> None:
    with pytest.raises(netrunner.InvalidCommand):
        netrunner.Daemon("cat")  # type: ignore[arg-type]
    with pytest.raises(netrunner.InvalidCommand):
        netrunner.Daemon([])


@pytest.mark.parametrize("policy", ["never", "no", "on-failure", "always"])
def test_every_documented_restart_policy_is_accepted(policy: str) -> None:
    netrunner.Daemon(["cat"], restart=policy, max_restarts=0, restart_window=0.5, backoff=(0.5, 0.5))
