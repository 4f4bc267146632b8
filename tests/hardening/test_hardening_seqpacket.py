"""A peer that queues its last record and hangs up at once: the record is
read, never an end of file in its place.

Linux's non-blocking ``SOCK_SEQPACKET`` receive looks for a record, then
for the peer's hang-up, in two steps; a record queued and a hang-up made
between them is reported as the end of file. That is how a shepherd's
``S_EXITED``, sent right before it exits, could be read as "the shepherd
exited unexpectedly". ``_io/seqpacket.receive`` believes an end of file only
when it reads it twice, and so does the shepherd's and the zygote's C
receive, ``nr_recv_record`` (``src/shepherd/fds.c``).

The collisions are real: a peer process sends one record and closes its end
while this process polls the other end with non-blocking receives, over and
over, until the kernel has reported the end of file ahead of a queued
record several times (which a plain receive would have taken for the end).
The C side is checked the same way by ``recv_record_check.c`` (beside this
file), built against ``fds.c`` with ``recvmsg`` wrapped to see what the
kernel answered; run with a plain ``recvmsg`` in its place, the same check
fails. Loops; ``NETRUNNER_STRESS=1`` makes them 5x longer."""

from __future__ import annotations

import array
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _stress import iterations

from netrunner._io import seqpacket

#: The peer: for each socket it is handed, one record, then the hang-up.
PEER = r"""
import array, os, socket, sys
ctl = socket.socket(fileno=int(sys.argv[1]))
while True:
    msg, anc, _, _ = ctl.recvmsg(1, socket.CMSG_SPACE(4))
    if not msg:
        break
    fd = array.array("i", anc[0][2])[0]
    os.write(fd, b"last")
    os.close(fd)
"""


class Recording:
    """A socket that remembers what each of its receives returned."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.returned: list[bytes] = []

    def recv(self, room: int, flags: int = 0) -> bytes:
        data = self.sock.recv(room, flags)
        self.returned.append(data)
        return data

    def recvmsg(self, room: int, ancillary: int = 0, flags: int = 0) -> tuple[bytes, list, int, object]:
        data, anc, msg_flags, address = self.sock.recvmsg(room, ancillary, flags)
        self.returned.append(data)
        return data, anc, msg_flags, address


def _one_collision(ctl: socket.socket, use_recvmsg: bool) -> tuple[list[bytes], list[bytes]]:
    """Hand the peer a fresh socket and read ours until the end of file:
    what receive() returned, and what the socket itself returned."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        ours.setblocking(False)
        ctl.sendmsg([b"s"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [theirs.fileno()]).tobytes())])
        theirs.close()
        recording = Recording(ours)
        records: list[bytes] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if use_recvmsg:
                    record, _ = seqpacket.receive(recording, 64, socket.CMSG_SPACE(4))  # type: ignore[arg-type]
                else:
                    record, _ = seqpacket.receive(recording, 64)  # type: ignore[arg-type]
            except BlockingIOError:
                continue
            records.append(record)
            if not record:
                return records, recording.returned
        raise AssertionError("the peer neither sent its record nor hung up within 10 s")
    finally:
        ours.close()
        theirs.close()  # when the send failed; a socket object closes once


@pytest.mark.slow
def test_a_record_queued_right_before_the_hang_up_is_read_not_taken_for_the_end() -> None:
    wanted = iterations(3)  # collisions where a plain receive reported the end of file first
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    peer = subprocess.Popen(
        [sys.executable, "-c", PEER, str(b.fileno())], pass_fds=[b.fileno()], stdin=subprocess.DEVNULL
    )
    b.close()
    hidden = rounds = 0
    try:
        deadline = time.monotonic() + 300
        while hidden < wanted and time.monotonic() < deadline:
            records, returned = _one_collision(a, use_recvmsg=bool(rounds % 2))
            rounds += 1
            assert records == [b"last", b""], f"round {rounds}: receive() gave {records!r} (the socket: {returned!r})"
            if returned[:2] == [b"", b"last"]:
                hidden += 1  # the kernel said "end of file" with the record queued
    finally:
        a.close()
        assert peer.wait(timeout=10) == 0
    assert hidden >= wanted, (
        f"in {rounds} rounds the kernel reported the end of file ahead of a queued record only {hidden} times, "
        f"fewer than the {wanted} this test needs to show that receive() reads it"
    )


ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def recv_record_check(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``recv_record_check.c`` built against the shepherd's ``fds.c``, warnings as errors."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    assert cc, "no C compiler (cc, gcc or $CC): the shepherd's receive cannot be checked"
    exe = tmp_path_factory.mktemp("recv-record") / "recv_record_check"
    subprocess.run(
        [cc, "-O1", "-std=gnu99", "-Wall", "-Wextra", "-Werror", "-Wl,--wrap=recvmsg", f"-I{ROOT / 'src/shepherd'}",
         str(Path(__file__).with_name("recv_record_check.c")), str(ROOT / "src/shepherd/fds.c"), "-o", str(exe)],
        check=True, stdin=subprocess.DEVNULL,
    )
    return exe


@pytest.mark.slow
def test_the_shepherds_receive_reads_a_record_queued_right_before_the_hang_up(recv_record_check: Path) -> None:
    wanted = iterations(3)
    done = subprocess.run(
        [str(recv_record_check), str(wanted), "300"], capture_output=True, text=True, stdin=subprocess.DEVNULL,
        timeout=400,
    )
    assert done.returncode != 2, (
        f"the kernel hid a queued record behind the end of file fewer than {wanted} times: {done.stdout.strip()}"
    )
    assert (done.returncode, done.stderr) == (0, ""), f"{done.stdout}{done.stderr}"


@pytest.mark.slow
def test_the_check_of_the_shepherds_receive_fails_a_plain_receive(recv_record_check: Path) -> None:
    # The control: recvmsg believing the first end of file loses a record
    # within the same kind of run, and the check says so.
    done = subprocess.run(
        [str(recv_record_check), "1", "300", "plain"], capture_output=True, text=True, stdin=subprocess.DEVNULL,
        timeout=400,
    )
    assert done.returncode == 1, f"exit {done.returncode}: {done.stdout}{done.stderr}"
    assert "the receive gave 1 results, the first 0" in done.stderr
