"""Shepherds that serve again (ADR 9) keep the lifetime promises: commands
started one after the other share one shepherd, and nothing is left of it
or of them when the owner is SIGKILLed at any moment of the hand-over --
while a command runs, while its shepherd forgets it, or while it is idle."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap

from conftest import own_children, pids_with_marker, wait_until
from helpers import helper_pids

import netrunner
from netrunner._io import zygote


def test_sequential_runs_share_one_shepherd() -> None:
    netrunner.run(["true"])
    shepherds = helper_pids() - {zygote.current_pid()}
    assert len(shepherds) == 1
    for _ in range(20):
        assert netrunner.run(["sh", "-c", "exit 3"]).returncode == 3
        assert helper_pids() - {zygote.current_pid()} == shepherds
    # a start()ed command's shepherd is not given back: it exits, reaped by wait()
    with netrunner.start(["true"]) as p:
        used = p._h.shepherd_pid
        p.wait()
        assert used not in own_children()


def test_a_stream_gives_its_shepherd_back_too() -> None:
    netrunner.run(["true"])
    before = helper_pids()
    for _ in range(5):
        with netrunner.stream(["echo", "hi"]) as s:
            assert b"".join(s) == b"hi\n"
    assert helper_pids() == before


def test_a_command_with_detached_leftovers_does_not_give_its_shepherd_back(marker: str) -> None:
    netrunner.run(["true"])
    before = helper_pids()
    r = netrunner.run(["sh", "-c", "sleep 100 & echo $!"], leftovers="detach")
    left = int(r.stdout)
    try:
        assert pids_with_marker(marker) == [left]
        # its shepherd, their subreaper, exited; a new spare took its place
        assert wait_until(lambda: len(helper_pids()) == len(before))
        assert not own_children() - helper_pids()
    finally:
        os.kill(left, signal.SIGKILL)


OWNER = textwrap.dedent(
    """
    import os, sys
    import netrunner
    from netrunner._io import zygote
    netrunner.run(["true"])
    print("go", flush=True)
    scripts = [["true"], ["sh", "-c", "sleep 0.001 & exit 0"], ["sh", "-c", "true & exec sleep 0.002"]]
    i = 0
    while True:
        netrunner.run(scripts[i % 3], kill_timeout=0.5)
        i += 1
    """
)


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else fields[19]


def _family(pid: int) -> dict[int, str]:
    """The live children of ``pid`` and theirs, with their start times."""
    out: dict[int, str] = {}
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                kids = [int(k) for k in f.read().split()]
        except OSError:
            continue
        for kid in kids:
            start = _start_time(kid)
            if start is not None:
                out[kid] = start
                todo.append(kid)
    return out


def test_owner_sigkilled_at_any_moment_of_the_hand_over(marker: str) -> None:
    rng = random.Random(1)
    for _ in range(15):
        owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert owner.stdout is not None
            assert owner.stdout.readline() == b"go\n"
            wait_until(lambda: False, timeout=rng.uniform(0.0, 0.05), interval=0.001)
            family = _family(owner.pid)  # the zygote, shepherds, commands
            owner.kill()
        finally:
            owner.wait()
            owner.stdout.close()  # type: ignore[union-attr]
            owner.stderr.close()  # type: ignore[union-attr]
        # every process it had (and any of its commands) is gone: the
        # zygote and idle shepherds see their sockets hang up, a shepherd
        # that was running a command stops its tree first
        def gone(family: dict[int, str] = family) -> bool:
            return all(_start_time(p) != t for p, t in family.items())

        assert wait_until(gone, timeout=10), {p: t for p, t in family.items() if _start_time(p) == t}
        assert wait_until(lambda: not pids_with_marker(marker), timeout=10)


def test_commands_at_once_come_back_to_one_idle_shepherd(marker: str) -> None:
    # While commands overlap, shepherds are forked as needed; as they come
    # back, one is kept and the others told to exit and reaped: afterwards
    # the same fds and children as before, and nothing of the commands.
    import threading

    netrunner.run(["true"])
    fds_before = len(os.listdir("/proc/self/fd"))
    errors: list[BaseException] = []

    def body(n: int) -> None:
        try:
            for i in range(30):
                r = netrunner.run(["sh", "-c", f"true & exit {(n + i) % 4}"], kill_timeout=1)
                assert r.returncode == (n + i) % 4
                if i % 10 == 0:
                    with netrunner.start(["true"]) as p:
                        assert p.wait() == 0
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert wait_until(lambda: not own_children() - helper_pids())
    assert len(helper_pids() - {zygote.current_pid()}) == 1
    assert len(os.listdir("/proc/self/fd")) == fds_before
    assert not pids_with_marker(marker)
