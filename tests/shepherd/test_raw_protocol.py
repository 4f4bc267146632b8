"""The shepherd, driven with raw records over its control socket."""

from __future__ import annotations

import errno
import os
import signal
import socket
import struct
import sys
import time
from pathlib import Path

import pytest
from _raw import close_all, events, idle_shepherd, reap, rights, spawn, started, std_fds
from conftest import pids_with_marker, wait_until

from netrunner._core import codec, wire

SH = b"/bin/sh"


def read_line(fd: int) -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(fd, 100)
        if not chunk:
            break
        line += chunk
    return line


def run_to_end(argv: list[bytes], **kw: object) -> list[object]:
    pid, sock, ours = spawn(argv, **kw)  # type: ignore[arg-type]
    try:
        got = events(sock)
    finally:
        sock.close()
        close_all(ours)
    reap(pid)
    return got


def test_true_reports_started_then_exited() -> None:
    got = run_to_end([b"/bin/true"])
    assert isinstance(got[0], codec.Started)
    assert got[0].pid > 0
    assert isinstance(got[1], codec.Exited)
    assert got[1].status == 0
    assert got[2:] == [None]


def test_exit_code_and_signal_death() -> None:
    got = run_to_end([SH, b"-c", b"exit 3"])
    assert isinstance(got[1], codec.Exited)
    assert os.WEXITSTATUS(got[1].status) == 3
    pid, sock, ours = spawn([b"/bin/sleep", b"100"])
    try:
        started(sock)
        sock.send(codec.encode_signal(signal.SIGKILL))
        rest = events(sock)
        assert isinstance(rest[0], codec.Exited) and os.WTERMSIG(rest[0].status) == signal.SIGKILL, rest
    finally:
        sock.close()
        close_all(ours)
    reap(pid)


@pytest.mark.parametrize(
    ("path", "error"),
    [(b"/nonexistent/prog", errno.ENOENT), (b"plain-file", errno.EACCES), (b"/tmp", errno.EACCES)],
)
def test_exec_failures(path: bytes, error: int, tmp_path: Path) -> None:
    if path == b"plain-file":
        plain = tmp_path / "plain"
        plain.write_text("not executable\n")
        plain.chmod(0o644)
        path = os.fsencode(plain)
    got = run_to_end([path])
    assert got == [codec.ExecFailed(error, wire.STAGE_EXEC), None]


def test_enoexec_has_no_shell_fallback(tmp_path: Path) -> None:
    script = tmp_path / "garbage"
    script.write_bytes(b"\x7fELF not really\n")
    script.chmod(0o755)
    assert run_to_end([os.fsencode(script)]) == [codec.ExecFailed(errno.ENOEXEC, wire.STAGE_EXEC), None]


def test_missing_cwd_is_a_chdir_failure() -> None:
    got = run_to_end([b"/bin/true"], cwd=b"/nonexistent/dir")
    assert got == [codec.ExecFailed(errno.ENOENT, wire.STAGE_CHDIR), None]


def test_path_search_reports_the_first_real_error_and_goes_on() -> None:
    # a directory (EACCES) first, then the real program: it runs
    got = run_to_end([b"true"], paths=[b"/tmp/true-is-not-here", b"/tmp", b"/bin/true"])
    assert isinstance(got[0], codec.Started)
    # nothing runnable: the first error that is not ENOENT wins
    got = run_to_end([b"true"], paths=[b"/nonexistent/true", b"/tmp"])
    assert got == [codec.ExecFailed(errno.EACCES, wire.STAGE_EXEC), None]


def test_leftovers_are_stopped_when_the_command_exits() -> None:
    t0 = time.monotonic()
    got = run_to_end([SH, b"-c", b"sleep 100 & setsid sleep 100 & echo hi"])
    assert isinstance(got[1], codec.Exited)
    assert got[1].status == 0
    assert time.monotonic() - t0 < 3


def test_detach_leaves_descendants_running(marker: str) -> None:
    got = run_to_end([SH, b"-c", b"sleep 100 & echo hi"], detach=True)
    assert isinstance(got[1], codec.Exited)
    # The sleep may still be in its execve, when /proc/<pid>/environ cannot
    # be read and the marker scan misses it: look until it shows.
    left = wait_until(lambda: pids_with_marker(marker), timeout=5)
    assert len(left) == 1, left  # the sleep
    for pid in left:
        os.kill(pid, signal.SIGKILL)


def test_stop_escalates_to_sigkill_after_kill_timeout() -> None:
    pid, sock, ours = spawn(
        [sys.executable.encode(), b"-c",
         b"import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
         b"print('ready', flush=True); time.sleep(100)"],
        kill_timeout=0.3,
    )
    try:
        started(sock)
        assert read_line(ours[1]) == b"ready\n"
        t0 = time.monotonic()
        sock.send(codec.encode_stop(None))
        rest = events(sock)
        elapsed = time.monotonic() - t0
        assert isinstance(rest[0], codec.Exited) and os.WTERMSIG(rest[0].status) == signal.SIGKILL, rest
        assert 0.25 < elapsed < 3, (elapsed, rest)
    finally:
        sock.close()
        close_all(ours)
    reap(pid)


def test_owner_hang_up_stops_the_tree(marker: str) -> None:
    pid, sock, ours = spawn([SH, b"-c", b"setsid sleep 100 & sleep 100 & echo ready; wait"])
    started(sock)
    assert read_line(ours[1]) == b"ready\n"
    # The sleeps may still be in their execve (unreadable environ): look until all show.
    assert wait_until(lambda: len(pids_with_marker(marker)) == 3, timeout=5), pids_with_marker(marker)
    sock.close()  # the owner is gone
    reap(pid)
    close_all(ours)
    assert wait_until(lambda: not pids_with_marker(marker))


def test_an_idle_shepherd_exits_on_hang_up() -> None:
    pid, sock = idle_shepherd()
    sock.close()
    reap(pid)


def test_big_spawn_request_in_parts() -> None:
    env = [b"X%d=" % i + b"v" * 1000 for i in range(300)]
    pid, sock, ours = spawn([SH, b"-c", b'printf %s "$X299" | wc -c'], env=env)
    try:
        got = events(sock)
        assert isinstance(got[1], codec.Exited)
        assert got[1].status == 0
        assert os.read(ours[1], 100).strip() == b"1000"
    finally:
        sock.close()
        close_all(ours)
    reap(pid)


def test_rusage_is_reported() -> None:
    busy = b"import time\nt=time.process_time()\nwhile time.process_time()-t<0.2: pass"
    got = run_to_end([sys.executable.encode(), b"-c", busy])
    exited = got[1]
    assert isinstance(exited, codec.Exited)
    assert exited.utime_us + exited.stime_us >= 150_000
    assert exited.maxrss_kb > 1000


def expect_error(sock: socket.socket, code: int) -> None:
    got = events(sock)
    assert got[0] == codec.ShepherdFault(code, 0), got
    assert got[-1] is None


@pytest.mark.parametrize(
    "record",
    [b"", b"\x99", b"\x12", b"\x12" + bytes(5), b"\x13\x00", bytes([0x10]) + bytes(10), b"\x20" + bytes(4)],
)
def test_malformed_first_record(record: bytes) -> None:
    pid, sock = idle_shepherd()
    try:
        if record:
            sock.send(record)
            expect_error(sock, wire.ERR_MALFORMED)
        else:  # an empty record on SOCK_SEQPACKET reads as end-of-file: the shepherd just exits
            sock.send(record)
    finally:
        sock.close()
    reap(pid, expect=wire.EXIT_PROTOCOL if record else wire.EXIT_OK)


def test_spawn_without_fds_is_malformed() -> None:
    pid, sock = idle_shepherd()
    [record] = codec.encode_spawn([b"/bin/true"], [], [b"/bin/true"], None, detach=False, kill_timeout=1)
    sock.send(record)
    expect_error(sock, wire.ERR_MALFORMED)
    sock.close()
    reap(pid, expect=wire.EXIT_PROTOCOL)


def test_counts_that_do_not_match_the_tail() -> None:
    pid, sock = idle_shepherd()
    theirs, ours = std_fds()
    head = wire.BY_NAME["C_SPAWN"].struct.pack(0x10, 0, 1000, 2, 0, 1)  # argc=2 but one string
    sock.sendmsg([head + b"/bin/true\0/bin/true\0"], rights(theirs))
    close_all(theirs)
    expect_error(sock, wire.ERR_MALFORMED)
    sock.close()
    close_all(ours)
    reap(pid, expect=wire.EXIT_PROTOCOL)


def test_a_second_spawn_is_unexpected_and_stops_the_tree(marker: str) -> None:
    pid, sock, ours = spawn([b"/bin/sleep", b"100"])
    started(sock)
    [record] = codec.encode_spawn([b"/bin/true"], [], [b"/bin/true"], None, detach=False, kill_timeout=1)
    sock.send(record)
    got = events(sock)
    assert got[0] == codec.ShepherdFault(wire.ERR_UNEXPECTED, 0)
    sock.close()
    close_all(ours)
    reap(pid, expect=wire.EXIT_PROTOCOL)
    assert wait_until(lambda: not pids_with_marker(marker))


def test_signal_before_spawn_is_unexpected() -> None:
    pid, sock = idle_shepherd()
    sock.send(struct.pack("<BI", 0x12, 15))
    expect_error(sock, wire.ERR_UNEXPECTED)
    sock.close()
    reap(pid, expect=wire.EXIT_PROTOCOL)
