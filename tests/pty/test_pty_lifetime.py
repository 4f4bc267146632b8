"""SPEC section 6 in PTY mode: nothing outlives its owner.

On a terminal the command leads a session of its own, and its process group
is that session's. The trees here are made to be hard to stop: the command
and its background job ignore SIGHUP (what a terminal's hangup sends) and
SIGTERM (``trap '' HUP TERM``, inherited by everything they start), and a
daemon has escaped with ``setsid``. Only SIGKILL after ``kill_timeout``
ends them, so every test proves that it comes."""

from __future__ import annotations

import asyncio
import gc
import os
import re
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
from conftest import pids_with_marker, wait_until
from helpers import gone, helper_pids, pid_alive
from helpers_aio import arun, await_until
from pty_helpers import PY, py, read_to_eof

import netrunner
import netrunner.aio

KILL_TIMEOUT = 0.5

#: The command (sh) and a background sleep in its group ignore HUP and TERM; a
#: setsid'd sleep (ignoring them too) has left the session. It prints
#: "ready <sh pid> <background pid>" once all three exist.
TREE = (
    "trap '' HUP TERM; "
    "setsid sh -c 'sleep 1000 & exit'; "
    "sleep 1000 & "
    "echo ready $$ $!; wait"
)
TREE_SIZE = 3
READY = re.compile(rb"ready (\d+) (\d+)\r\n")

#: The same without the daemon: what a process-group kill alone can end.
GROUP_TREE = "trap '' HUP TERM; sleep 1000 & echo ready $$ $!; wait"


def tree(marker: str, *exclude: int) -> list[int]:
    """Live processes of this test's tree (its marker), netrunner's helpers and
    ``exclude`` left out."""
    skip = helper_pids() | set(exclude)
    return [pid for pid in pids_with_marker(marker) if pid not in skip]


def assert_tree_gone(marker: str, *exclude: int, timeout: float = 10.0) -> None:
    assert wait_until(lambda: not tree(marker, *exclude), timeout=timeout), (
        f"survivors {tree(marker, *exclude)}: {[cmdline(p) for p in tree(marker, *exclude)]}"
    )


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def ready(proc: netrunner.Process) -> tuple[int, int]:
    line = proc.read_until(READY, timeout=15)
    match = READY.search(line)
    assert match, line
    return int(match.group(1)), int(match.group(2))


def assert_tree_complete(marker: str, *exclude: int, size: int = TREE_SIZE) -> list[int]:
    """The tree's members, once all ``size`` are there. A process is invisible
    to the marker scan while it execs, so "ready" (printed right after a
    fork) is not enough: poll."""
    wait_until(lambda: len(tree(marker, *exclude)) == size, timeout=10)
    members = tree(marker, *exclude)
    assert len(members) == size, (
        f"expected {size} members (sh, background sleep[, setsid'd sleep]), found "
        f"{[(p, cmdline(p)) for p in members]}"
    )
    return members


def ignores(pid: int, *sigs: int) -> bool:
    """``pid`` ignores every one of ``sigs`` (SigIgn in /proc/<pid>/status)."""
    with open(f"/proc/{pid}/status") as f:
        mask = int(next(line for line in f if line.startswith("SigIgn:")).split()[1], 16)
    return all(mask & (1 << (s - 1)) for s in sigs)


# --------------------------------------------------------------- stop, kill, timeout


def test_the_tree_really_ignores_hup_and_term(marker: str) -> None:
    # the precondition of every test below
    with netrunner.start(["sh", "-c", TREE], pty=True, kill_timeout=KILL_TIMEOUT) as proc:
        ready(proc)
        for pid in assert_tree_complete(marker):
            assert ignores(pid, signal.SIGHUP, signal.SIGTERM), f"{pid} ({cmdline(pid)}) does not ignore HUP and TERM"
        proc.terminate()
        proc.send_signal(signal.SIGHUP)
        assert not wait_until(lambda: proc.poll() is not None, timeout=0.3), "SIGTERM/SIGHUP ended the command"
    assert_tree_gone(marker)


def test_stop_kills_the_tree_after_kill_timeout(marker: str) -> None:
    with netrunner.start(["sh", "-c", TREE], pty=True, kill_timeout=KILL_TIMEOUT) as proc:
        sh, _background = ready(proc)
        assert sh == proc.pid, f"Process.pid {proc.pid} is not the command (sh {sh})"
        members = assert_tree_complete(marker)
        t0 = time.monotonic()
        returncode = proc.stop()
        elapsed = time.monotonic() - t0
        assert returncode == -signal.SIGKILL, f"stop() returned {returncode}, expected -SIGKILL"
        assert KILL_TIMEOUT * 0.9 <= elapsed < KILL_TIMEOUT + 4, f"stop() took {elapsed:.2f} s"
        assert proc.stop() == -signal.SIGKILL, "stop() is idempotent"
    for pid in members:
        assert not pid_alive(pid), f"{pid} ({cmdline(pid)}) survived stop()"
    assert_tree_gone(marker)


def test_stop_with_its_own_kill_timeout(marker: str) -> None:
    with netrunner.start(["sh", "-c", TREE], pty=True, kill_timeout=60) as proc:
        ready(proc)
        t0 = time.monotonic()
        assert proc.stop(kill_timeout=0.3) == -signal.SIGKILL
        assert time.monotonic() - t0 < 5, "stop(kill_timeout=0.3) waited for the process's 60 s"
    assert_tree_gone(marker)


def test_kill_kills_the_group_and_the_leftovers(marker: str) -> None:
    with netrunner.start(["sh", "-c", TREE], pty=True, kill_timeout=KILL_TIMEOUT) as proc:
        _sh, background = ready(proc)
        assert_tree_complete(marker)
        proc.kill()
        assert proc.wait(timeout=10) == -signal.SIGKILL
        assert gone(background), "the background job (the command's group) survived kill()"
        # the setsid'd daemon is a leftover of an exited command: stopped too
        assert_tree_gone(marker)


def test_run_timeout_stops_the_tree(marker: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(netrunner.Timeout) as info:
        netrunner.run(["sh", "-c", TREE], pty=True, timeout=1.0, kill_timeout=KILL_TIMEOUT)
    elapsed = time.monotonic() - t0
    assert 1.0 <= elapsed < 1.0 + KILL_TIMEOUT + 4, f"run(timeout=1, kill_timeout={KILL_TIMEOUT}) took {elapsed:.2f} s"
    assert b"ready" in (info.value.stdout or b""), f"Timeout must carry the partial output: {info.value.stdout!r}"
    assert_tree_gone(marker)


def test_run_timeout_text_mode_partial_output_is_bytes(marker: str) -> None:
    with pytest.raises(netrunner.Timeout) as info:
        netrunner.run(["sh", "-c", TREE], pty=True, text=True, timeout=1.0, kill_timeout=KILL_TIMEOUT)
    assert isinstance(info.value.stdout, bytes) and b"ready" in info.value.stdout, info.value.stdout
    assert_tree_gone(marker)


def test_stream_timeout_stops_the_tree(marker: str) -> None:
    seen = b""
    with pytest.raises(netrunner.Timeout):
        with netrunner.stream(["sh", "-c", TREE], pty=True, timeout=1.0, kill_timeout=KILL_TIMEOUT) as s:
            for chunk in s:
                seen += chunk
    assert b"ready" in seen, seen
    assert_tree_gone(marker)


def test_aio_run_timeout_and_stop(marker: str) -> None:
    async def main() -> None:
        t0 = time.monotonic()
        with pytest.raises(netrunner.Timeout):
            await netrunner.aio.run(["sh", "-c", TREE], pty=True, timeout=1.0, kill_timeout=KILL_TIMEOUT)
        assert time.monotonic() - t0 < 1.0 + KILL_TIMEOUT + 4
        assert await await_until(lambda: not tree(marker)), f"survivors of aio.run's timeout: {tree(marker)}"

        async with await netrunner.aio.start(["sh", "-c", TREE], pty=True, kill_timeout=KILL_TIMEOUT) as proc:
            await proc.read_until(READY, timeout=15)
            assert await await_until(lambda: len(tree(marker)) == TREE_SIZE), tree(marker)
            assert await proc.stop() == -signal.SIGKILL
        assert await await_until(lambda: not tree(marker)), f"survivors of aio stop(): {tree(marker)}"

    arun(main())


# --------------------------------------------------------------- the with block, dropping the object


def test_with_block_exception_stops_the_tree(marker: str) -> None:
    with pytest.raises(RuntimeError):
        with netrunner.start(["sh", "-c", TREE], pty=True, kill_timeout=KILL_TIMEOUT) as proc:
            ready(proc)
            assert_tree_complete(marker)
            raise RuntimeError("boom")
    assert tree(marker) == [], f"the with block ended before its tree: {tree(marker)}"


def test_stream_break_stops_the_tree(marker: str) -> None:
    with netrunner.stream(["sh", "-c", TREE], pty=True, kill_timeout=KILL_TIMEOUT) as s:
        seen = b""
        for chunk in s:
            seen += chunk
            if READY.search(seen):
                break
        assert_tree_complete(marker)
    assert_tree_gone(marker)


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_dropped_process_is_stopped(marker: str) -> None:
    proc = netrunner.start(["sh", "-c", TREE], pty=True, kill_timeout=KILL_TIMEOUT)
    ready(proc)
    assert_tree_complete(marker)
    del proc
    gc.collect()
    assert_tree_gone(marker, timeout=KILL_TIMEOUT + 5)


def test_aio_cancelling_the_owner_task_stops_the_tree(marker: str) -> None:
    async def owner(started: asyncio.Event) -> None:
        async with await netrunner.aio.start(["sh", "-c", TREE], pty=True, kill_timeout=KILL_TIMEOUT) as proc:
            await proc.read_until(READY, timeout=15)
            started.set()
            await proc.wait()

    async def main() -> None:
        started = asyncio.Event()
        task = asyncio.create_task(owner(started))
        await asyncio.wait_for(started.wait(), 15)
        assert await await_until(lambda: len(tree(marker)) == TREE_SIZE), tree(marker)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await await_until(lambda: not tree(marker)), f"survivors: {tree(marker)}"

    arun(main())


# --------------------------------------------------------------- leftovers


def test_run_returns_at_once_and_kills_a_setsid_daemon(tmp_path: Path, marker: str) -> None:
    """The command starts a daemon (setsid'd, ignoring HUP and TERM, holding
    the terminal open as its fds 0-2) and exits: run returns at once and the
    daemon is killed."""
    pidfile = tmp_path / "daemon.pid"
    script = (
        "trap '' HUP TERM; "
        "setsid sh -c 'echo $$ > \"$0\"; exec sleep 1000' \"$1\" & "
        "while [ ! -s \"$1\" ]; do sleep 0.01; done; echo started"
    )
    t0 = time.monotonic()
    result = netrunner.run(["sh", "-c", script, "sh", str(pidfile)], pty=True, kill_timeout=KILL_TIMEOUT, timeout=30)
    elapsed = time.monotonic() - t0
    assert result.stdout == b"started\r\n" and result.returncode == 0, result
    assert elapsed < KILL_TIMEOUT + 3, f"run waited {elapsed:.2f} s for the daemon holding the terminal"
    daemon = int(pidfile.read_text())
    assert gone(daemon), f"the setsid'd daemon {daemon} ({cmdline(daemon)}) survived the command's exit"
    assert_tree_gone(marker)


def test_run_kills_a_background_job_left_in_the_group(marker: str) -> None:
    t0 = time.monotonic()
    result = netrunner.run(
        ["sh", "-c", "trap '' HUP TERM; sleep 1000 & echo hi"], pty=True, kill_timeout=KILL_TIMEOUT, timeout=30
    )
    assert result.stdout == b"hi\r\n", result
    assert time.monotonic() - t0 < KILL_TIMEOUT + 3
    assert_tree_gone(marker)


def test_start_wait_then_read_with_a_daemon_holding_the_terminal(marker: str) -> None:
    script = "trap '' HUP TERM; setsid sh -c 'while :; do echo tick; sleep 0.05; done' & sleep 0.2; echo bye"
    with netrunner.start(["sh", "-c", script], pty=True, kill_timeout=KILL_TIMEOUT) as proc:
        assert proc.wait(timeout=10) == 0
        out = read_to_eof(proc, timeout=KILL_TIMEOUT + 5)
        assert out.endswith(b"bye\r\n") or b"bye\r\n" in out, f"terminal output: {out!r}"
    assert_tree_gone(marker)


def test_aio_leftovers(tmp_path: Path, marker: str) -> None:
    pidfile = tmp_path / "daemon.pid"
    script = (
        "trap '' HUP TERM; "
        "setsid sh -c 'echo $$ > \"$0\"; exec sleep 1000' \"$1\" & "
        "while [ ! -s \"$1\" ]; do sleep 0.01; done; echo started"
    )

    async def main() -> None:
        result = await netrunner.aio.run(
            ["sh", "-c", script, "sh", str(pidfile)], pty=True, kill_timeout=KILL_TIMEOUT, timeout=30
        )
        assert result.stdout == b"started\r\n", result

    t0 = time.monotonic()
    arun(main())
    assert time.monotonic() - t0 < KILL_TIMEOUT + 3
    assert gone(int(pidfile.read_text()))
    assert_tree_gone(marker)


# --------------------------------------------------------------- signals


#: A python parent and a child in its process group (the terminal's
#: foreground group); each reports the SIGINT it gets, the child then exits,
#: the parent waits for it and exits 0.
SIGINT_FAMILY = textwrap.dedent(
    """
    import os, signal, subprocess, sys, time
    CHILD = (
        "import os, signal, sys, time\\n"
        "def on_int(s, f):\\n"
        "    os.write(1, b'int child\\\\n'); os._exit(0)\\n"
        "signal.signal(signal.SIGINT, on_int)\\n"
        "print('child-ready', os.getpgrp(), flush=True)\\n"
        "while True: time.sleep(1)\\n"
    )
    got = []
    signal.signal(signal.SIGINT, lambda s, f: got.append(s))
    child = subprocess.Popen([sys.executable, "-c", CHILD])
    print("parent-ready", os.getpgrp(), flush=True)
    while not got:
        time.sleep(0.01)
    print("int parent", flush=True)
    child.wait()
    print("child-done", child.returncode, flush=True)
    """
)


def expect_both_ready(proc: netrunner.Process) -> None:
    seen = b""
    while not (b"parent-ready" in seen and b"child-ready" in seen):
        seen += proc.read_until(b"\r\n", timeout=15)
    groups = set(re.findall(rb"-ready (\d+)", seen))
    assert groups == {str(proc.pid).encode()}, f"parent and child are not both in the command's group: {seen!r}"


def test_send_signal_sigint_reaches_the_commands_group() -> None:
    with netrunner.start(py(SIGINT_FAMILY), pty=True) as proc:
        expect_both_ready(proc)
        proc.send_signal(signal.SIGINT)
        out = read_to_eof(proc)
        assert b"int parent\r\n" in out and b"int child\r\n" in out, f"SIGINT did not reach both: {out!r}"
        assert b"child-done 0\r\n" in out, out
        assert proc.wait(timeout=10) == 0


def test_ctrl_c_typed_on_the_terminal_reaches_the_foreground_group() -> None:
    with netrunner.start(py(SIGINT_FAMILY), pty=True) as proc:
        expect_both_ready(proc)
        proc.write(b"\x03")  # the terminal's VINTR: SIGINT to its foreground group
        out = read_to_eof(proc)
        assert b"int parent\r\n" in out and b"int child\r\n" in out, f"^C did not reach both: {out!r}"
        assert proc.wait(timeout=10) == 0


def test_aio_send_signal_sigint() -> None:
    async def main() -> None:
        async with await netrunner.aio.start(py(SIGINT_FAMILY), pty=True) as proc:
            seen = b""
            while not (b"parent-ready" in seen and b"child-ready" in seen):
                seen += await proc.read_until(b"\r\n", timeout=15)
            assert proc.send_signal(signal.SIGINT) is None
            out = b""
            while b"child-done" not in out:
                chunk = await proc.read(timeout=15)
                assert chunk, f"output ended early: {out!r}"
                out += chunk
            assert b"int parent" in out and b"int child" in out, out
            assert await proc.wait(timeout=10) == 0

    arun(main())


def test_default_sigint_ends_a_command() -> None:
    with netrunner.start(["sleep", "1000"], pty=True) as proc:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == -signal.SIGINT


def test_send_signal_after_exit_is_a_no_op() -> None:
    with netrunner.start(["true"], pty=True) as proc:
        assert proc.wait(timeout=10) == 0
        proc.send_signal(signal.SIGINT)
        proc.kill()
        assert proc.returncode == 0


# --------------------------------------------------------------- the owner interpreter


OWNER_PRELUDE = textwrap.dedent(
    f"""
    import gc, os, re, signal, sys, time
    import netrunner
    TREE = {TREE!r}
    GROUP_TREE = {GROUP_TREE!r}
    READY = re.compile(rb"ready (\\d+) (\\d+)\\r\\n")

    def announce(*words):
        print(*words, flush=True)
    """
)


def start_owner(body: str) -> subprocess.Popen[str]:
    """A separate interpreter running ``body`` after OWNER_PRELUDE; its stdout is a pipe."""
    return subprocess.Popen(
        [PY, "-c", OWNER_PRELUDE + textwrap.dedent(body)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def expect_line(owner: subprocess.Popen[str], prefix: str) -> str:
    assert owner.stdout is not None
    line = owner.stdout.readline()
    if not line.startswith(prefix):
        owner.kill()
        _, err = owner.communicate(timeout=10)
        raise AssertionError(f"expected {prefix!r} from the owner, got {line!r}; its stderr: {err}")
    return line.strip()


def end_owner(owner: subprocess.Popen[str]) -> None:
    if owner.poll() is None:
        owner.kill()
    owner.wait(timeout=10)
    for pipe in (owner.stdout, owner.stderr):
        if pipe is not None:
            pipe.close()


NR_OWNER = """
p = netrunner.start(["sh", "-c", TREE], pty=True, kill_timeout=0.5)
p.read_until(READY, timeout=15)
announce("ready", p.pid, p._h.shepherd_pid)
"""


def test_owner_sigkilled(marker: str) -> None:
    owner = start_owner(NR_OWNER + "time.sleep(1000)")
    try:
        expect_line(owner, "ready")
        assert_tree_complete(marker, owner.pid)
        owner.kill()
        owner.wait(timeout=10)
        # the master side died with the owner (the terminal hung up: SIGHUP,
        # ignored); the shepherds saw their control socket close
        assert_tree_gone(marker, timeout=KILL_TIMEOUT + 10)
    finally:
        end_owner(owner)


def test_control_forkpty_owner_sigkilled_leaves_orphans(marker: str) -> None:
    """Without netrunner the same tree on a pty outlives its killed owner: the
    terminal's hangup is ignored. This proves the detector sees survivors."""
    owner = start_owner("""
    pid, master = os.forkpty()
    if pid == 0:
        os.execvp("sh", ["sh", "-c", TREE])
    seen = b""
    while not READY.search(seen):
        seen += os.read(master, 1024)
    announce("ready", pid)
    time.sleep(1000)
    """)
    try:
        expect_line(owner, "ready")
        assert_tree_complete(marker, owner.pid)
        owner.kill()
        owner.wait(timeout=10)
        assert not wait_until(lambda: not tree(marker), timeout=1.0), "the control tree died: the test proves nothing"
        survivors = tree(marker)
        assert len(survivors) == TREE_SIZE, [(p, cmdline(p)) for p in survivors]
    finally:
        end_owner(owner)
        for pid in tree(marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_owner_exits_normally_with_a_process_open(marker: str) -> None:
    owner = start_owner(NR_OWNER + "keep = p\nsys.exit(0)")
    try:
        expect_line(owner, "ready")
        assert owner.wait(timeout=KILL_TIMEOUT + 10) == 0, owner.stderr.read() if owner.stderr else ""
        assert_tree_gone(marker)
    finally:
        end_owner(owner)


def test_owner_keyboard_interrupt_during_run(marker: str) -> None:
    owner = start_owner("""
    announce("ready")
    try:
        netrunner.run(["sh", "-c", TREE], pty=True, kill_timeout=0.5)
    except KeyboardInterrupt:
        announce("interrupted")
    time.sleep(1000)
    """)
    try:
        expect_line(owner, "ready")
        assert wait_until(lambda: len(tree(marker, owner.pid)) == TREE_SIZE), tree(marker, owner.pid)
        owner.send_signal(signal.SIGINT)
        expect_line(owner, "interrupted")
        assert tree(marker, owner.pid) == [], "run() raised KeyboardInterrupt before its tree was gone"
    finally:
        end_owner(owner)


def test_owner_drops_the_process(marker: str) -> None:
    owner = start_owner(NR_OWNER + """
import warnings
warnings.simplefilter("ignore", ResourceWarning)
shepherd = p._h.shepherd_pid
del p
gc.collect()
announce("dropped")
time.sleep(1000)
""")
    try:
        line = expect_line(owner, "ready")
        shepherd = int(line.split()[2])
        expect_line(owner, "dropped")
        assert_tree_gone(marker, owner.pid, timeout=KILL_TIMEOUT + 5)
        # no further netrunner call in the owner: the shepherd is reaped anyway
        assert wait_until(lambda: not pid_alive(shepherd), timeout=KILL_TIMEOUT + 2), (
            f"the shepherd {shepherd} of a dropped process lingers"
        )
    finally:
        end_owner(owner)


def test_shepherd_sigkilled(marker: str) -> None:
    owner = start_owner("""
    p = netrunner.start(["sh", "-c", GROUP_TREE], pty=True, kill_timeout=0.5)
    p.read_until(READY, timeout=15)
    announce("ready", p.pid, p._h.shepherd_pid)
    try:
        p.wait()
    except netrunner.ShepherdError:
        announce("shepherd-error", p.returncode)
    time.sleep(1000)
    """)
    try:
        line = expect_line(owner, "ready")
        shepherd = int(line.split()[2])
        assert_tree_complete(marker, owner.pid, size=2)
        os.kill(shepherd, signal.SIGKILL)
        assert expect_line(owner, "shepherd-error") == "shepherd-error -9"
        # the command died with its shepherd (parent-death signal) and Python
        # SIGKILLed its group, the session's: the background job is gone too
        assert_tree_gone(marker, owner.pid)
    finally:
        end_owner(owner)


# --------------------------------------------------------------- descriptors and exec errors


def test_spawns_and_exec_errors_leave_no_descriptor_behind(tmp_path: Path) -> None:
    def open_fds() -> list[int]:
        return sorted(int(fd) for fd in os.listdir("/proc/self/fd"))

    netrunner.run(["true"], pty=True, timeout=30)  # helpers started
    before = open_fds()
    for _ in range(50):
        assert netrunner.run(["echo", "x"], pty=True, timeout=30).stdout == b"x\r\n"
        with netrunner.start(["cat"], pty=True):
            pass
        with netrunner.stream(["echo", "y"], pty=True) as s:
            assert b"".join(s) == b"y\r\n"  # chunk boundaries are the terminal's to choose
        with pytest.raises(FileNotFoundError) as info:
            netrunner.start([str(tmp_path / "missing")], pty=True)
        assert info.value.filename == str(tmp_path / "missing")
        with pytest.raises(FileNotFoundError):
            netrunner.run(["true"], pty=True, cwd=str(tmp_path / "no-such-dir"))
        with pytest.raises(PermissionError):
            netrunner.run([str(tmp_path)], pty=(5, 5))
    after = open_fds()
    assert after == before, f"open descriptors changed: before {before}, after {after} (a pseudo-terminal leaked?)"
