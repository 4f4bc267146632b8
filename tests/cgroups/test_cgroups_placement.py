"""SPEC section 9, placement: the command and every descendant (a setsid'd
double fork included) are in the cgroup before they exec; ``Process.cgroup``
is the v2 directory, present while the command runs and gone after.

Each member reads its own /proc/self/cgroup: the v2 line must be
``0::/netrunner/<path>`` (relative to the mount) and, on a host with a v1
memory hierarchy, the memory line must end in ``/netrunner/<path>``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from _host import (
    Tracker,
    dead,
    dirs_of,
    existing,
    expected_v2_line,
    members,
    memory_v1_dir,
    netrunner_root,
    parse_proc_cgroup,
    placement_cmd,
    read_report,
    tracked,
    v1_mounts,
    v2_controllers,
    v2_mount,
)
from helpers import LineReader

import netrunner


@pytest.fixture
def cg(marker: str) -> Iterator[Tracker]:
    yield from tracked()


def check_lines(who: str, lines: dict[str, str], path: str, raw: str) -> None:
    """``lines`` (parsed /proc/<pid>/cgroup of ``who``) place it in ``path``."""
    want = expected_v2_line(path)
    assert "v2" in lines, f"{who}: no cgroup-v2 line ('0::...') in its /proc/self/cgroup:\n{raw}"
    assert "0::" + lines["v2"] == want, f"{who} is not in the v2 cgroup {want!r}; /proc/self/cgroup:\n{raw}"
    if "memory" in v1_mounts():
        assert lines.get("memory", "").endswith("/netrunner/" + path), (
            f"{who}: its v1 memory line does not end in /netrunner/{path} (SPEC 9: the command joins a "
            f"memory v1 cgroup for peak_memory); /proc/self/cgroup:\n{raw}"
        )


def test_run_places_command_and_setsid_descendant(cg: Tracker, tmp_path: Path) -> None:
    path = cg.path()
    report = tmp_path / "descendant"
    r = netrunner.run(placement_cmd(report), cgroup=path, kill_timeout=1, timeout=30)
    assert r.returncode == 0, r
    out = r.stdout.decode()
    check_lines("the command", parse_proc_cgroup(out), path, out)
    sleeper, lines, raw = read_report(report)
    check_lines(f"the setsid'd double-forked descendant (pid {sleeper})", lines, path, raw)
    assert dead(sleeper), f"the descendant {sleeper} survived run() with a cgroup"
    assert not existing(path), f"cgroup directories left after run(): {existing(path)}"


def test_start_cgroup_property_while_running_and_after(cg: Tracker, tmp_path: Path) -> None:
    path = cg.path()
    report = tmp_path / "descendant"
    with netrunner.start(placement_cmd(report), cgroup=path, kill_timeout=1) as p:
        want = os.path.join(netrunner_root(), path)
        assert p.cgroup == want, f"Process.cgroup is {p.cgroup!r}, expected {want!r}"
        assert isinstance(p.cgroup, str)
        with pytest.raises(AttributeError):
            p.cgroup = "/elsewhere"  # type: ignore[misc]
        assert os.path.isdir(p.cgroup), f"Process.cgroup {p.cgroup} does not exist while the command runs"
        reader = LineReader(p)
        text = b""
        while b"0::" not in text:
            text += reader.readline()
        sleeper, lines, raw = read_report(report)
        check_lines(f"the setsid'd descendant (pid {sleeper})", lines, path, raw)
        inside = members(p.cgroup)
        assert p.pid in inside, f"{p.cgroup}/cgroup.procs lists {inside}, not the command {p.pid}"
        assert sleeper in inside, f"{p.cgroup}/cgroup.procs lists {inside}, not the descendant {sleeper}"
        mem = memory_v1_dir(path)
        if mem is not None:
            assert os.path.isdir(mem), f"no v1 memory cgroup {mem} while the command runs"
            assert p.pid in members(mem), f"the command {p.pid} is not in {mem}: {members(mem)}"
        p.close_stdin()
        assert p.wait(timeout=15) == 0
        assert p.cgroup == want, "Process.cgroup changed after the exit"
        assert not os.path.exists(want), f"{want} still exists after wait() returned"
        assert dead(sleeper), f"the descendant {sleeper} survived the command's exit"
    assert not existing(path), f"cgroup directories left: {existing(path)}"


def test_nested_path(cg: Tracker) -> None:
    path = cg.path("jobs/123")
    r = netrunner.run(["cat", "/proc/self/cgroup"], cgroup=path)
    out = r.stdout.decode()
    check_lines("the command", parse_proc_cgroup(out), path, out)


def test_cgroup_object_with_path(cg: Tracker) -> None:
    path = cg.path()
    r = netrunner.run(["cat", "/proc/self/cgroup"], cgroup=netrunner.Cgroup(path))
    out = r.stdout.decode()
    check_lines("the command", parse_proc_cgroup(out), path, out)


def test_cgroup_object_without_path_is_unique(cg: Tracker) -> None:
    with netrunner.start(["sleep", "1000"], cgroup=netrunner.Cgroup()) as a, \
            netrunner.start(["sleep", "1000"], cgroup=netrunner.Cgroup()) as b:
        assert a.cgroup is not None, "Process.cgroup is None with cgroup=Cgroup()"
        assert b.cgroup is not None, "Process.cgroup is None with cgroup=Cgroup()"
        assert a.cgroup != b.cgroup, f"two Cgroup() commands share {a.cgroup}"
        root = netrunner_root()
        for p in (a, b):
            assert os.path.dirname(p.cgroup) == root, f"{p.cgroup} is not directly under the root {root}"
            assert members(p.cgroup) == [p.pid], f"{p.cgroup} holds {members(p.cgroup)}, expected [{p.pid}]"
        names = [os.path.basename(a.cgroup), os.path.basename(b.cgroup)]
    for name in names:
        assert not existing(name), f"unique cgroup {name} left: {existing(name)}"


def test_command_template_carries_the_cgroup(cg: Tracker) -> None:
    path = cg.path()
    cmd = netrunner.Command("cat", ["/proc/self/cgroup"], cgroup=path)
    out = netrunner.run(cmd).stdout.decode()
    check_lines("the command", parse_proc_cgroup(out), path, out)
    other = cg.path()
    out = netrunner.run(cmd, cgroup=other).stdout.decode()  # the call site overrides the template
    check_lines("the command", parse_proc_cgroup(out), other, out)


def test_stream(cg: Tracker) -> None:
    path = cg.path()
    with netrunner.stream(["cat", "/proc/self/cgroup"], cgroup=path) as s:
        text = b"".join(s)
    check_lines("the command", parse_proc_cgroup(text.decode()), path, text.decode())
    assert not existing(path), f"cgroup directories left after the stream: {existing(path)}"


def test_stats_with_and_without_cgroup(cg: Tracker) -> None:
    plain = netrunner.run(["true"])
    assert plain.stats.peak_memory is None, plain.stats
    assert plain.stats.oom_killed is None, plain.stats
    with netrunner.start(["true"]) as p:
        assert p.cgroup is None
        p.wait()
    r = netrunner.run(["true"], cgroup=cg.path())
    if "memory" in v1_mounts() or "memory" in v2_controllers():
        assert isinstance(r.stats.peak_memory, int), r.stats
        assert r.stats.peak_memory > 0, r.stats
    assert r.stats.oom_killed is False, r.stats


def test_env_root_override(cg: Tracker, monkeypatch: pytest.MonkeyPatch) -> None:
    """NETRUNNER_CGROUP_ROOT names the v2 directory commands go under."""
    custom = cg.make(os.path.join(v2_mount().mount_point, cg.token + "-root"))
    cg.add_base(custom)
    monkeypatch.setenv("NETRUNNER_CGROUP_ROOT", custom)
    path = cg.path()
    with netrunner.start(["cat", "/proc/self/cgroup"], cgroup=path) as p:
        assert p.cgroup == os.path.join(custom, path), p.cgroup
        out = LineReader(p).read_until_eof().decode()
        p.wait()
    assert "0::" + parse_proc_cgroup(out).get("v2", "") == expected_v2_line(path, custom), out
    assert os.path.isdir(custom), "netrunner removed the NETRUNNER_CGROUP_ROOT directory itself"
    assert not os.path.exists(os.path.join(custom, path)), "the command's directory under the custom root remains"
    left = [d for d in dirs_of(path, custom).values() if os.path.isdir(d)]
    assert not left, f"cgroup directories left: {left}"



def test_fork_while_another_thread_sets_up_a_cgroup(cg: Tracker) -> None:
    # The interpreter forks while a thread is inside the cgroup set-up (its
    # lock held): the child starts cgroup commands of its own all the same.
    import signal
    import threading

    from netrunner._io import cgroup as setup

    path = cg.path()
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with setup._lock:
            held.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    assert held.wait(10)
    pid = os.fork()
    if pid == 0:  # the child: no thread holds the lock here
        code = 1
        try:
            signal.alarm(10)  # a deadlock would end the child, not the test run
            r = netrunner.run(["cat", "/proc/self/cgroup"], cgroup=path)
            code = 0 if r.returncode == 0 and f"/netrunner/{path}" in r.stdout.decode() else 2
        finally:
            os._exit(code)
    release.set()
    t.join()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"the forked child could not use a cgroup: {status}"
    assert not existing(path), existing(path)
