"""SPEC section 9, cleanup: when the command ends -- exit, ``stop()``,
timeout, output limit, context exit, the owner SIGKILLed (the shepherd
cleans up), the shepherd SIGKILLed (Python cleans up) -- everything in the
cgroup is dead (a setsid'd double-forked daemon included) and every
directory netrunner created is gone; a directory that existed before is
kept (emptied), intermediate directories netrunner made are removed once
empty."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _host import (
    PY,
    Owner,
    Tracker,
    daemon_pid,
    dead,
    elapsed,
    existing,
    members,
    memory_v1_dir,
    netrunner_root,
    new_dirs_settled,
    pid_alive,
    snapshot,
    tracked,
    with_daemon,
)
from conftest import pids_with_marker, wait_until

import netrunner


@pytest.fixture
def cg(marker: str) -> Iterator[Tracker]:
    yield from tracked()


def assert_clean(path: str, *pids: int, when: str) -> None:
    """No directory of ``path`` in any hierarchy; ``pids`` dead."""
    left = existing(path)
    assert not left, f"cgroup directories left {when}: {left}"
    alive = [pid for pid in pids if not dead(pid, timeout=5)]
    assert not alive, f"processes of the cgroup survived {when}: {alive}"


def test_normal_exit_kills_leftovers_and_removes(cg: Tracker, tmp_path: Path) -> None:
    path = cg.path()
    pidfile = tmp_path / "daemon"
    t0 = time.monotonic()
    r = netrunner.run(with_daemon(pidfile, "echo hi"), cgroup=path, kill_timeout=1, timeout=30)
    took = elapsed(t0)
    assert r.returncode == 0, r
    assert r.stdout == b"hi\n", r
    assert took < 5, f"run() took {took} s: it waited for the setsid'd daemon instead of killing it"
    assert_clean(path, daemon_pid(pidfile), when="after a normal exit")


def test_stop(cg: Tracker, tmp_path: Path) -> None:
    path = cg.path()
    pidfile = tmp_path / "daemon"
    p = netrunner.start(with_daemon(pidfile, "exec sleep 1000"), cgroup=path, kill_timeout=1)
    try:
        daemon = daemon_pid(pidfile)
        assert os.path.isdir(p.cgroup), f"{p.cgroup} does not exist while the command runs"
        assert daemon in members(p.cgroup), f"the daemon {daemon} is not in {p.cgroup}: {members(p.cgroup)}"
        assert p.stop() == -signal.SIGTERM
        assert_clean(path, p.pid, daemon, when="after stop()")
    finally:
        p.close()


def test_timeout(cg: Tracker, tmp_path: Path) -> None:
    path = cg.path()
    pidfile = tmp_path / "daemon"
    t0 = time.monotonic()
    with pytest.raises(netrunner.Timeout):
        netrunner.run(with_daemon(pidfile, "exec sleep 1000"), cgroup=path, timeout=1, kill_timeout=1)
    took = elapsed(t0)
    assert took < 8, f"run(timeout=1, kill_timeout=1) took {took} s"
    assert_clean(path, daemon_pid(pidfile), when="after a timeout")


def test_output_limit(cg: Tracker, tmp_path: Path) -> None:
    path = cg.path()
    pidfile = tmp_path / "daemon"
    with pytest.raises(netrunner.OutputLimitExceeded):
        netrunner.run(with_daemon(pidfile, "exec yes"), cgroup=path, max_output_size=1000, kill_timeout=1,
                      timeout=30)
    assert_clean(path, daemon_pid(pidfile), when="after the output limit")


def test_context_exit(cg: Tracker, tmp_path: Path) -> None:
    path = cg.path()
    pidfile = tmp_path / "daemon"
    with netrunner.start(with_daemon(pidfile, "exec sleep 1000"), cgroup=path, kill_timeout=1) as p:
        daemon = daemon_pid(pidfile)
        directory = p.cgroup
        assert os.path.isdir(directory)
    assert not os.path.exists(directory), f"{directory} remains after the with block"
    assert_clean(path, p.pid, daemon, when="after the with block")


def test_exception_in_with_block(cg: Tracker, tmp_path: Path) -> None:
    path = cg.path()
    pidfile = tmp_path / "daemon"
    def body() -> None:
        with netrunner.start(with_daemon(pidfile, "exec sleep 1000"), cgroup=path, kill_timeout=1):
            daemon_pid(pidfile)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        body()
    assert_clean(path, daemon_pid(pidfile), when="after an exception in the with block")


def test_leftover_ignoring_sigterm_is_killed(cg: Tracker, tmp_path: Path) -> None:
    """A setsid'd leftover that ignores SIGTERM still dies (cgroup.kill / SIGKILL)."""
    path = cg.path()
    pidfile = tmp_path / "stubborn"
    script = (
        "import os, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); os.setsid(); "
        "open(sys.argv[1] + '.tmp', 'w').write(str(os.getpid())); os.rename(sys.argv[1] + '.tmp', sys.argv[1]); "
        "time.sleep(1000)"
    )
    cmd = ["sh", "-c", '("$0" -c "$1" "$2" </dev/null >/dev/null 2>&1 &); while [ ! -s "$2" ]; do sleep 0.01; done',
           PY, script, str(pidfile)]
    r = netrunner.run(cmd, cgroup=path, kill_timeout=0.5, timeout=30)
    assert r.returncode == 0, r
    assert_clean(path, int(pidfile.read_text()), when="after a SIGTERM-ignoring leftover")


OWNER = """
import netrunner
path, pidfile, cmd = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
p = netrunner.start(cmd, cgroup=path, kill_timeout=1)
if not until(lambda: os.path.exists(pidfile) and os.path.getsize(pidfile) > 0):
    report(error="the daemon never started")
    sys.exit()
daemon = int(open(pidfile).read())
until(lambda: daemon in members(p.cgroup))
report(cgroup=p.cgroup, pid=p.pid, shepherd=p._h.shepherd_pid, daemon=daemon, members=members(p.cgroup))
sys.stdin.readline()
"""


def test_owner_sigkilled_shepherd_cleans_up(cg: Tracker, tmp_path: Path, marker: str) -> None:
    path = cg.path("jobs/1")
    pidfile = tmp_path / "daemon"
    owner = Owner(OWNER, tmp_path, path, str(pidfile), json.dumps(with_daemon(pidfile, "exec sleep 1000")))
    try:
        info = owner.result()
        assert "error" not in info, f"{info}; owner stderr: {owner.stderr()}"
        assert os.path.isdir(info["cgroup"]), f"precondition: {info['cgroup']} does not exist while running"
        assert {info["pid"], info["daemon"]} <= set(info["members"]), info
        mem = memory_v1_dir(path)
        if mem is not None:
            assert os.path.isdir(mem), f"precondition: the v1 memory cgroup {mem} does not exist while running"
        owner.kill()
        owner.finish()
        gone = wait_until(lambda: not existing(path.split("/")[0]), timeout=10)
        assert gone, (
            f"10 s after the owner was SIGKILLed, cgroup directories remain: {existing(path.split('/')[0])} "
            f"(members: {[members(d) for d in existing(path)]})"
        )
        survivors = wait_until(lambda: not pids_with_marker(marker), timeout=10)
        assert survivors, f"processes survived the owner's SIGKILL: {pids_with_marker(marker)}"
        assert not pid_alive(info["daemon"]), info
        assert not pid_alive(info["pid"]), info
    finally:
        owner.finish()


def test_shepherd_sigkilled_python_cleans_up(cg: Tracker, tmp_path: Path) -> None:
    path = cg.path("jobs/1")
    pidfile = tmp_path / "daemon"
    p = netrunner.start(with_daemon(pidfile, "exec sleep 1000"), cgroup=path, kill_timeout=1)
    try:
        daemon = daemon_pid(pidfile)
        directory = p.cgroup
        before = members(directory)
        assert {p.pid, daemon} <= set(before), f"precondition: {directory} holds {before}"
        assert hasattr(p._h, "shepherd_pid"), "this test needs Process._h.shepherd_pid"
        os.kill(p._h.shepherd_pid, signal.SIGKILL)
        with pytest.raises(netrunner.ShepherdError):
            p.wait(timeout=15)
        left = existing(path.split("/")[0])
        assert not left, (
            f"after the shepherd's SIGKILL, wait() raised ShepherdError but cgroup directories remain: {left} "
            f"(members: {[members(d) for d in left]})"
        )
        alive = [pid for pid in before if pid_alive(pid)]
        assert not alive, f"members of the cgroup still alive once wait() raised: {alive}"
        assert p.poll() is not None, "poll() after ShepherdError must behave as after an exit"
    finally:
        p.close()


def _ensure_root() -> str:
    root = netrunner_root()
    os.makedirs(root, exist_ok=True)  # netrunner makes it on first use and keeps it: so may we
    return root


def test_preexisting_directory_is_kept_and_emptied(cg: Tracker, tmp_path: Path) -> None:
    path = cg.path()
    directory = cg.make(os.path.join(_ensure_root(), path))
    pidfile = tmp_path / "daemon"
    r = netrunner.run(with_daemon(pidfile, "echo hi"), cgroup=path, kill_timeout=1, timeout=30)
    assert r.returncode == 0, r
    assert os.path.isdir(directory), f"the pre-existing {directory} was removed"
    assert members(directory) == [], f"the pre-existing {directory} still holds {members(directory)}"
    assert dead(daemon_pid(pidfile)), "the setsid'd daemon survived"
    mem = memory_v1_dir(path)
    if mem is not None:
        assert not os.path.exists(mem), f"{mem} (made by netrunner, unlike the v2 directory) was not removed"


def test_preexisting_parent_is_kept_child_removed(cg: Tracker) -> None:
    top = cg.path()
    parent = cg.make(os.path.join(_ensure_root(), top))
    r = netrunner.run(["true"], cgroup=f"{top}/job")
    assert r.returncode == 0
    assert os.path.isdir(parent), f"the pre-existing parent {parent} was removed"
    assert not os.path.exists(os.path.join(parent, "job")), "the command's own directory was not removed"


def test_intermediate_directories_removed(cg: Tracker) -> None:
    path = cg.path("jobs/123")
    top = path.split("/")[0]
    with netrunner.start(["sleep", "1000"], cgroup=path, kill_timeout=1) as p:
        assert p.cgroup == os.path.join(netrunner_root(), path)
        made = existing(path)
        assert made, "precondition: no directory was made"
    left = existing(top)
    assert not left, f"intermediate directories left after the command ended: {left}"


def test_shared_intermediate_kept_while_in_use(cg: Tracker) -> None:
    top = cg.path()
    a = netrunner.start(["sleep", "1000"], cgroup=f"{top}/a", kill_timeout=1)
    b = netrunner.start(["sleep", "1000"], cgroup=f"{top}/b", kill_timeout=1)
    try:
        a.stop()
        assert not existing(f"{top}/a"), f"{top}/a remains after its command ended: {existing(f'{top}/a')}"
        assert os.path.isdir(b.cgroup), f"{b.cgroup} vanished while its command runs"
        assert os.path.isdir(os.path.join(netrunner_root(), top)), f"{top} was removed while {top}/b is in use"
        assert members(b.cgroup) == [b.pid], f"{b.cgroup}: {members(b.cgroup)}"
        b.stop()
        assert not existing(top), f"{top} remains once both commands ended: {existing(top)}"
    finally:
        a.close()
        b.close()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_thousand_sequential_runs_leave_no_directory() -> None:
    _ensure_root()
    before = snapshot()
    t0 = time.monotonic()
    for i in range(1000):
        r = netrunner.run(["true"], cgroup=netrunner.Cgroup())
        assert r.returncode == 0, f"run {i}: {r}"
        assert r.stats.oom_killed is False, f"run {i}: {r.stats}"
    took = elapsed(t0)
    left = new_dirs_settled(before, timeout=5)
    assert not left, f"{len(left)} cgroup directories left by 1,000 runs ({took} s), e.g. {sorted(left)[:10]}"
    assert took < 300, f"1,000 run(['true'], cgroup=Cgroup()) took {took} s"
    print(f"1,000 run(['true'], cgroup=Cgroup()): {took} s")


def _nested(pidfile: Path) -> list[str]:
    """A command that makes a cgroup of its own inside its cgroup (as a
    container runtime or a nested init does), moves a setsid'd sleeper into
    it, and waits."""
    script = (
        'cg=$(sed -n "s/^0:://p" /proc/self/cgroup)\n'
        'top=$(awk \'$9 == "cgroup2" {print $5; exit}\' /proc/self/mountinfo)\n'
        'mkdir "$top$cg/inner" "$top$cg/inner/deeper"\n'
        f'setsid sh -c \'echo $$ > "$0/cgroup.procs"; echo $$ > {pidfile}; exec sleep 1000\' "$top$cg/inner/deeper" &\n'
        "exec sleep 1000\n"
    )
    return ["sh", "-c", script]


@pytest.mark.parametrize("who", ["shepherd", "python"])
def test_cgroups_the_command_made_inside_are_removed(cg: Tracker, tmp_path: Path, who: str) -> None:
    path = cg.path()
    pidfile = tmp_path / "nested"
    p = netrunner.start(_nested(pidfile), cgroup=path, kill_timeout=1)
    try:
        sleeper = daemon_pid(pidfile)
        inner = os.path.join(p.cgroup, "inner", "deeper")
        assert wait_until(lambda: sleeper in members(inner)), f"precondition: {sleeper} not in {inner}"
        if who == "shepherd":
            assert p.stop() == -signal.SIGTERM
        else:
            os.kill(p._h.shepherd_pid, signal.SIGKILL)
            with pytest.raises(netrunner.ShepherdError):
                p.wait(timeout=15)
        assert_clean(path, p.pid, sleeper, when=f"after the {who} removed a cgroup with cgroups inside")
    finally:
        p.close()
