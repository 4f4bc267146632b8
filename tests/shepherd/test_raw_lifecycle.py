"""The shepherd's lifetime rules, driven with raw records: a clean start, every
way a stop begins (C_STOP, signals to the shepherd, the owner leaving), the
deadline, stopped and forking trees, and frames at the wrong time."""

from __future__ import annotations

import os
import signal
import struct
import sys
import time

import pytest
from _raw import close_all, events, idle_shepherd, reap, rights, spawn, started, std_fds
from conftest import pids_with_marker, wait_until

from netrunner._core import codec, wire

SH = b"/bin/sh"
PY = sys.executable.encode()


def read_line(fd: int, timeout: float = 10.0) -> bytes:
    line = b""
    deadline = time.monotonic() + timeout
    while not line.endswith(b"\n") and time.monotonic() < deadline:
        chunk = os.read(fd, 100)
        if not chunk:
            break
        line += chunk
    return line


def proc_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0].decode()
    except OSError:
        return ""


def output_of(argv: list[bytes]) -> bytes:
    pid, sock, ours = spawn(argv)
    try:
        got = events(sock)
        assert isinstance(got[1], codec.Exited) and got[1].status == 0, (got, os.read(ours[2], 10000))
        return os.read(ours[1], 100000)
    finally:
        sock.close()
        close_all(ours)
        reap(pid)


def test_the_command_starts_clean() -> None:
    # Nothing ignored, caught or blocked, although this process (Python)
    # ignores SIGPIPE and the shepherd blocks several signals: cat, the command
    # itself, shows what it was started with.
    assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN
    status = output_of([b"/bin/cat", b"/proc/self/status"]).decode()
    sig = {k: int(v, 16) for k, v in (line.split(":\t") for line in status.splitlines())
           if k in ("SigIgn", "SigBlk", "SigCgt", "SigPnd", "ShdPnd")}
    assert sig == {"SigIgn": 0, "SigBlk": 0, "SigCgt": 0, "SigPnd": 0, "ShdPnd": 0}
    # Only fds 0-2 (Python keeps no fd of its own open once started), and
    # its own process group.
    probe = (b"import os\n"
             b"print([fd for fd in range(3, 4096) if os.path.exists(f'/proc/self/fd/{fd}')],"
             b" os.getpgrp() == os.getpid())\n")
    assert output_of([PY, b"-I", b"-S", b"-c", probe]) == b"[] True\n"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT])
def test_a_signal_to_the_shepherd_stops_the_tree(sig: int, marker: str) -> None:
    pid, sock, ours = spawn([SH, b"-c", b"sleep 100 & setsid sleep 100 & echo ready; wait"])
    try:
        started(sock)
        assert read_line(ours[1]) == b"ready\n"
        assert wait_until(lambda: len(pids_with_marker(marker)) == 3)
        os.kill(pid, sig)
        got = events(sock)
        assert isinstance(got[0], codec.Exited) and os.WTERMSIG(got[0].status) == signal.SIGTERM, got
        assert got[1:] == [None]
    finally:
        sock.close()
        close_all(ours)
    reap(pid)
    assert not pids_with_marker(marker)  # the shepherd reported only once all was reaped


def test_stop_continues_a_stopped_command() -> None:
    # without SIGCONT the SIGTERM handler could not run before the (long) deadline
    pid, sock, ours = spawn(
        [PY, b"-c", b"import signal, sys, time\n"
                    b"signal.signal(signal.SIGTERM, lambda *a: sys.exit(7))\n"
                    b"print('ready', flush=True)\ntime.sleep(100)"],
        kill_timeout=60,
    )
    try:
        child = started(sock)
        assert read_line(ours[1]) == b"ready\n"
        sock.send(codec.encode_signal(signal.SIGSTOP))
        assert wait_until(lambda: proc_state(child) == "T")
        t0 = time.monotonic()
        sock.send(codec.encode_stop(None))
        got = events(sock)
        assert isinstance(got[0], codec.Exited) and os.WEXITSTATUS(got[0].status) == 7, got
        assert time.monotonic() - t0 < 10
    finally:
        sock.close()
        close_all(ours)
    reap(pid)


def test_a_second_stop_only_shortens_the_deadline() -> None:
    pid, sock, ours = spawn(
        [PY, b"-c", b"import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                    b"print('ready', flush=True)\ntime.sleep(100)"],
        kill_timeout=60,
    )
    try:
        started(sock)
        assert read_line(ours[1]) == b"ready\n"
        t0 = time.monotonic()
        sock.send(codec.encode_stop(30))
        sock.send(codec.encode_stop(0.2))
        sock.send(codec.encode_stop(50))  # cannot lengthen it again
        got = events(sock)
        elapsed = time.monotonic() - t0
        assert isinstance(got[0], codec.Exited) and os.WTERMSIG(got[0].status) == signal.SIGKILL, got
        assert 0.15 < elapsed < 10, elapsed
    finally:
        sock.close()
        close_all(ours)
    reap(pid)


def test_processes_forked_while_killing_are_killed_too(marker: str) -> None:
    # everything ignores SIGTERM (inherited), keeps forking, and leaves the group
    script = (b"trap '' TERM; echo ready; i=0; "
              b"while [ $i -lt 3000 ]; do setsid sleep 100 & sleep 100 & i=$((i+1)); done; wait")
    pid, sock, ours = spawn([SH, b"-c", script], kill_timeout=0.3)
    try:
        started(sock)
        assert read_line(ours[1]) == b"ready\n"
        assert wait_until(lambda: len(pids_with_marker(marker)) > 20)
        sock.send(codec.encode_stop(None))
        got = events(sock, timeout=30)
        assert isinstance(got[0], codec.Exited) and os.WTERMSIG(got[0].status) == signal.SIGKILL, got
    finally:
        sock.close()
        close_all(ours)
    reap(pid)
    assert not pids_with_marker(marker)


def test_owner_gone_right_after_spawn(marker: str) -> None:
    # the hang-up may be seen before or after S_STARTED could be sent
    for _ in range(20):
        pid, sock, ours = spawn([b"/bin/sleep", b"100"], kill_timeout=1)
        sock.close()
        close_all(ours)
        reap(pid)
    assert wait_until(lambda: not pids_with_marker(marker))


def test_signal_and_winsize_while_running_then_exit() -> None:
    pid, sock, ours = spawn([SH, b"-c", b"trap 'exit 9' USR1; echo ready; while :; do sleep 0.01; done"])
    try:
        started(sock)
        assert read_line(ours[1]) == b"ready\n"
        sock.send(codec.encode_winsize(24, 80))  # accepted, ignored without a pty
        sock.send(codec.encode_signal(0))  # not a signal: ignored
        sock.send(codec.encode_signal(1000))  # not a signal either
        sock.send(codec.encode_signal(signal.SIGUSR1))
        got = events(sock)
        assert isinstance(got[0], codec.Exited) and os.WEXITSTATUS(got[0].status) == 9, got
    finally:
        sock.close()
        close_all(ours)
    reap(pid)


@pytest.mark.parametrize("late", ["spawn-with-fds", "spawn-part"])
def test_spawn_frames_after_the_start_are_unexpected(late: str, marker: str) -> None:
    pid, sock, ours = spawn([b"/bin/sleep", b"100"])
    theirs, more = std_fds()
    try:
        started(sock)
        if late == "spawn-part":
            sock.send(b"\x11abc\0")
        else:
            [record] = codec.encode_spawn([b"/bin/true"], [], [b"/bin/true"], None, detach=False, kill_timeout=1)
            sock.sendmsg([record], rights(theirs))
        got = events(sock)
        assert got == [codec.ShepherdFault(wire.ERR_UNEXPECTED, 0), None], got
    finally:
        sock.close()
        close_all(ours + theirs + more)
    reap(pid, expect=wire.EXIT_PROTOCOL)
    assert wait_until(lambda: not pids_with_marker(marker))


@pytest.mark.parametrize(
    "counts",
    [(2**32 - 1, 0, 1), (1, 2**32 - 1, 1), (1, 0, 2**32 - 1), (0, 0, 1), (1, 0, 0), (1, 0, 2)],
)
def test_spawn_counts_that_the_tail_cannot_hold(counts: tuple[int, int, int]) -> None:
    pid, sock = idle_shepherd()
    theirs, ours = std_fds()
    argc, envc, npaths = counts
    head = wire.BY_NAME["C_SPAWN"].struct.pack(0x10, 0, 1000, argc, envc, npaths)
    sock.sendmsg([head + b"/bin/true\0/bin/true\0"], rights(theirs))
    close_all(theirs)
    try:
        assert events(sock) == [codec.ShepherdFault(wire.ERR_MALFORMED, 0), None]
    finally:
        sock.close()
        close_all(ours)
    reap(pid, expect=wire.EXIT_PROTOCOL)


@pytest.mark.parametrize("tail", [b"/bin/true\0/bin/true", b"/bin/true\0/bin/true\0\0", b"/bin/true\0"])
def test_spawn_tail_must_end_exactly_after_the_last_string(tail: bytes) -> None:
    pid, sock = idle_shepherd()
    theirs, ours = std_fds()
    head = wire.BY_NAME["C_SPAWN"].struct.pack(0x10, 0, 1000, 1, 0, 1)
    sock.sendmsg([head + tail], rights(theirs))
    close_all(theirs)
    try:
        assert events(sock) == [codec.ShepherdFault(wire.ERR_MALFORMED, 0), None]
    finally:
        sock.close()
        close_all(ours)
    reap(pid, expect=wire.EXIT_PROTOCOL)


def test_spawn_with_the_wrong_number_of_fds() -> None:
    for count in (1, 3, 5):
        pid, sock = idle_shepherd()
        fds = [os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC) for _ in range(count)]
        [record] = codec.encode_spawn([b"/bin/true"], [], [b"/bin/true"], None, detach=False, kill_timeout=1)
        sock.sendmsg([record], rights(fds))
        close_all(fds)
        try:
            assert events(sock) == [codec.ShepherdFault(wire.ERR_MALFORMED, 0), None]
        finally:
            sock.close()
        reap(pid, expect=wire.EXIT_PROTOCOL)


def test_fds_on_a_frame_that_carries_none_are_malformed(marker: str) -> None:
    pid, sock, ours = spawn([b"/bin/sleep", b"100"])
    fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    try:
        started(sock)
        sock.sendmsg([struct.pack("<BI", 0x13, 0)], rights([fd]))
        assert events(sock) == [codec.ShepherdFault(wire.ERR_MALFORMED, 0), None]
    finally:
        os.close(fd)
        sock.close()
        close_all(ours)
    reap(pid, expect=wire.EXIT_PROTOCOL)
    assert wait_until(lambda: not pids_with_marker(marker))


def _children_of(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def test_a_stop_signal_in_the_exec_window_does_not_freeze_the_shepherd(marker: str) -> None:
    # A PATH of 200,000 missing directories keeps the child in its exec loop
    # for a while; it is SIGSTOPped there, before any execve worked. The
    # shepherd is not suspended with it: a C_STOP is answered (SIGCONT lets
    # the pending SIGTERM end the child), and the shepherd reports and exits.
    paths = [b"/nonexistent-%d/sleep" % i for i in range(200_000)] + [b"/bin/sleep"]
    pid, sock, ours = spawn([b"sleep", b"100"], paths=paths, kill_timeout=0.5)
    try:
        child = wait_until(lambda: _children_of(pid), timeout=10)
        assert child, "the shepherd started no child"
        os.kill(child[0], signal.SIGSTOP)  # unreaped child of the shepherd: pinned
        assert wait_until(lambda: proc_state(child[0]) == "T", timeout=5), proc_state(child[0])
        sock.send(codec.encode_stop(0.5))
        got = events(sock, timeout=10)
        assert isinstance(got[0], codec.Started), got
        assert isinstance(got[1], codec.Exited) and os.WIFSIGNALED(got[1].status), got
        assert got[-1] is None
    finally:
        sock.close()
        close_all(ours)
    reap(pid)
    assert not pids_with_marker(marker)


def test_the_owner_leaving_during_the_exec_window_stops_the_child(marker: str) -> None:
    paths = [b"/nonexistent-%d/sleep" % i for i in range(200_000)] + [b"/bin/sleep"]
    pid, sock, ours = spawn([b"sleep", b"100"], paths=paths, kill_timeout=0.5)
    child = wait_until(lambda: _children_of(pid), timeout=10)
    assert child, "the shepherd started no child"
    os.kill(child[0], signal.SIGSTOP)
    assert wait_until(lambda: proc_state(child[0]) == "T", timeout=5), proc_state(child[0])
    sock.close()  # the owner is gone
    close_all(ours)
    reap(pid)  # it exits only once its child is reaped
    assert proc_state(child[0]) == ""
    assert not pids_with_marker(marker)


def test_a_stop_sends_the_command_one_sigterm() -> None:
    # Many programs take a second SIGTERM as "quit now": the command gets one,
    # through its group, and its descendants in the group one each too.
    code = (b"import os, signal, sys, time\n"
            b"count = 0\n"
            b"def term(*_):\n"
            b"    global count\n"
            b"    count += 1\n"
            b"signal.signal(signal.SIGTERM, term)\n"
            b"print('ready', flush=True)\n"
            b"while not count:\n"
            b"    time.sleep(0.01)\n"
            b"time.sleep(0.3)  # a graceful shutdown, during which more would arrive\n"
            b"sys.exit(count)\n")
    pid, sock, ours = spawn([PY, b"-c", code], kill_timeout=10)
    try:
        started(sock)
        assert read_line(ours[1]) == b"ready\n"
        sock.send(codec.encode_stop(None))
        got = events(sock)
        assert isinstance(got[0], codec.Exited) and os.WIFEXITED(got[0].status), got
        assert os.WEXITSTATUS(got[0].status) == 1, f"SIGTERMs received: {os.WEXITSTATUS(got[0].status)}"
    finally:
        sock.close()
        close_all(ours)
    reap(pid)
