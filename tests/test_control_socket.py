"""Control sockets are non-blocking from their creation to their close; a
record that does not fit waits for room (``_engine.send_on``)."""

from __future__ import annotations

import os
import select
import signal
import socket
import threading
import time

import pytest
from conftest import pids_with_marker, wait_until

import netrunner
from netrunner._command import resolve
from netrunner._core.state import Phase
from netrunner._engine import Handle, send_on
from netrunner._io import zygote


def _full_pair() -> tuple[socket.socket, socket.socket]:
    """A SEQPACKET pair whose sending side has no room left."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    a.setblocking(False)
    while True:
        try:
            a.send(b"r" * 4096)
        except BlockingIOError:
            return a, b


def test_a_record_that_does_not_fit_waits_for_room() -> None:
    a, b = _full_pair()
    try:
        taken: list[bytes] = []

        def reader() -> None:  # a shepherd that reads late, but reads everything
            time.sleep(0.2)
            while True:
                record = b.recv(8192)
                taken.append(record)
                if record == b"last":
                    return

        t = threading.Thread(target=reader)
        t.start()
        t0 = time.monotonic()
        send_on(a, b"last")
        waited = time.monotonic() - t0
        t.join(timeout=30)
        assert not t.is_alive(), "the last record never came"
        assert waited >= 0.15, "the record was sent before there was room for it"
        assert set(taken[:-1]) == {b"r" * 4096}
    finally:
        a.close()
        b.close()


def test_a_bounded_wait_for_room_times_out() -> None:
    a, b = _full_pair()
    try:
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            send_on(a, b"late", timeout_ms=100)
        assert 0.09 <= time.monotonic() - t0 < 5
    finally:
        a.close()
        b.close()


def test_the_sockets_of_idle_and_spare_shepherds_are_non_blocking() -> None:
    netrunner.run(["true"])  # its shepherd comes back, idle
    kept = [sock for _, sock, _ in zygote._idle]
    assert kept, "no idle shepherd after a run"
    assert all(not sock.getblocking() for sock in kept)
    with netrunner.start(["true"]) as p:  # takes it; a spare is asked for
        assert p.wait(timeout=30) == 0
        spare = zygote._pending
        assert spare is not None
        assert not spare.getblocking()
    assert netrunner.run(["echo", "again"]).stdout == b"again\n"  # and the spare serves



def test_a_flow_reads_up_to_started_and_the_rest_at_its_next_wait() -> None:
    """``pump_control(drain=False)``, as ``run``'s flow calls it, takes the
    records up to STARTED and stops there, even with EXITED queued behind
    it; the flow's next wait returns at once for that one, and the next call
    reads it."""
    args, argv, opts = resolve("run", ["true"], {})
    h = Handle(args, argv, opts, keep_stdin=False, lazy_reap=True, hold_output=True)
    try:
        assert select.select([h.ctl_fd], [], [], 30)[0]
        time.sleep(0.5)  # `true` is long gone: EXITED is queued behind STARTED
        h.pump_control(drain=False)
        assert h.core.phase is Phase.RUNNING
        assert select.select([h.ctl_fd], [], [], 30)[0]  # what the next wait sees
        h.pump_control(drain=False)
        assert h.core.phase is Phase.EXITED
        assert h.core.returncode == 0
    finally:
        h.reap()
        h.release()


def _shepherd_gone(pid: int) -> bool:
    """The shepherd ``pid`` (our child) has been reaped, by whoever reaps it."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "X"
    except FileNotFoundError:
        return True


@pytest.mark.breaks_netrunner_fds
def test_a_control_socket_that_fails_is_named_and_the_command_stopped(marker: str) -> None:
    """Reading the control socket fails with an error that is not a hang-up
    (here its number was made to name /dev/null behind netrunner's back):
    the ShepherdError names the error, the command is stopped (our hang-up),
    and the shepherd is reaped -- no wait for an exit that would not come."""
    p = netrunner.start(["sleep", "30"], kill_timeout=1)
    try:
        h = p._h
        shepherd = h.shepherd_pid
        null = os.open(os.devnull, os.O_RDONLY)
        try:
            os.dup2(null, h.ctl_fd)  # the shepherd's last peer is gone: it hangs up too
        finally:
            os.close(null)
        t0 = time.monotonic()
        with pytest.raises(netrunner.ShepherdError, match="control socket failed: ENOTSOCK"):
            p.wait(timeout=20)
        assert time.monotonic() - t0 < 10
        assert p.returncode == -signal.SIGKILL
    finally:
        p.close()
    assert wait_until(lambda: _shepherd_gone(shepherd), timeout=15), f"shepherd {shepherd} not reaped"
    assert wait_until(lambda: not pids_with_marker(marker), timeout=15)

