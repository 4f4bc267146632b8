"""The stop signals only pinned targets, and never takes "cannot list" for
"nothing left": the pidfd sent with S_STARTED, stops on hosts whose /proc is
foreign, empty or restricted, a pid-reuse reproduction, collisions of an exit
with a stop, FLAG_DETACH against an earlier C_STOP, and exit codes."""

from __future__ import annotations

import os
import select
import signal
import struct
import sys

import pytest
from _owner import run_owner, unprivileged_python, world_runnable
from _raw import (
    close_all,
    events,
    idle_shepherd,
    py,
    read_line,
    reap,
    recv_event,
    send_spawn,
    spawn,
    started,
)
from _stress import iterations
from conftest import pids_with_marker

from netrunner._core import codec, wire
from netrunner._io.shepherd import find_shepherd

PY = sys.executable.encode()
SH = b"/bin/sh"




# ---- the pidfd -----------------------------------------------------------------

def test_started_carries_a_pidfd_of_the_command() -> None:
    pid, sock, ours = spawn([b"/bin/sleep", b"100"])
    pidfd = -1
    try:
        event, fds = recv_event(sock)
        assert isinstance(event, codec.Started) and len(fds) == wire.STARTED_FDS, (event, fds)
        [pidfd] = fds
        with open(f"/proc/self/fdinfo/{pidfd}") as f:
            info = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
        assert int(info["Pid"]) == event.pid
        signal.pidfd_send_signal(pidfd, 0)  # it names a live process: ours
        assert not select.select([pidfd], [], [], 0)[0]
        sock.send(codec.encode_signal(signal.SIGKILL))
        got = events(sock)
        assert isinstance(got[0], codec.Exited) and os.WTERMSIG(got[0].status) == signal.SIGKILL, got
        # still open, still that process: exited and reaped, never another one
        assert select.select([pidfd], [], [], 5)[0]
        with pytest.raises(ProcessLookupError):
            signal.pidfd_send_signal(pidfd, 0)
    finally:
        if pidfd >= 0:
            os.close(pidfd)
        sock.close()
        close_all(ours)
    reap(pid)


def test_the_command_starts_with_an_empty_mask_although_the_shepherd_blocks_some() -> None:
    def sigblk(pid: int) -> int:
        with open(f"/proc/{pid}/status") as f:
            return int(next(line for line in f if line.startswith("SigBlk:")).split()[1], 16)

    pid, sock, ours = spawn([b"/bin/sleep", b"100"])
    try:
        child = started(sock)
        assert sigblk(pid) & (1 << (signal.SIGCHLD - 1))
        assert sigblk(pid) & (1 << (signal.SIGTERM - 1))
        assert sigblk(child) == 0
        sock.send(codec.encode_stop(None))
        assert isinstance(events(sock)[0], codec.Exited)
    finally:
        sock.close()
        close_all(ours)
    reap(pid)


# ---- hostile /proc -------------------------------------------------------------

def hostile(wrapper: list[str], check: str, argv: list[bytes], marker: str, *,
            kill_timeout: float = 5.0, python: str | None = None) -> dict:
    env = [f"NETRUNNER_TEST_MARKER={marker}".encode(), b"PATH=/usr/bin:/bin"]
    records = codec.encode_spawn(argv, env, [argv[0]], None, detach=False, kill_timeout=kill_timeout)
    report = run_owner(wrapper, {"scenario": "run", "check": check, "shepherd": find_shepherd(),
                                 "records": [r.hex() for r in records], "timeout": 20}, python=python)
    first = codec.decode(bytes.fromhex(report["first"]["hex"]))
    assert isinstance(first, codec.Started) and report["first"]["fds"] == wire.STARTED_FDS, report
    decoded = [codec.decode(bytes.fromhex(r["hex"])) for r in report["records"][1:]]
    assert len(decoded) == 1 and isinstance(decoded[0], codec.Exited), report
    assert os.WIFEXITED(report["shepherd_status"]) and os.WEXITSTATUS(report["shepherd_status"]) == 0, report
    report["exited"] = decoded[0]
    return report


FOREIGN = ["unshare", "--pid", "--fork", "--kill-child", "--"]  # a new pid namespace, the old /proc
EMPTY = ["unshare", "--pid", "--fork", "--kill-child", "--mount", "--propagation", "private", "--",
         "sh", "-c", 'mount -t tmpfs none /proc && exec "$@"', "sh"]
HIDEPID = ["unshare", "--pid", "--fork", "--kill-child", "--mount", "--propagation", "private", "--",
           "sh", "-c", 'mount -t proc -o hidepid=2 proc /proc && '
           'exec setpriv --reuid=65534 --regid=65534 --clear-groups "$@"', "sh"]
HOSTS = {"foreign-proc": FOREIGN, "empty-proc": EMPTY}

ESCAPEE = """
import os, sys, time
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        if DUMPABLE_OFF:
            import ctypes
            ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0
        os.write(w, b"%d" % os.getpid())
        time.sleep(60)
    os._exit(0)
os.close(w)
pid = int(os.read(r, 20))
print("ready", pid, os.path.exists(f"/proc/{pid}"), flush=True)
"""


#: The EXITED flags of a stop that found no escapee: an ancestor namespace's
#: /proc still lists the shepherd's children (its own number there, each
#: child's NSpid); an empty one lists nothing, which is reported.
SCAN_FLAGS = {"foreign-proc": 0, "empty-proc": wire.EXITED_SCAN_FAILED}


@pytest.mark.parametrize("host", sorted(HOSTS))
def test_group_members_are_stopped_without_proc(host: str, marker: str) -> None:
    report = hostile(HOSTS[host], host, [SH, b"-c", b"sleep 8 & echo ready"], marker)
    exited = report["exited"]
    assert exited.status == 0, report
    assert exited.flags == SCAN_FLAGS[host], report
    assert report["ready_to_exit_s"] < 2, report  # the group kill, not the sleep's end


def test_an_unfindable_escapee_is_abandoned_not_waited_for(marker: str) -> None:
    script = ESCAPEE.replace("DUMPABLE_OFF", "False")
    report = hostile(EMPTY, "empty-proc", py(script), marker, kill_timeout=0.2)
    exited = report["exited"]
    assert exited.status == 0, report
    assert exited.flags == wire.EXITED_SCAN_FAILED | wire.EXITED_ABANDONED, report
    assert report["ready_to_exit_s"] < 1.5, report
    assert report["escapee_gone_at_exit"] is False  # it was left running, as reported


def test_an_escapee_is_found_through_an_ancestors_proc(marker: str) -> None:
    script = ESCAPEE.replace("DUMPABLE_OFF", "False")
    report = hostile(FOREIGN, "foreign-proc", py(script), marker, kill_timeout=0.2)
    exited = report["exited"]
    assert exited.status == 0, report
    assert exited.flags == 0, report
    assert report["escapee_gone_at_exit"] is True, report
    assert report["ready_to_exit_s"] < 1.5, report


def test_hidepid_hides_nothing_from_the_shepherd(marker: str) -> None:
    # a setsid'd, non-dumpable descendant: invisible in a hidepid=2 /proc even
    # to its own user, yet listed in the shepherd's children file
    script = ESCAPEE.replace("DUMPABLE_OFF", "True")
    python = unprivileged_python()
    assert world_runnable(find_shepherd()), f"cannot set up the test: nobody may run {find_shepherd()}"
    report = hostile(HIDEPID, "hidepid", py(script, os.fsencode(python)), marker, python=python)
    exited = report["exited"]
    assert report["ready"].endswith(" False"), f"hidepid did not hide the escapee: {report}"
    assert exited.status == 0 and exited.flags == 0, report
    assert report["escapee_gone_at_exit"] is True, report
    assert report["ready_to_exit_s"] < 3, report


# ---- pid reuse -------------------------------------------------------------------

REUSE = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
g = os.fork()
if g == 0:
    def bye(*_):
        time.sleep(0.005)
        os._exit(0)
    signal.signal(signal.SIGTERM, bye)
    while True:
        signal.pause()
print("ready", g, flush=True)
os.waitpid(g, 0)
while True:
    signal.pause()
"""


def test_a_reused_pid_is_never_signalled(marker: str) -> None:
    # G, a grandchild in the command's group, exits 5 ms after the stop's
    # SIGTERM and is reaped at once by its parent; an unrelated process then
    # takes its pid (ns_last_pid) while the stop goes on. Signals go only to
    # pinned targets, so that process never receives any.
    env = [f"NETRUNNER_TEST_MARKER={marker}".encode()]
    records = codec.encode_spawn(py(REUSE), env, [PY], None, detach=False, kill_timeout=5)
    wrapper = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "--"]
    # Each attempt reuses G's pid deterministically (ns_last_pid) and costs
    # seconds (1500 fillers): the stress mode doubles the attempts, no more.
    attempts = 3 if iterations(1) == 1 else 6
    report = run_owner(wrapper, {"scenario": "reuse", "shepherd": find_shepherd(), "attempts": attempts,
                                 "fillers": 1500, "kill_timeout_ms": 300,
                                 "records": [r.hex() for r in records]}, timeout=30 + 20 * attempts)
    attempts = report["attempts"]
    assert any(a["taken"] for a in attempts), f"no attempt managed to reuse G's pid: {attempts}"
    for a in attempts:
        assert os.WIFEXITED(a["shepherd_status"]) and os.WEXITSTATUS(a["shepherd_status"]) == 0, a
        kinds = [codec.decode(bytes.fromhex(r["hex"])) for r in a["records"]]
        assert isinstance(kinds[0], codec.Started) and isinstance(kinds[1], codec.Exited), a
        assert os.WTERMSIG(kinds[1].status) == signal.SIGKILL, a
        if a["taken"]:
            assert a["alive"] and a["pending"] == 0, f"the process that took pid {a['g']} was signalled: {a}"


# ---- collisions ------------------------------------------------------------------

def collide(order: str) -> None:
    pid, sock = idle_shepherd()
    # both-at-once: the command waits for its input to end, so the shepherd
    # is surely still running it when we stop (SIGSTOP) the shepherd
    argv = [SH, b"-c", b"read x; exit 0"] if order == "both-at-once" else [b"/bin/true"]
    ours = send_spawn(sock, argv)
    if order == "during-exec":  # the stop lands while the child works towards execve
        try:
            sock.send(codec.encode_stop(None))
        except BrokenPipeError:
            pass  # the command was quicker: it ran, exited, and the shepherd finished
    got: list[object] = []
    pidfd = -1
    try:
        event, fds = recv_event(sock)
        got.append(event)
        assert isinstance(event, codec.Started), event
        [pidfd] = fds
        if order == "both-at-once":
            os.kill(pid, signal.SIGSTOP)
            os.close(ours[0])
            ours[0] = -1
        if order != "stop-first":
            assert select.select([pidfd], [], [], 10)[0]  # the command has exited
        try:
            sock.send(codec.encode_stop(None))
        except BrokenPipeError:
            pass  # the shepherd has finished and refuses more records
        if order == "both-at-once":
            os.kill(pid, signal.SIGCONT)
        while True:
            try:
                event, fds = recv_event(sock)
            except ConnectionResetError:
                assert any(isinstance(e, codec.Exited) for e in got), f"ECONNRESET before EXITED: {got}"
                break
            close_all(fds)
            got.append(event)
            if event is None:
                break
    finally:
        if pidfd >= 0:
            os.close(pidfd)
        sock.close()
        close_all([fd for fd in ours if fd >= 0])
    reap(pid)
    exited = [e for e in got if isinstance(e, codec.Exited)]
    assert len(exited) == 1 and not any(isinstance(e, codec.ShepherdFault) for e in got), (order, got)
    assert got[:2] == [got[0], exited[0]], (order, got)
    true_statuses = {0} if order not in ("stop-first", "during-exec") else {0, signal.SIGTERM}
    assert exited[0].status in true_statuses, (order, got)


@pytest.mark.parametrize("order", ["stop-first", "exit-first", "both-at-once", "during-exec"])
def test_an_exit_colliding_with_a_stop_has_one_true_outcome(order: str) -> None:
    for _ in range(iterations(1000 if order != "both-at-once" else 300)):
        collide(order)


def test_a_stop_sent_before_the_exit_wins_over_detach(marker: str) -> None:
    # The shepherd is held (SIGSTOP) while C_STOP arrives and the command
    # exits; when it resumes it sees both at once and must act on the stop.
    for _ in range(iterations(20)):
        pid, sock = idle_shepherd()
        ours = send_spawn(sock, [SH, b"-c", b"sleep 100 & echo ready; read x; exit 0"], detach=True)
        try:
            event, [pidfd] = recv_event(sock)
            assert isinstance(event, codec.Started)
            assert read_line(ours[1]) == b"ready\n"
            os.kill(pid, signal.SIGSTOP)
            sock.send(codec.encode_stop(None))
            os.close(ours[0])  # end of input: the shell exits
            ours[0] = -1
            assert select.select([pidfd], [], [], 10)[0]
            os.close(pidfd)
            os.kill(pid, signal.SIGCONT)
            got = events(sock)
            assert isinstance(got[0], codec.Exited) and got[0].status == 0, got
        finally:
            sock.close()
            close_all([fd for fd in ours if fd >= 0])
        reap(pid)
        assert not pids_with_marker(marker), "the leftover sleep survived a stop asked for before the exit"


# ---- the zygote's fds ---------------------------------------------------------------

def _fd_targets(pid: int) -> set[str]:
    """What the fds of ``pid`` point at. One closed between the listing and
    its ``readlink`` is left out: a command that is starting opens and
    closes files of its own (the loader and the C library of ``sleep`` use
    fd 3 for each file they read)."""
    targets = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:
            pass
    return targets


def test_the_zygote_and_shepherds_hold_no_inheritable_fd_of_ours(marker: str) -> None:
    from test_zygote import Zygote

    r, w = os.pipe()
    os.set_inheritable(w, True)
    z = Zygote()  # started after the pipe: posix_spawn hands it down
    try:
        assert sorted(int(fd) for fd in os.listdir(f"/proc/{z.pid}/fd")) == [0, 1, 2, 3]
        pid, sock = z.fork()
        ours = send_spawn(sock, [b"/bin/sleep", b"100"])
        try:
            child = started(sock)
            for proc in (pid, child):
                assert os.readlink(f"/proc/self/fd/{w}") not in _fd_targets(proc), proc
            os.close(w)
            w = -1
            assert select.select([r], [], [], 10)[0]
            assert os.read(r, 1) == b""
            sock.send(codec.encode_stop(None))
            assert isinstance(events(sock)[0], codec.Exited)
        finally:
            sock.close()
            close_all(ours)
            reap(pid)  # after a failure too: hung up, it stops the command and exits
    finally:
        if w >= 0:
            os.close(w)
        os.close(r)
        assert z.close() == 0


# ---- exit codes ------------------------------------------------------------------

def test_exit_codes() -> None:
    pid, sock = idle_shepherd()
    sock.close()
    reap(pid, expect=wire.EXIT_OK)  # an idle spare not needed

    pid, sock = idle_shepherd()
    sock.send(b"\x99")
    assert events(sock) == [codec.ShepherdFault(wire.ERR_MALFORMED, 0), None]
    sock.close()
    reap(pid, expect=wire.EXIT_PROTOCOL)

    pid, sock, ours = spawn([b"/bin/sleep", b"100"], kill_timeout=0.5)
    started(sock)
    sock.send(struct.pack("<BI", 0x13, 0) + b"x")  # a STOP one byte too long
    got = events(sock)
    assert got == [codec.ShepherdFault(wire.ERR_MALFORMED, 0), None], got
    sock.close()
    close_all(ours)
    reap(pid, expect=wire.EXIT_PROTOCOL)  # after stopping the tree

    pid, sock, ours = spawn([b"/bin/sh", b"-c", b"exit 5"])
    assert os.WEXITSTATUS(events(sock)[1].status) == 5  # type: ignore[union-attr]
    sock.close()
    close_all(ours)
    reap(pid, expect=wire.EXIT_OK)

