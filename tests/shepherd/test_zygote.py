"""The zygote, driven with raw records on a private zygote: one Z_FORKED per
Z_FORK, EINVAL for malformed requests (their fds closed), shepherds that are
our children, and an exit at end-of-file."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator, Sequence

import pytest
from _raw import close_all, events, reap, rights, send_spawn

from netrunner._core import codec, wire
from netrunner._io.shepherd import find_shepherd

EINVAL = 22


class Zygote:
    def __init__(self, *, close_stdio: bool = False) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        fd = os.dup(theirs.fileno())  # never 3, so posix_spawn's dup2 clears close-on-exec
        actions = [(os.POSIX_SPAWN_DUP2, fd, 3)]
        if close_stdio:  # the zygote must fill 0-2 itself, so received fds are >= 3
            actions += [(os.POSIX_SPAWN_CLOSE, n) for n in (0, 1, 2)]
        env = {k: v for k, v in os.environ.items() if k.startswith(("ASAN_", "UBSAN_", "LSAN_"))}
        self.pid = os.posix_spawn(find_shepherd(), [find_shepherd(), "--zygote", "3"], env,
                                  file_actions=actions, setpgroup=0)
        os.close(fd)
        theirs.close()
        self.sock = ours
        self.sock.settimeout(10)
        hello = codec.decode(self.sock.recv(wire.MAX_RECORD))
        assert hello == codec.Hello(wire.PROTOCOL_VERSION, wire.PROTOCOL_DIGEST, self.pid)

    def ask(self, record: bytes, fds: Sequence[int] = ()) -> codec.Event:
        self.sock.sendmsg([record], rights(fds) if fds else [])
        return codec.decode(self.sock.recv(wire.MAX_RECORD))

    def fork(self) -> tuple[int, socket.socket]:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        got = self.ask(b"\x02", [theirs.fileno()])
        theirs.close()
        assert isinstance(got, codec.Forked) and got.pid > 0 and got.error == 0, got
        return got.pid, ours

    def close(self) -> int:
        self.sock.close()
        _, status = os.waitpid(self.pid, 0)
        return status


@pytest.fixture
def zygote() -> Iterator[Zygote]:
    z = Zygote()
    try:
        yield z
    finally:
        assert z.close() == 0  # end-of-file: a clean exit (a sanitizer build would say otherwise)


def test_malformed_fork_requests_get_einval_and_lose_their_fds(zygote: Zygote) -> None:
    bad = [
        (b"\x02", 0),  # no fd
        (b"\x02", 2),  # two fds
        (b"\x02\x00", 1),  # too long
        (b"\x05", 1),  # unknown type
        (b"\x10" + bytes(20), 1),  # a shepherd's frame
        (b"\x02" * 200, 1),  # longer than the zygote's buffer
    ]
    for record, nfds in bad:
        pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET) for _ in range(nfds)]
        got = zygote.ask(record, [theirs.fileno() for _, theirs in pairs])
        assert got == codec.Forked(0, EINVAL), (record, nfds, got)
        for ours, theirs in pairs:
            theirs.close()
            ours.settimeout(10)
            assert ours.recv(10) == b""  # the zygote closed its copy: nobody holds the other end
            ours.close()
    # and it still serves
    pid, sock = zygote.fork()
    sock.close()
    reap(pid)


def test_shepherds_are_our_children(zygote: Zygote) -> None:
    pid, sock = zygote.fork()
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    assert int(fields[1]) == os.getpid()  # CLONE_PARENT: ours, not the zygote's
    # Linux gives a CLONE_PARENT child the exit signal of the process that
    # cloned it (kernel/fork.c), whatever clone3 asked: the zygote's, SIGCHLD.
    # So a shepherd is an ordinary child to wait(): os.waitpid(-1) elsewhere
    # in the program can reap it, and its exit sends SIGCHLD.
    assert int(fields[35]) == signal.SIGCHLD  # exit_signal, field 38 of stat
    sock.close()
    assert reap(pid) == 0


def test_many_forks_in_a_row(zygote: Zygote) -> None:
    shepherds = [zygote.fork() for _ in range(50)]
    for _, sock in shepherds:
        sock.close()
    for pid, _ in shepherds:
        reap(pid)


def test_zygote_started_with_stdio_closed_still_runs_commands() -> None:
    z = Zygote(close_stdio=True)
    try:
        pid, sock = z.fork()
        ours = send_spawn(sock, [b"/bin/sh", b"-c", b"echo out; echo err >&2"])
        try:
            got = events(sock)
            assert isinstance(got[1], codec.Exited) and got[1].status == 0, got
            assert os.read(ours[1], 100) == b"out\n"
            assert os.read(ours[2], 100) == b"err\n"
        finally:
            sock.close()
            close_all(ours)
        reap(pid)
    finally:
        assert z.close() == 0


def test_a_killed_zygote_leaves_its_shepherds_working() -> None:
    z = Zygote()
    pid, sock = z.fork()
    os.kill(z.pid, signal.SIGKILL)
    os.waitpid(z.pid, 0)
    z.sock.close()
    ours = send_spawn(sock, [b"/bin/true"])
    try:
        got = events(sock)
        assert isinstance(got[0], codec.Started) and isinstance(got[1], codec.Exited), got
    finally:
        sock.close()
        close_all(ours)
    reap(pid)
