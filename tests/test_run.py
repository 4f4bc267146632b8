"""SPEC section 3: ``netrunner.run`` — Result, signal deaths, check, no hang on
leftover descendants, timeout, max_output_size (sync API)."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import signal
import subprocess
import time

import pytest
from helpers import PY, gone, pids_with_marker, py, settled_strays, stray_children, wait_until

import netrunner


def test_result_fields() -> None:
    cmd = py("import sys; sys.stdout.write('out'); sys.stderr.write('err'); sys.exit(3)")
    result = netrunner.run(cmd)
    assert isinstance(result, netrunner.Result)
    assert result.args == tuple(cmd)
    assert isinstance(result.args, tuple)
    assert result.stdout == b"out"
    assert result.stderr == b"err"
    assert result.returncode == 3
    assert result.exit_status == 3
    assert result.signal is None
    assert result.ok is False
    assert isinstance(result.stats, netrunner.Stats)
    assert result.stats.returncode == 3
    assert result.stats.exit_status == 3


def test_args_as_given() -> None:
    cmd = [pathlib.Path("/bin/sh"), b"-c", "exit 0"]
    assert netrunner.run(cmd).args == tuple(cmd)
    cmd2 = ("true",)
    assert netrunner.run(cmd2).args == cmd2


def test_success() -> None:
    result = netrunner.run(["echo", "hello"])
    assert result.stdout == b"hello\n"
    assert result.stderr == b""
    assert result.returncode == 0
    assert result.exit_status == 0
    assert result.ok is True
    assert result.check() is result
    assert result.check_returncode() is result


@pytest.mark.parametrize("mode", ["redirect", "discard", "inherit"])
def test_stderr_empty_unless_captured(mode: str) -> None:
    result = netrunner.run(["sh", "-c", "echo e >&2"], stderr=mode)
    assert result.stderr == b""


@pytest.mark.parametrize("code", [1, 2, 42, 126, 127, 255])
def test_exit_codes(code: int) -> None:
    result = netrunner.run(["sh", "-c", f"exit {code}"])
    assert result.returncode == code
    assert result.exit_status == code
    assert result.signal is None
    assert not result.ok


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGSEGV, signal.SIGUSR1, signal.SIGPIPE])
def test_signal_death(sig: signal.Signals) -> None:
    result = netrunner.run(["sh", "-c", f"kill -{int(sig)} $$"])
    assert result.returncode == -int(sig)
    assert result.exit_status == 128 + int(sig)
    assert result.signal == sig
    assert isinstance(result.signal, signal.Signals)
    assert result.ok is False
    assert result.stats.returncode == -int(sig)
    assert result.stats.exit_status == 128 + int(sig)


def test_check_raises_process_error() -> None:
    result = netrunner.run(["sh", "-c", "echo o; echo e >&2; exit 5"])
    with pytest.raises(netrunner.ProcessError) as ei:
        result.check()
    err = ei.value
    assert isinstance(err, subprocess.CalledProcessError)
    assert err.returncode == 5
    assert err.exit_status == 5
    assert err.signal is None
    assert list(err.cmd) == ["sh", "-c", "echo o; echo e >&2; exit 5"]
    assert err.stdout == err.output == b"o\n"
    assert err.stderr == b"e\n"
    with pytest.raises(netrunner.ProcessError):
        result.check_returncode()


def test_check_on_signal_death() -> None:
    with pytest.raises(netrunner.ProcessError) as ei:
        netrunner.run(["sh", "-c", "kill -9 $$"], check=True)
    assert ei.value.returncode == -9
    assert ei.value.exit_status == 137
    assert ei.value.signal == signal.SIGKILL


def test_duck_types_completed_process() -> None:
    result = netrunner.run(["sh", "-c", "echo x; exit 1"])
    completed = subprocess.CompletedProcess(["x"], 0)
    for attr in ("args", "returncode", "stdout", "stderr", "check_returncode"):
        assert hasattr(completed, attr)
        assert hasattr(result, attr)
    with pytest.raises(subprocess.CalledProcessError):
        result.check_returncode()


def test_result_is_frozen() -> None:
    result = netrunner.run(["true"])
    for name, value in [("returncode", 1), ("stdout", b"x"), ("stderr", b"x"), ("args", ()), ("stats", None)]:
        with pytest.raises((AttributeError, dataclasses.FrozenInstanceError)):
            setattr(result, name, value)
    assert result.returncode == 0


def test_text_result() -> None:
    result = netrunner.run(["sh", "-c", "printf 'ö'; printf 'ä' >&2"], text=True)
    assert result.stdout == "ö"
    assert result.stderr == "ä"


def test_large_output() -> None:
    result = netrunner.run(["head", "-c", "20000000", "/dev/zero"], timeout=60)
    assert len(result.stdout) == 20_000_000
    assert result.stats.bytes_out == 20_000_000



def test_bulk_output_arrives_whole_and_in_order() -> None:
    # Enough to fill the pipe many times over (netrunner then reads it in larger
    # pieces): every byte, in order, on both streams at once
    code = (
        "import os, threading\n"
        "block = bytes(range(256)) * 4096\n"
        "t = threading.Thread(target=lambda: [os.write(2, block[::-1]) for _ in range(8)])\n"
        "t.start()\n"
        "for i in range(24): os.write(1, bytes([i]) + block)\n"
        "t.join()\n"
    )
    block = bytes(range(256)) * 4096
    result = netrunner.run(py(code), timeout=60)
    assert result.stdout == b"".join(bytes([i]) + block for i in range(24))
    assert result.stderr == block[::-1] * 8
    assert result.stats.bytes_out == len(result.stdout)


def test_bulk_text_output_decoded_whole() -> None:
    text = "é€😀 ✓ line\n" * 200_000
    result = netrunner.run(["cat"], input=text.encode(), text=True, timeout=60)
    assert result.stdout == text


def test_max_output_size_exact_in_bulk_output() -> None:
    # The limit falls inside a large read, far from where the reads start
    code = "import os\nblock = bytes(range(256)) * 4096\nwhile True: os.write(1, block)\n"
    for limit in (999_999, 1_048_576):
        with pytest.raises(netrunner.OutputLimitExceeded) as ei:
            netrunner.run(py(code), max_output_size=limit, timeout=60)
        assert ei.value.stdout == (bytes(range(256)) * (limit // 256 + 1))[:limit]
    with pytest.raises(netrunner.OutputLimitExceeded) as ei:
        netrunner.run(py(code), max_output_size=300_001, text=True, timeout=60)
    assert ei.value.stdout == (bytes(range(256)) * 1200)[:300_001]  # bytes: it may end inside a character

def test_input_and_output_without_deadlock() -> None:
    data = os.urandom(4_000_000)
    result = netrunner.run(["cat"], input=data, timeout=60)
    assert result.stdout == data


# --- background descendants holding the pipes -------------------------------------


def test_background_job_does_not_hang(marker: str) -> None:
    start = time.monotonic()
    result = netrunner.run(["sh", "-c", "sleep 100 & echo hi"])
    elapsed = time.monotonic() - start
    assert result.stdout == b"hi\n"
    assert result.returncode == 0
    assert elapsed < 3, elapsed
    assert wait_until(lambda: not pids_with_marker(marker), timeout=5), pids_with_marker(marker)


def test_background_job_is_stopped() -> None:
    start = time.monotonic()
    result = netrunner.run(["sh", "-c", "sleep 100 & echo $!"])
    assert time.monotonic() - start < 3
    assert gone(int(result.stdout), timeout=5)


def test_background_job_holding_stderr_does_not_hang() -> None:
    start = time.monotonic()
    result = netrunner.run(["sh", "-c", "sleep 100 >/dev/null & echo hi >&2"])
    assert time.monotonic() - start < 3
    assert result.stderr == b"hi\n"


def test_setsid_escapee_does_not_hang() -> None:
    start = time.monotonic()
    # the inner sh leaves its session's sleep behind, holding stdout open
    result = netrunner.run(["sh", "-c", "setsid sh -c 'sleep 100 & echo $!'"])
    assert time.monotonic() - start < 3
    assert gone(int(result.stdout), timeout=5)


# --- timeout ----------------------------------------------------------------------


def test_timeout(marker: str) -> None:
    cmd = ["sh", "-c", "echo partial; echo perr >&2; sleep 100 & wait"]
    start = time.monotonic()
    with pytest.raises(netrunner.Timeout) as ei:
        netrunner.run(cmd, timeout=0.5, kill_timeout=1)
    elapsed = time.monotonic() - start
    assert 0.45 <= elapsed < 0.5 + 1 + 1.5, elapsed
    err = ei.value
    assert isinstance(err, subprocess.TimeoutExpired)
    assert isinstance(err, TimeoutError)
    assert isinstance(err, netrunner.NetRunnerError)
    assert err.timeout == 0.5
    assert list(err.cmd) == cmd
    assert err.stdout == err.output == b"partial\n"
    assert err.stderr == b"perr\n"
    assert isinstance(err.stats, netrunner.Stats)
    assert err.stats.bytes_out == len(b"partial\n")
    assert wait_until(lambda: not pids_with_marker(marker), timeout=5), pids_with_marker(marker)


def test_timeout_text_partial_output_stays_bytes() -> None:
    # SPEC 2: partial output may end inside a character, so it is never decoded
    with pytest.raises(netrunner.Timeout) as ei:
        netrunner.run(["sh", "-c", "echo é; exec sleep 100"], timeout=0.5, text=True)
    assert ei.value.stdout == "é\n".encode()



def test_timeout_bulk_text_partial_output_is_every_byte() -> None:
    # Megabytes of two-byte characters, then a hang: the partial output is all
    # of it, as bytes, whatever the read boundaries split
    with pytest.raises(netrunner.Timeout) as ei:
        netrunner.run(["sh", "-c", "yes é | head -c 3000001; exec sleep 100"], timeout=2, text=True)
    expected = ("é\n".encode() * 1_000_001)[:3_000_001]  # ends with half a character
    assert ei.value.stdout == expected
    assert ei.value.stats.bytes_out == len(expected)

def test_timeout_not_hit() -> None:
    result = netrunner.run(["sh", "-c", "echo quick"], timeout=10)
    assert result.stdout == b"quick\n"


def test_timeout_term_trapping_child_is_killed_after_kill_timeout(marker: str) -> None:
    # `trap '' TERM` is inherited by the exec'd sleep: the whole group ignores SIGTERM
    start = time.monotonic()
    with pytest.raises(netrunner.Timeout):
        netrunner.run(["sh", "-c", "trap '' TERM; sleep 100 & wait"], timeout=0.5, kill_timeout=1)
    elapsed = time.monotonic() - start
    assert 0.5 + 1 - 0.1 <= elapsed < 0.5 + 1 + 2, elapsed
    assert wait_until(lambda: not pids_with_marker(marker), timeout=5), pids_with_marker(marker)


def test_timeout_python_child_trapping_term() -> None:
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: print('got TERM', flush=True))\n"
        "print('ready', flush=True)\n"
        "while True: time.sleep(1)\n"
    )
    start = time.monotonic()
    with pytest.raises(netrunner.Timeout) as ei:
        netrunner.run(py(code), timeout=1, kill_timeout=0.5)
    elapsed = time.monotonic() - start
    assert elapsed >= 1.4, elapsed
    assert elapsed < 1 + 0.5 + 2, elapsed
    assert ei.value.stdout.startswith(b"ready\n")


# --- max_output_size --------------------------------------------------------------

PATTERN = bytes(range(256)) * 1000


@pytest.mark.parametrize("stream_name", ["stdout", "stderr"])
def test_max_output_size(stream_name: str, marker: str, tmp_path: pathlib.Path) -> None:
    pidfile = tmp_path / "grandchild"
    fd = 1 if stream_name == "stdout" else 2
    code = (
        "import os, subprocess, sys, time\n"
        "g = subprocess.Popen(['sleep', '100'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(g.pid))\n"
        f"data = bytes(range(256)) * 1000\n"
        f"os.write({3 - fd}, b'other')\n"
        f"for i in range(0, len(data), 1000): os.write({fd}, data[i:i + 1000])\n"
        "time.sleep(100)\n"
    )
    start = time.monotonic()
    with pytest.raises(netrunner.OutputLimitExceeded) as ei:
        netrunner.run(py(code), max_output_size=5000, timeout=60)
    assert time.monotonic() - start < 10
    err = ei.value
    assert err.limit == 5000
    assert err.stream == stream_name
    assert getattr(err, stream_name) == PATTERN[:5000]
    other = err.stderr if stream_name == "stdout" else err.stdout
    assert other in (b"", b"other")
    assert isinstance(err.stats, netrunner.Stats)
    assert isinstance(err, netrunner.NetRunnerError)
    assert gone(int(pidfile.read_text()))
    assert wait_until(lambda: not pids_with_marker(marker), timeout=10)


def test_max_output_size_single_big_write() -> None:
    code = "import os, time; os.write(1, bytes(range(256)) * 400); time.sleep(100)"
    with pytest.raises(netrunner.OutputLimitExceeded) as ei:
        netrunner.run(py(code), max_output_size=1, timeout=60)
    assert ei.value.stdout == b"\x00"
    assert ei.value.limit == 1


def test_max_output_size_exactly_reached_is_fine() -> None:
    result = netrunner.run(["head", "-c", "1000", "/dev/zero"], max_output_size=1000)
    assert result.stdout == b"\0" * 1000
    result = netrunner.run(["sh", "-c", "head -c 1000 /dev/zero >&2"], max_output_size=1000)
    assert result.stderr == b"\0" * 1000


def test_max_output_size_is_per_stream() -> None:
    result = netrunner.run(
        ["sh", "-c", "head -c 800 /dev/zero; head -c 800 /dev/zero >&2"], max_output_size=1000
    )
    assert len(result.stdout) == 800
    assert len(result.stderr) == 800


def test_stderr_is_kept_whole_and_only_what_a_limit_turned_away_is_dropped() -> None:
    result = netrunner.run(["sh", "-c", "head -c 2000000 /dev/zero >&2"])
    assert len(result.stderr) == 2_000_000
    assert result.stats.bytes_err_dropped == 0
    with pytest.raises(netrunner.OutputLimitExceeded) as ei:
        netrunner.run(["sh", "-c", "head -c 5000 /dev/zero >&2; exec sleep 100"], max_output_size=1000)
    assert len(ei.value.stderr) == 1000
    assert ei.value.stats is not None
    assert ei.value.stats.bytes_err_dropped == ei.value.stats.bytes_err - 1000 > 0


def test_max_output_size_text_mode() -> None:
    with pytest.raises(netrunner.OutputLimitExceeded) as ei:
        netrunner.run(["sh", "-c", "head -c 100000 /dev/zero; exec sleep 100"], max_output_size=10, text=True)
    assert ei.value.stdout in ("\0" * 10, b"\0" * 10)


# --- process bookkeeping ----------------------------------------------------------


def test_run_leaves_no_children_behind() -> None:
    netrunner.run(["true"])
    before = stray_children(set())
    for _ in range(20):
        netrunner.run(["true"])
    # run() may leave its exiting shepherd to be reaped by the next spawn, but
    # nothing accumulates and nothing is left once that has happened
    assert settled_strays(before) == set()


def test_run_leaves_no_fds_behind() -> None:
    netrunner.run(["true"])
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(50):
        netrunner.run(["sh", "-c", "echo x; echo y >&2"], input=b"z")
    assert len(os.listdir("/proc/self/fd")) == before


def test_stdin_without_input_is_at_its_end_from_the_start() -> None:
    """Without ``input``, run's (and a stream's, and a pipeline's first
    stage's) stdin reads its end at once: it is /dev/null, not a pipe made and
    closed; ``bytes_in`` is still counted (0: netrunner wrote nothing)."""
    describe = ["sh", "-c", "readlink /proc/self/fd/0; cat; echo read-to-the-end"]
    r = netrunner.run(describe, timeout=30)
    assert r.stdout == b"/dev/null\nread-to-the-end\n"
    assert r.stats.bytes_in == 0
    with netrunner.stream(describe, timeout=30) as s:
        assert b"".join(s) == b"/dev/null\nread-to-the-end\n"
    r = netrunner.run(netrunner.pipe(describe, ["cat"]), timeout=30)
    assert r.stdout == b"/dev/null\nread-to-the-end\n"
    # with input, a pipe as before
    r = netrunner.run(["sh", "-c", "readlink /proc/self/fd/0; cat"], input=b"in", timeout=30)
    assert r.stdout.startswith(b"pipe:[")
    assert r.stdout.endswith(b"]\nin")


def test_output_written_at_the_last_moment_is_all_there() -> None:
    """run keeps its own copy of the output pipes' write ends until it
    returns, so it never sees their end of file: it reads until the command
    is reported gone, then takes what is left. Every byte written right
    before the exit, on both streams, through a pipeline too, is there."""
    pipeline = netrunner.pipe(["printf", "%s", "last"], ["cat"], stderr="capture")
    for i in range(200):
        r = netrunner.run(["sh", "-c", "printf out; printf err >&2; exec printf !"])
        assert (r.stdout, r.stderr) == (b"out!", b"err"), i
        r = netrunner.run(pipeline)
        assert r.stdout == b"last" and r.pipestatus == (0, 0), i


def test_run_python_child() -> None:
    assert netrunner.run([PY, "-c", "import sys; print(sys.stdin.read().upper())"], input=b"abc").stdout == b"ABC\n"


# --- more edges -------------------------------------------------------------------


def test_timeout_while_input_is_blocked() -> None:
    """A child that never reads and an endless input: the timeout still fires."""

    def endless():  # type: ignore[no-untyped-def]
        while True:
            yield b"x" * 65536

    start = time.monotonic()
    with pytest.raises(netrunner.Timeout):
        netrunner.run(["sleep", "100"], input=endless(), timeout=0.5, kill_timeout=1)
    assert time.monotonic() - start < 0.5 + 1 + 2


def test_timeout_when_child_closed_its_stdout() -> None:
    """EOF on the pipes is not the end of the command: run waits for the exit."""
    start = time.monotonic()
    with pytest.raises(netrunner.Timeout):
        netrunner.run(["sh", "-c", "exec >&- 2>&-; exec sleep 100"], timeout=0.5, kill_timeout=1)
    assert time.monotonic() - start < 0.5 + 1 + 2


def test_max_output_size_with_redirected_stderr() -> None:
    with pytest.raises(netrunner.OutputLimitExceeded) as ei:
        netrunner.run(
            ["sh", "-c", "head -c 5000 /dev/zero >&2; exec sleep 100"], stderr="redirect", max_output_size=100
        )
    assert ei.value.stream == "stdout"
    assert ei.value.stdout == b"\0" * 100


def test_input_generator_exception_propagates_and_stops_the_tree(marker: str) -> None:
    class Boom(Exception):
        pass

    def gen():  # type: ignore[no-untyped-def]
        yield b"first\n"
        raise Boom("from the input generator")

    with pytest.raises(Boom):
        netrunner.run(["sh", "-c", "cat; exec sleep 100"], input=gen(), timeout=30)
    assert wait_until(lambda: not pids_with_marker(marker), timeout=10)


def test_check_true_success_returns_result() -> None:
    result = netrunner.run(["echo", "ok"], check=True)
    assert isinstance(result, netrunner.Result)
    assert result.stdout == b"ok\n"


def test_run_from_many_threads() -> None:
    import threading

    errors: list[BaseException] = []

    def body(n: int) -> None:
        try:
            for i in range(10):
                out = netrunner.run(["sh", "-c", f"echo {n}-{i}; echo e{n} >&2"], input=b"x").stdout
                assert out == f"{n}-{i}\n".encode()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors


def test_many_processes_at_once() -> None:
    netrunner.run(["true"])
    fds_before = len(os.listdir("/proc/self/fd"))
    procs = [netrunner.start(["cat"]) for _ in range(50)]
    try:
        for i, proc in enumerate(procs):
            proc.write(b"%d" % i)
            proc.close_stdin()
        for i, proc in enumerate(procs):
            out, _ = proc.communicate(timeout=30)
            assert out == b"%d" % i
    finally:
        for proc in procs:
            proc.close()
    assert len(os.listdir("/proc/self/fd")) == fds_before
