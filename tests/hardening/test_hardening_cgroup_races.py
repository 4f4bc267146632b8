"""Race loops for cgroups (SPEC sections 6 and 9): with ``cgroup=``, a
command that ends at the same moment as a stop or a timeout, a leftover
forking as fast as it can, a shepherd SIGKILLed at any moment (during the
spawn included), many commands sharing an intermediate directory, and a pid
number reused while the shepherd pins the cgroup's members.

Only true outcomes are accepted: the command's own exit status or the stop's
signal (never ``ShepherdError`` unless the shepherd was killed), every
directory netrunner made gone *when the call returns* (the shepherd removes
them before it reports the exit; Python, when it is the one that cleans up,
before the call raises), nothing of the tree alive, and never a signal to a
process outside the tree. ``NETRUNNER_STRESS=1`` makes the loops 5x longer."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _stress import iterations
from conftest import pids_with_marker, wait_until
from owners_hostile import Owner

# The cgroup helpers live with the cgroup tests (tests/cgroups/_host.py).
_CGROUP_TESTS = str(Path(__file__).resolve().parent.parent / "cgroups")
if _CGROUP_TESTS not in sys.path:
    sys.path.append(_CGROUP_TESTS)
from _host import PY, Tracker, existing, members, tracked  # noqa: E402

import netrunner  # noqa: E402
import netrunner.aio  # noqa: E402
from netrunner import Cgroup  # noqa: E402
from netrunner._io import zygote  # noqa: E402

HERE = str(Path(__file__).resolve().parent)
TERM, KILL = -signal.SIGTERM, -signal.SIGKILL


@pytest.fixture
def cg(marker: str) -> Iterator[Tracker]:
    """Unique cgroup paths; fails the test if any directory of theirs is left."""
    yield from tracked()


def spec(i: int, path: str) -> str | Cgroup:
    """Vary the hierarchies a command joins: the v2 directory and the v1
    memory one (for the peak) always; v1 pids, memory limits and cpu too."""
    kind = i % 3
    if kind == 0:
        return path
    if kind == 1:
        return Cgroup(path, pids_max=64)
    return Cgroup(path, memory_max="256M", cpu_max=1.0)


def left_behind(path: str, *, leaf: bool = False) -> dict[str, list[int]]:
    """Directories of ``path`` (its top component, or with ``leaf`` only
    the path itself) in any hierarchy, with their members."""
    return {d: members(d) for d in existing(path if leaf else path.split("/")[0])}


def pause(seconds: float) -> None:
    """Vary a phase (correctness never depends on it)."""
    if seconds > 0:
        time.sleep(seconds)


def ignores_sigterm(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            ignored = next(int(line.split()[1], 16) for line in f if line.startswith("SigIgn:"))
    except (OSError, StopIteration):
        return False
    return bool(ignored >> (signal.SIGTERM - 1) & 1)


def wait_for_leftover(p: netrunner.Process, n: int) -> None:
    """Until ``p``'s cgroup holds ``n`` processes, one of them ignoring
    SIGTERM (the leftover is ready: a stop now lasts kill_timeout), or ``p``
    has ended. Either is fine: this only sets the phase of what follows."""
    cgroup = p.cgroup
    assert cgroup is not None

    def ready() -> bool:
        pids = members(cgroup)
        return len(pids) >= n and any(ignores_sigterm(pid) for pid in pids)

    wait_until(lambda: ready() or p.poll() is not None, timeout=10, interval=0.002)


def assert_clean_now(path: str, marker: str, what: str) -> None:
    """Right when the call returned: no directory of ``path`` in any
    hierarchy, no process of the tree alive. The shepherd reports the exit
    only once it has no child left (it is a subreaper: every process of the
    tree is its descendant), the cgroup is empty and the directories are
    removed -- so nothing here may need waiting for."""
    left = left_behind(path)
    assert not left, f"{what}: cgroup directories remain right after the call returned: {left}"
    alive = pids_with_marker(marker)
    assert not alive, f"{what}: processes of the tree alive right after the call returned: {alive}"


# ----------------------------------------------------------------------------
# 1. The command exits at the same moment as stop() or the timeout


EXITING = [
    (["sh", "-c", "exit 3"], 3),
    (["sleep", "0.002"], 0),
    (["sh", "-c", "sleep 0.001; exit 3"], 3),
]


def test_exit_at_the_moment_of_stop(cg: Tracker, marker: str) -> None:
    """start() then stop() after 0-3.5 ms: the command's own status or the
    stop's signal, never ShepherdError; every directory gone when stop()
    returns; the statistics carry the cgroup's peak memory."""
    seen: Counter[Any] = Counter()
    for i in range(iterations(300)):
        cmd, own = EXITING[i % len(EXITING)]
        path = cg.path()
        delay = 0.0005 * ((i // len(EXITING)) % 8)
        what = f"iteration {i}: {cmd} with cgroup={spec(i, path)!r}, stop() after {delay * 1000:g} ms"
        p = netrunner.start(cmd, cgroup=spec(i, path), kill_timeout=1)
        try:
            pause(delay)
            try:
                rc = p.stop()
            except netrunner.ShepherdError as exc:
                raise AssertionError(f"{what}: ShepherdError: {exc}") from exc
            assert_clean_now(path, marker, what)
            assert rc in {own, TERM, KILL}, f"{what}: returncode {rc}, neither its own exit nor the stop"
            assert p.returncode == rc, f"{what}: stop() returned {rc} but returncode is {p.returncode}"
            stats = p.stats
            assert stats.peak_memory is not None, f"{what}: no peak memory with a cgroup: {stats}"
            assert stats.oom_killed is False, f"{what}: {stats}"
        finally:
            p.close()
        seen[rc] += 1
    print(f"outcomes: {dict(seen)}")
    assert sum(seen.values()) == iterations(300), seen


def test_stop_from_threads_at_the_moment_of_exit(cg: Tracker, marker: str) -> None:
    """stop() from 4 threads at once while the command exits: all agree on
    one true status; the directories are gone when each call returns."""
    for i in range(iterations(100)):
        cmd, own = EXITING[i % len(EXITING)]
        path = cg.path()
        what = f"iteration {i}: {cmd} with cgroup={spec(i, path)!r}"
        p = netrunner.start(cmd, cgroup=spec(i, path), kill_timeout=1)
        barrier = threading.Barrier(4, action=lambda i=i: pause(0.0005 * (i % 7)))
        results: list[Any] = []

        def stopper(p: netrunner.Process = p, barrier: threading.Barrier = barrier,
                    results: list[Any] = results, path: str = path) -> None:
            barrier.wait()
            try:
                rc = p.stop()
            except BaseException as exc:
                results.append(exc)
                return
            results.append((rc, left_behind(path)))

        threads = [threading.Thread(target=stopper, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        hung = [t for t in threads if t.is_alive()]
        if hung:
            p.kill()
        p.close()
        assert not hung, f"{what}: {len(hung)} stop() calls still blocked after 30 s"
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, f"{what}: stop() raised {errors!r}"
        codes = {rc for rc, _ in results}
        assert len(codes) == 1, f"{what}: the threads disagree: {results}"
        assert codes <= {own, TERM, KILL}, f"{what}: returncode {codes}"
        dirty = [left for _, left in results if left]
        assert not dirty, f"{what}: directories remained when stop() returned: {dirty}"
        assert_clean_now(path, marker, what)


def test_timeout_at_the_moment_of_exit(cg: Tracker, marker: str) -> None:
    """run(["sleep", "0.02"], timeout=0.02-0.05) (starting and ending a
    command with a cgroup takes a few ms more than without): a clean exit or
    Timeout; either way the directories are gone when run() returns or raises."""
    seen: Counter[str] = Counter()
    for i in range(iterations(150)):
        path = cg.path()
        timeout = 0.02 + 0.002 * (i % 16)
        what = f"iteration {i}: run(['sleep', '0.02'], timeout={timeout:g}, cgroup={spec(i, path)!r})"
        try:
            r = netrunner.run(["sleep", "0.02"], timeout=timeout, kill_timeout=1, cgroup=spec(i, path))
        except netrunner.Timeout as exc:
            rc = exc.stats.returncode if exc.stats is not None else None
            assert rc in {None, 0, TERM, KILL}, f"{what}: Timeout with returncode {rc}"
            seen["timeout"] += 1
        except netrunner.ShepherdError as exc:
            raise AssertionError(f"{what}: ShepherdError: {exc}") from exc
        else:
            assert r.returncode == 0, f"{what}: a Result with returncode {r.returncode} (stopped without Timeout?)"
            assert r.stats.peak_memory is not None, f"{what}: {r.stats}"
            seen["exit"] += 1
        assert_clean_now(path, marker, what)
    print(f"outcomes: {dict(seen)}")
    assert sum(seen.values()) == iterations(150), seen


def test_output_limit_at_the_moment_of_exit(cg: Tracker, marker: str) -> None:
    """run(["printf", "abcdefgh"], max_output_size=4): always the limit error
    with exactly b"abcd", whether or not the command ended first; the
    directories are gone when it is raised."""
    for i in range(iterations(150)):
        path = cg.path()
        what = f"iteration {i}: run(['printf', 'abcdefgh'], max_output_size=4, cgroup={spec(i, path)!r})"
        try:
            outcome: Any = netrunner.run(["printf", "abcdefgh"], max_output_size=4, kill_timeout=1,
                                         cgroup=spec(i, path))
        except Exception as exc:
            outcome = exc
        if not isinstance(outcome, netrunner.OutputLimitExceeded):
            raise AssertionError(f"{what}: expected OutputLimitExceeded, got {outcome!r}")
        got = (outcome.stdout, outcome.limit, outcome.stream)
        assert got == (b"abcd", 4, "stdout"), f"{what}: (stdout, limit, stream) = {got!r}"
        assert_clean_now(path, marker, what)


def test_aio_exit_at_the_moment_of_stop(cg: Tracker, marker: str) -> None:
    """The asyncio twin of test_exit_at_the_moment_of_stop."""

    async def main() -> None:
        for i in range(iterations(150)):
            cmd, own = EXITING[i % len(EXITING)]
            path = cg.path()
            delay = 0.0005 * ((i // len(EXITING)) % 8)
            what = f"iteration {i}: aio {cmd} with cgroup={spec(i, path)!r}, stop() after {delay * 1000:g} ms"
            p = await netrunner.aio.start(cmd, cgroup=spec(i, path), kill_timeout=1)
            try:
                if delay:
                    await asyncio.sleep(delay)
                try:
                    rc = await p.stop()
                except netrunner.ShepherdError as exc:
                    raise AssertionError(f"{what}: ShepherdError: {exc}") from exc
                assert_clean_now(path, marker, what)
                assert rc in {own, TERM, KILL}, f"{what}: returncode {rc}"
            finally:
                await p.aclose()

    asyncio.run(asyncio.wait_for(main(), timeout=300))


# ----------------------------------------------------------------------------
# 2. A leftover forking as fast as it can

#: The command: forks the leftover, then exits 3 after argv[2] seconds
#: ("exit") or sleeps ("run"). The leftover leaves the session, ignores
#: SIGTERM (only the KILL step, cgroup.kill, can end it) and forks without
#: pause: children that exit at once, and every fourth one an orphan (the
#: shepherd, a subreaper, inherits it) that lives 20 ms. pids_max bounds it;
#: a fork refused by the limit is simply tried again.
FORKER = r"""
import os, signal, sys, time
if os.fork() == 0:
    os.setsid()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    n = 0
    while True:
        n += 1
        try:
            pid = os.fork()
        except OSError:
            pid = -1
        if pid == 0:
            if n % 4 == 0:
                try:
                    if os.fork() == 0:
                        time.sleep(0.02)
                except OSError:
                    pass
            os._exit(0)
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass
if sys.argv[1] == "exit":
    time.sleep(float(sys.argv[2]))
    os._exit(3)
time.sleep(1000)
"""


def forker(mode: str, runtime: float = 0.0) -> list[str]:
    return [PY, "-I", "-S", "-c", FORKER, mode, str(runtime)]


def test_fork_storm_while_the_command_exits_or_is_stopped(cg: Tracker, marker: str) -> None:
    """A setsid'd leftover ignoring SIGTERM forks as fast as it can (under
    pids_max) while the command exits by itself or is stopped: cgroup.kill
    takes everything, forks in flight included; run()/stop() returns the true
    status only once all of it is gone and the directories removed."""
    seen: Counter[str] = Counter()
    for i in range(iterations(45)):
        path = cg.path()
        mode = ("run-exit", "stop-exit", "stop-run")[i % 3]
        runtime = (0.0, 0.005, 0.02, 0.05)[(i // 3) % 4]
        delay = (0.0, 0.01, 0.03, 0.06)[(i // 12) % 4]
        kill_timeout = (0.05, 0.2)[i % 2]
        group = Cgroup(path, pids_max=48) if i % 4 else Cgroup(path, pids_max=48, memory_max="512M")
        what = (f"iteration {i}: {mode}, command runtime {runtime} s, stop after {delay} s, "
                f"kill_timeout={kill_timeout}, cgroup={group!r}")
        if mode == "run-exit":
            try:
                r = netrunner.run(forker("exit", runtime), cgroup=group, kill_timeout=kill_timeout, timeout=60)
            except netrunner.NetRunnerError as exc:
                raise AssertionError(f"{what}: {type(exc).__name__}: {exc}") from exc
            rc = r.returncode
            assert rc == 3, f"{what}: run() returned {rc}, not the command's own exit 3 ({r})"
        else:
            p = netrunner.start(forker("exit" if mode == "stop-exit" else "run", runtime), cgroup=group,
                                kill_timeout=kill_timeout)
            try:
                if delay:  # the storm has begun (or the command is gone), then a little more
                    wait_for_leftover(p, 3)
                pause(delay)
                try:
                    rc = p.stop()
                except netrunner.ShepherdError as exc:
                    raise AssertionError(f"{what}: ShepherdError: {exc}") from exc
            finally:
                p.close()
            allowed = {3, TERM, KILL} if mode == "stop-exit" else {TERM, KILL}
            assert rc in allowed, f"{what}: returncode {rc}, expected one of {allowed}"
        assert_clean_now(path, marker, what)
        seen[f"{mode}:{rc}"] += 1
    print(f"outcomes: {dict(seen)}")
    assert sum(seen.values()) == iterations(45), seen


# ----------------------------------------------------------------------------
# 3. The shepherd SIGKILLed at random moments


def spare_shepherd() -> int:
    """A pidfd for the idle spare shepherd the next start() will take (our
    unreaped child: its pid cannot have been reused)."""
    pids = zygote.helper_pids() - {zygote.current_pid()}
    if not pids:
        netrunner.run(["true"])  # starts the zygote and forks a spare
        pids = zygote.helper_pids() - {zygote.current_pid()}
    assert len(pids) == 1, f"precondition: expected one spare shepherd, found {pids}"
    return os.pidfd_open(pids.pop())


def kill_later(pidfd: int, delay: float) -> None:
    """SIGKILL the process of ``pidfd`` after ``delay``; -1: nothing to kill."""
    pause(delay)
    if pidfd < 0:
        return
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except ProcessLookupError:
        pass


def assert_clean_after_kill(path: str, marker: str, what: str, *, leaf: bool = False,
                            others: frozenset[int] = frozenset()) -> None:
    """After the shepherd's SIGKILL: no directory left when the call
    returned (Python kills the cgroup and removes them before it raises);
    the tree dies (parent-death signal, cgroup.kill) -- soon, since the
    orphans' new parent reaps them, not netrunner. ``others``: processes of
    other commands, still running."""
    left = left_behind(path, leaf=leaf)
    assert not left, f"{what}: cgroup directories remain right after the call returned: {left}"

    def alive() -> list[int]:
        return [pid for pid in pids_with_marker(marker) if pid not in others]

    gone = wait_until(lambda: not alive(), timeout=10)
    assert gone, f"{what}: processes of the tree alive 10 s after the shepherd died: {alive()}"


def test_shepherd_killed_during_the_spawn(cg: Tracker, marker: str) -> None:
    """The spare shepherd is SIGKILLed 0-3 ms after start() begins (while
    the directories are made, the request sent, the command cloned into its
    cgroup and exec'd): start() raises ShepherdError, or the next call does,
    or the true status comes back; the directories are gone either way."""
    seen: Counter[str] = Counter()
    for i in range(iterations(150)):
        path = cg.path()
        delay = 0.0003 * (i % 11)
        what = f"iteration {i}: spare shepherd SIGKILLed {delay * 1000:g} ms into start(cgroup={spec(i, path)!r})"
        pidfd = spare_shepherd()
        killer = threading.Thread(target=kill_later, args=(pidfd, delay), daemon=True)
        try:
            killer.start()
            try:
                p = netrunner.start(["sh", "-c", "exit 3"], cgroup=spec(i, path), kill_timeout=1)
            except netrunner.ShepherdError:
                outcome = "start() raised ShepherdError"
            else:
                try:
                    rc = p.wait(timeout=30)
                except netrunner.ShepherdError:
                    outcome = "wait() raised ShepherdError"
                    assert p.poll() is not None, f"{what}: poll() after ShepherdError must behave as after an exit"
                else:
                    assert rc == 3, f"{what}: returncode {rc}, not the command's own exit 3"
                    outcome = "exit 3"
                finally:
                    p.close()
            killer.join(timeout=10)
            assert_clean_after_kill(path, marker, f"{what} ({outcome})")
        finally:
            killer.join(timeout=10)
            os.close(pidfd)
        seen[outcome] += 1
    print(f"outcomes: {dict(seen)}")
    assert sum(seen.values()) == iterations(150), seen


#: A command whose setsid'd leftover ignores SIGTERM (so a stop lasts
#: kill_timeout and ends with cgroup.kill); it exits 3 after $2 seconds.
WITH_LEFTOVER = ["sh", "-c", 'setsid -f sh -c "$1"; sleep "$2"; exit 3', "sh", 'trap "" TERM; exec sleep 1000']


def test_shepherd_killed_while_running_or_stopping(cg: Tracker, marker: str) -> None:
    """The shepherd is SIGKILLed at varying moments after start(): before,
    during or after the command's exit, in the middle of a stop (TERM round,
    waiting, cgroup.kill, removing the directories), with a leftover or a
    fork storm in the cgroup; every fourth command under a parent directory
    shared with a command that runs throughout. The call raises
    ShepherdError or returns the true status; the directories are gone when
    it does (the shared parent stays while its other command runs, and goes
    with it); nothing survives."""
    seen: Counter[str] = Counter()
    shared = cg.path()
    sibling = netrunner.start(["sleep", "1000"], cgroup=f"{shared}/sibling", kill_timeout=1)
    try:
        _kill_shepherds(cg, marker, shared, sibling, seen)
    finally:
        sibling.close()
    left = left_behind(shared)
    assert not left, f"directories of the shared parent remain once its last command ended: {left}"
    print(f"outcomes: {dict(seen)}")
    assert sum(seen.values()) == iterations(120), seen


def _kill_shepherds(cg: Tracker, marker: str, shared: str, sibling: netrunner.Process, seen: Counter[str]) -> None:
    """The loop of test_shepherd_killed_while_running_or_stopping."""
    for i in range(iterations(120)):
        in_shared = i % 4 == 1
        path = f"{shared}/k{i}" if in_shared else cg.path()
        how = ("wait", "stop-thread", "stop-after")[i % 3]
        # wait: the kill lands while the command runs, exits, or its leftover
        # is being stopped; stop-thread: during the stop (TERM round, waiting,
        # cgroup.kill, removal); stop-after: before stop() is called (Python
        # then ends the tree itself: docs/lifetime.md, returncode -9).
        delay = (0.006 if how == "wait" else 0.004) * ((i // 3) % 10)
        storm = i % 5 == 4
        cmd = forker("exit", 0.003) if storm else [*WITH_LEFTOVER, "0.003"]
        group = Cgroup(path, pids_max=48) if storm else spec(i, path)
        what = f"iteration {i}: {'fork storm' if storm else 'leftover'}, {how}, shepherd SIGKILLed after " \
               f"{delay * 1000:g} ms, cgroup={group!r}"
        p = netrunner.start(cmd, cgroup=group, kill_timeout=0.03)
        # Our child, reaped only by a call of ours: the number still names
        # the shepherd, unless start() itself already saw the whole run end
        # (on a loaded host start() can take longer than the command's 3 ms
        # and its leftover's 30 ms stop): then the kill comes after the end,
        # which is one of the moments this loop covers, and is a no-op.
        pidfd = -1 if p._h.reaped else os.pidfd_open(p._h.shepherd_pid)
        killer = threading.Thread(target=kill_later, args=(pidfd, delay), daemon=True)
        try:
            if how == "stop-thread":
                wait_for_leftover(p, 1)  # the leftover is there (or the command is gone): the stop lasts
                killer.start()
            else:
                kill_later(pidfd, delay)
            try:
                rc = p.wait(timeout=30) if how == "wait" else p.stop()
            except netrunner.ShepherdError:
                outcome = "ShepherdError"
                assert p.poll() is not None, f"{what}: poll() after ShepherdError must behave as after an exit"
            else:
                allowed = {"wait": {3}, "stop-thread": {3, TERM, KILL}, "stop-after": {3, KILL}}[how]
                assert rc in allowed, f"{what}: returncode {rc}, expected one of {allowed} or ShepherdError"
                outcome = str(rc)
            assert_clean_after_kill(path, marker, f"{what} ({outcome})", leaf=in_shared,
                                    others=frozenset({sibling.pid}))
            if in_shared:
                assert sibling.poll() is None, f"{what}: the command sharing the parent ended: {sibling.returncode}"
                assert os.path.isdir(sibling.cgroup or ""), f"{what}: {sibling.cgroup} vanished while in use"
        finally:
            if killer.ident is not None:
                killer.join(timeout=10)
            p.close()
            if pidfd >= 0:
                os.close(pidfd)
        seen[f"{how}:{outcome}"] += 1
    assert sibling.stop() == TERM


# ----------------------------------------------------------------------------
# 4. Many commands under a shared intermediate directory


def _job(n: int, path: str) -> str:
    """One command under the shared parent, ended one of five ways (each
    lasting a different time); a description of a wrong outcome, or ""."""
    group: str | Cgroup = path if n % 2 else Cgroup(path, pids_max=32)
    kind = n % 5
    try:
        if kind == 0:
            r = netrunner.run(["true"], cgroup=group, kill_timeout=1, timeout=60)
            return "" if r.returncode == 0 else f"true: returncode {r.returncode}"
        if kind == 1:
            r = netrunner.run(["sh", "-c", "exit 3"], cgroup=group, kill_timeout=1, timeout=60)
            return "" if r.returncode == 3 else f"exit: returncode {r.returncode}"
        if kind == 2:
            with netrunner.start(["sleep", "1000"], cgroup=group, kill_timeout=1) as p:
                pause(0.001 * (n % 5))
                rc = p.stop()
            return "" if rc == TERM else f"stop: returncode {rc}"
        if kind == 3:
            try:
                r = netrunner.run(["sleep", "1000"], cgroup=group, kill_timeout=1, timeout=0.005 * (1 + n % 4))
            except netrunner.Timeout:
                return ""
            return f"timeout: a Result {r}"
        r = netrunner.run([*WITH_LEFTOVER, "0.001"], cgroup=group, kill_timeout=0.02, timeout=60)
        return "" if r.returncode == 3 else f"leftover: returncode {r.returncode}"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


async def _ajob(n: int, path: str) -> str:
    """The asyncio twin of _job (its first four ways)."""
    group: str | Cgroup = path if n % 2 else Cgroup(path, pids_max=32)
    kind = n % 4
    try:
        if kind == 0:
            r = await netrunner.aio.run(["true"], cgroup=group, kill_timeout=1, timeout=60)
            return "" if r.returncode == 0 else f"true: returncode {r.returncode}"
        if kind == 1:
            r = await netrunner.aio.run(["sh", "-c", "exit 3"], cgroup=group, kill_timeout=1, timeout=60)
            return "" if r.returncode == 3 else f"exit: returncode {r.returncode}"
        if kind == 2:
            p = await netrunner.aio.start(["sleep", "1000"], cgroup=group, kill_timeout=1)
            try:
                await asyncio.sleep(0.001 * (n % 5))
                rc = await p.stop()
            finally:
                await p.aclose()
            return "" if rc == TERM else f"stop: returncode {rc}"
        try:
            r = await netrunner.aio.run(["sleep", "1000"], cgroup=group, kill_timeout=1, timeout=0.005 * (1 + n % 4))
        except netrunner.Timeout:
            return ""
        return f"timeout: a Result {r}"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def test_shared_parent_many_concurrent_commands(cg: Tracker, marker: str) -> None:
    """6 threads and an event loop start commands under one new intermediate
    directory (``<top>/<job>``), all released at once.

    Even rounds ("wave"): each starts one command, so the intermediate is
    made by several at the same moment, and the commands end in an order
    that varies (exit, stop, timeout, exit with a leftover: each takes its
    own time) -- whichever ends last must remove it. Odd rounds ("churn"):
    many short commands each, so the intermediate is removed and made again
    while others are being set up.

    Every call gives its true outcome, and once all have returned no
    directory of the shared top remains, in the v2 hierarchy or any v1 one."""
    threads_n = 6
    for rnd in range(iterations(16)):
        top = cg.path()
        wave = rnd % 2 == 0
        per_thread, aio_n = (1, 4) if wave else (25, 12)
        what = f"round {rnd} ({'wave' if wave else 'churn'}) under {top}"
        wrong: list[str] = []
        barrier = threading.Barrier(threads_n + 1)

        def worker(t: int, top: str = top, wrong: list[str] = wrong, barrier: threading.Barrier = barrier,
                   rnd: int = rnd, per_thread: int = per_thread) -> None:
            barrier.wait()
            for k in range(per_thread):
                bad = _job(rnd + t + k * threads_n, f"{top}/t{t}-{k}")
                if bad:
                    wrong.append(f"{top}/t{t}-{k}: {bad}")

        def event_loop(top: str = top, wrong: list[str] = wrong, barrier: threading.Barrier = barrier,
                       rnd: int = rnd, aio_n: int = aio_n) -> None:
            async def main() -> list[str]:
                return list(await asyncio.gather(*(_ajob(rnd + k, f"{top}/a{k}") for k in range(aio_n))))

            barrier.wait()
            try:
                results = asyncio.run(asyncio.wait_for(main(), timeout=120))
            except BaseException as exc:
                results = [f"the event loop: {type(exc).__name__}: {exc}"]
            wrong.extend(f"aio: {r}" for r in results if r)

        threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(threads_n)]
        threads.append(threading.Thread(target=event_loop, daemon=True))
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=180)
        hung = [t.name for t in threads if t.is_alive()]
        assert not hung, f"{what}: threads still running after 180 s: {hung}"
        assert not wrong, f"{what}: wrong outcomes: {wrong}"
        left = left_behind(top)
        assert not left, f"{what}: directories of the shared top remain once every command has returned: {left}"
        alive = pids_with_marker(marker)
        assert not alive, f"{what}: processes alive once every command has returned: {alive}"


def test_shared_parent_made_and_removed_back_to_back(cg: Tracker, marker: str) -> None:
    """Two threads run short commands one after another under the same
    intermediate directory: it is removed by whichever command ends last and
    made again by the next one, while the other thread is setting up its
    own under it. Every call succeeds, and nothing is left."""
    jobs = 200
    for rnd in range(iterations(3)):
        top = cg.path()
        wrong: list[str] = []
        barrier = threading.Barrier(2)

        def worker(t: int, top: str = top, wrong: list[str] = wrong, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            for k in range(jobs):
                path = f"{top}/t{t}-{k}"
                try:
                    r = netrunner.run(["true"], cgroup=path if k % 2 else Cgroup(path, pids_max=8), timeout=60)
                except Exception as exc:
                    wrong.append(f"{path}: {type(exc).__name__}: {exc}")
                    continue
                if r.returncode != 0:
                    wrong.append(f"{path}: returncode {r.returncode}")

        threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=180)
        what = f"round {rnd} under {top}"
        assert not [t for t in threads if t.is_alive()], f"{what}: threads still running after 180 s"
        assert not wrong, f"{what}: {len(wrong)} of {2 * jobs} calls went wrong: {wrong}"
        left = left_behind(top)
        assert not left, f"{what}: directories of the shared top remain once every command has returned: {left}"
        alive = pids_with_marker(marker)
        assert not alive, f"{what}: processes alive once every command has returned: {alive}"


# ----------------------------------------------------------------------------
# 5. A member's pid number reused while the shepherd pins the cgroup's members

PID_REUSE_OWNER = """
sys.path.insert(0, {here!r})
import owners_cgroup
owners_cgroup.main({paths!r}, {workdir!r}, {kill_timeout!r})
"""


def test_outsider_with_a_members_pid_is_never_signalled(cg: Tracker, tmp_path: Path) -> None:
    """In a new pid namespace, the shepherd is held (ptrace) just as its TERM
    round over the cgroup is about to open a pidfd for member X; X is killed
    and reaped, and an unrelated process (its own group, outside the cgroup)
    is given the number X; then the shepherd goes on. Its second read of
    cgroup.procs no longer lists X: the outsider must get no signal. The
    stop itself still ends everything (the command ignores SIGTERM: -SIGKILL)
    and removes the directory. See owners_cgroup.py."""
    assert shutil.which("unshare"), "precondition: unshare is needed for this test"
    paths = [cg.path() for _ in range(iterations(3))]
    body = PID_REUSE_OWNER.format(here=HERE, paths=paths, workdir=str(tmp_path), kill_timeout=0.1)
    owner = Owner(body, tmp_path, prefix=("unshare", "--pid", "--fork", "--mount-proc", "--kill-child"))
    try:
        info = owner.result(timeout=60 + 20 * len(paths))
    finally:
        owner.finish()
    rounds = info["rounds"]
    for i, r in enumerate(rounds):
        assert "error" not in r, f"round {i}: {r['error']}: {r}; owner stderr: {owner.stderr()}"
        assert r["victim"] == r["target"] == r["victim_pgid"], f"round {i}: precondition: pid not reused: {r}"
        assert not r["victim_in_cgroup"], f"round {i}: precondition: the outsider is in the cgroup: {r}"
        assert r["victim_alive"], (
            f"round {i}: an outsider given the number {r['target']} of a member the shepherd was pinning was "
            f"killed by signal {r['victim_signal']} (stop() -> {r['stop']}): {json.dumps(r)}"
        )
        assert not r["victim_pending"], (
            f"round {i}: an outsider given the number {r['target']} of a member the shepherd was pinning has "
            f"signals pending: {r['victim_pending']} (stop() -> {r['stop']}): {json.dumps(r)}"
        )
        assert r["stop"] == KILL, f"round {i}: stop() of a command ignoring SIGTERM gave {r['stop']}: {r}"
        assert not r["left"], f"round {i}: directories remain after stop(): {r}"
        assert not r["kids_alive"], f"round {i}: members survived the stop: {r}"
    assert len(rounds) == len(paths), f"the owner ran {len(rounds)} rounds of {len(paths)}: {info}"
