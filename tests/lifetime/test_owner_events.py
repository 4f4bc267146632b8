"""SPEC section 6, row by row: a separate owner process starts a tree (with a
background job, a setsid'd daemon and a child ignoring SIGTERM), meets the
event, and nothing of the tree survives. Where plain subprocess would fail the
same scenario, a control run proves the detector can see survivors."""

from __future__ import annotations

import os
import signal

from conftest import wait_until
from owners import TREE_SIZE, expect_line, finish, kill_all, start_owner, tree_of, wait_tree_gone

NR_TREE = """
p = netrunner.start(TREE, kill_timeout=0.5)
wait_ready(lambda: p.read(timeout=15))
announce("ready", p.pid, p._h.shepherd_pid)
"""

SUBPROCESS_TREE = """
p = subprocess.Popen(TREE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
seen = b""
while not (b"armed" in seen and b"ready" in seen):
    seen += os.read(p.stdout.fileno(), 100)
announce("ready", p.pid)
"""


def test_owner_sigkilled(marker: str) -> None:
    owner = start_owner(NR_TREE + "time.sleep(1000)")
    expect_line(owner, "ready")
    assert len(tree_of(marker, owner.pid)) == TREE_SIZE
    owner.kill()
    finish(owner)
    wait_tree_gone(marker)


def test_control_subprocess_owner_sigkilled_leaves_orphans(marker: str) -> None:
    owner = start_owner(SUBPROCESS_TREE + "time.sleep(1000)")
    expect_line(owner, "ready")
    owner.kill()
    finish(owner)
    assert not wait_until(lambda: not tree_of(marker), timeout=1.0)
    survivors = tree_of(marker)
    assert len(survivors) == TREE_SIZE
    kill_all(survivors)


def test_exception_in_the_with_block(marker: str) -> None:
    owner = start_owner("""
    try:
        with netrunner.start(TREE, kill_timeout=0.5) as p:
            wait_ready(lambda: p.read(timeout=15))
            announce("ready")
            raise RuntimeError("boom")
    except RuntimeError:
        announce("stopped", len(os.listdir("/proc/self/task")))
    time.sleep(1000)
    """)
    expect_line(owner, "ready")
    expect_line(owner, "stopped")  # the with block only ends once the tree is gone
    assert tree_of(marker, owner.pid) == []
    owner.kill()
    finish(owner)


def test_keyboard_interrupt_during_run(marker: str) -> None:
    owner = start_owner("""
    announce("ready")
    try:
        netrunner.run(TREE, kill_timeout=0.5)
    except KeyboardInterrupt:
        announce("interrupted")
    time.sleep(1000)
    """)
    expect_line(owner, "ready")
    assert wait_until(lambda: len(tree_of(marker, owner.pid)) == TREE_SIZE)
    owner.send_signal(signal.SIGINT)
    expect_line(owner, "interrupted")
    assert tree_of(marker, owner.pid) == []
    owner.kill()
    finish(owner)


def test_interpreter_exits_with_a_process_open(marker: str) -> None:
    owner = start_owner(NR_TREE + "keep = p\nsys.exit(0)")
    expect_line(owner, "ready")
    _, err = finish(owner)
    assert owner.returncode == 0, err
    wait_tree_gone(marker)


def test_control_subprocess_interpreter_exit_leaves_orphans(marker: str) -> None:
    owner = start_owner(SUBPROCESS_TREE + "sys.exit(0)")
    expect_line(owner, "ready")
    finish(owner)
    survivors = tree_of(marker)
    assert len(survivors) == TREE_SIZE
    kill_all(survivors)


def test_last_reference_dropped(marker: str) -> None:
    owner = start_owner(NR_TREE + """
del p
gc.collect()
announce("dropped")
time.sleep(1000)
""")
    expect_line(owner, "ready")
    expect_line(owner, "dropped")
    wait_tree_gone(marker, owner.pid)  # while the owner lives on
    owner.kill()
    finish(owner)


REAPER_MASK = """
import gc, signal, threading
import netrunner
p = netrunner.start(["sh", "-c", "trap '' TERM; echo armed; while :; do sleep 1; done"], kill_timeout=3)
assert p.readline(timeout=15) == b"armed\\n"
del p
gc.collect()  # its shepherd stops the tree, in 3 s (SIGKILL); the reaper waits for it
reaper = next(t for t in threading.enumerate() if t.name == "netrunner-reaper")
with open(f"/proc/self/task/{reaper.native_id}/status") as f:
    blocked = int(next(line for line in f if line.startswith("SigBlk")).split()[1], 16)
catchable = signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}
print(sorted(int(s) for s in catchable if not blocked >> (s - 1) & 1))
"""


def test_the_reaper_thread_takes_no_signal(marker: str) -> None:
    """The thread that reaps shepherds handed off (a dropped reference's)
    blocks every signal: a process-directed signal goes to the caller's
    threads, and a SIGCONT held pending by one is not taken by the reaper
    (the CLI tells a stop from one the kernel dropped by it)."""
    import subprocess

    from helpers import py

    r = subprocess.run(py(REAPER_MASK), capture_output=True, timeout=30)
    assert (r.returncode, r.stdout) == (0, b"[]\n"), r.stderr.decode()


def test_fork_then_owner_sigkilled(marker: str) -> None:
    owner = start_owner(NR_TREE + """
import multiprocessing
child = multiprocessing.get_context("fork").Process(target=time.sleep, args=(1000,))
child.start()
announce("forked", child.pid)
time.sleep(1000)
""")
    expect_line(owner, "ready")
    mp_child = int(expect_line(owner, "forked").split()[1])
    owner.kill()
    finish(owner)
    wait_tree_gone(marker, mp_child)  # the fork held no copy of the control socket
    kill_all([mp_child])


def test_thread_that_started_the_process_exits(marker: str) -> None:
    owner = start_owner("""
    box = []
    def starter():
        p = netrunner.start(TREE, kill_timeout=0.5)
        wait_ready(lambda: p.read(timeout=15))
        box.append(p)
    t = threading.Thread(target=starter)
    t.start()
    t.join()
    announce("thread-gone")
    sys.stdin.readline()
    announce("alive", box[0].poll() is None)
    box[0].stop()
    announce("stopped")
    """)
    expect_line(owner, "thread-gone")
    assert len(tree_of(marker, owner.pid)) == TREE_SIZE
    owner.stdin.write("go\n")  # type: ignore[union-attr]
    owner.stdin.flush()  # type: ignore[union-attr]
    assert expect_line(owner, "alive") == "alive True"
    expect_line(owner, "stopped")
    assert tree_of(marker, owner.pid) == []
    finish(owner)


def test_asyncio_loop_closed_with_a_process_open(marker: str) -> None:
    owner = start_owner("""
    import asyncio
    from netrunner import aio
    box = []
    async def main():
        p = await aio.start(TREE, kill_timeout=0.5)
        seen = b""
        while not (b"armed" in seen and b"ready" in seen):
            seen += await p.read(timeout=15)
        box.append(p)
    asyncio.run(main())
    announce("loop-closed")
    box.clear()
    gc.collect()
    announce("dropped")
    time.sleep(1000)
    """)
    expect_line(owner, "loop-closed")
    expect_line(owner, "dropped")
    wait_tree_gone(marker, owner.pid)
    owner.kill()
    _, err = finish(owner)
    assert "Event loop is closed" not in err
    assert "Traceback" not in err


def test_shepherd_sigkilled(marker: str) -> None:
    owner = start_owner(NR_TREE + """
try:
    p.wait()
except netrunner.ShepherdError as exc:
    s = p.stats
    announce("shepherd-error", p.returncode, s.exit_status, s.cpu_user, s.cpu_system, s.max_rss)
time.sleep(1000)
""")
    line = expect_line(owner, "ready")
    command, shepherd = (int(x) for x in line.split()[1:3])
    os.kill(shepherd, signal.SIGKILL)
    # Killed by us, SIGKILL; nothing of the tree was accounted: no figures made up
    assert expect_line(owner, "shepherd-error") == "shepherd-error -9 137 None None None"
    # the command died with its shepherd (parent-death signal), its group was
    # SIGKILLed by Python, and nothing of the group is left
    assert wait_until(lambda: not _in_group(command))
    owner.kill()
    finish(owner)
    kill_all(tree_of(marker))  # the setsid'd daemon is outside the group: the cgroup issue covers it


def _in_group(pgid: int) -> list[int]:
    members = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[2]) == pgid:
                members.append(int(name))
    return members


def test_leftovers_of_a_finished_command(marker: str) -> None:
    owner = start_owner("""
    r = netrunner.run(["sh", "-c", "setsid sh -c 'sleep 1000 & exit'; sleep 1000 & echo done"])
    announce("ran", r.stdout.decode().strip())
    time.sleep(1000)
    """)
    assert expect_line(owner, "ran") == "ran done"
    wait_tree_gone(marker, owner.pid)
    owner.kill()
    finish(owner)


def test_detached_leftovers_survive(marker: str) -> None:
    owner = start_owner("""
    r = netrunner.run(["sh", "-c", "setsid sh -c 'sleep 1000 & exit'; sleep 1000 & echo done"], leftovers="detach")
    announce("ran", r.stdout.decode().strip())
    time.sleep(1000)
    """)
    assert expect_line(owner, "ran") == "ran done"
    survivors = tree_of(marker, owner.pid)
    assert len(survivors) == 2  # both sleeps, as asked
    kill_all(survivors)
    owner.kill()
    finish(owner)


def test_control_subprocess_leaves_leftovers(marker: str) -> None:
    owner = start_owner("""
    script = "setsid sh -c 'sleep 1000 & exit' >/dev/null 2>&1; sleep 1000 >/dev/null 2>&1 & echo done"
    r = subprocess.run(["sh", "-c", script], capture_output=True)
    announce("ran", r.stdout.decode().strip())
    """)
    assert expect_line(owner, "ran") == "ran done"
    finish(owner)
    survivors = tree_of(marker)
    assert len(survivors) == 2
    kill_all(survivors)


def test_sigterm_ignored_then_sigkilled_after_kill_timeout(marker: str) -> None:
    owner = start_owner(NR_TREE + """
t0 = time.monotonic()
code = p.stop()
announce("stopped", code, round(time.monotonic() - t0, 2))
time.sleep(1000)
""")
    expect_line(owner, "ready")
    _, code, elapsed = expect_line(owner, "stopped").split()
    assert int(code) == -15  # sh itself took the SIGTERM
    assert 0.4 <= float(elapsed) < 5  # the trapping child held it until SIGKILL
    assert tree_of(marker, owner.pid) == []
    owner.kill()
    finish(owner)


def test_control_subprocess_dropped_reference_leaves_the_tree(marker: str) -> None:
    owner = start_owner(SUBPROCESS_TREE + """
import warnings
warnings.simplefilter("ignore")
del p
gc.collect()
announce("dropped")
time.sleep(1000)
""")
    expect_line(owner, "ready")
    expect_line(owner, "dropped")
    assert not wait_until(lambda: not tree_of(marker, owner.pid), timeout=1.0)
    survivors = tree_of(marker, owner.pid)
    assert len(survivors) == TREE_SIZE
    kill_all(survivors)
    owner.kill()
    finish(owner)


def test_control_asyncio_loop_closed_leaves_the_tree(marker: str) -> None:
    owner = start_owner("""
    import asyncio
    async def main():
        p = await asyncio.create_subprocess_exec(*TREE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        seen = b""
        while not (b"armed" in seen and b"ready" in seen):
            seen += await p.stdout.read(100)
    asyncio.run(main())
    gc.collect()
    announce("loop-closed")
    time.sleep(1000)
    """)
    expect_line(owner, "loop-closed")
    assert not wait_until(lambda: not tree_of(marker, owner.pid), timeout=1.0)
    survivors = tree_of(marker, owner.pid)
    assert len(survivors) == TREE_SIZE
    kill_all(survivors)
    owner.kill()
    finish(owner)
