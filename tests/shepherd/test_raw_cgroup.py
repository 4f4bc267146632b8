"""C_CGROUP, driven with raw records: the records' checks, the command joining
its cgroups before it execs, a cgroup it cannot join, leftovers stopped
through the cgroup (also where the shepherd's /proc is foreign or empty),
the statistics in S_EXITED, and the directories netrunner created removed on
every way out.

Every test makes its directories under a unique name in the cgroup-v2 mount
and the v1 memory mount (found in /proc/self/mountinfo), and the fixture
fails it if any is left behind."""

from __future__ import annotations

import errno
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
from _owner import run_owner
from _raw import (
    cgroup_mounts,
    cgroup_record,
    close_all,
    events,
    idle_shepherd,
    py,
    read_line,
    reap,
    send_spawn,
    spawn_in,
    started,
)
from conftest import pids_with_marker, wait_until

from netrunner._core import codec, wire
from netrunner._io.shepherd import find_shepherd

PY = sys.executable.encode()
SH = b"/bin/sh"
V2, V1, MEM, PARENT = wire.CGROUP_V2, wire.CGROUP_V1, wire.CGROUP_MEMORY_V1, wire.CGROUP_PARENT
REMOVE = wire.CGROUP_REMOVE




def read_all(fd: int, timeout: float = 10.0) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError(f"no end of file: {out!r}")
        chunk = os.read(fd, 65536)
        if not chunk:
            return out
        out += chunk


class Cgroups:
    """Directories of one test, under a unique name in the v2 and v1 memory mounts."""

    def __init__(self) -> None:
        v2, v1 = cgroup_mounts()
        assert v2 is not None and all(c in v1 for c in ("memory", "pids", "cpuset")), (
            f"cannot set up the test: no cgroup-v2 mount or v1 memory, pids or cpuset mount: {v2} {v1}")
        self.mounts = {"v2": v2, "memory": v1["memory"], "pids": v1["pids"], "cpuset": v1["cpuset"]}
        self.name = f"netrunner-test-{uuid.uuid4().hex[:12]}"
        self.made: list[str] = []

    def path(self, kind: str, rel: str = "") -> str:
        return os.path.join(self.mounts[kind], self.name, rel) if rel else os.path.join(self.mounts[kind], self.name)

    def mkdir(self, kind: str, rel: str = "") -> str:
        path = self.path(kind, rel)
        os.mkdir(path)
        self.made.append(path)
        return path

    def left(self) -> list[str]:
        return [d for d in self.made if os.path.exists(d)]

    def cleanup(self) -> None:
        """Kill whatever is in a directory still there, then remove it, innermost first."""
        for d in sorted(self.left(), key=len, reverse=True):
            if os.path.exists(os.path.join(d, "cgroup.kill")):
                with open(os.path.join(d, "cgroup.kill"), "w") as f:
                    f.write("1")
            deadline = time.monotonic() + 5
            while True:
                try:
                    with open(os.path.join(d, "cgroup.procs")) as f:
                        pids = [int(p) for p in f.read().split()]
                    for pid in pids:
                        os.kill(pid, signal.SIGKILL)
                    os.rmdir(d)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.01)


@pytest.fixture
def cg() -> Iterator[Cgroups]:
    groups = Cgroups()
    yield groups
    left = groups.left()
    groups.cleanup()
    assert not left, f"cgroup directories left behind: {left}"


def rec(role: int, path: str, flags: int = REMOVE) -> bytes:
    return cgroup_record(role, os.fsencode(path), flags)


def cgroup_line(kind: str, name: str, text: str) -> str:
    """The line of /proc/<pid>/cgroup for that hierarchy."""
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        if (kind == "v2" and controllers == "") or kind in controllers.split(","):
            return path
    raise AssertionError(f"no {kind} line in {text!r}")


# ---- malformed and unexpected records ----------------------------------------------

MALFORMED = {
    "relative path": cgroup_record(V2, b"relative/dir"),
    "empty path": cgroup_record(V2, b""),
    "no tail": cgroup_record(V2, b"", raw_tail=b""),
    "no NUL": cgroup_record(V2, b"", raw_tail=b"/sys/x"),
    "text after the NUL": cgroup_record(V2, b"", raw_tail=b"/sys/x\0y"),
    "two NULs": cgroup_record(V2, b"", raw_tail=b"/sys/x\0\0"),
    "a NUL inside": cgroup_record(V2, b"", raw_tail=b"/sys\0/x\0"),
    "role 0": cgroup_record(0, b"/sys/x"),
    "role 5": cgroup_record(5, b"/sys/x"),
    "role 2**32-1": cgroup_record(2**32 - 1, b"/sys/x"),
    "flag 2": cgroup_record(V2, b"/sys/x", 2),
    "flag 2**31": cgroup_record(V1, b"/sys/x", 2**31 | REMOVE),
    "path too long": cgroup_record(V2, b"/" + b"x" * wire.CGROUP_PATH_MAX),
    "header too short": cgroup_record(V2, b"/x")[: wire.BY_NAME["C_CGROUP"].size - 1],
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_records(case: str, cg: Cgroups) -> None:
    # A valid record first: its directory is removed on the way out.
    leaf = cg.mkdir("v2")
    pid, sock = idle_shepherd()
    try:
        sock.send(rec(V2 if case != "two v2" else V1, leaf))
        sock.send(MALFORMED[case])
        assert events(sock) == [codec.ShepherdFault(wire.ERR_MALFORMED, 0), None]
    finally:
        sock.close()
    reap(pid, expect=wire.EXIT_PROTOCOL)
    assert not os.path.exists(leaf)


def test_the_longest_path_is_accepted(cg: Cgroups) -> None:
    # CGROUP_PATH_MAX counts the NUL: a path of CGROUP_PATH_MAX - 1 bytes is
    # well-formed (too long for the kernel, so the join fails: ENAMETOOLONG).
    leaf = cg.mkdir("v2")
    longest = b"/" + b"x" * (wire.CGROUP_PATH_MAX - 2)
    pid, sock = idle_shepherd()
    try:
        sock.send(rec(V2, leaf))
        sock.send(cgroup_record(V1, longest, REMOVE))
        ours = send_spawn(sock, [b"/bin/true"])
        assert events(sock) == [codec.ExecFailed(errno.ENAMETOOLONG, wire.STAGE_CGROUP), None]
        close_all(ours)
    finally:
        sock.close()
    reap(pid)
    assert not os.path.exists(leaf)


@pytest.mark.parametrize("case", ["too many", "two v2"])
def test_unexpected_records_before_the_spawn(case: str, cg: Cgroups) -> None:
    if case == "too many":
        # MAX_CGROUPS nested parents are fine; one more is refused, and the
        # ones before are removed (innermost first, or they could not be).
        dirs = [cg.mkdir("v2")]
        for i in range(wire.MAX_CGROUPS - 1):
            dirs.append(cg.mkdir("v2", "/".join(["d"] * (i + 1))))
        records = [rec(PARENT, d) for d in dirs] + [rec(PARENT, cg.path("v2", "more"))]
    else:
        base = cg.mkdir("v2")
        dirs = [cg.mkdir("v2", "a"), cg.mkdir("v2", "b")]
        records = [rec(PARENT, base), rec(V2, dirs[0]), rec(V2, dirs[1])]
    pid, sock = idle_shepherd()
    try:
        for record in records:
            sock.send(record)
        assert events(sock) == [codec.ShepherdFault(wire.ERR_UNEXPECTED, 0), None]
    finally:
        sock.close()
    reap(pid, expect=wire.EXIT_PROTOCOL)
    if case == "two v2":
        # the refused record is not kept: its directory is the test's to
        # remove (and the parent holding it stays, as a shared one would)
        assert cg.left() == [base, dirs[1]]
        os.rmdir(dirs[1])
        os.rmdir(base)
    assert not cg.left()


def test_a_record_after_the_spawn_is_unexpected(cg: Cgroups, marker: str) -> None:
    leaf = cg.mkdir("v2")
    pid, sock, ours = spawn_in([rec(V2, leaf)], [b"/bin/sleep", b"100"])
    try:
        started(sock)
        sock.send(rec(V1, cg.path("memory")))
        assert events(sock) == [codec.ShepherdFault(wire.ERR_UNEXPECTED, 0), None]
    finally:
        sock.close()
        close_all(ours)
    reap(pid, expect=wire.EXIT_PROTOCOL)  # after stopping the tree and removing the directory
    assert not os.path.exists(leaf)
    assert not pids_with_marker(marker)


# ---- joining -------------------------------------------------------------------------

def test_the_command_joins_its_cgroups_before_it_execs(cg: Cgroups) -> None:
    parent = cg.mkdir("v2")
    leaf = cg.mkdir("v2", "leaf")
    mem = cg.mkdir("memory")
    kept_v1 = cg.mkdir("pids")  # not created by "netrunner": joined, never removed
    records = [rec(PARENT, parent), rec(V2, leaf), rec(MEM, mem), rec(V1, kept_v1, 0)]
    # The command reads its own cgroups: the first thing it does after execve.
    pid, sock, ours = spawn_in(records, [b"/bin/cat", b"/proc/self/cgroup"])
    try:
        got = events(sock)
        out = read_all(ours[1]).decode()
    finally:
        sock.close()
        close_all(ours)
    reap(pid)
    assert isinstance(got[0], codec.Started) and isinstance(got[1], codec.Exited), got
    assert cgroup_line("v2", cg.name, out) == f"/{cg.name}/leaf", out
    assert cgroup_line("memory", cg.name, out) == f"/{cg.name}", out
    assert cgroup_line("pids", cg.name, out) == f"/{cg.name}", out
    exited = got[1]
    assert exited.status == 0
    assert exited.flags & wire.EXITED_CGROUP and not exited.flags & wire.EXITED_CGROUP_KEPT, exited
    assert cg.left() == [kept_v1]  # everything flagged REMOVE is gone, parent included
    os.rmdir(kept_v1)


def test_a_cgroup_that_cannot_be_joined_fails_the_start(cg: Cgroups, tmp_path) -> None:  # type: ignore[no-untyped-def]
    parent = cg.mkdir("v2")
    leaf = cg.mkdir("v2", "leaf")
    mem = cg.mkdir("memory")
    missing = cg.path("memory", "missing")
    witness = tmp_path / "ran"
    records = [rec(PARENT, parent), rec(V2, leaf), rec(MEM, mem), rec(V1, missing)]
    pid, sock, ours = spawn_in(records, [SH, b"-c", b"touch " + os.fsencode(witness)])
    try:
        assert events(sock) == [codec.ExecFailed(errno.ENOENT, wire.STAGE_CGROUP), None]
        # the spawn's fds are closed: our pipes see end of file
        assert read_all(ours[1], 5) == b""
        assert read_all(ours[2], 5) == b""
    finally:
        sock.close()
        close_all(ours)
    reap(pid)
    assert not witness.exists()
    assert not cg.left()


def test_a_cgroup_that_refuses_the_command_fails_the_start(cg: Cgroups, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A v1 cpuset directory without CPUs opens fine but refuses members
    # (ENOSPC): the clone child's write fails, before anything else happened.
    leaf = cg.mkdir("v2")
    cpuset = cg.mkdir("cpuset")
    with open(os.path.join(cpuset, "cpuset.cpus")) as f:
        assert f.read().strip() == "", "cannot set up the test: a new cpuset has CPUs"
    witness = tmp_path / "ran"
    pid, sock, ours = spawn_in([rec(V2, leaf), rec(V1, cpuset)], [SH, b"-c", b"touch " + os.fsencode(witness)])
    try:
        assert events(sock) == [codec.ExecFailed(errno.ENOSPC, wire.STAGE_CGROUP), None]
    finally:
        sock.close()
        close_all(ours)
    reap(pid)
    assert not witness.exists()
    assert not cg.left()


def test_an_exec_failure_removes_the_directories(cg: Cgroups) -> None:
    leaf = cg.mkdir("v2")
    mem = cg.mkdir("memory")
    pid, sock, ours = spawn_in([rec(V2, leaf), rec(MEM, mem)], [b"/nonexistent/prog"])
    try:
        assert events(sock) == [codec.ExecFailed(errno.ENOENT, wire.STAGE_EXEC), None]
    finally:
        sock.close()
        close_all(ours)
    reap(pid)
    assert not cg.left()


def test_hang_up_before_the_spawn_removes_the_directories(cg: Cgroups) -> None:
    leaf = cg.mkdir("v2")
    mem = cg.mkdir("memory")
    pid, sock = idle_shepherd()
    sock.send(rec(V2, leaf))
    sock.send(rec(MEM, mem))
    sock.close()
    reap(pid)
    assert not cg.left()


# ---- stopping --------------------------------------------------------------------------

LEFTOVER = """
import os, signal, sys, time
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.write(w, b"%d" % os.getpid())
        time.sleep(60)
    os._exit(0)
os.close(w)
pid = int(os.read(r, 20))
print("ready", pid, flush=True)
"""


def test_a_double_forked_leftover_is_killed_and_the_directories_removed(cg: Cgroups, marker: str) -> None:
    # The command exits at once; its grandchild left the session and ignores
    # SIGTERM: the usual stop (TERM, kill_timeout, KILL through cgroup.kill).
    leaf = cg.mkdir("v2")
    mem = cg.mkdir("memory")
    pid, sock, ours = spawn_in([rec(V2, leaf), rec(MEM, mem)], py(LEFTOVER), kill_timeout=0.3)
    try:
        started(sock)
        line = read_line(ours[1]).split()
        assert line[0] == b"ready", line
        leftover = int(line[1])
        with open(os.path.join(leaf, "cgroup.procs")) as f:
            assert str(leftover) in f.read().split()
        t0 = time.monotonic()
        got = events(sock)
        elapsed = time.monotonic() - t0
    finally:
        sock.close()
        close_all(ours)
    reap(pid)
    exited = got[0]
    assert isinstance(exited, codec.Exited) and exited.status == 0, got
    assert exited.flags & ~wire.EXITED_PEAK_MEMORY == wire.EXITED_CGROUP, exited
    assert 0.2 < elapsed < 5, elapsed  # through the TERM grace
    assert not cg.left()
    assert not pids_with_marker(marker)


def test_the_owner_leaving_stops_the_tree_and_removes_the_directories(cg: Cgroups, marker: str) -> None:
    leaf = cg.mkdir("v2")
    mem = cg.mkdir("memory")
    script = LEFTOVER + "time.sleep(60)\n"
    pid, sock, ours = spawn_in([rec(V2, leaf), rec(MEM, mem)], py(script), kill_timeout=0.3)
    try:
        started(sock)
        assert read_line(ours[1]).startswith(b"ready ")
    finally:
        sock.close()  # the owner is gone
        close_all(ours)
    reap(pid)
    assert not cg.left()
    assert not pids_with_marker(marker)


def test_detach_gives_way_to_the_cgroup(cg: Cgroups, marker: str) -> None:
    leaf = cg.mkdir("v2")
    pid, sock, ours = spawn_in([rec(V2, leaf)], py(LEFTOVER), kill_timeout=0.3, detach=True)
    try:
        got = events(sock)
    finally:
        sock.close()
        close_all(ours)
    reap(pid)
    assert isinstance(got[1], codec.Exited) and got[1].flags == wire.EXITED_CGROUP, got
    assert not cg.left()
    assert not pids_with_marker(marker)


ONE_SIGTERM = """
import os, signal, sys, time
count = 0
def term(*_):
    global count
    count += 1
signal.signal(signal.SIGTERM, term)
r, w = os.pipe()
kids = []
for leave_group in (False, True):
    pid = os.fork()
    if pid == 0:
        if leave_group:
            os.setsid()
        os.write(w, b"x")
        while not count:
            time.sleep(0.01)
        time.sleep(0.4)  # a graceful shutdown, during which more would arrive
        print("setsid" if leave_group else "group", count, flush=True)
        os._exit(0)
    kids.append(pid)
for _ in kids:
    os.read(r, 1)
print("ready", flush=True)
if EXIT_FIRST:
    sys.exit(0)
while not count:
    time.sleep(0.01)
for pid in kids:
    os.waitpid(pid, 0)
sys.exit(count)
"""


@pytest.mark.parametrize("how", ["stop", "exit first"])
def test_a_stop_sends_each_process_of_the_cgroup_one_sigterm(how: str, cg: Cgroups) -> None:
    # The command and a child in its group get theirs through the group; a
    # child that left it only through the cgroup: one each, not two. When the
    # command exits first, the child in its group (now the shepherd's child)
    # still gets only the group's.
    leaf = cg.mkdir("v2")
    script = ONE_SIGTERM.replace("EXIT_FIRST", str(how == "exit first"))
    pid, sock, ours = spawn_in([rec(V2, leaf)], py(script), kill_timeout=10)
    try:
        started(sock)
        assert read_line(ours[1]) == b"ready\n"
        if how == "stop":
            sock.send(codec.encode_stop(None))
        got = events(sock)
        out = sorted(read_all(ours[1]).decode().splitlines())
    finally:
        sock.close()
        close_all(ours)
    reap(pid)
    assert isinstance(got[0], codec.Exited) and os.WIFEXITED(got[0].status), got
    assert out == ["group 1", "setsid 1"], out
    want = 1 if how == "stop" else 0
    assert os.WEXITSTATUS(got[0].status) == want, f"SIGTERMs received by the command: {got[0].status >> 8}"
    assert not cg.left()


def test_an_outsider_in_the_cgroup_is_stopped_before_the_end(cg: Cgroups) -> None:
    # No child of the shepherd is left (ECHILD), but the cgroup still holds a
    # process put there from outside: the tree is not gone until it is empty.
    leaf = cg.mkdir("v2")
    pid, sock, ours = spawn_in([rec(V2, leaf)], [SH, b"-c", b"read x; exit 0"], kill_timeout=0.3)
    outsider = subprocess.Popen(py("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                                   "print('ready', flush=True)\ntime.sleep(60)"), stdout=subprocess.PIPE)
    ofd = os.pidfd_open(outsider.pid)
    try:
        started(sock)
        assert outsider.stdout is not None
        assert outsider.stdout.readline() == b"ready\n"
        with open(os.path.join(leaf, "cgroup.procs"), "w") as f:
            f.write(str(outsider.pid))
        t0 = time.monotonic()
        os.close(ours[0])  # end of input: the command exits
        ours[0] = -1
        got = events(sock)
        elapsed = time.monotonic() - t0
        assert select.select([ofd], [], [], 0)[0], "S_EXITED came while the outsider ran"
    finally:
        sock.close()
        close_all([fd for fd in ours if fd >= 0])
        os.close(ofd)
        outsider.kill()
        outsider.wait()
        assert outsider.stdout is not None
        outsider.stdout.close()
    reap(pid)
    assert outsider.returncode == -signal.SIGKILL
    exited = got[0]
    assert isinstance(exited, codec.Exited) and exited.status == 0, got
    assert exited.flags == wire.EXITED_CGROUP, exited
    assert 0.25 < elapsed < 5, elapsed
    assert not cg.left()


# ---- statistics and removal -----------------------------------------------------------

def test_exited_carries_the_peak_memory_and_the_tree_cpu_time(cg: Cgroups) -> None:
    leaf = cg.mkdir("v2")
    mem = cg.mkdir("memory")
    script = ("import time\n"
              "b = bytearray(64 << 20)\n"
              "for i in range(0, len(b), 4096):\n"
              "    b[i] = 1\n"
              "t = time.process_time()\n"
              "while time.process_time() - t < 0.3:\n"
              "    pass\n")
    pid, sock, ours = spawn_in([rec(V2, leaf), rec(MEM, mem)], py(script))
    try:
        got = events(sock, timeout=30)
    finally:
        sock.close()
        close_all(ours)
    reap(pid)
    exited = got[1]
    assert isinstance(exited, codec.Exited) and exited.status == 0, got
    assert exited.flags == wire.EXITED_CGROUP | wire.EXITED_PEAK_MEMORY, exited
    assert 64 << 20 <= exited.peak_memory < 1 << 30, exited
    assert exited.utime_us + exited.stime_us >= 250_000, exited
    assert not cg.left()


def test_the_oom_killer_is_reported(cg: Cgroups) -> None:
    mem = cg.mkdir("memory")
    with open(os.path.join(mem, "memory.limit_in_bytes"), "w") as f:
        f.write(str(32 << 20))
    if os.path.exists(os.path.join(mem, "memory.memsw.limit_in_bytes")):
        with open(os.path.join(mem, "memory.memsw.limit_in_bytes"), "w") as f:
            f.write(str(32 << 20))  # no escape into swap
    script = ("b = bytearray(256 << 20)\n"
              "for i in range(0, len(b), 4096):\n"
              "    b[i] = 1\n")
    pid, sock, ours = spawn_in([rec(MEM, mem)], py(script))
    try:
        got = events(sock, timeout=30)
    finally:
        sock.close()
        close_all(ours)
    reap(pid)
    exited = got[1]
    assert isinstance(exited, codec.Exited) and os.WTERMSIG(exited.status) == signal.SIGKILL, got
    assert exited.flags == wire.EXITED_CGROUP | wire.EXITED_PEAK_MEMORY | wire.EXITED_OOM_KILLED, exited
    assert 16 << 20 < exited.peak_memory <= 32 << 20, exited
    assert not cg.left()


def test_a_shared_parent_stays_and_cgroups_made_inside_the_leaf_go_with_it(cg: Cgroups) -> None:
    # The parent holds another command's directory: not removable, and that
    # is no failure. The leaf has cgroups of its own below it (made by the
    # command, say): they are removed with it.
    parent = cg.mkdir("v2")
    leaf = cg.mkdir("v2", "leaf")
    other = cg.mkdir("v2", "other")
    below = cg.mkdir("v2", "leaf/below")
    deeper = cg.mkdir("v2", "leaf/below/deeper")
    pid, sock, ours = spawn_in([rec(PARENT, parent), rec(V2, leaf)], [b"/bin/true"])
    try:
        got = events(sock)
    finally:
        sock.close()
        close_all(ours)
    reap(pid)
    exited = got[1]
    assert isinstance(exited, codec.Exited) and exited.flags == wire.EXITED_CGROUP, got
    assert sorted(cg.left()) == sorted([parent, other]), f"{deeper}, {below} and {leaf} should be gone"
    os.rmdir(other)
    os.rmdir(parent)


def test_a_busy_leaf_is_reported_kept(cg: Cgroups, marker: str) -> None:
    # An outsider (not of the tree) in the v1 memory leaf: the tree is gone
    # (its kill cgroup, the v2 one, is empty), the outsider is not signalled,
    # and the busy leaf is reported kept after a few short tries.
    leaf = cg.mkdir("v2")
    mem = cg.mkdir("memory")
    outsider = subprocess.Popen(["sleep", "30"])
    try:
        with open(os.path.join(mem, "cgroup.procs"), "w") as f:
            f.write(str(outsider.pid))
        pid, sock, ours = spawn_in([rec(V2, leaf), rec(MEM, mem)], [b"/bin/true"])
        try:
            t0 = time.monotonic()
            got = events(sock)
            elapsed = time.monotonic() - t0
        finally:
            sock.close()
            close_all(ours)
        reap(pid)
        exited = got[1]
        assert isinstance(exited, codec.Exited), got
        assert exited.flags & ~wire.EXITED_PEAK_MEMORY == wire.EXITED_CGROUP | wire.EXITED_CGROUP_KEPT, exited
        assert elapsed < 2, elapsed  # a few short tries, no more
        assert cg.left() == [mem], "the v2 leaf should be gone, the busy v1 one kept"
        assert outsider.poll() is None, "the outsider, not of the tree, was signalled"
    finally:
        outsider.kill()
        outsider.wait()
    os.rmdir(mem)  # empty now: the kept directory is the test's to remove


# ---- where the shepherd's /proc is empty ---------------------------------------------

# (An ancestor namespace's /proc is no hiding place: the shepherd lists its
# children through it, see test_pinned_stop.)
EMPTY = ["unshare", "--pid", "--fork", "--kill-child", "--mount", "--propagation", "private", "--",
         "sh", "-c", 'mount -t tmpfs none /proc && exec "$@"', "sh"]


@pytest.mark.parametrize("kinds", ["v2+memory", "memory"])
def test_a_leftover_hidden_from_proc_is_killed_through_the_cgroup(kinds: str, cg: Cgroups, marker: str) -> None:
    # The shepherd cannot list its children: without a cgroup the leftover is
    # abandoned (test_pinned_stop). With one it is killed: by cgroup.kill in
    # v2, by its listing (pidfds) with a v1 directory only.
    records = []
    if "v2" in kinds:
        records.append(rec(V2, cg.mkdir("v2")))
    records.append(rec(MEM, cg.mkdir("memory")))
    env = [f"NETRUNNER_TEST_MARKER={marker}".encode(), b"PATH=/usr/bin:/bin"]
    argv = py(LEFTOVER + "time.sleep(0.1)\n")
    records += codec.encode_spawn(argv, env, [argv[0]], None, detach=False, kill_timeout=0.2)
    report = run_owner(EMPTY,
                       {"scenario": "run", "check": "empty-proc", "shepherd": find_shepherd(),
                        "records": [r.hex() for r in records], "timeout": 20})
    first = codec.decode(bytes.fromhex(report["first"]["hex"]))
    assert isinstance(first, codec.Started), report
    decoded = [codec.decode(bytes.fromhex(r["hex"])) for r in report["records"][1:]]
    assert len(decoded) == 1 and isinstance(decoded[0], codec.Exited), report
    exited = decoded[0]
    assert os.WIFEXITED(report["shepherd_status"]) and os.WEXITSTATUS(report["shepherd_status"]) == 0, report
    assert exited.status == 0, report
    assert exited.flags == wire.EXITED_SCAN_FAILED | wire.EXITED_CGROUP | wire.EXITED_PEAK_MEMORY, report
    assert report["escapee_gone_at_exit"] is True, report
    assert report["ready_to_exit_s"] < 3, report
    assert not cg.left()
    assert wait_until(lambda: not pids_with_marker(marker))
