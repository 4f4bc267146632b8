"""Contract tests for the command line (SPEC §14), run as a real subprocess.

``python -m netrunner run [options] -- CMD...`` (and the installed ``netrunner``
console script when it sits beside ``sys.executable``) exits like ``timeout(1)``
and ``env(1)``: the command's code, 128+N on signal death, 124 on timeout, 125
for netrunner's own failure (and ``--max-output``), 126 found but not runnable,
127 not found.  The command gets the CLI's own stdin, stdout and stderr (only
``--max-output`` relays output through pipes).  The CLI inherits ``os.environ``
(so the test's marker), and so do its commands: the autouse fixture proves
nothing survives."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import MARKER_VAR, pids_with_marker, wait_until

PY = sys.executable
MODULE = [PY, "-m", "netrunner"]
_SCRIPT = shutil.which("netrunner", path=os.path.dirname(PY))
ENTRY_POINTS = [pytest.param(MODULE, id="module")]
if _SCRIPT:
    ENTRY_POINTS.append(pytest.param([_SCRIPT], id="script"))

STATS_FIELDS = (
    "bytes_in",
    "bytes_out",
    "bytes_err",
    "read_count",
    "write_count",
    "started_at",
    "duration",
    "returncode",
    "exit_status",
    "cpu_user",
    "cpu_system",
    "max_rss",
    "peak_memory",
    "bytes_err_dropped",
)


def cli(
    *args: str, entry: list[str] = MODULE, timeout: float = 30, **kwargs: Any
) -> subprocess.CompletedProcess[bytes]:
    """Run ``netrunner run ARGS`` to completion (stdout and stderr captured
    unless given)."""
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    return subprocess.run([*entry, "run", *args], timeout=timeout, **kwargs)


def popen_cli(*args: str, **kwargs: Any) -> subprocess.Popen[bytes]:
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.Popen(
        [*MODULE, "run", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0, **kwargs
    )


def read_until(fd: int, needle: bytes, timeout: float = 15.0) -> bytes:
    """Read from ``fd`` until ``needle`` has arrived (never waits past ``timeout``)."""
    buf = b""
    deadline = time.monotonic() + timeout
    while needle not in buf:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{needle!r} did not arrive within {timeout}s; have {buf!r}")
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        data = os.read(fd, 65536)
        if not data:
            raise AssertionError(f"EOF before {needle!r}; have {buf!r}")
        buf += data
    return buf


def finish(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> tuple[bytes, bytes, int]:
    out, err = proc.communicate(timeout=timeout)
    return out, err, proc.returncode


# --------------------------------------------------------------- exit codes


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("code", [0, 1, 42, 255])
def test_exit_code_is_the_commands(entry: list[str], code: int) -> None:
    r = cli("--", "sh", "-c", f"exit {code}", entry=entry)
    assert r.returncode == code, r.stderr


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_stdout_and_stderr_pass_through(entry: list[str]) -> None:
    code = "import sys; print('to out'); print('to err', file=sys.stderr)"
    r = cli("--", PY, "-c", code, entry=entry)
    assert r.returncode == 0
    assert r.stdout == b"to out\n"
    assert r.stderr == b"to err\n"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL, signal.SIGUSR1])
def test_signal_death_is_128_plus_n(sig: signal.Signals) -> None:
    r = cli("--", "sh", "-c", f"kill -{sig.name[3:]} $$")
    assert r.returncode == 128 + sig


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("program", ["no-such-program-netrunner-xyz", "/nonexistent/dir/prog"])
def test_not_found_is_127(entry: list[str], program: str) -> None:
    r = cli("--", program, "arg", entry=entry)
    assert r.returncode == 127
    assert r.stdout == b""
    assert program.encode() in r.stderr


def test_not_executable_is_126(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho should-not-run\n")
    script.chmod(0o644)
    r = cli("--", str(script))
    assert r.returncode == 126
    assert b"should-not-run" not in r.stdout


def test_directory_is_126(tmp_path: Path) -> None:
    r = cli("--", str(tmp_path))
    assert r.returncode == 126


def test_no_valid_format_is_126(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00\x01\x02 not an executable\n")
    junk.chmod(0o755)
    r = cli("--", str(junk))
    assert r.returncode == 126


@pytest.mark.parametrize(
    "options",
    [
        ["--timeout", "abc"],
        ["--timeout", "-1"],
        ["--timeout", "0"],
        ["--kill-timeout", "0"],
        ["--kill-timeout", "soon"],
        ["--max-output", "0"],
        ["--max-output", "lots"],
        ["--env", "NO_EQUALS_SIGN"],
        ["--no-such-option"],
    ],
    ids=lambda o: " ".join(o),
)
def test_bad_options_are_125_and_run_nothing(tmp_path: Path, options: list[str]) -> None:
    flag = tmp_path / "ran"
    r = cli(*options, "--", "touch", str(flag))
    assert r.returncode == 125, r.stderr
    assert r.stderr.strip(), "no message explains the failure"
    assert not flag.exists()


def test_missing_command_is_125() -> None:
    r = cli("--")
    assert r.returncode == 125
    assert r.stderr.strip()


# --------------------------------------------------------------- timeout & limits


def test_timeout_is_124_and_keeps_partial_output() -> None:
    t0 = time.monotonic()
    r = cli("--timeout", "1", "--", PY, "-c", "import time; print('partial', flush=True); time.sleep(100)")
    elapsed = time.monotonic() - t0
    assert r.returncode == 124
    assert r.stdout == b"partial\n"
    assert elapsed < 6.0


@pytest.mark.parametrize("seconds", ["inf", "1e300", "5184000"])
def test_a_timeout_longer_than_one_wait_can_last_runs_the_command_to_its_end(seconds: str) -> None:
    r = cli("--timeout", seconds, "--", "sh", "-c", "sleep 0.2; echo out; exit 3")
    assert (r.returncode, r.stdout, r.stderr) == (3, b"out\n", b"")


def test_kill_timeout_bounds_the_stop_of_a_term_ignoring_command() -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
        "time.sleep(100)"
    )
    t0 = time.monotonic()
    r = cli("--timeout", "0.5", "--kill-timeout", "0.3", "--", PY, "-c", code)
    elapsed = time.monotonic() - t0
    assert r.returncode == 124
    assert r.stdout == b"ready\n"
    assert elapsed < 4.0, f"took {elapsed:.1f}s: --kill-timeout was not applied (default is 5 s)"


def test_max_output_exceeded_is_125_and_names_the_limit() -> None:
    payload = bytes(range(256)) * 40
    code = f"import sys, time; sys.stdout.buffer.write({payload!r}); sys.stdout.flush(); time.sleep(100)"
    t0 = time.monotonic()
    r = cli("--max-output", "1000", "--", PY, "-c", code)
    assert r.returncode == 125
    assert b"1000" in r.stderr
    assert len(r.stdout) <= 1000
    assert r.stdout == payload[: len(r.stdout)]
    assert time.monotonic() - t0 < 8.0


def test_max_output_not_exceeded() -> None:
    r = cli("--max-output", "1000", "--", PY, "-c", "import sys; sys.stdout.write('x' * 1000)")
    assert r.returncode == 0
    assert r.stdout == b"x" * 1000


def test_background_job_does_not_hang_the_cli() -> None:
    t0 = time.monotonic()
    r = cli("--", "sh", "-c", "sleep 100 & echo hi")
    assert r.returncode == 0
    assert r.stdout == b"hi\n"
    assert time.monotonic() - t0 < 5.0


# --------------------------------------------------------------- streaming


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_output_is_passed_on_as_it_comes(tmp_path: Path, stream: str) -> None:
    go = tmp_path / "go"
    code = (
        "import os, sys, time\n"
        f"out = sys.{stream}\n"
        "print('one', file=out, flush=True)\n"
        "while not os.path.exists(sys.argv[1]): time.sleep(0.01)\n"
        "print('two', file=out, flush=True)\n"
    )
    with popen_cli("--", PY, "-c", code, str(go)) as proc:
        pipe = proc.stdout if stream == "stdout" else proc.stderr
        assert pipe is not None
        first = read_until(pipe.fileno(), b"one\n")
        assert b"two" not in first
        go.touch()
        rest = read_until(pipe.fileno(), b"two\n")
        out, err, rc = finish(proc)
    assert rc == 0
    assert first + rest + (out if stream == "stdout" else err) == b"one\ntwo\n"


def test_stdin_is_passed_to_the_command() -> None:
    code = "import sys; print('one', flush=True); line = sys.stdin.readline(); print('got', line.strip(), flush=True)"
    with popen_cli("--", PY, "-c", code, stdin=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        assert proc.stdin is not None
        first = read_until(proc.stdout.fileno(), b"one\n")
        assert b"got" not in first
        proc.stdin.write(b"hello\n")
        proc.stdin.flush()
        rest = read_until(proc.stdout.fileno(), b"got hello\n")
        out, _, rc = finish(proc)
    assert rc == 0
    assert first + rest + out == b"one\ngot hello\n"


def test_large_output_on_both_streams_is_intact() -> None:
    code = (
        "import sys, hashlib\n"
        "data = bytes(range(256)) * 20000\n"
        "for i in range(0, len(data), 65536):\n"
        "    sys.stdout.buffer.write(data[i:i + 65536]); sys.stderr.buffer.write(data[i:i + 65536][::-1])\n"
    )
    r = cli("--", PY, "-c", code)
    data = bytes(range(256)) * 20000
    assert r.returncode == 0
    assert r.stdout == data
    assert r.stderr == b"".join(data[i : i + 65536][::-1] for i in range(0, len(data), 65536))


# --------------------------------------------------------------- stdio handed over

RELAY = [pytest.param([], id="handed-over"), pytest.param(["--max-output", "10M"], id="relayed")]
BASH = shutil.which("bash") or "/bin/bash"  # a test without it fails, it does not skip


@pytest.mark.parametrize("relay", RELAY)
def test_stdin_is_not_eaten(relay: list[str]) -> None:
    # Each command gets the loop's stdin itself; the CLI reads none of it, so
    # the next `read` still finds the next line.
    script = 'printf "a\\nb\\nc\\n" | while read l; do "$@" "$l"; done'
    r = subprocess.run(
        [BASH, "-c", script, "bash", *MODULE, "run", *relay, "--", "echo"],
        capture_output=True, timeout=30, stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"a\nb\nc\n"


def test_command_sees_the_terminal() -> None:
    # The CLI's stdout and stderr are a terminal: so are the command's (it
    # gets them directly, not a pipe the CLI relays from).
    master, slave = os.openpty()
    try:
        code = "import sys; print(sys.stdout.isatty(), sys.stderr.isatty(), sys.stdin.isatty())"
        proc = subprocess.Popen(
            [*MODULE, "run", "--", PY, "-c", code], stdin=subprocess.DEVNULL, stdout=slave, stderr=slave
        )
        os.close(slave)
        slave = -1
        with proc:
            out = read_until(master, b"\n")
            assert proc.wait(timeout=15) == 0
        assert out.strip() == b"True True False"
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)


def test_keys_typed_reach_the_command() -> None:
    # The CLI runs on a pseudo-terminal that is its controlling terminal; the
    # command, in its own process group, is given the terminal's foreground
    # (it would be stopped by SIGTTIN otherwise), and the CLI takes it back.
    pid, master = os.forkpty()
    if pid == 0:  # pragma: no cover - the child execs at once
        os.execv(PY, [*MODULE, "run", "--", "sh", "-c", "read x; echo got:$x; sleep 0.2"])
    try:
        os.write(master, b"hello\n")
        out = read_until(master, b"got:hello")
        assert b"got:hello" in out
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        os.close(master)



# A shell's job control, small: the CLI runs as a job (its own process group,
# the terminal's foreground); the "shell" reports how the job stopped and
# who had the terminal then, brings it back with `fg` or `bg`, and reports
# how it ended (a job that never stopped is reported at its end only).
# `how` is `fg`, `bg`, or steps in turn: `bg-then-fg`; prefixed with `&-`,
# the job is started in the background (`netrunner run ... &`).
# It says `job started` once the job has the terminal (or, `&-`, runs).
JOB_SHELL = (
    "import os, signal, sys, time\n"
    "signal.signal(signal.SIGTTOU, signal.SIG_IGN)\n"
    "how, cli = sys.argv[1], sys.argv[2:]\n"
    "foreground = not how.startswith('&-')\n"
    "how = how[2:] if not foreground else how\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    os.setpgid(0, 0)\n"
    "    if foreground:\n"
    "        os.tcsetpgrp(0, os.getpgrp())\n"
    "    signal.signal(signal.SIGTTOU, signal.SIG_DFL)\n"
    "    os.execv(cli[0], cli)\n"
    "try:\n"
    "    os.setpgid(pid, pid)\n"
    "except PermissionError:\n"
    "    pass  # the child has exec'd: it did it itself, as shells know\n"
    "if foreground:\n"
    "    os.tcsetpgrp(0, pid)\n"
    "print('job started', flush=True)\n"
    "holder = lambda: {pid: 'job', os.getpgrp(): 'shell'}.get(os.tcgetpgrp(0), 'other')\n"
    "_, st = os.waitpid(pid, os.WUNTRACED)\n"
    "if os.WIFSTOPPED(st):\n"
    "    print('job stopped', os.WSTOPSIG(st), holder(), flush=True)\n"
    "    continued = False\n"
    "    for step in how.split('-then-'):\n"
    "        if step == 'wait':  # the job stays stopped a while\n"
    "            time.sleep(0.1)\n"
    "            print('job waited', flush=True)\n"
    "            continue\n"
    "        if continued:\n"
    "            time.sleep(0.3)\n"
    "        os.tcsetpgrp(0, pid if step == 'fg' else os.getpgrp())\n"
    "        os.killpg(pid, signal.SIGCONT)\n"
    "        continued = True\n"
    "    _, st = os.waitpid(pid, 0)\n"
    "print('job exited', os.waitstatus_to_exitcode(st), holder(), flush=True)\n"
)


def _job(how: str, *args: str) -> tuple[int, int]:
    """``netrunner run ARGS`` as a job of JOB_SHELL on a new terminal: the
    shell's pid and the terminal's master."""
    pid, master = os.forkpty()
    if pid == 0:  # pragma: no cover - the child execs at once
        os.execv(PY, [PY, "-c", JOB_SHELL, how, *MODULE, "run", *args])
    return pid, master


def _job_run(how: str, *args: str, keys: tuple[tuple[bytes, bytes], ...] = ()) -> tuple[bytes, int]:
    """Run the job of ``_job`` to its end: for each of ``keys``, wait for
    the text, then type the keys. Everything read, and the shell's status."""
    pid, master = _job(how, *args)
    out = b""
    try:
        for text, typed in keys:
            if text not in out:
                out += read_until(master, text)
            os.write(master, typed)
        out += _read_to_the_end(master)
    finally:
        os.close(master)
        _, status = os.waitpid(pid, 0)
    return out, os.waitstatus_to_exitcode(status)


@pytest.mark.parametrize("how", ["fg", "bg"])
def test_ctrl_z_stops_the_job_and_fg_or_bg_continues_it(how: str, marker: str) -> None:
    # Ctrl-Z reaches the command (its group has the terminal): the CLI sees
    # it stopped, gives the terminal back and stops its own job, as a shell
    # job would; `fg` or `bg` continues the CLI, which continues the command.
    # `ready` comes after the command's last fork: `sh` waits in vfork()
    # with every signal blocked until its child has exec'd, and a Ctrl-Z in
    # that moment stops only the child, unseen by its shepherd as by any
    # shell (bash's `sh -c 'echo ready; sleep 1'` job hangs the same way).
    out, status = _job_run(
        how, "--", "sh", "-c", "sleep 1 & echo ready; wait; echo resumed",
        keys=((b"ready", b"\x1a"),),  # Ctrl-Z: SIGTSTP to the terminal's foreground group
    )
    # Stopped by our SIGTSTP, with the terminal given back to the CLI's group
    assert b"job stopped %d job" % signal.SIGTSTP in out, out
    assert b"resumed" in out.split(b"job stopped")[1], out
    # After `fg` the CLI took the terminal back from the command's group, as
    # at any end; after `bg` it was the shell's, and the CLI left it so.
    assert b"job exited 0 %s" % (b"job" if how == "fg" else b"shell") in out, out
    assert status == 0


# Stops that are not the job's: the command goes on, the CLI's job is never stopped.
NOT_THE_JOBS = {
    # --pty: Ctrl-Z is relayed to the command's terminal like any key. The
    # command leads its own session there, an orphaned group, so the kernel
    # discards the stop (as for a command under `ssh -t`).
    "ctrl-z-with-pty": (
        ("--pty", "--", PY, "-c",
         "import time; print('ready', flush=True); time.sleep(1); print('went on', flush=True)"),
        ((b"ready", b"\x1a"),),
    ),
    # Stopped by SIGTTIN while its group has the foreground, a command read
    # the terminal before the CLI handed it over: the CLI continues it. The
    # command stops itself so, at a moment surely after the handover.
    "sigttin-in-the-foreground": (
        ("--", PY, "-c",
         "import os, signal\n"
         "assert os.tcgetpgrp(0) == os.getpgrp(), 'no foreground'\n"
         "os.kill(os.getpid(), signal.SIGTTIN)\n"
         "print('went on', flush=True)\n"),
        (),
    ),
}


@pytest.mark.parametrize("case", sorted(NOT_THE_JOBS))
def test_a_stop_that_is_not_the_jobs_lets_the_command_go_on(case: str, marker: str) -> None:
    args, keys = NOT_THE_JOBS[case]
    out, status = _job_run("fg", *args, keys=keys)
    assert b"went on" in out, out
    assert b"job stopped" not in out, out
    assert b"job exited 0 job" in out, out
    assert status == 0


_PPID = (
    "import os, signal, time\n"
    "def ppid(pid):\n"
    "    return int(open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()[1])\n"
)

# Stops that are the job's, each followed by one `fg` after which the
# command reads the terminal: (the shell's steps, the command, keys typed,
# how the shell saw the job stop). The command finds the CLI as its
# shepherd's parent.
JOB_STOPS = {
    # The command gives the foreground away (to its shepherd's group) and
    # reads the terminal: stopped by SIGTTIN, it is the job's stop, as a
    # shell shows it ("Stopped (tty input)"). `fg` gives the CLI the
    # terminal, which it hands to the command.
    "sigttin-for-a-terminal-it-lost": (
        "fg",
        _PPID + "signal.signal(signal.SIGTTOU, signal.SIG_IGN)\n"
        "os.tcsetpgrp(0, os.getpgid(os.getppid()))\n"
        "signal.signal(signal.SIGTTOU, signal.SIG_DFL)\n"
        "print('got', input(), flush=True)\n",
        ((b"job stopped", b"hello\n"),),
        b"job stopped %d other" % signal.SIGTTIN,
    ),
    # Ctrl-Z, `bg`, and later `fg` of the running job: the terminal goes to
    # the CLI's group; the command, reading it from the background, is
    # stopped by SIGTTIN, and the CLI hands it the terminal and continues
    # it. The command waits for the handover before `ready`, and reads once
    # the CLI's group has the terminal (the `fg`).
    "fg-after-bg": (
        "bg-then-fg",
        _PPID + "cli_group = os.getpgid(ppid(os.getppid()))\n"
        "while os.tcgetpgrp(0) != os.getpgrp():\n"
        "    time.sleep(0.01)\n"
        "print('ready', flush=True)\n"
        "while os.tcgetpgrp(0) != cli_group:\n"
        "    time.sleep(0.01)\n"
        "print('got', input(), flush=True)\n",
        ((b"ready", b"\x1a"), (b"job stopped", b"hello\n")),
        b"job stopped %d job" % signal.SIGTSTP,
    ),
    # SIGTSTP sent to the CLI itself (`kill -TSTP`, or Ctrl-Z typed while
    # the CLI's group has the terminal, as around the handover): it stops
    # the command, whose stop is the job's, the terminal taken back first.
    # The command is stopped as it waits to read: `fg` continues it with
    # the terminal.
    "sigtstp-to-the-cli": (
        "fg",
        _PPID + "os.kill(ppid(os.getppid()), signal.SIGTSTP)\n"
        "print('got', input(), flush=True)\n",
        ((b"job stopped", b"hello\n"),),
        b"job stopped %d job" % signal.SIGTSTP,
    ),
    # Started in the background (`netrunner run ... &`), the command reads
    # the terminal: stopped by SIGTTIN, that is the job's stop, and `fg`
    # continues it with the terminal (it stayed stopped for good when the
    # CLI acted only on the stops of a job started in the foreground).
    "reads-the-terminal-of-a-background-job": (
        "&-fg",
        "print('got', input(), flush=True)\n",
        ((b"job stopped", b"hello\n"),),
        b"job stopped %d shell" % signal.SIGTTIN,
    ),
    # SIGSTOP sent to the CLI alone: its job stops, the command runs on.
    # `fg` gives the terminal to the CLI's group; the command, which then
    # reads it from the background, is stopped by SIGTTIN, and the CLI
    # hands the terminal over and continues it.
    "the-cli-stopped-on-its-own": (
        "fg",
        _PPID + "os.kill(ppid(os.getppid()), signal.SIGSTOP)\n"
        "while os.tcgetpgrp(0) == os.getpgrp():\n"
        "    time.sleep(0.01)  # until `fg` gave the terminal to the CLI's group\n"
        "print('got', input(), flush=True)\n",
        ((b"job stopped", b"hello\n"),),
        b"job stopped %d other" % signal.SIGSTOP,
    ),
}


@pytest.mark.parametrize("case", sorted(JOB_STOPS))
def test_a_stop_of_the_job_needs_one_fg_and_the_command_reads(case: str, marker: str) -> None:
    how, code, keys, stopped = JOB_STOPS[case]
    out, status = _job_run(how, "--", PY, "-c", code, keys=keys)
    assert stopped in out, out
    assert out.count(b"job stopped") == 1, out  # a second stop would need a second `fg`
    assert b"got hello" in out, out
    # in the foreground at the end: the CLI took the terminal back
    assert b"job exited 0 job" in out, out
    assert status == 0


# A shell whose job is orphaned under it: the job's leader (a wrapper, as a
# script that runs the CLI would be) starts the CLI in the job's group and
# exits. No process of the CLI's group then has a parent in another group
# of the session: the group is orphaned, and the kernel drops every stop
# signal sent to it. `foreground`: the job has the terminal, and the
# wrapper exits once the CLI has handed it to the command; the shell then
# takes it back. `background`: the job never has it, and the wrapper exits
# at once (`(netrunner run -- cmd &)`). The shell says when it holds the
# terminal, and waits for a line typed (the test's, at the end).
ORPHANING_SHELL = (
    "import os, signal, sys, time\n"
    "signal.signal(signal.SIGTTOU, signal.SIG_IGN)\n"
    "where, cli = sys.argv[1], sys.argv[2:]\n"
    "wrapper = os.fork()\n"
    "if wrapper == 0:\n"
    "    os.setpgid(0, 0)\n"
    "    if where == 'foreground':\n"
    "        os.tcsetpgrp(0, os.getpgrp())\n"
    "    signal.signal(signal.SIGTTOU, signal.SIG_DFL)\n"
    "    if os.fork() == 0:\n"
    "        os.execv(cli[0], cli)\n"
    "    while where == 'foreground' and os.tcgetpgrp(0) == os.getpgrp():  # until the handover\n"
    "        time.sleep(0.005)\n"
    "    os._exit(0)\n"
    "try:\n"
    "    os.setpgid(wrapper, wrapper)\n"
    "except PermissionError:\n"
    "    pass\n"
    "if where == 'foreground':\n"
    "    os.tcsetpgrp(0, wrapper)\n"
    "os.waitpid(wrapper, 0)\n"
    "os.tcsetpgrp(0, os.getpgrp())\n"
    "print('shell has the terminal', flush=True)\n"
    "sys.stdin.readline()\n"
)

# A command of an orphaned job that stops: (the command, the CLI's exit code,
# what the command printed, the stats' reason).
ORPHANED_STOPS = {
    # It reads the terminal from the background (the shell took it back):
    # stopped by SIGTTIN. Continued, it would stop so again and again (an
    # orphan's read gets EIO instead). It is hung up, as the kernel hangs up
    # an orphaned group with a stopped member.
    "reads-the-terminal": (
        "while os.tcgetpgrp(0) == os.getpgrp():\n"
        "    time.sleep(0.01)  # until the shell took the terminal back\n"
        "print('got', input(), flush=True)\n",
        128 + signal.SIGHUP, b"", "signal",
    ),
    # It stops itself by SIGTSTP: a stop the job cannot follow, dropped for
    # the command as the kernel drops it for the job: it goes on.
    "stopped-by-sigtstp": (
        "os.kill(os.getpid(), signal.SIGTSTP)\n"
        "print('went on', flush=True)\n",
        0, b"went on", "exit",
    ),
}


@pytest.mark.parametrize("where", ["foreground", "background"])
@pytest.mark.parametrize("case", sorted(ORPHANED_STOPS))
def test_a_stop_in_an_orphaned_job_neither_spins_nor_hangs(
    case: str, where: str, tmp_path: Path, marker: str
) -> None:
    """The CLI follows a command's stop by stopping its own job; in an
    orphaned job the kernel drops that stop at once. Continuing a command
    stopped by the terminal then looped for good (stopped again at once,
    the CLI at 100% of a CPU), and one started in the background stayed
    stopped for good; the stop is now seen dropped, and the command goes
    on, or is hung up."""
    code, exit_code, printed, reason = ORPHANED_STOPS[case]
    stats = tmp_path / "stats.json"
    pid, master = os.forkpty()
    if pid == 0:  # pragma: no cover - the child execs at once
        os.execv(PY, [PY, "-c", ORPHANING_SHELL, where, *MODULE, "run", "--stats-json", str(stats), "--", PY, "-c",
                      "import os, signal, time\n" + code])
    try:
        out = read_until(master, b"shell has the terminal")
        deadline = time.monotonic() + 15
        while not stats.exists() or not stats.read_text().endswith("}\n"):
            assert time.monotonic() < deadline, f"the CLI did not end: {out!r}\n" + _session_snapshot(pid, master)
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                out += os.read(master, 65536)
        os.write(master, b"\n")  # the shell may go
        out += _read_to_the_end(master)
    finally:
        os.close(master)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, out
    got = json.loads(stats.read_text())
    assert (got["exit_code"], got["reason"]) == (exit_code, reason), (got, out)
    assert printed in out, out


def _session_snapshot(leader: int, master: int) -> str:
    """What the processes of ``leader``'s session are doing (a job that
    neither ended nor stopped: which of them is stopped, or asleep where),
    and which group has the terminal: for the message of a failed test."""
    lines = []
    try:
        lines.append(f"terminal's foreground group: {os.tcgetpgrp(master)}")
    except OSError as exc:
        lines.append(f"terminal's foreground group: {exc}")
    for entry in sorted((e for e in os.listdir("/proc") if e.isdigit()), key=int):
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/wchan") as f:
                wchan = f.read() or "-"
            with open(f"/proc/{entry}/status") as f:
                masks = " ".join(line.replace("\t", "") for line in f.read().splitlines() if line.startswith("Sig"))
        except OSError:
            continue  # gone meanwhile
        comm, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
        state, ppid, pgrp, sid = rest[0], rest[1], rest[2], rest[3]
        if sid == str(leader):
            lines.append(f"pid {entry} ppid {ppid} group {pgrp} state {state} wchan {wchan} ({comm}) {masks}")
    return "\n".join(lines)


def _read_to_the_end(master: int, timeout: float = 15.0) -> bytes:
    """Everything a PTY's master reads until the last slave fd is closed (EIO)."""
    buf = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                return buf
            if not data:
                return buf
            buf += data
    raise AssertionError(f"the terminal was still open after {timeout}s; have {buf!r}")

def test_interleaved_stdout_and_stderr_keep_their_order() -> None:
    code = "import os\nfor i in range(200):\n    os.write(1, b'out %d\\n' % i)\n    os.write(2, b'err %d\\n' % i)\n"
    r = cli("--", PY, "-c", code, stderr=subprocess.STDOUT)
    assert r.returncode == 0
    assert r.stdout == b"".join(b"out %d\nerr %d\n" % (i, i) for i in range(200))


@pytest.mark.parametrize("relay", RELAY)
def test_reader_going_away_is_141(relay: list[str]) -> None:
    # `yes | head -2`: handed over, `yes` dies of SIGPIPE itself; relayed,
    # the CLI sees EPIPE and stops the tree. Either way 128 + SIGPIPE, at
    # once, with no traceback; the marker fixture proves no `yes` survives.
    script = '"$@" | head -2; echo "status=${PIPESTATUS[0]}"'
    t0 = time.monotonic()
    r = subprocess.run(
        [BASH, "-c", script, "bash", *MODULE, "run", *relay, "--", "yes"],
        capture_output=True, timeout=30, stdin=subprocess.DEVNULL,
    )
    assert time.monotonic() - t0 < 10.0
    assert r.stdout == b"y\ny\nstatus=141\n", r.stderr
    assert b"Traceback" not in r.stderr


def test_full_stdout_is_the_commands_error() -> None:
    # Handed over, /dev/full is the command's own stdout: it gets ENOSPC.
    code = "import os, sys\ntry:\n    os.write(1, b'hi')\nexcept OSError as exc:\n    sys.exit(exc.errno)\n"
    with open("/dev/full", "wb") as full:
        r = cli("--", PY, "-c", code, stdout=full)
    assert r.returncode == 28  # ENOSPC
    assert r.stderr == b""


def test_full_stdout_while_relaying_is_one_line() -> None:
    with open("/dev/full", "wb") as full:
        r = cli("--max-output", "1M", "--", PY, "-c", "print('hi')", stdout=full)
    assert r.returncode == 125
    assert b"Traceback" not in r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert b"stdout" in r.stderr


# --------------------------------------------------------------- environment, cwd, pty


def test_env_adds_variables() -> None:
    code = "import os; print(os.environ['FOO'], os.environ['BAZ'], os.environ['HOME'], sep='|')"
    r = cli("--env", "FOO=bar", "--env", "BAZ=a=b", "--env", "HOME=/elsewhere", "--", PY, "-c", code)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"bar|a=b|/elsewhere\n"


def test_env_keeps_the_inherited_environment(marker: str) -> None:
    code = f"import os; print(os.environ[{MARKER_VAR!r}])"
    r = cli("--env", "FOO=bar", "--", PY, "-c", code)
    assert r.stdout == f"{marker}\n".encode()


def test_clear_env_starts_empty(marker: str) -> None:
    env_prog = shutil.which("env")
    assert env_prog
    r = cli("--clear-env", "--env", f"{MARKER_VAR}={marker}", "--env", "FOO=bar", "--", env_prog)
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.decode().splitlines()) == sorted([f"{MARKER_VAR}={marker}", "FOO=bar"])


def test_cwd(tmp_path: Path) -> None:
    r = cli("--cwd", str(tmp_path), "--", PY, "-c", "import os; print(os.getcwd())")
    assert r.returncode == 0, r.stderr
    assert os.path.realpath(r.stdout.decode().strip()) == os.path.realpath(tmp_path)


def test_missing_cwd_is_125(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    r = cli("--cwd", str(missing), "--", "true")
    assert r.returncode == 125
    assert str(missing).encode() in r.stderr


# --------------------------------------------------------------- stats


def test_stats_table_on_stderr() -> None:
    r = cli("--stats", "--", "sh", "-c", "echo hi; exit 3")
    assert r.returncode == 3
    assert r.stdout == b"hi\n"
    table = r.stderr.decode()
    for name in STATS_FIELDS:
        assert name in table, f"--stats table lacks {name}"


def test_stats_json(tmp_path: Path) -> None:
    path = tmp_path / "stats.json"
    r = cli("--stats-json", str(path), "--", "sh", "-c", "echo hi; exit 3")
    assert r.returncode == 3
    assert r.stdout == b"hi\n"
    data = json.loads(path.read_text())
    assert isinstance(data, dict)
    missing = [name for name in (*STATS_FIELDS, "args") if name not in data]
    assert not missing, f"--stats-json lacks {missing}"
    assert data["args"] == ["sh", "-c", "echo hi; exit 3"]
    assert data["returncode"] == 3
    assert data["exit_status"] == 3
    assert data["exit_code"] == 3
    assert data["reason"] == "exit"


def test_stats_json_after_signal_death(tmp_path: Path) -> None:
    path = tmp_path / "stats.json"
    r = cli("--stats-json", str(path), "--", "sh", "-c", "kill -TERM $$")
    assert r.returncode == 128 + signal.SIGTERM
    data = json.loads(path.read_text())
    assert data["returncode"] == -signal.SIGTERM
    assert data["exit_status"] == 128 + signal.SIGTERM


@pytest.mark.parametrize(
    ("options", "cmd", "code", "reason"),
    [
        pytest.param([], ["sh", "-c", "exit 3"], 3, "exit", id="exit"),
        pytest.param([], ["sh", "-c", "kill -TERM $$"], 128 + signal.SIGTERM, "signal", id="signal"),
        pytest.param(["--timeout", "0.3"], ["sleep", "100"], 124, "timeout", id="timeout"),
        pytest.param(["--max-output", "10"], [PY, "-c", "print('x' * 100)"], 125, "output-limit", id="output-limit"),
        pytest.param([], ["no-such-program-netrunner-xyz"], 127, "exec-failed", id="exec-failed"),
    ],
)
def test_stats_json_exit_code_and_reason(
    tmp_path: Path, options: list[str], cmd: list[str], code: int, reason: str
) -> None:
    path = tmp_path / "stats.json"
    r = cli(*options, "--stats-json", str(path), "--", *cmd)
    assert r.returncode == code, r.stderr
    data = json.loads(path.read_text())
    assert data["exit_code"] == code
    assert data["reason"] == reason
    assert data["args"] == cmd
    missing = [name for name in STATS_FIELDS if name not in data]
    assert not missing, f"--stats-json lacks {missing}"
    # CPU times are floats in every case (0.0 when nothing ran), never ints
    assert isinstance(data["cpu_user"], float)
    assert isinstance(data["cpu_system"], float)


def test_stats_json_byte_counts_are_null_unless_relayed(tmp_path: Path) -> None:
    path = tmp_path / "stats.json"
    cmd = ["sh", "-c", "echo hi; echo err >&2"]
    r = cli("--stats-json", str(path), "--", *cmd)
    assert r.returncode == 0
    data = json.loads(path.read_text())
    assert data["bytes_in"] is None
    assert data["bytes_out"] is None
    assert data["bytes_err"] is None
    r = cli("--max-output", "1M", "--stats-json", str(path), "--", *cmd)
    assert r.returncode == 0
    assert r.stdout == b"hi\n"
    assert r.stderr == b"err\n"
    data = json.loads(path.read_text())
    assert data["bytes_in"] is None  # stdin is handed over even when output is relayed
    assert data["bytes_out"] == 3
    assert data["bytes_err"] == 4


@pytest.mark.parametrize("relay", RELAY)
def test_stats_json_dash_is_stdout_after_the_output(tmp_path: Path, relay: list[str]) -> None:
    r = cli(*relay, "--stats-json", "-", "--", "sh", "-c", "echo hi; exit 3", cwd=tmp_path)
    assert r.returncode == 3, r.stderr
    assert r.stdout.startswith(b"hi\n")
    data = json.loads(r.stdout[3:])
    assert data["exit_code"] == 3
    assert not (tmp_path / "-").exists()
    assert list(tmp_path.iterdir()) == []


def test_stats_json_dev_stdout_does_not_truncate_a_redirected_log(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_bytes(b"before\n")
    with open(log, "ab") as out:  # the shell's `>> log`
        r = cli("--stats-json", "/dev/stdout", "--", "sh", "-c", "echo hi", stdout=out)
    assert r.returncode == 0, r.stderr
    text = log.read_bytes()
    assert text.startswith(b"before\nhi\n")
    assert json.loads(text[len(b"before\nhi\n"):])["reason"] == "exit"
    with open(log, "wb") as out:  # the shell's `> log`
        r = cli("--stats-json", "/dev/stdout", "--", "sh", "-c", "echo hi", stdout=out)
    text = log.read_bytes()
    assert text.startswith(b"hi\n")
    assert json.loads(text[3:])["args"] == ["sh", "-c", "echo hi"]


@pytest.mark.parametrize("where", ["/proc/version", "missing/dir/stats.json", "/dev/full", "-"])
def test_stats_json_unwritable_is_one_line_and_keeps_the_status(tmp_path: Path, where: str) -> None:
    path = where if where.startswith("/") or where == "-" else str(tmp_path / where)
    with open("/dev/full" if where == "-" else os.devnull, "wb") as out:  # "-": stdout itself is full
        r = cli("--stats-json", path, "--", "sh", "-c", "exit 3", stdout=out)
    assert r.returncode == 3
    assert b"Traceback" not in r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.startswith(b"netrunner: ")
    if where != "-":
        assert path.encode() in r.stderr


# --------------------------------------------------------------- signals


FORWARD_SH = 'trap "echo got TERM; exit 3" TERM; echo ready; while :; do sleep 0.05; done'
HANDLER_PY = (
    "import os, signal, time\n"
    "def handler(signum, frame):\n"
    "    os.write(1, f'got {signal.Signals(signum).name}\\n'.encode())\n"
    "    os._exit(3)\n"
    "for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):\n"
    "    signal.signal(s, handler)\n"
    "print('ready', flush=True)\n"
    "while True: time.sleep(0.05)\n"
)
DEFAULT_PY = (
    "import signal, time\n"
    "signal.signal(signal.SIGINT, signal.SIG_DFL)\n"  # Python's own KeyboardInterrupt handler off
    "print('ready', flush=True)\n"
    "time.sleep(100)\n"
)


def test_sigterm_is_forwarded_to_a_shell_trap() -> None:
    with popen_cli("--", "sh", "-c", FORWARD_SH) as proc:
        assert proc.stdout is not None
        first = read_until(proc.stdout.fileno(), b"ready\n")
        proc.send_signal(signal.SIGTERM)
        out, _, rc = finish(proc)
    assert b"got TERM\n" in first + out
    assert rc == 3


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_is_forwarded_and_status_is_the_commands(sig: signal.Signals) -> None:
    with popen_cli("--", PY, "-c", HANDLER_PY) as proc:
        assert proc.stdout is not None
        first = read_until(proc.stdout.fileno(), b"ready\n")
        proc.send_signal(sig)
        out, _, rc = finish(proc)
    assert f"got {sig.name}\n".encode() in first + out
    assert rc == 3


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_forwarded_signal_default_action_is_128_plus_n(sig: signal.Signals) -> None:
    with popen_cli("--", PY, "-c", DEFAULT_PY) as proc:
        assert proc.stdout is not None
        read_until(proc.stdout.fileno(), b"ready\n")
        t0 = time.monotonic()
        proc.send_signal(sig)
        _, _, rc = finish(proc)
    assert rc == 128 + sig
    assert time.monotonic() - t0 < 4.0, "the signal was not forwarded (the CLI waited for kill_timeout)"



@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_forwarded_signal_reaches_a_stopped_command(sig: signal.Signals) -> None:
    # As timeout(1) does, SIGCONT follows the forwarded signal: a stopped
    # command would keep it pending, and the CLI would wait for ever.
    stopped = (
        "import os, signal\n"
        "signal.signal(signal.SIGINT, signal.SIG_DFL)\n"
        "print('ready', flush=True)\n"
        "os.kill(os.getpid(), signal.SIGSTOP)\n"
        "print('continued without the signal', flush=True)\n"
    )
    with popen_cli("--", PY, "-c", stopped) as proc:
        assert proc.stdout is not None
        read_until(proc.stdout.fileno(), b"ready\n")
        time.sleep(0.3)  # stopped by now
        t0 = time.monotonic()
        proc.send_signal(sig)
        out, _, rc = finish(proc)
    assert rc == 128 + sig, out
    assert b"continued" not in out
    assert time.monotonic() - t0 < 4.0

def test_sigterm_is_forwarded_while_relaying() -> None:
    with popen_cli("--max-output", "10M", "--", PY, "-c", DEFAULT_PY) as proc:
        assert proc.stdout is not None
        read_until(proc.stdout.fileno(), b"ready\n")
        proc.send_signal(signal.SIGTERM)
        _, err, rc = finish(proc)
    assert rc == 128 + signal.SIGTERM, err


def test_sigkill_of_the_cli_stops_the_tree(marker: str) -> None:
    code = (
        "import os\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    os.execvp('sleep', ['sleep', '100'])\n"
        "print('ready', flush=True)\n"
        "os.execvp('sleep', ['sleep', '100'])\n"
    )

    def sleepers() -> list[int]:
        found = []
        for pid in pids_with_marker(marker):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if f.read().split(b"\0")[0] == b"sleep":
                        found.append(pid)
            except OSError:
                pass
        return found

    with popen_cli("--", PY, "-c", code) as proc:
        assert proc.stdout is not None
        read_until(proc.stdout.fileno(), b"ready\n")
        assert wait_until(lambda: len(sleepers()) == 2, timeout=10), sleepers()
        proc.kill()
        proc.wait(timeout=10)
        assert wait_until(lambda: not sleepers(), timeout=10.0), f"survivors: {sleepers()}"
        assert wait_until(lambda: not pids_with_marker(marker), timeout=10.0), pids_with_marker(marker)


# --------------------------------------------------------------- version


def _expected_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pynetrunner")
    except PackageNotFoundError:
        import netrunner

        return netrunner.__version__


def test_version() -> None:
    r = subprocess.run([*MODULE, "--version"], capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"netrunner {_expected_version()}\n".encode()


def test_version_to_a_full_stdout_is_one_line() -> None:
    with open("/dev/full", "wb") as full:
        r = subprocess.run([*MODULE, "--version"], stdout=full, stderr=subprocess.PIPE, timeout=30)
    assert r.returncode == 125
    assert b"Traceback" not in r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr
