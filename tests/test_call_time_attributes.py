"""SPEC 1: a command inherits the umask, resource limits, nice value and CPU
affinity of the interpreter *as it is at the call*, although its shepherd was
forked from a zygote started earlier (docs/decisions/0006).

Every change is made after a first spawn (so the zygote exists with the old
values) and undone by the autouse fixture. The nice value and the CPU
affinity are per thread on Linux: a command gets those of the thread that
starts it, as a ``subprocess`` child does; nice values are raised only in
threads of their own, because lowering one again needs privileges. The
command reports what it got from ``/proc/self``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import resource
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from helpers import in_forked_child, wait_until

import netrunner
import netrunner.aio
from netrunner._core import wire
from netrunner._core.attrs import SHARED_UMASK, Changes
from netrunner._engine import attrs_error
from netrunner._io import zygote
from netrunner._io.attrs import RESOURCES, current_limits, current_umask
from netrunner._io.shepherd import find_shepherd

NOFILE, CORE = resource.RLIMIT_NOFILE, resource.RLIMIT_CORE
INF = resource.RLIM_INFINITY
#: cat is a child of sh: both inherit everything from the command.
PROBE = ["sh", "-c", "cat /proc/self/status /proc/self/limits /proc/self/stat"]
KINDS = ["sync", "aio"]
T = TypeVar("T")


@dataclass
class Seen:
    """What a command was started with."""

    umask: int
    nice: int
    cpus: set[int]
    limits: dict[str, tuple[int, int]]  # /proc/self/limits' names; RLIM_INFINITY as -1


def parse_cpus(text: str) -> set[int]:
    cpus: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def parse(out: bytes) -> Seen:
    lines = out.decode().splitlines()
    fields = dict(line.split(":\t", 1) for line in lines if ":\t" in line)
    limits = {}
    for line in lines:
        if line.startswith("Max "):
            soft, hard = line[26:].split()[:2]
            limits[line[:26].strip()] = tuple(-1 if v == "unlimited" else int(v) for v in (soft, hard))
    nice = int(lines[-1].rsplit(")", 1)[1].split()[16])
    return Seen(int(fields["Umask"], 8), nice, parse_cpus(fields["Cpus_allowed_list"].strip()), limits)  # type: ignore[arg-type]


async def _aseen() -> Seen:
    return parse((await netrunner.aio.run(PROBE, check=True)).stdout)


def seen(kind: str) -> Seen:
    """What a command started now, from this thread, gets."""
    if kind == "aio":
        return asyncio.run(_aseen())  # the loop runs in this thread
    return parse(netrunner.run(PROBE, check=True).stdout)


def in_thread(fn: Callable[[], T]) -> T:
    """fn() in a new thread (its own nice value and CPU affinity); its result or its exception."""
    out: list[Any] = []

    def target() -> None:
        try:
            out.append((True, fn()))
        except BaseException as exc:  # handed to the test's thread
            out.append((False, exc))

    t = threading.Thread(target=target)
    t.start()
    t.join(60)
    assert out, "the thread did not finish"
    ok, value = out[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def limit_of(res: int) -> tuple[int, int]:
    return resource.getrlimit(res)


def can_lower_nice() -> bool:
    """Whether this process may lower a nice value (CAP_SYS_NICE or RLIMIT_NICE), tried in a throwaway thread."""
    def attempt() -> bool:
        start = os.getpriority(os.PRIO_PROCESS, 0)
        if start >= 19:
            return False
        os.setpriority(os.PRIO_PROCESS, 0, start + 1)
        try:
            os.setpriority(os.PRIO_PROCESS, 0, start)
        except PermissionError:
            return False
        return True

    return in_thread(attempt)


@pytest.fixture(autouse=True)
def restore_attributes() -> Iterator[None]:
    """Start the zygote first (with the attributes as they are), and put back
    everything a test changes in this thread or process."""
    umask = current_umask()
    assert umask is not None
    limits = {res: resource.getrlimit(res) for res in (NOFILE, CORE)}
    cpus = os.sched_getaffinity(0)
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    netrunner.run(["true"])
    first = zygote.current_pid()
    try:
        yield
    finally:
        os.umask(umask)
        for res, lim in limits.items():
            resource.setrlimit(res, lim)
        os.sched_setaffinity(0, cpus)
        if zygote.current_pid() != first:  # started by the test, with its attributes: not for the next ones
            zygote.shutdown()
        assert os.getpriority(os.PRIO_PROCESS, 0) == nice, "a test changed the nice value of its own thread"


# ---- each attribute, changed after the zygote started ------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_umask(kind: str) -> None:
    before = current_umask()
    assert seen(kind).umask == before
    os.umask(0o077)
    assert seen(kind).umask == 0o077
    os.umask(0o027)
    assert seen(kind).umask == 0o027
    os.umask(before)  # type: ignore[arg-type]
    assert seen(kind).umask == before


@pytest.mark.parametrize("kind", KINDS)
def test_open_files_soft_limit(kind: str) -> None:
    soft, hard = limit_of(NOFILE)
    assert seen(kind).limits["Max open files"] == (soft, hard)
    resource.setrlimit(NOFILE, (256, hard))
    assert seen(kind).limits["Max open files"] == (256, hard)
    resource.setrlimit(NOFILE, (soft, hard))
    assert seen(kind).limits["Max open files"] == (soft, hard)


@pytest.mark.parametrize("kind", KINDS)
def test_core_limit(kind: str) -> None:
    soft, hard = limit_of(CORE)
    new = next(v for v in (1 << 20, 4096, 0) if v != soft and (hard == INF or v <= hard))
    resource.setrlimit(CORE, (new, hard))
    assert seen(kind).limits["Max core file size"] == (new, hard)
    resource.setrlimit(CORE, (soft, hard))
    assert seen(kind).limits["Max core file size"] == (soft, hard)


@pytest.mark.parametrize("kind", KINDS)
def test_nice_raised(kind: str) -> None:
    ours = os.getpriority(os.PRIO_PROCESS, 0)

    def raised() -> list[int]:
        got = []
        for step in (3, 5):
            os.setpriority(os.PRIO_PROCESS, 0, min(ours + step, 19))
            got.append(seen(kind).nice)
        return got

    assert in_thread(raised) == [min(ours + 3, 19), min(ours + 5, 19)]
    assert seen(kind).nice == ours  # this thread's, unchanged


@pytest.mark.parametrize("kind", KINDS)
def test_affinity_narrowed_to_one_cpu(kind: str) -> None:
    cpus = os.sched_getaffinity(0)
    assert seen(kind).cpus == cpus
    for cpu in sorted(cpus)[-1:] + sorted(cpus)[:1]:
        os.sched_setaffinity(0, {cpu})
        assert seen(kind).cpus == {cpu}
    os.sched_setaffinity(0, cpus)
    assert seen(kind).cpus == cpus


@pytest.mark.parametrize("kind", KINDS)
def test_everything_at_once_and_back(kind: str) -> None:
    before = seen(kind)
    nofile = limit_of(NOFILE)

    def changed() -> Seen:
        os.setpriority(os.PRIO_PROCESS, 0, min(before.nice + 2, 19))
        os.sched_setaffinity(0, {min(before.cpus)})
        os.umask(0o007)
        resource.setrlimit(NOFILE, (100, nofile[1]))
        try:
            return seen(kind)
        finally:
            os.umask(before.umask)
            resource.setrlimit(NOFILE, nofile)

    got = in_thread(changed)
    assert (got.umask, got.nice, got.cpus) == (0o007, min(before.nice + 2, 19), {min(before.cpus)})
    assert got.limits["Max open files"] == (100, nofile[1])
    assert seen(kind) == before


# ---- per thread, per process ---------------------------------------------------------------


def test_nice_and_affinity_go_with_the_thread_umask_and_limits_with_the_process() -> None:
    main = seen("sync")
    one = max(main.cpus)
    barrier = threading.Barrier(2, timeout=30)

    def other() -> Seen:
        os.setpriority(os.PRIO_PROCESS, 0, min(main.nice + 4, 19))
        os.sched_setaffinity(0, {one})
        barrier.wait()  # changed: the main thread starts its command now
        got = seen("sync")
        barrier.wait()
        return got

    result: list[Seen] = []
    t = threading.Thread(target=lambda: result.append(other()))
    t.start()
    barrier.wait()
    here = seen("sync")  # while the other thread has its own nice and affinity
    barrier.wait()
    t.join(30)
    assert (result[0].nice, result[0].cpus) == (min(main.nice + 4, 19), {one})
    assert (here.nice, here.cpus) == (main.nice, main.cpus)
    # the umask and resource limits are the process's, whichever thread set them
    in_thread(lambda: os.umask(0o077))
    resource.setrlimit(NOFILE, (200, limit_of(NOFILE)[1]))
    got = in_thread(lambda: seen("sync"))
    assert got.umask == 0o077
    assert got.limits["Max open files"][0] == 200


def test_a_zygote_started_from_another_thread() -> None:
    # The zygote's attributes are those of the thread that started it: a
    # command started from another thread gets that thread's, also where
    # they are wider (affinity) or lower (nice) than the zygote's.
    main = seen("sync")
    one = min(main.cpus)

    def fresh_zygote_here() -> Seen:
        os.setpriority(os.PRIO_PROCESS, 0, min(main.nice + 3, 19))
        os.sched_setaffinity(0, {one})
        zygote.shutdown()
        return seen("sync")  # starts the new zygote from this thread

    try:
        there = in_thread(fresh_zygote_here)
        assert (there.nice, there.cpus) == (min(main.nice + 3, 19), {one})
        assert zygote.current_pid() is not None
        here = seen("sync")
        assert here.cpus == main.cpus
        # Lowering a nice value takes CAP_SYS_NICE (or RLIMIT_NICE); without
        # it the command keeps the zygote's, see test_a_nice_value_that_cannot_be_lowered
        assert here.nice == (main.nice if can_lower_nice() else there.nice)
    finally:
        zygote.shutdown()  # the next test's zygote starts from the main thread again


def test_a_nice_value_that_cannot_be_lowered() -> None:
    # Unprivileged, a command started from a thread with a lower nice value
    # than the zygote's keeps the zygote's: the start does not fail.
    script = """
import os, threading, netrunner
go, out = threading.Event(), []
def worker():  # made before the main thread raises its nice value: it keeps the lower one
    go.wait()
    out.append(netrunner.run(["sh", "-c", "cut -d' ' -f19 /proc/self/stat"], check=True).stdout)
t = threading.Thread(target=worker, daemon=True)  # a failure below ends the script at once
t.start()
os.setgroups([])
os.setgid(65534)
os.setuid(65534)  # every thread: no CAP_SYS_NICE from here on
os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, 0) + 5)
try:
    os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, 0) - 1)
    raise SystemExit("still allowed to lower a nice value")
except PermissionError:
    pass
netrunner.run(["true"])  # the zygote: started from this thread, 5 higher
go.set()
t.join()
print(os.getpriority(os.PRIO_PROCESS, 0), int(out[0]), flush=True)
"""
    if os.geteuid() != 0:  # already unprivileged: no setuid needed
        script = script.replace("os.setgroups([])\nos.setgid(65534)\nos.setuid(65534)", "pass")
    # netrunner imported, and the shepherd named, before the setuid: an
    # editable install's build tree need not be readable by nobody, nor the
    # interpreter's own files (a pyenv under /root), which finding the
    # shepherd in an editable install would import from
    env = dict(os.environ, NETRUNNER_SHEPHERD=find_shepherd())
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60, cwd="/", env=env)
    assert done.returncode == 0, done.stderr.decode()
    zygote_nice, command_nice = map(int, done.stdout.split())
    assert command_nice == zygote_nice


# ---- daemons ---------------------------------------------------------------------------------


def test_a_daemon_runs_with_the_thread_of_its_start(tmp_path: pathlib.Path) -> None:
    # Restarts are started by the hub thread; every run still gets the nice
    # value and CPU affinity of the thread that called start().
    log = tmp_path / "runs"
    main = seen("sync")
    one = max(main.cpus)
    report = "$(cut -d' ' -f19 /proc/self/stat) $(grep Cpus_allowed_list /proc/self/status | cut -f2)"
    cmd = ["sh", "-c", f"echo {report} >> {log}; exit 1"]
    d = netrunner.Daemon(cmd, restart="always", backoff=(0.01, 0.01), max_restarts=100)

    def start() -> None:
        os.setpriority(os.PRIO_PROCESS, 0, min(main.nice + 2, 19))
        os.sched_setaffinity(0, {one})
        d.start()

    try:
        in_thread(start)
        assert wait_until(lambda: log.exists() and len(log.read_text().splitlines()) >= 3, timeout=30)
    finally:
        d.stop()
    runs = log.read_text().splitlines()
    assert set(runs) == {f"{min(main.nice + 2, 19)} {one}"}, runs


# ---- what goes over the wire -------------------------------------------------------------------


def sent_for_true() -> Changes | None:
    """What the C_ATTRS record of a command started now carried (None: no record)."""
    p = netrunner.start(["true"])
    p.wait()
    return p._h.attrs_sent


def test_nothing_is_sent_when_nothing_changed() -> None:
    assert sent_for_true() is None
    soft, hard = limit_of(NOFILE)
    resource.setrlimit(NOFILE, (soft - 1, hard))
    assert sent_for_true() == Changes(rlimits=((NOFILE, soft - 1, hard),))


# ---- the umask: shared with the shepherds, or read and sent ------------------------------------


@contextlib.contextmanager
def copied_umask() -> Iterator[None]:
    """A zygote started without sharing the interpreter's cwd, root and
    umask, as where netrunner-spawn.so cannot be used: the umask is read at
    every spawn and sent when it differs."""
    zygote.shutdown()
    zygote._starter = False
    try:
        netrunner.run(["true"])
        assert zygote._zygote is not None
        assert zygote._zygote.baseline.umask != SHARED_UMASK
        yield
    finally:
        zygote.shutdown()
        zygote._starter = None


def umask_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(f.read().split("\nUmask:", 1)[1].split()[0], 8)


def test_the_shepherds_share_the_umask_so_it_is_never_sent() -> None:
    assert zygote._zygote is not None
    assert zygote._zygote.baseline.umask == SHARED_UMASK
    os.umask(0o077)
    assert sent_for_true() is None
    assert seen("sync").umask == 0o077
    helpers = zygote.helper_pids()
    assert zygote.current_pid() in helpers
    assert len(helpers) >= 2  # the zygote and an idle shepherd
    os.umask(0o027)
    assert {pid: umask_of(pid) for pid in helpers} == dict.fromkeys(helpers, 0o027)


@pytest.mark.parametrize("kind", KINDS)
def test_a_copied_umask_is_read_and_sent(kind: str) -> None:
    before = current_umask()
    with copied_umask():
        assert sent_for_true() is None
        os.umask(0o077)
        assert sent_for_true() == Changes(umask=0o077)
        assert seen(kind).umask == 0o077
        os.umask(before)  # type: ignore[arg-type]
        assert sent_for_true() is None
        assert seen(kind).umask == before


def test_the_interpreters_cwd_and_umask_stay_its_own(tmp_path: pathlib.Path) -> None:
    # The zygote and the shepherds share them with us; a command's cwd= and
    # umask (set in its clone child, before the exec) are the command's alone.
    here = os.getcwd()
    os.umask(0o027)
    soft, hard = limit_of(NOFILE)
    resource.setrlimit(NOFILE, (soft - 1, hard))  # a C_ATTRS record, applied in the child too
    out = netrunner.run(["sh", "-c", "umask 0; pwd; umask"], cwd=tmp_path, check=True).stdout
    assert out == f"{tmp_path}\n0000\n".encode()
    assert os.getcwd() == here
    assert current_umask() == 0o027
    with copied_umask():
        os.umask(0o077)  # sent, and set in the command's clone child
        out = netrunner.run(["sh", "-c", "umask; pwd"], cwd=tmp_path, check=True).stdout
        assert out == f"0077\n{tmp_path}\n".encode()
        assert os.getcwd() == here
        assert current_umask() == 0o077
    # and a sharing zygote follows our cwd
    netrunner.run(["true"])
    os.chdir(tmp_path)
    try:
        assert os.readlink(f"/proc/{zygote.current_pid()}/cwd") == str(tmp_path)
        assert netrunner.run(["pwd"], check=True).stdout == f"{tmp_path}\n".encode()
    finally:
        os.chdir(here)
    assert os.readlink(f"/proc/{zygote.current_pid()}/cwd") == here


def test_the_umask_reaches_the_command_without_proc() -> None:
    # /proc/self/status is where a copied umask is read; a shared one needs no /proc.
    script = textwrap.dedent("""
        import os, netrunner
        from netrunner._io import zygote
        netrunner.run(["true"])
        os.umask(0o077)
        out = netrunner.run(["sh", "-c", "umask"], check=True).stdout.decode().strip()
        print(os.path.exists("/proc/self/status"), zygote._zygote.baseline.umask, out, flush=True)
    """)
    mount = 'mount -t tmpfs none /proc || exit 99; exec "$0" "$@"'
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", mount, sys.executable, "-c",
                           script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", str(SHARED_UMASK), "0077"]


def test_a_forked_child_starts_its_own_sharing_zygote() -> None:
    parent_zygote = zygote.current_pid()
    assert parent_zygote is not None
    before = umask_of(parent_zygote)

    def child() -> bytes:
        os.umask(0o077)
        out = netrunner.run(["sh", "-c", "umask"], timeout=30).stdout
        z = zygote._zygote
        assert z is not None
        report = repr((out, z.pid != parent_zygote, z.baseline.umask, umask_of(z.pid)))
        zygote.shutdown()  # reaped here: nothing of the child's is left to PID 1
        return report.encode()

    assert in_forked_child(child) == repr((b"0077\n", True, SHARED_UMASK, 0o077)).encode()
    assert umask_of(parent_zygote) == before == current_umask()


def test_the_limits_read_from_proc_are_getrlimits() -> None:
    # read from /proc/self/limits, and parsed again only when its text changes
    assert current_limits() == tuple(resource.getrlimit(r) for r in RESOURCES)
    soft, hard = limit_of(NOFILE)
    resource.setrlimit(NOFILE, (soft - 1, hard))
    assert current_limits() == tuple(resource.getrlimit(r) for r in RESOURCES)
    assert current_limits()[RESOURCES.index(NOFILE)] == (soft - 1, hard)


def test_an_attribute_the_kernel_refuses_names_what_was_asked() -> None:
    # The shepherd's side is tests/shepherd/test_raw_attrs.py; here the error raised for it.
    err = attrs_error(1, Changes(nice=3, rlimits=((NOFILE, 10, 20),)))
    assert isinstance(err, PermissionError)
    assert str(err) == ("[Errno 1] the command could not be given the caller's nice 3, RLIMIT_NOFILE (10, 20): "
                        "Operation not permitted")
    assert wire.STAGE_ATTRS == 5
