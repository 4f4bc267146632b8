"""A shepherd that serves again (FLAG_REUSE, EXITED_REUSABLE), driven with
raw records: it stays only when nothing of the tree is left, it is then as
a new one (its fds, the next command's signal state and fds), it ignores
what was sent about the last command, and it still ends on a hang-up or a
signal. Races: commands whose leftovers exit just as the command does, one
after the other on the same shepherd."""

from __future__ import annotations

import functools
import os
import select
import signal
import socket
import sys

from _raw import close_all, events, idle_shepherd, reap, recv_event, send_spawn, spawn, started
from _stress import iterations
from conftest import pids_with_marker, wait_until

from netrunner._core import codec, wire

SH = b"/bin/sh"
PY = sys.executable.encode()


def exited(sock: socket.socket, timeout: float = 10.0) -> codec.Exited:
    event, fds = recv_event(sock, timeout)
    close_all(fds)
    assert isinstance(event, codec.Exited), event
    return event


def quiet(sock: socket.socket, seconds: float = 0.2) -> bool:
    """Nothing arrives on ``sock`` (neither a record nor end of file) for a while."""
    return not select.select([sock], [], [], seconds)[0]


def fds_of(pid: int) -> list[str]:
    """What the fds of ``pid`` are (the targets of its /proc fd links), sorted."""
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
        # a socket's inode number differs from one shepherd to the next, and each has its own children file
        if target.startswith(("socket:", "anon_inode:")):
            target = target.split(":")[0]
        out.append(f"{fd}:{target.replace(f'/{pid}/', '/PID/')}")
    return sorted(out)


def children_of(pid: int) -> str:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return f.read().strip()


def run_on(sock: socket.socket, argv: list[bytes], **kw: object) -> tuple[codec.Exited, bytes, bytes]:
    """One command on an idle (or DONE) shepherd: its EXITED, stdout, stderr."""
    ours = send_spawn(sock, argv, reuse=True, **kw)  # type: ignore[arg-type]
    try:
        started(sock)
        done = exited(sock)
        os.close(ours[0])
        return done, os.read(ours[1], 100000), os.read(ours[2], 100000)
    finally:
        close_all(ours)


def test_without_the_flag_the_shepherd_exits() -> None:
    pid, sock, ours = spawn([b"/bin/true"])
    try:
        got = events(sock)
        assert isinstance(got[1], codec.Exited) and not got[1].flags & wire.EXITED_REUSABLE, got
        assert got[2:] == [None]
    finally:
        sock.close()
        close_all(ours)
    reap(pid)


def test_a_reused_shepherd_is_as_a_new_one() -> None:
    fresh_pid, fresh_sock = idle_shepherd()
    pid, sock = idle_shepherd()
    try:
        # (both set up: the signalfd and the children file are opened after the fork)
        assert wait_until(lambda: all(any(f.endswith("/children") for f in fds_of(p)) for p in (pid, fresh_pid)))
        assert fds_of(pid) == fds_of(fresh_pid)
        fresh = fds_of(fresh_pid)
        done, _, _ = run_on(sock, [b"/bin/true"])
        assert done.flags & wire.EXITED_REUSABLE and done.status == 0, done
        assert quiet(sock)  # it stays
        assert wait_until(lambda: fds_of(pid) == fresh), (fds_of(pid), fresh)
        assert children_of(pid) == ""
        # The next command starts clean, from the same shepherd: default
        # signals, an empty mask, only fds 0-2, its own group.
        done, out, err = run_on(sock, [b"/bin/cat", b"/proc/self/status"])
        assert done.flags & wire.EXITED_REUSABLE and done.status == 0, (done, err)
        sig = {k: int(v, 16) for k, v in (line.split(":\t") for line in out.decode().splitlines())
               if k in ("SigIgn", "SigBlk", "SigCgt", "SigPnd", "ShdPnd")}
        assert sig == {"SigIgn": 0, "SigBlk": 0, "SigCgt": 0, "SigPnd": 0, "ShdPnd": 0}
        probe = (b"import os\n"
                 b"print([fd for fd in range(3, 4096) if os.path.exists(f'/proc/self/fd/{fd}')],"
                 b" os.getpgrp() == os.getpid())\n")
        done, out, err = run_on(sock, [PY, b"-I", b"-S", b"-c", probe])
        assert (done.status, out) == (0, b"[] True\n"), (done, out, err)
        assert wait_until(lambda: fds_of(pid) == fresh), (fds_of(pid), fresh)
    finally:
        sock.close()
        fresh_sock.close()
    reap(pid)  # a hang-up ends it, EXIT_OK (a sanitizer build checks for leaks here)
    reap(fresh_pid)


def test_frames_about_the_last_command_are_ignored() -> None:
    pid, sock = idle_shepherd()
    try:
        done, _, _ = run_on(sock, [b"/bin/true"])
        assert done.flags & wire.EXITED_REUSABLE
        # sent before the owner read S_EXITED: nobody left to act on them
        sock.send(codec.encode_signal(signal.SIGKILL))
        sock.send(codec.encode_stop(0.01))
        sock.send(codec.encode_winsize(24, 80))
        assert quiet(sock)
        done, out, _ = run_on(sock, [SH, b"-c", b"sleep 0.3; echo alive; exit 5"])
        assert (os.WEXITSTATUS(done.status), out) == (5, b"alive\n"), done
    finally:
        sock.close()
    reap(pid)


def test_a_hang_up_or_a_signal_ends_an_idle_reused_shepherd() -> None:
    for how in ("hang up", "SIGTERM"):
        pid, sock = idle_shepherd()
        try:
            done, _, _ = run_on(sock, [b"/bin/true"])
            assert done.flags & wire.EXITED_REUSABLE
            if how == "hang up":
                sock.shutdown(socket.SHUT_WR)
            else:
                os.kill(pid, signal.SIGTERM)
            assert events(sock) == [None], how
        finally:
            sock.close()
        # a signal's exit code names it: an owner learns why the shepherd went
        reap(pid, expect=wire.EXIT_OK if how == "hang up" else wire.EXIT_SIGNALLED + signal.SIGTERM)


def test_a_signal_to_a_shepherd_with_no_command_names_itself_in_the_exit_code() -> None:
    """A new shepherd (waiting for its spawn) that is sent SIGTERM, SIGINT,
    SIGHUP or SIGQUIT hangs up, having started nothing, and exits with 128
    plus the signal's number: an owner that finds it gone learns why. (It
    is sent once it takes them through its signalfd: a signal that comes
    between its clone and then ends it as any process.)"""

    def blocked(pid: int, sig: int) -> bool:
        with open(f"/proc/{pid}/status") as f:
            mask = int(next(line for line in f if line.startswith("SigBlk:")).split()[1], 16)
        return bool(mask & (1 << (sig - 1)))

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        pid, sock = idle_shepherd()
        try:
            assert wait_until(functools.partial(blocked, pid, sig), timeout=10), f"shepherd {pid} never blocked {sig!r}"
            os.kill(pid, sig)
            assert events(sock) == [None], sig
        finally:
            sock.close()
        reap(pid, expect=wire.EXIT_SIGNALLED + sig)


def test_a_spawn_frame_that_is_wrong_after_reuse_is_still_refused() -> None:
    pid, sock = idle_shepherd()
    try:
        done, _, _ = run_on(sock, [b"/bin/true"])
        assert done.flags & wire.EXITED_REUSABLE
        sock.send(bytes([wire.BY_NAME["C_SPAWN"].code]))  # too short, no fds
        got = events(sock)
        assert isinstance(got[0], codec.ShepherdFault) and got[0].code == wire.ERR_MALFORMED, got
    finally:
        sock.close()
    reap(pid, expect=wire.EXIT_PROTOCOL)


def test_leftovers_are_stopped_first(marker: str) -> None:
    pid, sock = idle_shepherd()
    try:
        done, out, _ = run_on(sock, [SH, b"-c", b"sleep 100 & setsid sleep 100 & echo $!"], kill_timeout=0.5)
        assert done.flags & wire.EXITED_REUSABLE, done
        assert not pids_with_marker(marker)  # both stopped before S_EXITED
        assert children_of(pid) == ""
        done, out, _ = run_on(sock, [SH, b"-c", b"echo again"])
        assert out == b"again\n"
        assert done.flags & wire.EXITED_REUSABLE
    finally:
        sock.close()
    reap(pid)


def test_not_reusable_with_detached_leftovers(marker: str) -> None:
    # leftovers="detach" leaves the shepherd with children (it is their
    # subreaper): it must not serve another command, and exits as before.
    pid, sock = idle_shepherd()
    ours = send_spawn(sock, [SH, b"-c", b"sleep 100 & echo ready"], detach=True, reuse=True)
    try:
        started(sock)
        got = events(sock)
        assert isinstance(got[0], codec.Exited) and not got[0].flags & wire.EXITED_REUSABLE, got
        assert got[1:] == [None]
        assert wait_until(lambda: len(pids_with_marker(marker)) == 1)
    finally:
        sock.close()
        close_all(ours)
        for left in pids_with_marker(marker):
            os.kill(left, signal.SIGKILL)
    reap(pid)


def test_reusable_after_a_stop(marker: str) -> None:
    pid, sock = idle_shepherd()
    ours = send_spawn(sock, [SH, b"-c", b"sleep 100 & echo ready; sleep 100"], reuse=True, kill_timeout=0.5)
    try:
        started(sock)
        assert os.read(ours[1], 100) == b"ready\n"
        sock.send(codec.encode_stop(None))
        done = exited(sock)
        assert os.WTERMSIG(done.status) == signal.SIGTERM and done.flags & wire.EXITED_REUSABLE, done
        assert not pids_with_marker(marker)
        assert children_of(pid) == ""
        done, out, _ = run_on(sock, [SH, b"-c", b"echo again"])
        assert out == b"again\n"
        assert done.flags & wire.EXITED_REUSABLE
    finally:
        sock.close()
        close_all(ours)
    reap(pid)


def test_leftovers_exiting_as_the_command_does(marker: str) -> None:
    # The race at the moment of reuse: a background job that ends within
    # microseconds of the command, sometimes before the shepherd lists its
    # children, sometimes after. Whatever the order, each S_EXITED comes once
    # nothing is left, the shepherd then has no child, and the next command
    # on the same shepherd runs normally.
    pid, sock = idle_shepherd()
    scripts = [b"true & exit 3", b"(exit 0) & exit 3", b"sleep 0.001 & exit 3", b"true & true & wait; exit 3"]
    reused = 0
    try:
        for i in range(iterations(60)):
            done, _, err = run_on(sock, [SH, b"-c", scripts[i % len(scripts)]], kill_timeout=2)
            assert os.WEXITSTATUS(done.status) == 3, (done, err)
            assert not pids_with_marker(marker)
            assert done.flags & wire.EXITED_REUSABLE, done  # nothing can be left
            reused += 1
            assert children_of(pid) == ""
    finally:
        sock.close()
    reap(pid)
    assert reused == iterations(60)
