"""Hardening item 1: a command that exits at the same moment as a stop, a
signal, a timeout or an output limit gets its true outcome (SPEC section 6),
never ``ShepherdError``. Loops; ``NETRUNNER_STRESS=1`` makes them 5x longer."""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
from typing import Any

import pytest
from _stress import iterations
from conftest import wait_until
from helpers import at_once, each_at_once, py, status_field, switching_often
from helpers_aio import arun

import netrunner
import netrunner.aio
from netrunner._drivers import drive
from netrunner._engine import Handle

#: Statuses a stopped command can really have: its own exit (0 here) or a
#: signal netrunner sent while stopping it.
SENT = {0, -signal.SIGTERM, -signal.SIGKILL}


def _check_timeout_outcome(outcome: Any, i: int) -> str:
    """``outcome`` of ``run(["sleep", "0.02"], timeout=0.02)``: a clean Result or Timeout."""
    if isinstance(outcome, netrunner.Timeout):
        assert outcome.stats is not None, f"iteration {i}: Timeout without stats"
        rc = outcome.stats.returncode
        assert rc is None or rc in SENT, f"iteration {i}: Timeout with returncode {rc}, a signal netrunner never sent"
        return "timeout"
    if isinstance(outcome, BaseException):
        raise AssertionError(f"iteration {i}: {type(outcome).__name__}: {outcome}") from outcome
    rc = outcome.returncode
    assert rc == 0, f"iteration {i}: a Result with returncode {rc} (stopped without Timeout?)"
    assert outcome.signal is None
    return "exit"


def test_run_timeout_equal_to_runtime() -> None:
    """run(["sleep", "0.02"], timeout=0.02) is either a clean exit or Timeout."""
    seen: dict[str, int] = {}
    for i in range(iterations(400)):
        try:
            outcome: Any = netrunner.run(["sleep", "0.02"], timeout=0.02, kill_timeout=1)
        except Exception as exc:
            outcome = exc
        kind = _check_timeout_outcome(outcome, i)
        seen[kind] = seen.get(kind, 0) + 1
    assert sum(seen.values()) == iterations(400)


def test_aio_run_timeout_equal_to_runtime() -> None:
    """The asyncio twin of :func:`test_run_timeout_equal_to_runtime`."""

    async def main() -> None:
        for i in range(iterations(400)):
            try:
                outcome: Any = await netrunner.aio.run(["sleep", "0.02"], timeout=0.02, kill_timeout=1)
            except Exception as exc:
                outcome = exc
            _check_timeout_outcome(outcome, i)

    arun(main(), timeout=iterations(60))  # a net for a hang, as long as the loop


def test_terminate_then_wait_on_exiting_command() -> None:
    """start()+terminate()+wait() on commands that exit by themselves at
    about that moment: the true status, never ShepherdError."""
    commands = [["true"], py("import time; time.sleep(0.003)"), ["sh", "-c", "exit 3"]]
    for i in range(iterations(500)):
        cmd = commands[i % len(commands)]
        own_exit = 3 if cmd[0] == "sh" else 0
        try:
            p = netrunner.start(cmd, kill_timeout=1)
        except netrunner.ShepherdError as exc:
            raise AssertionError(f"iteration {i} ({cmd}): start(): ShepherdError: {exc}") from exc
        try:
            if i % 2:
                time.sleep(0.001 * (i % 7))  # vary the phase; correctness is not decided by it
            p.terminate()
            rc = p.wait(timeout=10)
        except netrunner.ShepherdError as exc:
            raise AssertionError(f"iteration {i} ({cmd}): ShepherdError: {exc}") from exc
        finally:
            p.close()
        assert rc in {own_exit, -signal.SIGTERM}, f"iteration {i} ({cmd}): returncode {rc}"
        assert p.returncode == rc


def _stop_from_six_threads(i: int) -> None:
    p = netrunner.start(["sleep", "0.005"], kill_timeout=1)
    # release all six at about the moment the command exits (the phase is
    # varied; the outcome is checked whatever it is)
    results, hung = at_once(6, p.stop, action=lambda: time.sleep(0.0005 * (i % 16)), timeout=10)
    if hung:
        p.kill()
    p.close()
    assert not hung, f"iteration {i}: {hung} stop() calls still blocked after 10 s"
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, f"iteration {i}: stop() raised {errors!r}"
    assert len(set(results)) == 1, f"iteration {i}: threads disagree: {results}"
    assert results[0] in SENT, f"iteration {i}: returncode {results[0]}"


def test_first_news_and_release_race_for_the_fds_handed_over() -> None:
    """Our copies of the fds handed to a command are closed by whichever
    comes first, the first news from the shepherd (a thread pumping the
    control socket) or a release in another thread: each exactly once (a
    second close would raise EBADF, or close a number reused meanwhile), and
    none is left open."""
    from netrunner._command import resolve

    args, argv, opts = resolve("start", ["true"], {})
    netrunner.run(["true"])  # helpers started, so the count below is theirs too
    before = len(os.listdir("/proc/self/fd"))
    for i in range(iterations(1000)):
        h = Handle(args, argv, opts, keep_stdin=True)
        assert h.passed, f"iteration {i}: nothing handed over?"
        barrier = threading.Barrier(2, action=functools.partial(time.sleep, 0.00005 * (i % 8)))
        errors: list[BaseException] = []

        def pump(h: Handle = h, barrier: threading.Barrier = barrier, errors: list[BaseException] = errors) -> None:
            barrier.wait()
            try:
                h.pump_control()
            except BaseException as exc:
                errors.append(exc)

        t = threading.Thread(target=pump)
        t.start()
        barrier.wait()
        try:
            h.release()
        except BaseException as exc:
            errors.append(exc)
        t.join(timeout=10)
        assert not t.is_alive(), f"iteration {i}: pump_control() still running after 10 s"
        assert not errors, f"iteration {i}: {errors!r}"
        assert h.passed == [], f"iteration {i}"
    # the released shepherds stop their commands and are reaped (their
    # pidfds closed) on their own; a spare shepherd may be on its way
    assert wait_until(lambda: len(os.listdir("/proc/self/fd")) <= before + 2, timeout=15), (
        f"fds left open: {len(os.listdir('/proc/self/fd'))} against {before}"
    )


def test_release_from_four_threads_gives_a_shepherd_back_once() -> None:
    """A stream that is over (its shepherd, idle again, waiting to be given
    back) closed from four threads at once: it is given back once, or, not
    wanted, hung up once -- never kept idle and also closed, which left the
    next command a dead socket. Every command after it runs; no fd of ours
    is left open. The threads switch every microsecond, so that they
    interleave inside the releases."""
    from helpers import settled_fd_count

    fds_before = settled_fd_count()
    with switching_often():
        for i in range(iterations(400)):
            s = netrunner.stream(["true"])
            h = s._h
            drive(h.flow_collect(None, None, None, None, True))  # over: EXITED read, the shepherd idle
            outcomes, hung = at_once(4, h.release)
            s._done = True  # released above, by the threads
            assert not hung, f"iteration {i}: release() still running after 20 s"
            assert outcomes == [None] * 4, f"iteration {i}: {outcomes!r}"
            try:
                assert netrunner.run(["echo", str(i)]).stdout == f"{i}\n".encode(), f"iteration {i}"
            except netrunner.ShepherdError as exc:
                raise AssertionError(f"iteration {i}: the next command: ShepherdError: {exc}") from exc
    assert settled_fd_count() == fds_before


def test_a_release_racing_the_read_of_a_reusable_exit_hands_the_shepherd_to_one_place() -> None:
    """A stream's last wait (it reads EXITED, whose shepherd offers to serve
    again) in one thread while another releases the stream: the shepherd
    ends up kept idle, or handed to the reaper and reaped -- never both
    (the reaper then waited on a number the next command's shepherd may
    take), never neither (a zombie nobody reaps). The threads switch every
    microsecond, so that they interleave inside the give-back and the
    release."""
    from conftest import own_children

    from netrunner import _lifetime
    from netrunner._io import zygote

    def reaped(pid: int) -> bool:
        _lifetime.reap_detached()  # as each new command does first
        return pid not in own_children()

    with switching_often():
        for i in range(iterations(400)):
            s = netrunner.stream(["true"])
            h = s._h
            drive(h.flow_started())

            def read_to_the_exit(h: Handle = h) -> None:
                while h.ctl_open and not h.core.done:
                    h.pump_control()

            outcomes, hung = each_at_once([read_to_the_exit, h.release])
            s._done = True  # released above
            assert not hung, f"iteration {i}: still running after 20 s"
            assert [o for o in outcomes if isinstance(o, BaseException)] == [], f"iteration {i}: {outcomes!r}"
            pid = h.shepherd_pid
            idle = {p for p, _, _ in zygote._idle}
            assert not (pid in idle and pid in _lifetime._detached), f"iteration {i}: idle and handed to the reaper"
            if pid not in idle:
                assert wait_until(lambda pid=pid: reaped(pid), timeout=10), (
                    f"iteration {i}: shepherd {pid} neither kept idle nor reaped"
                )
            assert netrunner.run(["echo", str(i)]).stdout == f"{i}\n".encode(), f"iteration {i}"


def test_reads_and_writes_racing_a_close_in_another_thread_touch_only_their_own_fds() -> None:
    """One thread reads stdout and writes stdin while another closes the
    process and a third keeps making pipes (which take the numbers that
    close frees). The reader sees the end of output or its own data, the
    writer its own stdin closed -- never EBADF, never a byte of another
    file, and no other pipe loses a byte. The threads switch every
    microsecond, so that they interleave inside the reads and the close."""
    stop_making = threading.Event()
    stolen: list[str] = []

    def make_pipes() -> None:  # other files of this process, each holding a byte that must stay
        while not stop_making.is_set():
            r, w = os.pipe()
            os.write(w, b"X")
            time.sleep(0)
            os.set_blocking(r, False)
            try:
                if os.read(r, 1) != b"X":
                    stolen.append("a pipe lost its byte")
            except BlockingIOError:
                stolen.append("a pipe lost its byte")
            finally:
                os.close(r)
                os.close(w)

    with switching_often():
        maker = threading.Thread(target=make_pipes, daemon=True)
        maker.start()
        try:
            for i in range(iterations(300)):
                p = netrunner.start(["cat"], kill_timeout=1)
                errors: list[BaseException] = []
                seen: list[bytes] = []

                def use(p: netrunner.Process[bytes] = p, errors: list[BaseException] = errors,
                        seen: list[bytes] = seen) -> None:
                    try:
                        while True:
                            try:
                                p.write(b"ours\n")
                            except (netrunner.StdinClosed, BrokenPipeError):
                                pass
                            data = p.read(65536, timeout=5)
                            if not data:
                                return
                            seen.append(data)
                    except BaseException as exc:
                        errors.append(exc)

                t = threading.Thread(target=use, daemon=True)
                t.start()
                time.sleep(0.0002 * (i % 10))
                p.close()
                t.join(timeout=20)
                assert not t.is_alive(), f"iteration {i}: the reader still runs 20 s after close()"
                assert not errors, f"iteration {i}: {errors!r}"
                assert set(b"".join(seen)) <= set(b"ours\n"), f"iteration {i}: read {b''.join(seen)[:80]!r}"
                assert not stolen, f"iteration {i}: {stolen[0]}"
        finally:
            stop_making.set()
            maker.join(timeout=10)


def test_stop_from_six_threads_while_exiting() -> None:
    """stop() called by 6 threads at once on a command that exits at that
    moment: every call returns the same true status, none raises or hangs."""
    for i in range(iterations(300)):
        _stop_from_six_threads(i)


def test_stop_from_six_threads_with_a_slow_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same, with a pause while each wait takes its control sockets: the
    moment another thread may read the last record and the hangup. A wait
    that chose its fds after deciding to wait found none and hung here at
    once; taken before the decision, they always include a socket that wakes."""
    snapshot = Handle.control_fds

    def slow_snapshot(self: Handle) -> tuple[int, ...]:
        time.sleep(0.002)
        return snapshot(self)

    monkeypatch.setattr(Handle, "control_fds", slow_snapshot)
    for i in range(iterations(40)):
        _stop_from_six_threads(i)


def test_output_limit_with_command_exiting() -> None:
    """run(["printf", "abcdefgh"], max_output_size=4): always the limit error
    with exactly b"abcd", whether or not the command ended first."""
    for i in range(iterations(300)):
        outcome: Any
        try:
            outcome = netrunner.run(["printf", "abcdefgh"], max_output_size=4, kill_timeout=1)
        except Exception as exc:
            outcome = exc
        if not isinstance(outcome, netrunner.OutputLimitExceeded):
            raise AssertionError(f"iteration {i}: expected OutputLimitExceeded, got {outcome!r}")
        got = (outcome.stdout, outcome.limit, outcome.stream)
        assert got == (b"abcd", 4, "stdout"), f"iteration {i}: (stdout, limit, stream) = {got!r}"


def test_stop_reports_collide_with_the_exit_and_a_stop() -> None:
    """FLAG_STOPS (the command line's job control): a command that stops
    itself and exits as soon as it is continued, continued at every report,
    and in one round of three stopped (C_STOP) at a varying moment. The
    reports come only while it runs -- one after S_EXITED would break
    protocol (phase LOST) -- at most one per stop, and the outcome is the
    true one: exit 7, or SIGTERM when our stop came first."""
    import select

    from netrunner._command import resolve
    from netrunner._core import codec
    from netrunner._core.state import Phase
    from netrunner._drivers import drive

    args, argv, opts = resolve("start", ["sh", "-c", "kill -STOP $$; exit 7"], {"kill_timeout": 5})
    outcomes: dict[tuple[int, int | None], int] = {}
    for i in range(iterations(1000)):
        h = Handle(args, argv, opts, keep_stdin=False, report_stops=True)
        try:
            stop_at = time.monotonic() + 0.0002 * (i % 10) if i % 3 == 0 else None
            seen = 0
            while not h.core.done:
                h.pump_control()
                if h.core.stops != seen:
                    seen = h.core.stops
                    h.send(codec.encode_signal(signal.SIGCONT))
                if stop_at is not None and time.monotonic() >= stop_at:
                    stop_at = None
                    h.send(codec.encode_stop(None))
                if h.ctl_open and not h.core.done:
                    select.select([h.ctl_fd], [], [], 0.0005)
            assert h.core.phase is Phase.EXITED, f"iteration {i}: {h.core.phase} ({h.core.fault})"
            assert h.core.stops <= 1, f"iteration {i}: {h.core.stops} reports of one stop"
            assert h.core.returncode in (7, -signal.SIGTERM), f"iteration {i}: returncode {h.core.returncode}"
            drive(h.flow_wait(time.monotonic() + 10))
            key = (h.core.stops, h.core.returncode)
            outcomes[key] = outcomes.get(key, 0) + 1
        finally:
            h.release()
    # the loop collided: stops were reported and continued, and stops of ours won
    assert outcomes.get((1, 7)), outcomes
    assert any(rc == -signal.SIGTERM for _, rc in outcomes), outcomes


TICKING = (
    "import time\n"
    "for _ in range(30):\n"
    "    print('tick', flush=True)\n"
    "    time.sleep(0.01)\n"
    "print('done', flush=True)\n"
)


#: SIGTSTP, SIGTTIN and SIGTTOU, as bits of /proc/<pid>/status's SigIgn.
_TERMINAL_STOP_BITS = (1 << (signal.SIGTSTP - 1)) | (1 << (signal.SIGTTIN - 1)) | (1 << (signal.SIGTTOU - 1))


def _build_tool_children(cli: int) -> list[tuple[int, str]]:
    """The children of the CLI ``cli`` in its own process group that do not
    ignore the terminal's stop signals, with their state (``/proc``'s
    ``State``). netrunner's only child in that group, the zygote before it
    leaves it, ignores them. Another is the editable install's loader
    rebuilding the package at the first import (meson-python runs the build
    tool through ``subprocess``): a Ctrl-Z that stops its vfork child before
    its exec hangs the CLI in ``vfork`` -- as it would hang any program in
    that instant (see the vfork note in test_cli.py) -- and there is no such
    child in an installed netrunner."""
    try:
        with open(f"/proc/{cli}/task/{cli}/children") as f:
            children = f.read().split()
    except FileNotFoundError:
        return []  # the CLI has exited
    found = []
    for child in children:
        try:
            group = os.getpgid(int(child))
            ignored = int(status_field(child, "SigIgn"), 16)
            state = status_field(child, "State")
        except (FileNotFoundError, ProcessLookupError):
            continue  # gone meanwhile
        if group == cli and ignored & _TERMINAL_STOP_BITS != _TERMINAL_STOP_BITS:
            found.append((int(child), state))
    return found


def _stopped_build_tool(cli: int) -> int | None:
    """The build tool's child (:func:`_build_tool_children`) that a Ctrl-Z
    stopped before its exec, or None. Its pid is pinned: the CLI, blocked
    in ``vfork`` until that child execs, cannot reap it."""
    return next((pid for pid, state in _build_tool_children(cli) if state.startswith("T")), None)


def _outwait_build_tool(cli: int) -> None:
    """Wait (up to 10 s) until the CLI runs no build tool of the editable
    install in its group (see :func:`_build_tool_children`)."""
    deadline = time.monotonic() + 10
    while _build_tool_children(cli):
        assert time.monotonic() < deadline, "the editable install's build tool ran for 10 s"


def test_ctrl_z_at_any_moment_of_the_start_stops_the_job(marker: str) -> None:
    """Ctrl-Z typed at a varying moment of the CLI's start: as Python
    starts, before the command runs, as it runs with the terminal still
    the CLI's, in the instant the CLI hands it over (the moments tried
    gather there), or after. Whichever group gets the SIGTSTP, the job
    stops once, the terminal back with the CLI's group, and the command
    stops with it: it prints nothing while the shell keeps the job
    stopped. `fg` lets both go on to the command's end. (A SIGCONT sent
    with the handover once undid a Ctrl-Z typed in that instant, and a
    Ctrl-Z that reached the CLI stopped it alone.) The command forks
    nothing (see the vfork note in test_cli.py's Ctrl-Z test)."""
    from test_cli import PY, _job, _read_to_the_end, _session_snapshot, read_until

    handover = 0.2  # seconds from `job started` to the handover, as last seen
    build_tool_hit = 0
    for i in range(iterations(20)):
        pid, master = _job("wait-then-fg", "--", PY, "-c", TICKING)
        try:
            out = read_until(master, b"job started")
            start = time.monotonic()
            cli_group = os.tcgetpgrp(master)
            typed_at = start + handover * (0.5 + 0.7 * ((i * 7) % 20) / 20)
            handed = False
            while (now := time.monotonic()) < typed_at:
                if not handed and os.tcgetpgrp(master) != cli_group:
                    handed, handover = True, now - start
                    typed_at = min(typed_at, now + 0.0002 * (i % 10))
            _outwait_build_tool(cli_group)
            typed = time.monotonic()
            os.write(master, b"\x1a")
            try:
                out += _read_to_the_end(master)
            except AssertionError as exc:
                tool = _stopped_build_tool(cli_group)
                if tool is not None:
                    # The build tool started after _outwait_build_tool looked,
                    # and the Ctrl-Z stopped it before its exec: not a moment
                    # of netrunner's (there is no such child in an installed
                    # netrunner). Let it go on, and type at the next moment.
                    os.kill(tool, signal.SIGCONT)
                    _read_to_the_end(master)
                    build_tool_hit += 1
                    continue
                seen = f"after the handover, seen at {handover:.4f} s" if handed else "with no handover seen yet"
                raise AssertionError(
                    f"iteration {i}: Ctrl-Z typed {typed - start:.4f} s after `job started`, {seen}: {exc}\n"
                    + _session_snapshot(pid, master)
                ) from None
        finally:
            os.close(master)
            _, status = os.waitpid(pid, 0)
        assert out.count(b"job stopped 20 job") == 1, f"iteration {i}: {out!r}"
        while_stopped = out.split(b"job stopped")[1].split(b"job waited")[0]
        assert b"tick" not in while_stopped, f"iteration {i}: the command ran on: {out!r}"
        assert b"done" in out.split(b"job waited")[1], f"iteration {i}: {out!r}"
        assert b"job exited 0 job" in out, f"iteration {i}: {out!r}"
        assert os.waitstatus_to_exitcode(status) == 0, f"iteration {i}: {out!r}"
    # the moments tried are netrunner's, nearly all of them
    assert build_tool_hit <= iterations(20) // 10, f"{build_tool_hit} Ctrl-Z stopped the build tool"


STOPS_AT_THE_ZYGOTES_START = (
    "import os, signal, sys, threading\n"
    "import netrunner\n"
    "from netrunner._io import zygote\n"
    "if sys.argv[1] == 'posix_spawn':\n"
    "    zygote._starter = False  # as where netrunner-spawn.so cannot be used\n"
    "signal.signal(signal.SIGTSTP, lambda *_: None)  # a program that handles Ctrl-Z\n"
    "done = threading.Event()\n"
    "def storm():\n"
    "    while not done.is_set():\n"
    "        os.killpg(0, signal.SIGTSTP)  # Ctrl-Z, again and again\n"
    "threading.Thread(target=storm, daemon=True).start()\n"
    "if sys.argv[1] == 'vfork':  # neither starter can clone3: subprocess starts the zygote\n"
    "    exec(sys.argv[2])\n"
    "    print('clone3 refused' if refused else 'clone3 allowed', flush=True)\n"
    "try:\n"
    "    print('ran', netrunner.run(['true']).returncode, flush=True)\n"
    "finally:\n"
    "    done.set()\n"
)


@pytest.mark.parametrize("starter", ["clone3", "posix_spawn", "vfork"])
def test_ctrl_z_as_the_zygote_starts_stops_nothing(starter: str, marker: str) -> None:
    """SIGTSTP sent to the process group of a program that handles it, over
    and over, while netrunner starts its zygote. The zygote is made in that
    group and leaves it before its exec; a stop signal that reached it
    before would have stopped it there, with the program waiting for the
    exec in an uninterruptible sleep (the clone shares its memory) or for a
    hello that never comes -- Ctrl-Z hung the terminal. The zygote's
    start holds the stop signals off and drops them. The program runs in a
    group of its own in our session (not orphaned: stop signals work).
    ``vfork``: clone3 refused by a seccomp filter, so the zygote is started
    by ``subprocess``, whose child resets the program's handler before its
    exec."""
    import subprocess

    from helpers import PY
    from test_hardening_seccomp import CLONE3_REFUSED

    expected = b"clone3 refused\nran 0\n" if starter == "vfork" else b"ran 0\n"
    for i in range(iterations(10)):
        proc = subprocess.Popen(
            [PY, "-c", STOPS_AT_THE_ZYGOTES_START, starter, CLONE3_REFUSED],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            preexec_fn=os.setpgrp,  # a group of its own in our session
        )
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the group this test made
            out, _ = proc.communicate()
            raise AssertionError(f"iteration {i}: hung; {out!r}") from None
        assert out == expected and proc.returncode == 0, f"iteration {i}: {proc.returncode} {out!r}"
