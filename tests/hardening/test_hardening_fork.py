"""Hardening items 2 and 10: ``os.fork()`` from another thread in the middle
of spawns (SPEC section 6: the forked child holds no copy of any control
socket or pipe), and a ``Process``/``Stream`` used in a forked child (SPEC
section 5: every method raises ``NetRunnerError`` saying so)."""

from __future__ import annotations

import json
import os
import select
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import pid_alive, wait_until
from owners_hostile import Owner, kill_pids, wait_no_survivors

import netrunner

# Python 3.12+ warns about fork() in a threaded process; that is the point here.
pytestmark = pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")

N_COMMANDS = 100
WORKER_SLEEP = 20.0
# Before every FORK_EVERY-th spawn the spawning thread waits for one more fork,
# so at least N_COMMANDS / FORK_EVERY forks land among the spawns whatever the
# scheduling (the forker also keeps forking while spawns run).
FORK_EVERY = 10


class Forker:
    """A thread that keeps ``os.fork()``ing workers (each sleeps, then
    ``os._exit``); they inherit the environment, so the marker."""

    def __init__(self) -> None:
        self.pids: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            pid = os.fork()
            if pid == 0:  # the worker: no Python-level cleanup, just sleep and go
                try:
                    time.sleep(WORKER_SLEEP)
                finally:
                    os._exit(0)
            self.pids.append(pid)
            time.sleep(0.001)

    def __enter__(self) -> Forker:
        self._thread.start()
        assert wait_until(lambda: len(self.pids) >= 3, timeout=10), "the forking thread never forked"
        return self

    def halt(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def __exit__(self, *exc: object) -> None:
        self.halt()
        self.reap()

    def reap(self) -> None:
        """SIGKILL and reap every worker (they are this process's children)."""
        kill_pids(self.pids)
        for pid in self.pids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def test_fork_during_spawns_stop_is_not_blocked_by_workers() -> None:
    """While a thread forks, start 100 commands; then terminate+wait and
    stop() each: every call returns in < 1 s though the workers live on."""
    procs: list[netrunner.Process] = []
    slow: list[tuple[int, str, float]] = []
    with Forker() as forker:
        try:
            for i in range(N_COMMANDS):
                if i % FORK_EVERY == 0:  # forks all through the spawns, however loaded the machine
                    seen = len(forker.pids)
                    assert wait_until(lambda seen=seen: len(forker.pids) > seen, timeout=10), "the forker stopped"
                procs.append(netrunner.start(["sleep", "30"], kill_timeout=1))
            forker.halt()
            assert all(pid_alive(pid) for pid in forker.pids[-3:]), "the forked workers died early"
            for i, p in enumerate(procs):
                how = "terminate+wait" if i % 2 else "stop"
                took = _timed(lambda p=p, i=i: (p.terminate(), p.wait()) if i % 2 else p.stop(), limit=2.0)
                if took is None or took >= 1.0:
                    slow.append((i, how, took))
                    if took is None:
                        break  # blocked: a worker holds something; no need to wait for more
        finally:
            for p in procs:
                p.kill()
            forker.reap()  # unblocks anything a worker held
            for p in procs:
                p.close()
    assert not slow, (
        f"{len(slow)} of the commands took >= 1 s (None: still blocked after 2 s) to stop "
        f"(a forked worker held a socket or pipe copy): {slow[:10]}"
    )


def _timed(fn: Any, limit: float) -> float | None:
    """Seconds ``fn`` took in a helper thread, or None if still blocked after ``limit``."""
    done = threading.Event()

    def body() -> None:
        try:
            fn()
        finally:
            done.set()

    t0 = time.monotonic()
    threading.Thread(target=body, daemon=True).start()
    if not done.wait(limit):
        return None
    return round(time.monotonic() - t0, 3)


FORKING_OWNER = f"""
import netrunner
pids = []
stop = threading.Event()
def forker():
    while not stop.is_set():
        pid = os.fork()
        if pid == 0:
            try:
                time.sleep({WORKER_SLEEP})
            finally:
                os._exit(0)
        pids.append(pid)
        time.sleep(0.001)
t = threading.Thread(target=forker, daemon=True)
t.start()
until(lambda: len(pids) >= 3)
procs = []
for i in range({N_COMMANDS}):
    if i % {FORK_EVERY} == 0:
        seen = len(pids)
        assert until(lambda: len(pids) > seen), "the forking thread stopped"
    procs.append(netrunner.start(["sleep", "30"], kill_timeout=1))
stop.set()
t.join()
report(commands=[p.pid for p in procs], workers=pids)
time.sleep(1000)
"""


def test_fork_during_spawns_then_owner_sigkilled(marker: str, tmp_path: Path) -> None:
    """The owner forks workers from a thread while it starts 100 commands,
    then is SIGKILLed: every command is gone within seconds, though the
    workers (which must hold no control socket copy) still live."""
    owner = Owner(FORKING_OWNER, tmp_path)
    workers: list[int] = []
    try:
        info = owner.result(timeout=60)
        commands, workers = info["commands"], info["workers"]
        assert all(pid_alive(pid) for pid in commands), "some commands were not running before the kill"
        owner.kill()
        owner.finish()
        wait_until(lambda: not [pid for pid in commands if pid_alive(pid)], timeout=5.0)
        left = [pid for pid in commands if pid_alive(pid)]
        alive_workers = [pid for pid in workers if pid_alive(pid)]
        assert alive_workers, "precondition: the forked workers should still be alive"
        assert not left, (
            f"{len(left)} of {len(commands)} commands survived their owner's SIGKILL for 5 s "
            f"(workers alive: {len(alive_workers)})"
        )
    finally:
        owner.kill()
        owner.finish()
        kill_pids(workers)
        left = wait_no_survivors(marker, set(), timeout=10)
        kill_pids(left)


# --------------------------------------------------------------- item 10

#: How long one call may take in the forked child before it counts as hung.
CHILD_CALL_LIMIT = 2.0


def _call_in_forked_child(fn: Any) -> dict[str, Any]:
    """Fork; in the child call ``fn`` once and send back how it went, as
    JSON. A child that has not answered within CHILD_CALL_LIMIT is killed
    and the call counted as hung."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            t0 = time.monotonic()
            try:
                value = fn()
                outcome: dict[str, Any] = {"returned": repr(value)[:200]}
            except BaseException as exc:
                outcome = {
                    "raised": type(exc).__name__,
                    "netrunner_error": isinstance(exc, netrunner.NetRunnerError),
                    "message": str(exc)[:300],
                }
            outcome["took"] = round(time.monotonic() - t0, 3)
            os.write(w, json.dumps(outcome).encode())
        finally:
            os._exit(0)
    os.close(w)
    try:
        if select.select([r], [], [], CHILD_CALL_LIMIT)[0]:
            data = os.read(r, 65536)
        else:
            data = b""
    finally:
        os.close(r)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
    if not data:
        return {"hung": True, "took": CHILD_CALL_LIMIT}
    result: dict[str, Any] = json.loads(data)
    return result


def _in_forked_child(calls: dict[str, Any]) -> dict[str, Any]:
    """Each call in a fresh forked child (so one hang does not hide the rest)."""
    return {name: _call_in_forked_child(fn) for name, fn in calls.items()}


def _assert_all_refuse(outcomes: dict[str, Any], exit_names: set[str]) -> None:
    bad = {}
    for name, o in outcomes.items():
        if name in exit_names:
            if o.get("hung") or "raised" in o or o["took"] >= 1.0:
                bad[name] = o
        elif not (o.get("netrunner_error") and "fork" in o.get("message", "").lower()):
            bad[name] = o
    assert not bad, "in a forked child these did not raise NetRunnerError mentioning the fork " \
        f"(or, for leaving a with block, did not return at once): {json.dumps(bad, indent=1)}"


def test_process_used_in_forked_child() -> None:
    """Every method of a parent's Process raises NetRunnerError in a forked
    child, and so does every property that reports on the command (what it
    returned there would be the parent's, as of the fork); ``pid`` and
    ``args`` are facts and read as they are. Leaving ``with`` there returns
    at once; the parent is unaffected."""
    p = netrunner.start(["sleep", "30"], kill_timeout=1)
    try:
        calls: dict[str, Any] = {
            "write": lambda: p.write(b"x"),
            "read": lambda: p.read(timeout=0.1),
            "read_stderr": lambda: p.read_stderr(timeout=0.1),
            "readline": lambda: p.readline(timeout=0.1),
            "read_until": lambda: p.read_until(b"x", timeout=0.1),
            "communicate": lambda: p.communicate(timeout=0.1),
            "wait": lambda: p.wait(timeout=0.1),
            "poll": p.poll,
            "send_signal": lambda: p.send_signal(signal.SIGTERM),
            "terminate": p.terminate,
            "kill": p.kill,
            "stop": p.stop,
            "close_stdin": p.close_stdin,
            "close": p.close,
            "with": lambda: p.__exit__(None, None, None),
            "returncode": lambda: p.returncode,
            "exit_status": lambda: p.exit_status,
            "signal": lambda: p.signal,
            "pipestatus": lambda: p.pipestatus,
            "stats": lambda: p.stats,
            "alive": lambda: p.alive,
            "pid": lambda: p.pid == pid,
            "args": lambda: p.args == ("sleep", "30"),
        }
        pid = p.pid
        outcomes = _in_forked_child(calls)
        facts = (outcomes.pop("pid"), outcomes.pop("args"))
        assert [f.get("returned") for f in facts] == ["True", "True"], facts
        assert p.poll() is None, "the parent's command did not survive the child's calls"
        assert pid_alive(p.pid)
        _assert_all_refuse(outcomes, {"with"})
        assert p.stop() == -signal.SIGTERM
    finally:
        p.close()


def test_stream_used_in_forked_child(tmp_path: Path) -> None:
    """Same for a Stream: next(), close() and lines() refuse; leaving
    ``with`` returns at once; the parent's command lives on and the parent
    can still close the stream."""
    pid_file = tmp_path / "pid"
    s = netrunner.stream(["sh", "-c", 'echo $$ > "$1"; echo one; exec sleep 30', "sh", str(pid_file)], kill_timeout=1)
    try:
        started = wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), timeout=10)
        assert started, "the command never started"
        command = int(pid_file.read_text())
        calls: dict[str, Any] = {
            "next": lambda: next(s),
            "lines": lambda: next(s.lines()),
            "close": s.close,
            "with": lambda: s.__exit__(None, None, None),
        }
        outcomes = _in_forked_child(calls)
        assert pid_alive(command), "the child's calls stopped the parent's command"
        _assert_all_refuse(outcomes, {"with"})
    finally:
        t0 = time.monotonic()
        s.close()
        took = time.monotonic() - t0
    assert took < 5, f"the parent's close() took {took:.1f} s"
    assert not pid_alive(command)
