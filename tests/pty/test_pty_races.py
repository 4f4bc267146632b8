"""SPEC sections 6 and 8 in PTY mode: races and hostile hosts.

Race loops (``NETRUNNER_STRESS=1`` makes each five times longer): a command on
a terminal exits at the same moment as ``stop()``, ``kill()``,
``terminate()`` or a ``timeout``; as end-of-file is typed and the terminal
resized; a fork storm in the command's session ignores SIGHUP and SIGTERM
while it is stopped; ``aio.run``/``aio.start`` are cancelled at random
moments. Only true outcomes are accepted: the command's own exit status or
the signal netrunner sent, never ``ShepherdError``, never a hang; every byte
written before a natural exit is read; nothing of the tree is alive when the
call returns; no fd is left behind.

Hostile hosts, each built by the test (a precondition that cannot be built
fails the test): an owner whose ``/proc`` is another pid namespace's; a pid
number of a stopped tree given to an unrelated session leader; an owner with
fds 0-2 closed and a tiny ``RLIMIT_NOFILE``; an owner running as uid 65534.
The owners' side is in ``owners_pty.py``.

Timing is varied with small random sleeps (the seed is in every message);
correctness is never decided by a sleep."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import pids_with_marker, wait_until
from helpers import helper_pids, pid_alive
from pty_helpers import PY, aread_to_eof, read_to_eof

import netrunner
import netrunner.aio

HERE = Path(__file__).resolve().parent
# The owners live with the hardening tests, the unprivileged runner with
# the cgroup tests.
for _dir in ("hardening", "cgroups"):
    if str(HERE.parent / _dir) not in sys.path:
        sys.path.append(str(HERE.parent / _dir))
from _host import NOBODY, run_unprivileged  # noqa: E402
from _stress import iterations  # noqa: E402
from owners_hostile import Owner, owner_code, wait_no_survivors  # noqa: E402

TERM, KILL = -signal.SIGTERM, -signal.SIGKILL
#: What every owner body starts with: owners_pty importable.
OWNER = f"sys.path.insert(0, {str(HERE)!r})\nimport owners_pty\n"


def seeded() -> tuple[random.Random, int]:
    """A random generator and its seed (for the failure messages)."""
    seed = random.randrange(1 << 32)
    return random.Random(seed), seed


class Staircase:
    """A phase that follows a race's boundary, whatever the host's speed.

    Each draw is uniform in ``spread`` times the current scale. After an
    outcome that says the phase came too late (the command had exited
    first) the scale shrinks by a fifth; after one that says it came too
    early it grows by a quarter. A loaded host, where starting a command
    takes ten times longer, moves the scale along, so both outcomes keep
    happening and the race is really run; which one happens is never
    checked, only that it is a true one."""

    def __init__(self, rng: random.Random, scale: float, spread: tuple[float, float] = (0.0, 1.0)) -> None:
        self.rng, self.scale, self.spread = rng, scale, spread

    def draw(self) -> float:
        return self.rng.uniform(self.scale * self.spread[0], self.scale * self.spread[1])

    def outcome(self, *, too_late: bool) -> None:
        self.scale = min(max(self.scale * (0.8 if too_late else 1.25), 0.0005), 2.0)


def pause(seconds: float) -> None:
    """Vary a phase (correctness never depends on it)."""
    if seconds > 0:
        time.sleep(seconds)


def tree_now(marker: str) -> list[tuple[int, str]]:
    """Live processes of this test (its marker), netrunner's helpers left
    out, with their command lines: what must be empty the moment a stop,
    wait or run returns (the shepherd reports the exit only once it has no
    child left)."""
    skip = helper_pids()
    return [(pid, cmdline(pid)) for pid in pids_with_marker(marker) if pid not in skip]


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def carries(pid: int, marker: str) -> bool:
    """``pid`` is alive (not a zombie) and carries this test's marker (so it
    is the process of the tree, not an unrelated one that took the number)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = f.read().split(b"\0")
    except OSError:
        return False
    return pid_alive(pid) and f"NETRUNNER_TEST_MARKER={marker}".encode() in environ


def open_fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


# ----------------------------------------------------------------------------
# 1. The command exits at the same moment as stop(), kill(), terminate(), a timeout

#: Ignores SIGHUP (the terminal's hangup at its exit must not be what ends
#: its leftovers), starts a background sleep (in its group) and a setsid'd
#: one (out of its session), prints "line <n> <background> <daemon>" and
#: exits 3. argv[1] is n; argv[2], if given, is how long it sleeps before
#: exiting.
EXITER = "trap '' HUP; sleep 1000 & bg=$!; setsid sleep 1000 & echo line $1 $bg $!; [ -z \"$2\" ] || sleep $2; exit 3"
LINE = re.compile(rb"line (\d+) (\d+) (\d+)\r\n")


def exiter(n: int, runtime: float | None = None) -> list[str]:
    return ["sh", "-c", EXITER, "sh", str(n)] + ([f"{runtime:g}"] if runtime is not None else [])


def check_line(out: bytes, n: int, *, required: bool) -> list[int]:
    """``out`` is exactly the command's line (or, when not ``required``,
    nothing: it was stopped before it printed); the leftovers' pids."""
    if not required and out == b"":
        return []
    match = LINE.fullmatch(out)
    assert match is not None, f"output {out!r} is not exactly the line the command printed"
    assert int(match.group(1)) == n, f"output {out!r} belongs to another command than number {n}"
    return [int(match.group(2)), int(match.group(3))]


def test_exit_at_the_moment_of_stop_kill_or_terminate(marker: str) -> None:
    """start() then, after 0-4 ms (a Staircase: about as long as the command
    takes to exit on this host), stop(), kill()+wait() or terminate()+wait()
    on a command that exits 3 at about that moment: its own status or the
    signal sent (never ShepherdError, never a hang); after a natural exit its
    whole line is read; its two leftovers are dead when the call returns."""
    rng, seed = seeded()
    allowed = {"stop": {3, TERM, KILL}, "kill": {3, KILL}, "terminate": {3, TERM}}
    seen: Counter[str] = Counter()
    phase = Staircase(rng, 0.004)
    for i in range(iterations(600)):
        how = ("stop", "kill", "terminate")[i % 3]
        delay = phase.draw()
        what = f"iteration {i} (seed {seed}): {how} after {delay * 1000:.2f} ms"
        p = netrunner.start(exiter(i), pty=True, kill_timeout=1)
        try:
            pause(delay)
            try:
                if how == "stop":
                    rc = p.stop()
                else:
                    if how == "kill":
                        p.kill()
                    else:
                        p.terminate()
                    rc = p.wait(timeout=15)
            except netrunner.ShepherdError as exc:
                raise AssertionError(f"{what}: ShepherdError: {exc}") from exc
            alive = tree_now(marker)
            out = read_to_eof(p, timeout=15)
        finally:
            p.close()
        assert rc in allowed[how], f"{what}: returncode {rc}, neither its own exit 3 nor the signal sent"
        assert p.returncode == rc, f"{what}: returned {rc} but returncode is {p.returncode}"
        assert not alive, f"{what} (returncode {rc}): alive when the call returned: {alive}"
        try:
            leftovers = check_line(out, i, required=rc == 3)
        except AssertionError as exc:
            raise AssertionError(f"{what} (returncode {rc}): {exc}") from None
        assert not [pid for pid in leftovers if carries(pid, marker)], f"{what}: leftovers {leftovers} survived"
        seen[f"{how}:{rc}"] += 1
        phase.outcome(too_late=rc == 3)
    print(f"outcomes: {dict(seen)}")
    assert any(key.endswith(":3") for key in seen), f"precondition: no command ever exited first: {dict(seen)}"
    assert not all(key.endswith(":3") for key in seen), (
        f"precondition: no command was ever stopped first (the race never happened): {dict(seen)}"
    )


def _timeout_outcome(outcome: Any, n: int, what: str) -> str:
    """The outcome of run(exiter(n, runtime), timeout=...): a Result with the
    whole line and status 3, or Timeout with nothing or the whole line and
    a status netrunner could have caused."""
    if isinstance(outcome, netrunner.Timeout):
        assert outcome.stats is not None, f"{what}: Timeout without stats"
        rc = outcome.stats.returncode
        assert rc in {None, 3, TERM, KILL}, f"{what}: Timeout with returncode {rc}, a signal netrunner never sent"
        assert isinstance(outcome.stdout, bytes), f"{what}: partial output {outcome.stdout!r} is not bytes"
        try:  # a command that exited by itself had printed its line
            check_line(outcome.stdout, n, required=rc == 3)
        except AssertionError as exc:
            raise AssertionError(f"{what}: Timeout (returncode {rc}): {exc}") from None
        return "timeout"
    if isinstance(outcome, BaseException):
        raise AssertionError(f"{what}: {type(outcome).__name__}: {outcome}") from outcome
    assert outcome.returncode == 3, f"{what}: a Result with returncode {outcome.returncode} (stopped without Timeout?)"
    try:
        check_line(outcome.stdout, n, required=True)
    except AssertionError as exc:
        raise AssertionError(f"{what}: Result: {exc}") from None
    return "exit"


def test_timeout_at_the_moment_of_exit(marker: str) -> None:
    """run() and aio.run() of a command that exits 3 after about 20 ms, with
    a timeout of 12-30 ms (a Staircase: around the time it takes here): a Result (status 3, the whole line) or Timeout
    (its partial output: nothing or the whole line, the whole line when the
    command had exited by itself), never anything else; nothing of the tree
    alive when the call returns or raises."""
    rng, seed = seeded()
    seen: Counter[str] = Counter()

    async def arun_one(n: int, timeout: float) -> Any:
        try:
            return await netrunner.aio.run(exiter(n, 0.02), pty=True, kill_timeout=1, timeout=timeout)
        except Exception as exc:
            return exc

    phase = Staircase(rng, 0.02, spread=(0.6, 1.5))
    for i in range(iterations(300)):
        timeout = phase.draw()
        twin = "aio.run" if i % 2 else "run"
        what = f"iteration {i} (seed {seed}): {twin}(timeout={timeout * 1000:.1f} ms)"
        if twin == "run":
            try:
                outcome: Any = netrunner.run(exiter(i, 0.02), pty=True, kill_timeout=1, timeout=timeout)
            except Exception as exc:
                outcome = exc
        else:
            outcome = asyncio.run(asyncio.wait_for(arun_one(i, timeout), 30))
        alive = tree_now(marker)
        result = _timeout_outcome(outcome, i, what)
        seen[f"{twin}:{result}"] += 1
        phase.outcome(too_late=result == "exit")
        assert not alive, f"{what}: alive when the call returned: {alive}"
    print(f"outcomes: {dict(seen)}")
    assert {k.split(":")[1] for k in seen} == {"exit", "timeout"}, f"precondition: the race never happened: {seen}"


# ----------------------------------------------------------------------------
# 2. The command exits as end-of-file is typed and the terminal resized

#: Print "line <n>"; the "reads" one then reads a line from the terminal (so
#: the end-of-file close_stdin types is what lets it go on) and says what it
#: got. Both exit 3.
NO_READ = "echo line $1; exit 3"
READS = "echo line $1; read x; echo got $x; exit 3"


def test_exit_against_close_stdin_and_set_window_size(marker: str) -> None:
    """While a command on a terminal exits by itself, or because the
    end-of-file typed by close_stdin() ends its read: text is typed, the
    terminal is resized from the test's thread and, without pause, from a
    second thread, and close() comes while that thread still resizes.
    close_stdin() and set_window_size() raise nothing (the only documented
    errors are for a process without a PTY and bad sizes); write() after
    close_stdin() raises StdinClosed; the status is the command's own 3 and
    its output arrives."""
    rng, seed = seeded()
    for i in range(iterations(300)):
        script = (NO_READ, READS)[i % 2]
        typed = bool(i // 2 % 2)
        d1, d2 = rng.uniform(0, 0.003), rng.uniform(0, 0.003)
        what = (f"iteration {i} (seed {seed}): {'reads' if script is READS else 'exits'}, "
                f"{'text typed' if typed else 'nothing typed'}, close_stdin after {(d1 + d2) * 1000:.2f} ms")
        p = netrunner.start(["sh", "-c", script, "sh", str(i)], pty=True, kill_timeout=1)
        done = threading.Event()
        phase = ["before close()"]  # how far the test's thread is
        errors: list[tuple[str, BaseException]] = []

        def resize(p: netrunner.Process = p, done: threading.Event = done, phase: list[str] = phase,
                   errors: list[tuple[str, BaseException]] = errors) -> None:
            n = 0
            while not done.is_set():
                n += 1
                try:
                    p.set_window_size(10 + n % 50, 40 + n % 120)
                except BaseException as exc:
                    errors.append((phase[0], exc))
                    return

        resizer = threading.Thread(target=resize, daemon=True)
        resizer.start()
        try:
            pause(d1)
            if typed:
                p.write(b"abc")
            p.set_window_size(30, 100)
            pause(d2)
            p.close_stdin()
            with pytest.raises(netrunner.StdinClosed):
                p.write(b"more")
            p.close_stdin()  # idempotent
            rc = p.wait(timeout=15)
            p.set_window_size(40, 120)  # after the exit
            out = read_to_eof(p, timeout=15)
            phase[0] = "after close() was called"
            p.close()  # while the other thread resizes
            p.set_window_size(50, 132)  # after close(): nothing to resize
        finally:
            done.set()
            resizer.join(timeout=10)
            p.close()
        assert not resizer.is_alive(), f"{what}: set_window_size() still blocked 10 s after close()"
        assert not errors, (
            f"{what}: set_window_size() in a second thread raised {errors[0][1]!r} {errors[0][0]} in the test's "
            f"thread (SPEC 5: every method is thread-safe)"
        )
        assert rc == 3, f"{what}: returncode {rc}, not its own exit 3 (nothing else was sent)"
        assert b"line %d\r\n" % i in out, f"{what}: its line is missing from the output {out!r}"
        if script is READS:
            got = b"got abc\r\n" if typed else b"got\r\n"
            assert got in out, f"{what}: the read did not end as typed ({got!r} missing from {out!r})"
        alive = tree_now(marker)
        assert not alive, f"{what}: alive after close(): {alive}"


# ----------------------------------------------------------------------------
# 3. A fork storm in the command's session

#: The command ignores SIGHUP and SIGTERM (so do its forks) and starts three
#: forkers: two stay in its session and group (the terminal's foreground
#: group), one leaves with setsid. Each forks without pause: children that
#: exit at once, and every fourth one leaves an orphan (re-parented to the
#: shepherd, a subreaper) that lives 20 ms. It prints "storming", then exits
#: 3 after argv[2] seconds ("exit") or sleeps ("run").
STORM = r"""
import os, signal, sys, time
signal.signal(signal.SIGHUP, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
def storm(escape):
    if escape:
        os.setsid()
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
for escape in (False, False, True):
    if os.fork() == 0:
        storm(escape)
print("storming", flush=True)
if sys.argv[1] == "exit":
    time.sleep(float(sys.argv[2]))
    os._exit(3)
time.sleep(1000)
"""


def storm(mode: str, runtime: float = 0.0) -> list[str]:
    return [PY, "-I", "-S", "-c", STORM, mode, str(runtime)]


def test_fork_storm_in_the_session_is_stopped(marker: str) -> None:
    """A command whose session forks as fast as it can, ignoring SIGHUP and
    SIGTERM, is stopped while it storms (stop() at once or once it storms),
    while it exits by itself, or by its timeout; or run() returns once it
    exits and its storm is stopped. Every call gives a true status and
    nothing of the tree is alive when it returns."""
    rng, seed = seeded()
    seen: Counter[str] = Counter()
    for i in range(iterations(32)):
        mode = ("stop-run", "stop-exit", "run-exit", "timeout")[i % 4]
        runtime = rng.choice((0.0, 0.01, 0.03))
        delay = rng.choice((None, 0.0, 0.01, 0.04))
        kill_timeout = (0.05, 0.2)[i // 4 % 2]
        what = (f"iteration {i} (seed {seed}): {mode}, runtime {runtime} s, stop "
                f"{'at once' if delay is None else f'{delay} s after the storm began'}, kill_timeout={kill_timeout}")
        if mode == "run-exit":
            try:
                r = netrunner.run(storm("exit", runtime), pty=True, kill_timeout=kill_timeout, timeout=60)
            except netrunner.NetRunnerError as exc:
                raise AssertionError(f"{what}: {type(exc).__name__}: {exc}") from exc
            rc: Any = r.returncode
            assert rc == 3, f"{what}: run() returned {rc}, not the command's own exit 3"
            assert r.stdout == b"storming\r\n", f"{what}: output {r.stdout!r}"
        elif mode == "timeout":
            with pytest.raises(netrunner.Timeout) as info:
                netrunner.run(storm("run"), pty=True, kill_timeout=kill_timeout, timeout=0.05 + runtime)
            rc = info.value.stats.returncode if info.value.stats is not None else None
            assert rc in {None, TERM, KILL}, f"{what}: Timeout with returncode {rc}"
        else:
            p = netrunner.start(storm("exit" if mode == "stop-exit" else "run", runtime), pty=True,
                                kill_timeout=kill_timeout)
            try:
                if delay is not None:
                    p.read_until(b"storming", timeout=15)
                    pause(delay)
                try:
                    rc = p.stop()
                except netrunner.ShepherdError as exc:
                    raise AssertionError(f"{what}: ShepherdError: {exc}") from exc
                alive = tree_now(marker)
            finally:
                p.close()
            allowed = {3, TERM, KILL} if mode == "stop-exit" else {TERM, KILL}
            assert rc in allowed, f"{what}: returncode {rc}, expected one of {allowed}"
            assert not alive, f"{what}: alive when stop() returned: {alive}"
        alive = tree_now(marker)
        assert not alive, f"{what}: alive after the call returned: {alive}"
        seen[f"{mode}:{rc}"] += 1
    print(f"outcomes: {dict(seen)}")


# ----------------------------------------------------------------------------
# 4. asyncio: cancelled at random moments

#: The command and a background sleep ignore HUP and TERM, a setsid'd sleep
#: too; it prints "ready" and waits: only a stop ends it (SIGKILL).
HOLDER = "trap '' HUP TERM; sleep 1000 & setsid sleep 1000 & echo ready; wait"


async def _ajob(kind: str, n: int) -> tuple[int, bytes]:
    """One command, as a task that may be cancelled at any moment:
    (returncode, output) if it ends by itself."""
    if kind == "run-exit":
        r = await netrunner.aio.run(exiter(n), pty=True, kill_timeout=1)
        return r.returncode, r.stdout
    if kind == "run-hold":
        r = await netrunner.aio.run(["sh", "-c", HOLDER], pty=True, kill_timeout=0.05)
        return r.returncode, r.stdout
    if kind == "start-exit":
        async with await netrunner.aio.start(exiter(n), pty=True, kill_timeout=1) as p:
            out = await aread_to_eof(p)
            return await p.wait(), out
    async with await netrunner.aio.start(["sh", "-c", HOLDER], pty=True, kill_timeout=0.05) as p:
        out = await p.read_until(b"ready\r\n", timeout=15)
        return await p.wait(), out


def test_aio_cancelled_at_random_moments(marker: str) -> None:
    """aio.run and aio.start (in ``async with``) of a command that exits by
    itself or only when stopped, its task cancelled 0-20 ms (a Staircase) after it was
    created (while it spawns, reads, waits, or after it is done). A task
    whose cancel() was accepted ends with CancelledError (nothing in
    netrunner may swallow it: the command that only a stop ends would then
    be waited for forever), within 30 s, and its tree is stopped by then;
    one that finished first has its true status and whole output; at the
    end the process holds the fds it held before."""
    rng, seed = seeded()
    seen: Counter[str] = Counter()
    phase = Staircase(rng, 0.02)

    async def main() -> None:
        await netrunner.aio.run(["true"], pty=True)  # the helpers exist
        before = open_fd_count()
        for i in range(iterations(240)):
            kind = ("run-exit", "run-hold", "start-exit", "start-hold")[i % 4]
            delay = phase.draw()
            what = f"iteration {i} (seed {seed}): {kind}, cancel() after {delay * 1000:.2f} ms"
            task = asyncio.create_task(_ajob(kind, i))
            await asyncio.sleep(delay)
            accepted = task.cancel()
            done, _ = await asyncio.wait({task}, timeout=30)
            if not done:
                task.cancel()  # once more, to clean up
                await asyncio.wait({task}, timeout=30)
                raise AssertionError(
                    f"{what}: the task still runs 30 s after cancel() was accepted: the cancellation was lost "
                    f"(a second cancel() {'ended' if task.done() else 'did not end'} it)"
                )
            if task.cancelled():
                outcome = "cancelled"
            elif task.exception() is not None:
                exc = task.exception()
                raise AssertionError(f"{what}: {type(exc).__name__}: {exc}") from exc
            else:
                rc, out = task.result()
                assert not accepted, (
                    f"{what}: cancel() was accepted, yet the task returned normally ({rc}, {out!r}): "
                    f"the CancelledError was swallowed on its way"
                )
                outcome = "finished"
                assert kind.endswith("exit"), f"{what}: a command that only a stop ends finished: {rc}, {out!r}"
                assert rc == 3, f"{what}: returncode {rc}, not its own exit 3"
                try:
                    check_line(out, i, required=True)
                except AssertionError as exc:
                    raise AssertionError(f"{what}: {exc}") from None
            alive = tree_now(marker)
            if alive:
                later = wait_until(lambda: not tree_now(marker), timeout=5)
                raise AssertionError(f"{what} ({outcome}): alive when the task ended: {alive}; "
                                     f"{'gone' if later else 'still alive'} 5 s later")
            seen[f"{kind}:{outcome}"] += 1
            if kind.endswith("exit"):
                phase.outcome(too_late=outcome == "finished")
        # a shepherd handed off is reaped by then (a reaper may hold its pidfd meanwhile)
        for _ in range(500):
            if open_fd_count() == before:
                break
            await asyncio.sleep(0.01)
        after = open_fd_count()
        assert after == before, f"open fds: {before} before the loop, {after} after (seed {seed})"

    asyncio.run(main())
    print(f"outcomes: {dict(seen)}")
    assert seen["run-exit:finished"] + seen["start-exit:finished"], f"precondition: nothing finished: {seen}"


# ----------------------------------------------------------------------------
# 5. Hostile hosts: a foreign /proc, pid reuse


def _need(tool: str) -> None:
    assert shutil.which(tool), f"precondition: {tool} is needed for this test and is not on PATH"


def test_foreign_proc_stop_kills_the_tree(marker: str, tmp_path: Path) -> None:
    """The owner is the init of a new pid namespace (and mount namespace)
    whose /proc is still the parent namespace's (``unshare --mount --pid
    --fork``): its shepherds cannot list their children there. stop() of a
    tree on a terminal -- command and background sleep ignoring HUP and TERM,
    a daemon that left the session with setsid -- still kills all of it
    (SPEC 6: correctness never rests on a /proc scan; a setsid'd descendant
    is still stopped), and the end of output comes; run() of a command that
    leaves such a daemon returns and the daemon is dead. Checked from this
    namespace while the owner still lives."""
    _need("unshare")
    body = OWNER + "report(**owners_pty.foreign_proc(0.5))\nsys.stdin.readline()\n"
    owner = Owner(body, tmp_path, prefix=("unshare", "--mount", "--pid", "--fork", "--kill-child"))
    try:
        info = owner.result(timeout=60)
        assert info["pid"] == 1, f"precondition: the owner is not the init of a new pid namespace: {info}"
        assert info["proc_self"] != "1", f"precondition: the owner's /proc is its own namespace's: {info}"
        assert info["stop"] == KILL, f"stop() of a tree that ignores SIGTERM returned {info['stop']}: {info}"
        left = wait_no_survivors(marker, owner.chain(), timeout=5)
        assert not left, (
            f"with a foreign /proc, processes of the owner's trees survived stop() and run(): "
            f"{[(pid, cmdline(pid)) for pid in left]} (the tree was sh, background sleep, daemon {info['tree']} "
            f"in the owner's namespace; owner stderr: {owner.stderr()!r})"
        )
        assert info["eof"], f"no end of output 3 s after stop(): something still holds the terminal: {info}"
        run = info["run"]
        assert "error" not in run, f"run() failed: {run['error']}"
        assert run == {"stdout": "started\r\n", "returncode": 0}, run
        assert info["run_elapsed"] < 0.5 + 3, f"run() took {info['run_elapsed']:.2f} s"
    finally:
        owner.finish()


def test_reused_pid_of_a_session_leader_is_never_signalled(tmp_path: Path) -> None:
    """In a new pid namespace (the owner is its init, ns_last_pid hands out
    numbers). Rounds 1-2: the command, a session leader on its terminal,
    exits and is reaped while its shepherd stops a setsid'd daemon that
    ignores SIGTERM; an unrelated ``sleep`` is given the command's number as
    the leader of a session and group of its own; send_signal(HUP, INT,
    TERM, KILL), terminate(), kill() and stop() follow. The outsider gets no
    signal, stop() returns the command's own 3, the daemon is dead. Last
    round: the shepherd is SIGKILLed, the command dies and is reaped, an
    outsider takes its number, and only then Python sees the hang-up and
    kills the command's group through its pidfd: the outsider survives."""
    _need("unshare")
    rounds = iterations(2)
    body = OWNER + (
        f"rounds = [owners_pty.reuse_after_reap(2.0) for _ in range({rounds})]\n"
        "report(rounds=rounds, killed=owners_pty.reuse_after_shepherd_killed())\n"
    )
    owner = Owner(body, tmp_path, prefix=("unshare", "--pid", "--fork", "--mount-proc", "--kill-child"))
    try:
        info = owner.result(timeout=60 + 10 * rounds)
    finally:
        owner.finish()
    for i, r in enumerate(info["rounds"]):
        what = f"round {i}: {json.dumps(r)}"
        assert "error" not in r, f"{what}; owner stderr: {owner.stderr()!r}"
        assert r["command"] == r["pid"], f"{what}: Process.pid is not the command"
        assert r["victim"] == r["command"] == r["victim_sid"] == r["victim_pgid"], (
            f"{what}: precondition: the number was not reused by a session leader"
        )
        assert r["still_stopping"], f"{what}: precondition: the stop was over before the number was reused"
        assert r["victim_alive"], (
            f"{what}: an outsider given the number {r['command']} of a reaped command (a session leader) was "
            f"killed by signal {r['victim_signal']} while the command's leftovers were stopped"
        )
        assert not r["victim_pending"], f"{what}: the outsider has signals pending: {r['victim_pending']}"
        assert r["stop"] == 3, f"{what}: stop() returned {r['stop']}, not the command's own exit 3"
        assert not r["daemon_alive"], f"{what}: the daemon survived stop()"
        assert r["eof"], f"{what}: no end of output after stop()"
    assert len(info["rounds"]) == rounds
    k = info["killed"]
    what = f"shepherd SIGKILLed: {json.dumps(k)}"
    assert "error" not in k, f"{what}; owner stderr: {owner.stderr()!r}"
    assert k["victim"] == k["command"] == k["victim_sid"] == k["victim_pgid"], (
        f"{what}: precondition: the number was not reused by a session leader"
    )
    assert k["victim_alive"], (
        f"{what}: an outsider that took the number {k['command']} of a command whose shepherd was killed was "
        f"killed by signal {k['victim_signal']} when Python saw the hang-up ({k['outcome']})"
    )
    assert not k["victim_pending"], f"{what}: the outsider has signals pending"
    assert k["returncode"] == KILL, f"{what}: returncode {k['returncode']} after the shepherd was killed"


# ----------------------------------------------------------------------------
# 6. Hostile hosts: closed stdio, a tiny fd limit, an unprivileged user


def _fd_owner(call: str, tmp_path: Path) -> dict[str, Any]:
    """Run an owner whose fds 0-2 may be closed (stdout is not usable for
    its report): ``owners_pty.<call>``'s result, from a file."""
    result = tmp_path / "result.json"
    err = tmp_path / "owner.err"
    code = owner_code(OWNER + f"owners_pty.report_to(sys.argv[1], owners_pty.{call})\n")
    with open(err, "wb") as stderr:
        proc = subprocess.run([PY, "-c", code, str(result)], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=stderr, timeout=120)
    assert result.exists(), f"the owner wrote no result (exit status {proc.returncode}): {err.read_text()!r}"
    value: dict[str, Any] = json.loads(result.read_text())
    return value


@pytest.mark.parametrize("closed", [[0, 1, 2], [0], [2]], ids=["fd0-2", "fd0", "fd2"])
def test_closed_stdio_in_the_owner(closed: list[int], tmp_path: Path) -> None:
    """The owner closes some of its fds 0-2 (os.openpty then returns those
    numbers first). A command on a terminal gets the terminal as fds 0-2,
    leads its session, is its foreground group; a dialogue works; run() of a
    command that leaves a setsid'd daemon returns at once and the daemon is
    dead; netrunner never occupies the closed numbers."""
    info = _fd_owner(f"closed_stdio({closed!r})", tmp_path)
    problems = []
    describe = info["describe"]
    if "error" in describe:
        problems.append(f"describing the terminal failed: {describe['error']}")
    else:
        seen = json.loads(describe["stdout"].strip()) if describe["stdout"].strip().startswith("{") else None
        if describe["returncode"] != 0 or seen is None:
            problems.append(f"the describing child: {describe}")
        else:
            ttys = seen["tty"]
            if len(set(ttys)) != 1 or not str(ttys[0]).startswith("/dev/pts/"):
                problems.append(f"the child's fds 0-2 are not one terminal: {ttys}")
            if not (seen["leader"] and seen["foreground"]):
                problems.append(f"the child does not lead its session in the foreground: {seen}")
    dialogue = info["dialogue"]
    if "error" in dialogue:
        problems.append(f"the dialogue failed: {dialogue['error']}")
    elif not (dialogue["seen"][0].endswith("HELLO\r\n") and dialogue["seen"][1].endswith("TERMINAL\r\n")
              and dialogue["returncode"] == 0 and dialogue["eof"]):
        problems.append(f"the dialogue: {dialogue}")
    leftover = info["leftover"]
    if "error" in leftover:
        problems.append(f"run() with a leftover failed: {leftover['error']}")
    else:
        if not re.fullmatch(r"started \d+\r\n", leftover["stdout"]) or leftover["returncode"] != 0:
            problems.append(f"run() with a leftover: {leftover}")
        if leftover["daemon_alive"]:
            problems.append(f"the setsid'd daemon survived run(): {leftover}")
        if leftover["elapsed"] > 0.5 + 3:
            problems.append(f"run() waited {leftover['elapsed']:.2f} s for the daemon")
    if info["taken"]:
        problems.append(f"netrunner occupied the owner's closed fds {info['taken']}")
    assert not problems, "; ".join(problems)


@pytest.mark.parametrize("closed", [[], [0, 1, 2]], ids=["stdio-open", "stdio-closed"])
def test_tiny_fd_limit_in_the_owner(closed: list[int], tmp_path: Path) -> None:
    """The owner (with fds 0-2 open, or closed) runs a command on a terminal
    under a soft RLIMIT_NOFILE that leaves 0, 1, ... 12 fd numbers free.
    Each attempt either works (the command's output arrives) or raises the
    OSError for running out of fds (EMFILE) with the message netrunner
    promises: what it needed, the limit, how to raise it. No attempt leaves
    an fd behind; more room never makes it fail; with the 9 free fds the
    message says a start needs, it works; the closed fds stay closed."""
    info = _fd_owner(f"fd_limit_sweep({closed!r}, 12)", tmp_path)
    attempts = info["attempts"]
    problems = []
    worked_at = None
    for a in attempts:
        what = f"{a['free']} free fd numbers (soft RLIMIT_NOFILE {a['limit']})"
        if a["ok"]:
            if worked_at is None:
                worked_at = a["free"]
            if not re.fullmatch(r"hi\r\n/dev/pts/\d+\r\n", a["stdout"]) or a["returncode"] != 0:
                problems.append(f"{what}: it ran but gave {a['stdout']!r}, returncode {a['returncode']}")
        else:
            if worked_at is not None:
                problems.append(f"{what}: failed with more room than when it worked ({worked_at}): {a['error']}")
            message = a["message"]
            if a["errno"] not in (errno.EMFILE, errno.ENFILE):
                problems.append(f"{what}: not the error for running out of fds but {a['error']!r}")
            elif not ("out of file descriptors" in message and f"the limit is {a['limit']}" in message
                      and "ulimit -n" in message):
                problems.append(f"{what}: the message does not say what was needed and how to raise it: {message!r}")
        if a["open_after"] != a["open_before"]:
            problems.append(
                f"{what}: {'run' if a['ok'] else 'the failed start'} left {a['open_after'] - a['open_before']} "
                f"fd(s) open: new {a['new']}, gone {a['gone']}"
            )
    assert not attempts[0]["ok"], f"precondition: it ran with no free fd at all: {attempts[0]}"
    assert worked_at is not None, f"it never ran, even with 12 free fds: {attempts[-1]}"
    assert worked_at <= 9, f"with 9 free fds (what the message says a start needs at most) it did not run: {problems}"
    if info["stdio_open"]:
        problems.append(f"the owner's closed fds {info['stdio_open']} are open after the sweep")
    summary = [(a["free"], a["limit"], "ran" if a["ok"] else a["errno_name"], a["open_after"] - a["open_before"])
               for a in attempts]
    assert not problems, "; ".join(problems) + f" (free fds, limit, outcome, fds left: {summary})"


def test_unprivileged_owner(marker: str) -> None:
    """An owner running as uid 65534 (a venv's interpreter under /root may
    not be usable: the first that imports netrunner as that user is used;
    see tests/cgroups/_host.py): run() of a command on a terminal that
    reports its uid and terminal and leaves a setsid'd daemon; stop() of a
    tree ignoring HUP and TERM. Both work; nothing survives either."""
    body = OWNER + "report(**owners_pty.unprivileged(0.5))\n"
    info = run_unprivileged(body)
    assert info.get("uid") == NOBODY, f"precondition: the owner does not run as uid {NOBODY}: {info}"
    run = info["run"]
    assert "error" not in run, f"run() as uid {NOBODY}: {run['error']}; stderr: {info.get('_stderr')!r}"
    assert re.fullmatch(rf"{NOBODY}\r\n/dev/pts/\d+\r\ndone\r\n", run["stdout"]), run
    assert run["returncode"] == 0, run
    assert info["run_elapsed"] < 0.5 + 3, f"run() took {info['run_elapsed']:.2f} s"
    assert not info["after_run"], f"alive after run() returned: {info['after_run']}"
    assert "start" not in info, f"start() as uid {NOBODY}: {info['start']}"
    assert all(info["tree_alive"]), f"precondition: the tree was not complete: {info}"
    assert info["stop"] == KILL, f"stop() of a tree ignoring SIGTERM returned {info['stop']}"
    assert not info["after_stop"], f"alive after stop() returned: {info['after_stop']}"
    assert info["eof"], f"no end of output after stop(): {info}"
    left = wait_no_survivors(marker, set(), timeout=5)
    assert not left, f"survivors of the unprivileged owner: {[(pid, cmdline(pid)) for pid in left]}"
