"""SPEC section 16: pipelines, blocking API.

Stages are real programs joined by kernel pipes; each test proves, through
the autouse marker fixture, that no stage survives it."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import PY, pid_alive, pids_with_marker, py, rss_bytes, settled_fd_count, wait_until

import netrunner
from netrunner import Command, pipe

#: A stage that records its pid, then sleeps (ignoring nothing).
SLEEPER = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(1000)"


def read_pid(path: Path) -> int:
    assert wait_until(lambda: path.exists() and path.read_text() != "", timeout=10), f"{path} never written"
    return int(path.read_text())




# ------------------------------------------------------------------ results


def test_output_of_the_last_stage() -> None:
    r = netrunner.run(pipe(["printf", "b\na\n"], ["sort"]))
    assert r.stdout == b"a\nb\n"
    assert r.returncode == 0
    assert r.pipestatus == (0, 0)
    assert r.args == (("printf", "b\na\n"), ("sort",))



def test_bulk_output_and_lines_of_the_last_stage() -> None:
    # The pipeline's own stdout: read in bulk by run, split into lines by stream
    r = netrunner.run(pipe(["seq", "1", "400000"], ["cat"]), timeout=60)
    assert r.stdout == b"".join(b"%d\n" % i for i in range(1, 400001))
    with netrunner.stream(pipe(["seq", "1", "400000"], ["cat"]), text=True, timeout=60) as s:
        assert list(s.lines()) == [f"{i}\n" for i in range(1, 400001)]

def test_pipestatus_and_pipefail_with_a_failing_middle_stage() -> None:
    r = netrunner.run(pipe(["sh", "-c", "echo a; exit 0"], ["sh", "-c", "cat; exit 3"], ["cat"]))
    assert r.pipestatus == (0, 3, 0)
    assert r.returncode == 3
    assert r.exit_status == 3
    assert not r.ok
    assert r.stdout == b"a\n"


def test_returncode_is_the_rightmost_non_zero_stage() -> None:
    r = netrunner.run(pipe(["sh", "-c", "exit 1"], ["sh", "-c", "exit 2"], ["true"]))
    assert r.pipestatus == (1, 2, 0)
    assert r.returncode == 2


def test_check_fails_on_any_stage() -> None:
    with pytest.raises(netrunner.ProcessError) as info:
        netrunner.run(pipe(["sh", "-c", "echo x; exit 4"], ["cat"]), check=True)
    assert info.value.returncode == 4
    assert info.value.stdout == b"x\n"
    assert info.value.cmd == [("sh", "-c", "echo x; exit 4"), ("cat",)]


def test_a_single_command_has_a_pipestatus_of_one() -> None:
    r = netrunner.run(["sh", "-c", "exit 5"])
    assert r.pipestatus == (5,)
    assert r.stage_stats == (r.stats,)
    assert pickle.loads(pickle.dumps(r)) == r


def test_input_feeds_the_first_stage_and_text_decodes_the_last() -> None:
    r = netrunner.run(pipe(["cat"], ["tr", "a-z", "A-Z"], ["cat"]), input="héllo\n", text=True)
    assert r.stdout == "HéLLO\n"


def test_stderr_of_every_stage_is_captured_merged() -> None:
    stages = (["sh", "-c", "echo one >&2"], ["sh", "-c", "cat; echo two >&2"], ["sh", "-c", "echo three >&2"])
    r = netrunner.run(pipe(*stages))
    assert sorted(r.stderr.splitlines()) == [b"one", b"three", b"two"]


def test_stderr_redirect_applies_to_every_stage() -> None:
    # 2>&1 in each stage: the first stage's stderr flows into the second stage
    r = netrunner.run(pipe(["sh", "-c", "echo err >&2"], ["tr", "a-z", "A-Z"]), stderr="redirect")
    assert r.stdout == b"ERR\n"
    assert r.stderr == b""


def test_stdio_targets_at_the_ends(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with open(out, "wb") as f:
        r = netrunner.run(pipe(["printf", "x"], ["cat"]), stdout=f)
    assert r.stdout == b""
    assert out.read_bytes() == b"x"
    r = netrunner.run(pipe(["cat"], ["wc", "-c"]), stdin="discard")
    assert r.stdout.strip() == b"0"
    src = tmp_path / "in"
    src.write_bytes(b"abc")
    with open(src, "rb") as f:
        r = netrunner.run(pipe(["cat"], ["wc", "-c"]), stdin=f)
    assert r.stdout.strip() == b"3"


def test_no_byte_passes_through_python_between_stages() -> None:
    r = netrunner.run(pipe(["head", "-c", "10000000", "/dev/zero"], ["gzip", "-1"], ["wc", "-c"]))
    size = int(r.stdout)
    assert 0 < size < 100_000
    assert r.stats.bytes_out == len(r.stdout)  # Python read the last stage's output, nothing else
    assert [s.bytes_out for s in r.stage_stats] == [None, None, None]


def test_stats_per_stage_and_total() -> None:
    # burns until 0.05 s of *user* time (the CPU clock's reads count as system time)
    burn = py("import os\nt = os.times().user\nwhile os.times().user - t < 0.05:\n    sum(range(20000))")
    r = netrunner.run(pipe(burn, burn, ["cat"]))
    assert len(r.stage_stats) == 3
    assert all(s.cpu_user is not None for s in r.stage_stats)
    total = sum(s.cpu_user or 0 for s in r.stage_stats)
    assert r.stats.cpu_user == pytest.approx(total)
    assert r.stats.cpu_user >= 0.09
    assert r.stats.max_rss == max(s.max_rss or 0 for s in r.stage_stats)
    assert r.stats.duration >= max(s.duration for s in r.stage_stats) - 0.01


def test_per_stage_options_from_commands(tmp_path: Path) -> None:
    first = Command("sh", ["-c", 'printf "%s" "$WHO"'], env={**os.environ, "WHO": "first"})
    second = Command("sh", ["-c", 'cat; pwd'], cwd=tmp_path)
    r = netrunner.run(first | second, env={**os.environ, "WHO": "ignored"})
    assert r.stdout == f"first{tmp_path}\n".encode()


def test_pipeline_wide_env_and_cwd_reach_every_stage(tmp_path: Path) -> None:
    r = netrunner.run(
        pipe(["sh", "-c", 'echo "$A"; pwd'], ["sh", "-c", 'cat; echo "$A"']),
        env={**os.environ, "A": "yes"}, cwd=tmp_path,
    )
    assert r.stdout == f"yes\n{tmp_path}\nyes\n".encode()


# ------------------------------------------------------------- early exits


def test_head_at_the_end_gives_sigpipe_upstream() -> None:
    r = netrunner.run(pipe(["yes"], ["head", "-1"]))
    assert r.stdout == b"y\n"
    assert r.pipestatus == (-signal.SIGPIPE, 0)
    assert r.signal == signal.SIGPIPE  # pipefail, as bash's


def test_upstream_stage_still_running_is_waited_for() -> None:
    # bash waits for every stage: so does run()
    r = netrunner.run(pipe(["sh", "-c", "sleep 0.3; echo late >&2; exit 6"], ["true"]))
    assert r.pipestatus == (6, 0)
    assert r.stderr == b"late\n"


def test_leftovers_of_a_stage_are_stopped(marker: str) -> None:
    r = netrunner.run(pipe(["sh", "-c", "sleep 1000 & echo started"], ["cat"]))
    assert r.stdout == b"started\n"
    assert wait_until(lambda: not pids_with_marker(marker), timeout=10)


# ------------------------------------------------------ stopping all stages


def test_timeout_stops_every_stage(tmp_path: Path, marker: str) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    with pytest.raises(netrunner.Timeout) as info:
        netrunner.run(pipe(py(SLEEPER, str(a)), py(SLEEPER, str(b)), ["cat"]), timeout=1)
    pids = read_pid(a), read_pid(b)
    assert not any(pid_alive(p) for p in pids)
    assert info.value.cmd == [(PY, "-c", SLEEPER, str(a)), (PY, "-c", SLEEPER, str(b)), ("cat",)]
    assert not pids_with_marker(marker)


def test_output_limit_stops_every_stage(marker: str) -> None:
    with pytest.raises(netrunner.OutputLimitExceeded) as info:
        netrunner.run(pipe(["yes"], ["cat"], ["cat"]), max_output_size=1000)
    assert info.value.stdout == b"y\n" * 500
    assert wait_until(lambda: not pids_with_marker(marker), timeout=10)


def test_exec_failure_of_a_later_stage_raises_and_stops_the_first(tmp_path: Path, marker: str) -> None:
    a = tmp_path / "a"
    with pytest.raises(FileNotFoundError) as info:
        netrunner.run(pipe(py(SLEEPER, str(a)), ["netrunner-no-such-program"]))
    assert info.value.filename == "netrunner-no-such-program"
    assert not pids_with_marker(marker)


def test_exec_failure_raises_from_start_and_stream(marker: str) -> None:
    with pytest.raises(FileNotFoundError):
        netrunner.start(pipe(["sleep", "1000"], ["netrunner-no-such-program"]))
    with pytest.raises(PermissionError):
        netrunner.stream(pipe(["/"], ["sleep", "1000"]))
    assert wait_until(lambda: not pids_with_marker(marker), timeout=10)


def test_stop_and_signals_reach_every_stage(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    with netrunner.start(pipe(py(SLEEPER, str(a)), py(SLEEPER, str(b)))) as p:
        pids = read_pid(a), read_pid(b)
        assert p.pid == pids[1]  # the last stage's, as a shell's $!
        assert p.poll() is None
        assert p.pipestatus is None
        p.send_signal("USR1")
        assert p.wait(timeout=10) == -signal.SIGUSR1
        assert p.pipestatus == (-signal.SIGUSR1, -signal.SIGUSR1)
    with netrunner.start(pipe(py(SLEEPER, str(a)), ["cat"]), kill_timeout=1) as p:
        rc = p.stop()
        # every stage is stopped; cat may see its EOF first and end on its own
        assert p.pipestatus in ((-signal.SIGTERM, -signal.SIGTERM), (-signal.SIGTERM, 0))
        assert rc == p.returncode == -signal.SIGTERM


def test_context_exit_stops_every_stage(tmp_path: Path, marker: str) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    with netrunner.start(pipe(py(SLEEPER, str(a)), py(SLEEPER, str(b)))):
        read_pid(a), read_pid(b)
    assert not pids_with_marker(marker)


def test_dropping_a_pipeline_process_stops_every_stage(tmp_path: Path, marker: str) -> None:
    a = tmp_path / "a"
    p = netrunner.start(pipe(py(SLEEPER, str(a)), ["cat"]))
    read_pid(a)
    with pytest.warns(ResourceWarning):
        del p
    assert wait_until(lambda: not pids_with_marker(marker), timeout=15)


def test_owner_sigkill_leaves_no_stage_alive(marker: str) -> None:
    code = textwrap.dedent("""
        import sys, netrunner
        p = netrunner.start(netrunner.pipe(["sleep", "1000"], ["sh", "-c", "sleep 1000 & cat"], ["cat"]))
        print(p.pid, flush=True)
        sys.stdin.read()
    """)
    with subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE) as owner:
        try:
            assert owner.stdout is not None
            assert owner.stdout.readline().strip().isdigit()
            # the owner, its shepherds' commands: sleep, sh, its sleep, cat, cat
            assert wait_until(lambda: len(pids_with_marker(marker)) >= 6, timeout=10)
            owner.kill()
            owner.wait()
            assert wait_until(lambda: not pids_with_marker(marker), timeout=15), pids_with_marker(marker)
        finally:
            owner.kill()


# ----------------------------------------------------------- start / stream


def test_start_a_pipeline_dialogue() -> None:
    with netrunner.start(pipe(["cat"], ["sed", "-u", "s/a/A/"])) as p:
        p.write(b"banana\n")
        assert p.readline(timeout=10) == b"bAnana\n"
        p.write(b"x")
        p.close_stdin()
        assert p.read_until(b"x", timeout=10) == b"x"
        assert p.wait(timeout=10) == 0
        assert p.communicate() == (b"", b"")


def test_communicate_with_a_pipeline() -> None:
    with netrunner.start(pipe(["sort"], ["uniq", "-c"], ["sh", "-c", "cat; echo done >&2"])) as p:
        out, err = p.communicate(b"b\na\nb\n", timeout=10)
    assert out.split() == [b"1", b"a", b"2", b"b"]
    assert err == b"done\n"


def test_stream_a_pipeline_with_flat_memory() -> None:
    before = rss_bytes()
    total = 0
    peak = before
    with netrunner.stream(pipe(["head", "-c", str(1 << 30), "/dev/zero"], ["cat"], ["cat"])) as s:
        for i, chunk in enumerate(s):
            total += len(chunk)
            if i % 512 == 0:
                peak = max(peak, rss_bytes())
    assert total == 1 << 30
    assert s.result is not None
    assert s.result.pipestatus == (0, 0, 0)
    assert peak - before < 32 << 20, f"RSS grew by {(peak - before) >> 20} MiB"


def test_stream_checks_every_stage() -> None:
    with pytest.raises(netrunner.AbnormalExit) as info:
        with netrunner.stream(pipe(["sh", "-c", "echo a; exit 7"], ["cat"])) as s:
            assert b"".join(s) == b"a\n"
    assert info.value.returncode == 7


def test_no_fd_is_left_behind() -> None:
    netrunner.run(pipe(["true"], ["true"]))
    before = settled_fd_count()
    for _ in range(50):
        netrunner.run(pipe(["echo", "x"], ["cat"], ["cat"]))
        with pytest.raises(FileNotFoundError):
            netrunner.run(pipe(["true"], ["netrunner-no-such-program"]))
    assert settled_fd_count() == before


# --------------------------------------------------------- building pipelines


def test_operator_and_equality() -> None:
    ls, sort = Command("ls"), Command("sort", ["-r"])
    p = ls | sort
    assert isinstance(p, netrunner.Pipeline)
    assert p == pipe(ls, sort)
    assert hash(p) == hash(pipe(ls, sort))
    assert (p | ["cat"]).stages == (ls, sort, ("cat",))
    assert (["echo", "x"] | sort).stages == (("echo", "x"), sort)
    assert ((ls | sort) | (ls | sort)).stages == (ls, sort, ls, sort)
    assert repr(p) == "pipe(Command(['ls']), Command(['sort', '-r']))"
    with pytest.raises(AttributeError):
        p.x = 1  # type: ignore[attr-defined]
    assert netrunner.run(Command("printf", ["b\na\n"]) | sort).stdout == b"b\na\n"


def test_call_options_override_pipe_options() -> None:
    p = pipe(["printf", "x"], ["cat"], text=True)
    assert netrunner.run(p).stdout == "x"
    assert netrunner.run(p, text=False).stdout == b"x"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: pipe(["ls"]), "at least two"),
        (lambda: pipe("ls -l", ["cat"]), "list of arguments"),
        (lambda: pipe(["ls"], [""]), "empty"),
        (lambda: pipe(["ls"], ["cat"], pty=True), "pty"),
        (lambda: pipe(Command("ls", text=True), ["cat"]), "applies to the whole pipeline"),
        (lambda: Command("ls", stdout="discard") | ["cat"], "applies to the whole pipeline"),
        (lambda: pipe(["ls"], ["cat"], shell=True), "sh', '-c'"),
        (lambda: pipe(["ls"], ["cat"], timeout=-1), "timeout"),
    ],
)
def test_bad_pipelines_raise_at_build_time(build, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises((TypeError, ValueError), match=message):
        build()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p: netrunner.run(p, cgroup="jobs/x"), "give each stage one"),
        (lambda p: netrunner.start(p, input=b"x"), "input"),
        (lambda p: netrunner.Daemon(p), "not a pipeline"),
        (lambda p: netrunner.run(p, stdin="discard", input=b"x"), "either 'stdin' or 'input'"),
    ],
)
def test_bad_calls_raise_before_anything_runs(call, message: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = tmp_path / "a"
    with pytest.raises((TypeError, ValueError), match=message):
        call(pipe(py(SLEEPER, str(a)), ["cat"]))
    time.sleep(0.2)
    assert not a.exists()
