"""SPEC sections 9 and 11: limits and whole-tree accounting.

On this hybrid host the limits live on the v1 hierarchies
(``memory.limit_in_bytes``, ``pids.max``, ``cpu.cfs_quota_us``); on a pure v2
host in the v2 directory (``memory.max``, ``pids.max``, ``cpu.max``). The
tests read whichever applies (``_host.limit_home``) and then check that the
kernel really enforces them: an OOM kill, fork failures, throttled CPU."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from _host import (
    PY,
    MiB,
    Tracker,
    allocator,
    controller_dir,
    existing,
    limit_home,
    read,
    tracked,
)

import netrunner


@pytest.fixture
def cg(marker: str) -> Iterator[Tracker]:
    yield from tracked()


def test_limits_are_written(cg: Tracker) -> None:
    path = cg.path()
    spec = netrunner.Cgroup(path, memory_max="64M", cpu_max=0.5, pids_max=10)
    assert spec.memory_max == 64 * MiB, spec
    with netrunner.start(["sleep", "1000"], cgroup=spec, kill_timeout=1) as p:
        memory = controller_dir(p.pid, "memory")
        if limit_home("memory") == "v1":
            assert int(read(memory, "memory.limit_in_bytes")) == 64 * MiB, memory
        else:
            assert int(read(memory, "memory.max")) == 64 * MiB, memory
        pids = controller_dir(p.pid, "pids")
        assert read(pids, "pids.max") == "10", pids
        cpu = controller_dir(p.pid, "cpu")
        if limit_home("cpu") == "v1":
            quota, period = int(read(cpu, "cpu.cfs_quota_us")), int(read(cpu, "cpu.cfs_period_us"))
        else:
            q, per = read(cpu, "cpu.max").split()
            quota, period = int(q), int(per)
        assert quota / period == pytest.approx(0.5), f"{cpu}: quota {quota} / period {period}"
        for d in (memory, pids, cpu):
            assert d.endswith("/" + path), f"the limit's directory {d} is not the command's ({path})"
    assert not existing(path), f"cgroup directories left: {existing(path)}"


def test_memory_limit_oom_kills(cg: Tracker) -> None:
    path = cg.path()
    r = netrunner.run(allocator(512), cgroup=netrunner.Cgroup(path, memory_max="64M"), timeout=60)
    assert r.signal == signal.SIGKILL, (
        f"allocating 512 MiB under memory_max=64M: signal {r.signal}, returncode {r.returncode}, "
        f"stdout {r.stdout!r}, stderr {r.stderr[-500:]!r}, stats {r.stats}"
    )
    assert r.returncode == -9
    assert r.stats.oom_killed is True, r.stats
    assert r.stats.peak_memory is not None, r.stats
    assert r.stats.peak_memory <= 65 * MiB, f"peak_memory {r.stats.peak_memory} above the 64 MiB limit"
    assert not existing(path), f"cgroup directories left: {existing(path)}"


def test_memory_limit_not_hit(cg: Tracker) -> None:
    r = netrunner.run(allocator(8), cgroup=netrunner.Cgroup(cg.path(), memory_max="64M"), timeout=60)
    assert r.returncode == 0, r
    assert r.stdout == b"8\n"
    assert r.stats.oom_killed is False, r.stats
    assert r.stats.peak_memory is not None, r.stats
    assert r.stats.peak_memory > 8 * MiB, r.stats


def test_memory_limit_as_int_and_unique_path(cg: Tracker) -> None:
    r = netrunner.run(allocator(512), cgroup=netrunner.Cgroup(memory_max=64 * MiB), timeout=60)
    assert r.signal == signal.SIGKILL, r
    assert r.stats.oom_killed is True, r.stats


def test_oom_kill_of_a_descendant_only(cg: Tracker) -> None:
    """The limit kills a child; the command survives and reports oom_killed."""
    cmd = ["sh", "-c", '"$0" -c "b = b\'x\' * (512 << 20)"; echo "child: $?"', PY]
    r = netrunner.run(cmd, cgroup=netrunner.Cgroup(cg.path(), memory_max="64M"), timeout=60)
    assert r.returncode == 0, r
    assert r.stdout == b"child: 137\n", r
    assert r.stats.oom_killed is True, r.stats


def test_peak_memory_of_one_process(cg: Tracker) -> None:
    r = netrunner.run(allocator(100), cgroup=cg.path(), timeout=60)
    assert r.returncode == 0, r
    assert r.stats.peak_memory is not None, r.stats
    assert r.stats.peak_memory >= 100 * MiB, f"peak_memory {r.stats.peak_memory} < 100 MiB allocated"
    assert r.stats.oom_killed is False


#: two processes each hold 60 MiB at the same time (each waits for the other's file)
TWO_HOLDERS = """
import os, sys, time
me, other = sys.argv[1], sys.argv[2]
b = b'x' * (60 << 20)
open(me, 'w').close()
deadline = time.monotonic() + 20
while not os.path.exists(other) and time.monotonic() < deadline:
    time.sleep(0.01)
print(len(b) >> 20, os.path.exists(other), flush=True)
"""


def test_peak_memory_is_the_whole_tree(cg: Tracker, tmp_path: Path) -> None:
    a, b = f"{tmp_path}/a", f"{tmp_path}/b"
    cmd = ["sh", "-c", '"$0" -c "$1" "$2" "$3" & "$0" -c "$1" "$3" "$2"; wait', PY, TWO_HOLDERS, a, b]
    r = netrunner.run(cmd, cgroup=cg.path(), timeout=60)
    assert r.returncode == 0, r
    assert r.stdout == b"60 True\n60 True\n", f"precondition: the two holders did not overlap: {r.stdout!r}"
    peak, rss = r.stats.peak_memory, r.stats.max_rss
    assert peak is not None, r.stats
    assert peak >= 120 * MiB, f"peak_memory {peak} < 120 MiB held by two processes at once (max_rss {rss})"
    assert rss is not None, r.stats
    assert rss < peak, f"max_rss {rss} (largest single process) should be below the tree's peak {peak}"


FORKER = """
import os, time
ok, failed, error = 0, 0, ""
for i in range(50):
    try:
        pid = os.fork()
    except OSError as exc:
        failed += 1
        error = str(exc)
        continue
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    ok += 1
print(ok, failed, error, flush=True)
"""


def test_pids_limit(cg: Tracker) -> None:
    path = cg.path()
    r = netrunner.run([PY, "-c", FORKER], cgroup=netrunner.Cgroup(path, pids_max=10), timeout=60, kill_timeout=1)
    assert r.returncode == 0, r
    ok, failed, error = r.stdout.decode().strip().split(" ", 2)
    assert int(ok) < 10, f"{ok} of 50 forks succeeded under pids_max=10 ({r.stdout!r})"
    assert int(failed) > 40, f"only {failed} of 50 forks failed under pids_max=10 ({r.stdout!r})"
    assert "Resource temporarily unavailable" in error, error
    assert not existing(path), f"cgroup directories left: {existing(path)}"
    control = netrunner.run([PY, "-c", FORKER], cgroup=cg.path(), timeout=60, kill_timeout=1)
    assert control.stdout.split()[:2] == [b"50", b"0"], f"precondition: forks fail without a limit: {control}"


def test_pids_limit_shell_fork_failures(cg: Tracker) -> None:
    script = "for i in $(seq 50); do sleep 30 & done; wait"
    r = netrunner.run(["sh", "-c", script], cgroup=netrunner.Cgroup(cg.path(), pids_max=10), timeout=60,
                      kill_timeout=1)
    err = r.stderr.decode(errors="replace")
    assert r.returncode != 0, f"50 background sleeps under pids_max=10 all started: stderr {err!r}"
    assert "fork" in err.lower() or "resource temporarily unavailable" in err.lower(), (
        f"50 background sleeps under pids_max=10: exit {r.returncode}, but the shell reported no fork "
        f"failure: stderr {err!r}"
    )


#: Burns one CPU-second of its own (whatever else the host runs), prints how
#: long that took, then waits for the end of its stdin.
BURN = """
import sys, time
t0, c0 = time.monotonic(), time.process_time()
while time.process_time() - c0 < 1.0:
    pass
print(time.monotonic() - t0, flush=True)
sys.stdin.read()
"""


def test_cpu_limit(cg: Tracker) -> None:
    """cpu_max=0.5: the kernel gives the tree at most half a CPU per 100 ms
    period, so a CPU-second takes at least 1.9 s (less one period's quota);
    a busy host only makes it slower, and the cgroup counts throttled
    periods."""
    spec = netrunner.Cgroup(cg.path(), cpu_max=0.5)
    with netrunner.start([PY, "-c", BURN], cgroup=spec, kill_timeout=1) as p:
        cpu = controller_dir(p.pid, "cpu")
        took = float(p.readline(timeout=60))
        stat = dict(line.split() for line in read(cpu, "cpu.stat").splitlines())
        p.close_stdin()
        assert p.wait(timeout=30) == 0
    assert took >= 1.8, f"a CPU-second under cpu_max=0.5 took {took:.2f} s"
    assert int(stat["nr_throttled"]) > 0, f"{cpu}/cpu.stat: {stat}"


#: The command ignores SIGCHLD, so its child is reaped by the kernel and its
#: CPU time reaches nobody's rusage: only the cgroup's cpu.stat sees it.
AUTO_REAPED_BURNER = """
import os, signal, time
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
pid = os.fork()
if pid == 0:
    t0 = time.process_time()
    while time.process_time() - t0 < 1.0:
        pass
    os._exit(0)
while True:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        break
    time.sleep(0.01)
print("done", flush=True)
"""


def test_cpu_is_the_whole_tree(cg: Tracker) -> None:
    plain = netrunner.run([PY, "-c", AUTO_REAPED_BURNER], timeout=60)
    assert plain.stdout == b"done\n", plain
    assert plain.stats.cpu_user is not None
    assert plain.stats.cpu_system is not None
    plain_cpu = plain.stats.cpu_user + plain.stats.cpu_system
    assert plain_cpu < 0.7, (
        f"precondition: without a cgroup the auto-reaped child's CPU was counted ({plain_cpu:.2f} s); "
        "this test could not tell the cgroup's accounting apart"
    )
    r = netrunner.run([PY, "-c", AUTO_REAPED_BURNER], cgroup=cg.path(), timeout=60)
    assert r.stdout == b"done\n", r
    assert r.stats.cpu_user is not None
    assert r.stats.cpu_system is not None
    total = r.stats.cpu_user + r.stats.cpu_system
    assert total >= 0.9, (
        f"with a cgroup, cpu_user+cpu_system = {total:.2f} s, but a child that nobody waited for burned 1 s "
        f"(without a cgroup: {plain_cpu:.2f} s)"
    )
