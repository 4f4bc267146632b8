"""SPEC sections 5 and 9, asyncio twin: ``aio.run``/``aio.start``/
``aio.stream`` with ``cgroup=`` place the tree, expose ``Process.cgroup``,
and leave nothing behind (the shepherd SIGKILLed included). Driven with
plain ``asyncio.run`` (``helpers_aio.arun``)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _host import (
    MiB,
    Tracker,
    allocator,
    daemon_pid,
    dead,
    existing,
    expected_v2_line,
    members,
    memory_v1_dir,
    netrunner_root,
    parse_proc_cgroup,
    pid_alive,
    placement_cmd,
    read_report,
    tracked,
    v1_mounts,
    with_daemon,
)
from helpers_aio import arun

import netrunner
import netrunner.aio


@pytest.fixture
def cg(marker: str) -> Iterator[Tracker]:
    yield from tracked()


def _isdir(path: str) -> bool:
    return os.path.isdir(path)


def check_v2(who: str, text: str, path: str) -> None:
    lines = parse_proc_cgroup(text)
    assert "0::" + lines.get("v2", "") == expected_v2_line(path), f"{who} is not in {path}:\n{text}"
    if "memory" in v1_mounts():
        assert lines.get("memory", "").endswith("/netrunner/" + path), f"{who}: v1 memory line:\n{text}"


def test_aio_run_places_the_tree_and_cleans_up(cg: Tracker, tmp_path: Path) -> None:
    path = cg.path()
    report = tmp_path / "descendant"

    async def main() -> netrunner.Result:
        return await netrunner.aio.run(placement_cmd(report), cgroup=path, kill_timeout=1, timeout=30)

    r = arun(main())
    assert r.returncode == 0, r
    check_v2("the command", r.stdout.decode(), path)
    sleeper, _lines, raw = read_report(report)
    check_v2(f"the setsid'd descendant {sleeper}", raw, path)
    assert dead(sleeper), f"the descendant {sleeper} survived aio.run()"
    assert not existing(path), f"cgroup directories left after aio.run(): {existing(path)}"
    assert r.stats.oom_killed is False, r.stats
    assert r.stats.peak_memory is not None, r.stats


def test_aio_run_leftover_killed_promptly(cg: Tracker, tmp_path: Path) -> None:
    path = cg.path()
    pidfile = tmp_path / "daemon"
    t0 = time.monotonic()
    r = arun(netrunner.aio.run(with_daemon(pidfile, "echo hi"), cgroup=path, kill_timeout=1, timeout=30))
    assert r.stdout == b"hi\n", r
    assert time.monotonic() - t0 < 5, "aio.run() waited for the setsid'd daemon"
    assert dead(daemon_pid(pidfile)), "the setsid'd daemon survived aio.run()"
    assert not existing(path), f"cgroup directories left: {existing(path)}"


def test_aio_start_cgroup_property(cg: Tracker, tmp_path: Path) -> None:
    path = cg.path("jobs/1")
    pidfile = tmp_path / "daemon"

    async def main() -> tuple[int, int]:
        async with await netrunner.aio.start(with_daemon(pidfile, "exec sleep 1000"), cgroup=path,
                                             kill_timeout=1) as p:
            want = os.path.join(netrunner_root(), path)
            assert p.cgroup == want, f"aio Process.cgroup is {p.cgroup!r}, expected {want!r}"
            with pytest.raises(AttributeError):
                p.cgroup = "/elsewhere"  # type: ignore[misc]
            assert _isdir(p.cgroup), f"{p.cgroup} does not exist while the command runs"
            daemon = daemon_pid(pidfile)
            inside = members(p.cgroup)
            assert p.pid in inside, f"{p.cgroup} holds {inside}, not the command {p.pid}"
            assert daemon in inside, f"{p.cgroup} holds {inside}, not the daemon {daemon}"
            mem = memory_v1_dir(path)
            if mem is not None:
                assert p.pid in members(mem), f"the command is not in the v1 memory cgroup {mem}"
            assert await p.stop() == -signal.SIGTERM
            assert not _isdir(want), f"{want} remains after stop()"
            return p.pid, daemon

    pid, daemon = arun(main())
    assert not existing(path.split("/")[0]), f"cgroup directories left: {existing(path.split('/')[0])}"
    assert dead(pid)
    assert dead(daemon), "the daemon survived"


def test_aio_start_without_cgroup_has_none() -> None:
    async def main() -> None:
        async with await netrunner.aio.start(["true"]) as p:
            assert p.cgroup is None
            await p.wait()

    arun(main())


def test_aio_context_exit_cleans_up(cg: Tracker, tmp_path: Path) -> None:
    path = cg.path()
    pidfile = tmp_path / "daemon"

    async def main() -> None:
        async with await netrunner.aio.start(with_daemon(pidfile, "exec sleep 1000"), cgroup=path, kill_timeout=1):
            daemon_pid(pidfile)

    arun(main())
    assert dead(daemon_pid(pidfile))
    assert not existing(path), f"cgroup directories left after the async with block: {existing(path)}"


def test_aio_stream(cg: Tracker) -> None:
    path = cg.path()

    async def main() -> bytes:
        out = b""
        async with netrunner.aio.stream(["cat", "/proc/self/cgroup"], cgroup=path) as s:
            async for chunk in s:
                out += chunk
        return out

    check_v2("the command", arun(main()).decode(), path)
    assert not existing(path), f"cgroup directories left after aio.stream: {existing(path)}"


def test_aio_shepherd_sigkilled(cg: Tracker, tmp_path: Path) -> None:
    path = cg.path()
    pidfile = tmp_path / "daemon"

    async def main() -> list[int]:
        p = await netrunner.aio.start(with_daemon(pidfile, "exec sleep 1000"), cgroup=path, kill_timeout=1)
        try:
            daemon = daemon_pid(pidfile)
            before = members(p.cgroup)
            assert {p.pid, daemon} <= set(before), f"precondition: {p.cgroup} holds {before}"
            os.kill(p._h.shepherd_pid, signal.SIGKILL)
            with pytest.raises(netrunner.ShepherdError):
                await p.wait()
            left = existing(path)
            assert not left, f"after the shepherd's SIGKILL, await wait() raised but directories remain: {left}"
            return before
        finally:
            await p.aclose()

    before = arun(main())
    alive = [pid for pid in before if pid_alive(pid)]
    assert not alive, f"members of the cgroup alive after the shepherd's SIGKILL: {alive}"


def test_aio_oom(cg: Tracker) -> None:
    r = arun(netrunner.aio.run(allocator(512), cgroup=netrunner.Cgroup(cg.path(), memory_max="64M"), timeout=60))
    assert r.signal == signal.SIGKILL, r
    assert r.stats.oom_killed is True, r.stats
    assert r.stats.peak_memory is not None, r.stats
    assert r.stats.peak_memory <= 65 * MiB, r.stats


def test_aio_errors_at_the_call() -> None:
    async def main() -> None:
        with pytest.raises(netrunner.InvalidCgroup):
            await netrunner.aio.run(["true"], cgroup="../x")
        with pytest.raises(netrunner.InvalidCgroup):
            await netrunner.aio.start(["true"], cgroup="/abs")
        with pytest.raises(netrunner.InvalidCgroup):
            netrunner.aio.stream(["true"], cgroup="a//b")
        with pytest.raises(TypeError):
            await netrunner.aio.run(["true"], cgroup=42)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="leftovers"):
            await netrunner.aio.run(["true"], cgroup="x", leftovers="detach")

    arun(main())
