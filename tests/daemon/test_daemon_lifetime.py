"""SPEC sections 6 and 12: a Daemon leaves nothing running whatever happens to
its owner. A separate Python (daemon_owners.py) starts a daemon whose runs are
a tree of four (a background job, a setsid escapee, a child that ignores
SIGTERM, each recording its pid), announces it, then meets the event: SIGKILL,
a normal exit, Ctrl-C, its asyncio loop closing -- in the middle of a run, of
a backoff sleep, or of quick restarts. Afterwards no process of the tree is
left and no run starts any more."""

from __future__ import annotations

import os
import pathlib
import signal

from daemon_helpers import RunLog, pids_with_marker, plan_cmd, settle, still_alive, tree_cmd, tree_pids, wait_until
from daemon_owners import finish, start_owner

SYNC_TREE = """
d = netrunner.Daemon(ARGS["cmd"], kill_timeout=0.5, restart="always", backoff=(0.01, 0.01))
d.start()
wait_pids(ARGS["pidfile"], 4)
announce("ready", d.pid)
"""

AIO_TREE = """
async def main():
    async with netrunner.aio.Daemon(ARGS["cmd"], kill_timeout=0.5, restart="always", backoff=(0.01, 0.01)) as d:
        while len(pids_in(ARGS["pidfile"])) < 4:
            await asyncio.sleep(0.01)
        announce("ready", d.pid)
        await asyncio.sleep(1000)
asyncio.run(main())
"""


def tree_args(tmp_path: pathlib.Path) -> tuple[pathlib.Path, dict[str, object]]:
    pidfile = tmp_path / "pids"
    return pidfile, {"cmd": tree_cmd(pidfile), "pidfile": str(pidfile)}


def assert_tree_gone(pidfile: pathlib.Path, pids: set[int], timeout: float = 15.0) -> None:
    assert wait_until(lambda: not still_alive(pids), timeout=timeout), f"survivors: {still_alive(pids)}"
    settle(0.3)
    assert tree_pids(pidfile, 0) == pids, "a run started after the owner was gone"


def test_owner_sigkilled_during_a_run(tmp_path: pathlib.Path, marker: str) -> None:
    pidfile, args = tree_args(tmp_path)
    owner = start_owner(SYNC_TREE + "time.sleep(1000)", **args)
    owner.expect_line("ready")
    pids = tree_pids(pidfile)
    assert len(pids) == 4
    owner.kill()
    finish(owner)
    assert_tree_gone(pidfile, pids)
    assert wait_until(lambda: not pids_with_marker(marker), timeout=15), pids_with_marker(marker)


def test_owner_sigkilled_during_quick_restarts(tmp_path: pathlib.Path, marker: str) -> None:
    runlog = RunLog(tmp_path / "runs.log")
    owner = start_owner(
        """
        d = netrunner.Daemon(ARGS["cmd"], restart="always", backoff=(0.001, 0.001), max_restarts=100000)
        d.start()
        while count_lines(ARGS["log"], "start") < 5:
            time.sleep(0.01)
        announce("restarting")
        time.sleep(1000)
        """,
        cmd=plan_cmd(runlog.path, "sleep:0.02:0"), log=str(runlog.path),
    )
    owner.expect_line("restarting")
    owner.kill()
    finish(owner)
    assert wait_until(lambda: not pids_with_marker(marker), timeout=15), pids_with_marker(marker)
    runs = runlog.runs()
    runlog.assert_no_new_run(within=0.5)
    assert still_alive([s.pid for s in runlog.starts()]) == []
    assert runlog.runs() == runs


def test_owner_sigkilled_during_backoff_starts_nothing_later(tmp_path: pathlib.Path, marker: str) -> None:
    runlog = RunLog(tmp_path / "runs.log")
    owner = start_owner(
        """
        ended = threading.Event()
        d = netrunner.Daemon(ARGS["cmd"], backoff=(1.0, 1.0), on_exit=lambda info: ended.set())
        d.start()
        ended.wait(15)
        announce("backoff")
        time.sleep(1000)
        """,
        cmd=plan_cmd(runlog.path, "exit:1,hang"),
    )
    owner.expect_line("backoff")
    owner.kill()
    finish(owner)
    runlog.assert_no_new_run(within=1.5)
    assert runlog.runs() == 1
    assert wait_until(lambda: not pids_with_marker(marker), timeout=15), pids_with_marker(marker)


def test_interpreter_exit_with_a_daemon_running(tmp_path: pathlib.Path) -> None:
    pidfile, args = tree_args(tmp_path)
    owner = start_owner(SYNC_TREE + "sys.exit(0)", **args)
    owner.expect_line("ready")
    pids = tree_pids(pidfile)
    _, err, took = finish(owner)
    assert owner.proc.returncode == 0, err
    assert "Traceback" not in err, err
    assert took < 10, f"the interpreter took {took:.1f} s to exit with a daemon running"
    assert_tree_gone(pidfile, pids)


def test_interpreter_exit_during_quick_restarts(tmp_path: pathlib.Path, marker: str) -> None:
    runlog = RunLog(tmp_path / "runs.log")
    owner = start_owner(
        """
        d = netrunner.Daemon(ARGS["cmd"], restart="always", backoff=(0.001, 0.001), max_restarts=100000)
        d.start()
        while count_lines(ARGS["log"], "start") < 5:
            time.sleep(0.01)
        announce("restarting")
        """,
        cmd=plan_cmd(runlog.path, "sleep:0.02:0"), log=str(runlog.path),
    )
    owner.expect_line("restarting")
    _, err, took = finish(owner)
    assert owner.proc.returncode == 0, err
    assert "Traceback" not in err, err
    assert took < 10
    assert wait_until(lambda: not pids_with_marker(marker), timeout=15), pids_with_marker(marker)
    runs = runlog.runs()
    runlog.assert_no_new_run(within=0.5)
    assert runlog.runs() == runs


def test_keyboard_interrupt_in_the_with_block(tmp_path: pathlib.Path) -> None:
    pidfile, args = tree_args(tmp_path)
    owner = start_owner(
        """
        try:
            with netrunner.Daemon(ARGS["cmd"], kill_timeout=0.5, restart="always", backoff=(0.01, 0.01)) as d:
                wait_pids(ARGS["pidfile"], 4)
                announce("ready")
                time.sleep(1000)
        except KeyboardInterrupt:
            announce("interrupted")
        time.sleep(1000)
        """,
        **args,
    )
    owner.expect_line("ready")
    pids = tree_pids(pidfile)
    owner.send_signal(signal.SIGINT)
    owner.expect_line("interrupted")
    assert still_alive(pids) == [], "the with block ended with the tree alive"
    settle(0.3)
    assert tree_pids(pidfile, 0) == pids, "a run started after the with block"
    owner.kill()
    finish(owner)


def test_aio_owner_sigkilled(tmp_path: pathlib.Path) -> None:
    pidfile, args = tree_args(tmp_path)
    owner = start_owner(AIO_TREE, **args)
    owner.expect_line("ready")
    pids = tree_pids(pidfile)
    owner.kill()
    finish(owner)
    assert_tree_gone(pidfile, pids)


def test_aio_loop_closed_with_a_daemon_running(tmp_path: pathlib.Path) -> None:
    pidfile, args = tree_args(tmp_path)
    owner = start_owner(
        """
        box = []
        async def main():
            d = netrunner.aio.Daemon(ARGS["cmd"], kill_timeout=0.5, restart="always", backoff=(0.01, 0.01))
            await d.start()
            while len(pids_in(ARGS["pidfile"])) < 4:
                await asyncio.sleep(0.01)
            box.append(d)
        asyncio.run(main())
        announce("loop-closed")
        time.sleep(1000)
        """,
        **args,
    )
    owner.expect_line("loop-closed")
    pids = tree_pids(pidfile)
    assert_tree_gone(pidfile, pids)  # while the owner lives on, its loop closed
    owner.kill()
    _, err, _ = finish(owner)
    assert "Traceback" not in err, err
    assert "Event loop is closed" not in err, err


def test_aio_interpreter_exit_with_a_daemon_running(tmp_path: pathlib.Path) -> None:
    pidfile, args = tree_args(tmp_path)
    owner = start_owner(
        """
        async def main():
            d = netrunner.aio.Daemon(ARGS["cmd"], kill_timeout=0.5, restart="always", backoff=(0.01, 0.01))
            await d.start()
            while len(pids_in(ARGS["pidfile"])) < 4:
                await asyncio.sleep(0.01)
            announce("ready")
            await asyncio.sleep(0.1)
            sys.exit(0)
        asyncio.run(main())
        """,
        **args,
    )
    owner.expect_line("ready")
    pids = tree_pids(pidfile)
    _, err, took = finish(owner)
    assert owner.proc.returncode == 0, err
    assert took < 10
    assert "Traceback" not in err, err
    assert_tree_gone(pidfile, pids)


def test_a_forked_child_exiting_leaves_the_parents_daemon_alone(tmp_path: pathlib.Path) -> None:
    pidfile, args = tree_args(tmp_path)
    owner = start_owner(
        SYNC_TREE
        + """
child = os.fork()
if child == 0:
    sys.exit(0)  # the child's interpreter exit (atexit included) is not the owner's
os.waitpid(child, 0)
announce("child-exited", d.alive, d.pid)
sys.stdin.readline()
d.stop()
announce("stopped")
time.sleep(1000)
""",
        **args,
    )
    first = int(owner.expect_line("ready").split()[1])
    pids = tree_pids(pidfile)
    assert owner.expect_line("child-exited") == f"child-exited True {first}"
    settle(0.3)
    assert sorted(still_alive(pids)) == sorted(pids), "the forked child's exit stopped the parent's daemon"
    assert tree_pids(pidfile, 0) == pids, "the daemon restarted"
    assert owner.proc.stdin is not None
    owner.proc.stdin.write(b"go\n")
    owner.proc.stdin.flush()
    owner.expect_line("stopped")
    assert still_alive(pids) == []
    owner.kill()
    finish(owner)


def test_fork_then_owner_sigkilled(tmp_path: pathlib.Path) -> None:
    pidfile, args = tree_args(tmp_path)
    owner = start_owner(
        SYNC_TREE
        + """
import multiprocessing
child = multiprocessing.get_context("fork").Process(target=time.sleep, args=(1000,))
child.start()
announce("forked", child.pid)
time.sleep(1000)
""",
        **args,
    )
    owner.expect_line("ready")
    pids = tree_pids(pidfile)
    mp_child = int(owner.expect_line("forked").split()[1])
    owner.kill()
    finish(owner)
    try:
        assert_tree_gone(pidfile, pids)  # the fork held no copy of what tells the owner's death
    finally:
        os.kill(mp_child, signal.SIGKILL)  # started by our owner for this test
