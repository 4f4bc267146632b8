"""SPEC section 5: ``netrunner.start`` and ``Process`` — every member of the table
(sync API)."""

from __future__ import annotations

import dataclasses
import errno
import gc
import os
import pathlib
import signal
import subprocess
import threading
import time

import pytest
from helpers import LineReader, gone, own_children, pid_alive, py, stray_children, wait_until

import netrunner

# A child that announces readiness, then reads stdin to EOF and exits 0.
READY_THEN_READ = py("import sys; print('ready', flush=True); sys.stdin.buffer.read()")


def ready(proc) -> LineReader:  # type: ignore[no-untyped-def]
    reader = LineReader(proc)
    assert reader.readline() == b"ready\n"
    return reader


def test_start_returns_process() -> None:
    with netrunner.start(["cat"]) as proc:
        assert proc.__class__.__name__ == "Process"
        proc.close_stdin()
        assert proc.wait(timeout=10) == 0


def test_pid_is_the_command_not_the_shepherd() -> None:
    with netrunner.start(py("import os; print(os.getpid(), flush=True); import sys; sys.stdin.read()")) as proc:
        assert int(LineReader(proc).readline()) == proc.pid
        assert pid_alive(proc.pid)
        with open(f"/proc/{proc.pid}/cmdline", "rb") as f:
            assert b"-c" in f.read().split(b"\0")
        proc.close_stdin()
        proc.wait(timeout=10)


def test_alive() -> None:
    with netrunner.start(["cat"]) as proc:
        assert proc.alive is True
        proc.close_stdin()
        proc.wait(timeout=10)
        assert proc.alive is False


def test_alive_becomes_false_without_wait() -> None:
    with netrunner.start(["true"]) as proc:
        assert wait_until(lambda: not proc.alive, timeout=10)
        assert proc.returncode == 0


# --- write ------------------------------------------------------------------------


def test_write_and_read_back() -> None:
    with netrunner.start(["cat"]) as proc:
        proc.write(b"hello ")
        proc.write("wörld")
        proc.close_stdin()
        assert LineReader(proc).read_until_eof() == "hello wörld".encode()
        assert proc.wait(timeout=10) == 0


def test_write_backpressure(tmp_path: pathlib.Path) -> None:
    go = tmp_path / "go"
    code = (
        "import os, sys, time\n"
        "print('ready', flush=True)\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.01)\n"
        "n = len(sys.stdin.buffer.read())\n"
        "print(n, flush=True)\n"
    )
    size = 4 * 1024 * 1024  # far more than any pipe buffer
    done = threading.Event()
    errors: list[BaseException] = []
    with netrunner.start(py(code)) as proc:
        reader = ready(proc)

        def writer() -> None:
            try:
                proc.write(b"x" * size)
            except BaseException as exc:
                errors.append(exc)
            done.set()

        t = threading.Thread(target=writer)
        t.start()
        # the child is not reading: the write must still be blocked after a while
        assert not done.wait(0.5), "write() returned although the child reads nothing"
        assert t.is_alive()
        go.touch()
        assert done.wait(30), "write() did not complete once the child read"
        t.join()
        assert not errors, errors
        proc.close_stdin()
        assert reader.readline() == f"{size}\n".encode()
        assert proc.wait(timeout=10) == 0


def test_write_after_close_stdin_raises_stdin_closed() -> None:
    with netrunner.start(["cat"]) as proc:
        proc.close_stdin()
        with pytest.raises(netrunner.StdinClosed) as ei:
            proc.write(b"late")
        assert isinstance(ei.value, BrokenPipeError)
        assert ei.value.errno == errno.EPIPE  # as `except OSError as e: if e.errno == EPIPE` expects
        assert str(ei.value) == "stdin was closed with close_stdin(); nothing more can be written"
        with pytest.raises(BrokenPipeError):
            proc.write("late again")
        proc.wait(timeout=10)


def test_write_after_child_closed_stdin_raises_broken_pipe() -> None:
    code = "import os, sys; os.close(0); print('closed', flush=True); import time; time.sleep(100)"
    with netrunner.start(py(code)) as proc:
        assert LineReader(proc).readline() == b"closed\n"
        with pytest.raises(BrokenPipeError) as ei:
            proc.write(b"x" * 100)
        assert not isinstance(ei.value, netrunner.StdinClosed)
        assert proc.alive
        proc.stop()


def test_write_after_exit_raises_broken_pipe() -> None:
    with netrunner.start(["true"]) as proc:
        proc.wait(timeout=10)
        with pytest.raises(BrokenPipeError):
            proc.write(b"x" * 100_000)


def test_blocked_write_raises_broken_pipe_when_child_exits() -> None:
    code = "import sys; sys.stdin.buffer.read(1000); print('enough', flush=True)"
    with netrunner.start(py(code)) as proc:
        with pytest.raises(BrokenPipeError):
            proc.write(b"y" * 10_000_000)
        assert proc.wait(timeout=10) == 0


# --- close_stdin ------------------------------------------------------------------


def test_close_stdin_gives_eof_immediately_and_is_idempotent() -> None:
    with netrunner.start(py("import sys; d = sys.stdin.buffer.read(); print(len(d), flush=True)")) as proc:
        proc.write(b"abc")
        start = time.monotonic()
        proc.close_stdin()
        proc.close_stdin()
        assert LineReader(proc).readline() == b"3\n"
        assert time.monotonic() - start < 5
        assert proc.wait(timeout=10) == 0
        proc.close_stdin()  # after exit, still fine


# --- read -------------------------------------------------------------------------


def test_read_max_bytes() -> None:
    with netrunner.start(["sh", "-c", "head -c 10000 /dev/zero; exec cat"]) as proc:
        got = b""
        while len(got) < 10000:
            piece = proc.read(100, timeout=10)
            assert 0 < len(piece) <= 100
            got += piece
        assert got == b"\0" * 10000
        proc.close_stdin()
        assert proc.read(timeout=10) == b""
        proc.wait(timeout=10)


def test_read_timeout() -> None:
    with netrunner.start(["cat"]) as proc:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            proc.read(timeout=0.2)
        elapsed = time.monotonic() - start
        assert 0.15 <= elapsed < 3, elapsed
        assert proc.alive
        proc.write(b"still usable")
        assert proc.read(timeout=10) == b"still usable"
        proc.close_stdin()
        proc.wait(timeout=10)


def test_read_after_exit_returns_the_rest_then_eof() -> None:
    with netrunner.start(["sh", "-c", "printf 'the rest'"]) as proc:
        assert proc.wait(timeout=10) == 0
        got = b""
        while True:
            piece = proc.read(3, timeout=10)
            if not piece:
                break
            got += piece
        assert got == b"the rest"
        assert proc.read(timeout=10) == b""
        assert proc.read() == b""


def test_read_stderr() -> None:
    with netrunner.start(["sh", "-c", "printf err >&2; printf out"]) as proc:
        assert LineReader(proc, stderr=True).read_until_eof() == b"err"
        assert LineReader(proc).read_until_eof() == b"out"
        proc.wait(timeout=10)


def test_read_stderr_timeout() -> None:
    with netrunner.start(["cat"]) as proc:
        with pytest.raises(TimeoutError):
            proc.read_stderr(timeout=0.2)
        proc.close_stdin()
        proc.wait(timeout=10)


def test_read_text_mode() -> None:
    with netrunner.start(["cat"], text=True) as proc:
        proc.write("é")
        proc.close_stdin()
        assert proc.read(timeout=10) == "é"
        assert proc.read(timeout=10) == ""
        proc.wait(timeout=10)


# --- communicate ------------------------------------------------------------------


def test_communicate_with_input() -> None:
    with netrunner.start(["sh", "-c", "cat; echo err >&2"]) as proc:
        out, err = proc.communicate(b"hello")
        assert (out, err) == (b"hello", b"err\n")
        assert proc.returncode == 0
        assert not proc.alive


def test_communicate_twice_returns_the_same_pair() -> None:
    with netrunner.start(["sh", "-c", "cat; echo err >&2"], text=True) as proc:
        first = proc.communicate("hello")
        assert first == ("hello", "err\n")
        assert proc.communicate() == first
        assert proc.communicate(timeout=1) == first


def test_communicate_without_input() -> None:
    with netrunner.start(["sh", "-c", "echo out; cat"]) as proc:
        assert proc.communicate(timeout=10) == (b"out\n", b"")


def test_communicate_large_both_ways_no_deadlock() -> None:
    code = (
        "import sys\n"
        "sys.stderr.buffer.write(b'e' * 2_000_000); sys.stderr.flush()\n"
        "sys.stdout.buffer.write(sys.stdin.buffer.read())\n"
    )
    data = os.urandom(2_000_000)
    with netrunner.start(py(code)) as proc:
        out, err = proc.communicate(data, timeout=60)
    assert out == data
    assert err == b"e" * 2_000_000


def test_communicate_text() -> None:
    with netrunner.start(["cat"], text=True) as proc:
        out, err = proc.communicate("ünï", timeout=10)
    assert out == "ünï"
    assert err == ""


def test_communicate_returns_what_readline_read_ahead() -> None:
    with netrunner.start(["printf", "l1\nl2\nl3\n"]) as proc:
        assert proc.readline(timeout=10) == b"l1\n"  # reads l2 and l3 ahead, too
        assert proc.communicate(timeout=10) == (b"l2\nl3\n", b"")
    with netrunner.start(["printf", "l1\nl2\nl3\n"], text=True) as proc:
        assert proc.read_until("1", timeout=10) == "l1"
        assert proc.communicate(timeout=10) == ("\nl2\nl3\n", "")
        assert proc.communicate(timeout=10) == ("\nl2\nl3\n", "")


def test_communicate_completes_a_character_read_began() -> None:
    # read() takes "a" and the first two bytes of the euro sign; its last byte comes later
    with netrunner.start(["sh", "-c", r"printf 'a\342\202'; sleep .3; printf '\254\n'"], text=True) as proc:
        assert proc.read(timeout=10) == "a"
        assert proc.communicate(timeout=10) == ("€\n", "")
        assert proc.read(timeout=10) == ""


def test_text_stderr_backlog_cut_inside_a_character() -> None:
    # 1.2 MB of euro signs (3 bytes each) on stderr: the 1 MiB backlog drops its
    # oldest bytes, cutting a character; what is kept decodes from a whole one
    code = "import sys; sys.stderr.write('€' * 400_000); sys.stderr.flush(); print('ok')"
    total = 3 * 400_000
    with netrunner.start(py(code), text=True) as proc:
        assert proc.wait(timeout=30) == 0
        first = proc.read_stderr(timeout=10)
        assert set(first) == {"€"}
        out, err = proc.communicate(timeout=30)
        assert out == "ok\n"
        assert set(err) == {"€"}
        kept = 3 * (len(first) + len(err))
        assert kept == 3 * (1024 * 1024 // 3)  # the whole characters of the last MiB
        assert proc.stats.bytes_err_dropped == total - kept  # the cut one's bytes included
    with netrunner.start(py(code), text=True) as proc:
        assert proc.wait(timeout=30) == 0
        out, err = proc.communicate(timeout=30)
        assert (out, len(err)) == ("ok\n", 1024 * 1024 // 3)


def test_communicate_timeout_does_not_stop_the_tree() -> None:
    with netrunner.start(["sh", "-c", "echo partial; exec sleep 100"]) as proc:
        start = time.monotonic()
        with pytest.raises(netrunner.Timeout) as ei:
            proc.communicate(timeout=0.3)
        assert time.monotonic() - start < 3
        assert isinstance(ei.value, subprocess.TimeoutExpired)
        assert proc.alive
        assert proc.poll() is None
        assert pid_alive(proc.pid)
        assert proc.stop() == -signal.SIGTERM
        assert not pid_alive(proc.pid)


# Echoes stdin once the file named by argv[1] exists: until then its stdin pipe fills up.
ECHO_WHEN_TOLD = (
    "import os, sys, time\n"
    "while not os.path.exists(sys.argv[1]): time.sleep(0.01)\n"
    "sys.stdout.buffer.write(sys.stdin.buffer.read())"
)


def test_communicate_after_a_timeout_writes_the_rest_of_the_first_input(tmp_path: pathlib.Path) -> None:
    data = os.urandom(1 << 20)  # far more than a pipe holds: the first call cannot write it all
    go = tmp_path / "go"
    with netrunner.start(py(ECHO_WHEN_TOLD, str(go))) as proc:
        with pytest.raises(netrunner.Timeout):
            proc.communicate(data, timeout=0.3)
        assert proc.alive
        go.touch()
        out, err = proc.communicate(timeout=30)
        assert out == data  # each byte once, in order: none dropped, none written twice
        assert (err, proc.returncode) == (b"", 0)
        assert proc.stats.bytes_in == len(data)


def test_communicate_input_on_a_later_call_is_an_error(tmp_path: pathlib.Path) -> None:
    data = os.urandom(1 << 20)
    go = tmp_path / "go"
    with netrunner.start(py(ECHO_WHEN_TOLD, str(go))) as proc:
        with pytest.raises(netrunner.Timeout):
            proc.communicate(data, timeout=0.3)
        with pytest.raises(ValueError, match=r"communicate\(\): input can only be given to the first call"):
            proc.communicate(data, timeout=0.3)
        with pytest.raises(ValueError, match=r"write\(\): communicate\(\) was cut short before it wrote all"):
            proc.write(b"cut in")  # would land inside the first call's input
        go.touch()
        assert proc.communicate(b"", timeout=30) == (data, b"")  # empty input is no input, as with Popen
        with pytest.raises(ValueError, match="without input"):
            proc.communicate(b"more")
        assert proc.communicate() == (data, b"")


def test_communicate_input_for_a_closed_stdin_is_an_error_not_dropped() -> None:
    with netrunner.start(["cat"]) as proc:
        proc.close_stdin()
        with pytest.raises(netrunner.StdinClosed):
            proc.communicate(b"lost?")
        assert proc.communicate(timeout=10) == (b"", b"")
    with netrunner.start(["cat"], stdin="discard") as proc:
        with pytest.raises(BrokenPipeError, match=r"stdin is not a pipe to write to \(stdin='discard'\)"):
            proc.communicate(b"lost?")
        assert proc.communicate(timeout=10) == (b"", b"")
    with netrunner.start(["cat"]) as proc:
        with pytest.raises(TypeError, match=r"communicate\(\): input must be bytes or str, got int"):
            proc.communicate(5)  # type: ignore[arg-type]
        assert proc.communicate(b"still the first", timeout=10) == (b"still the first", b"")


def test_write_to_a_command_that_ended_says_nothing_reads_it() -> None:
    with netrunner.start(["true"]) as proc:
        assert proc.wait(timeout=10) == 0
        with pytest.raises(BrokenPipeError) as ei:
            proc.write(b"x")
        assert not isinstance(ei.value, netrunner.StdinClosed)
        assert ei.value.errno == errno.EPIPE
        assert "has no reader any more" in str(ei.value)


# --- wait and poll ----------------------------------------------------------------


def test_wait_from_many_threads() -> None:
    results: list[int] = []
    lock = threading.Lock()
    with netrunner.start(py("import sys; sys.stdin.read(); sys.exit(7)")) as proc:

        def waiter() -> None:
            rc = proc.wait(timeout=30)
            with lock:
                results.append(rc)

        threads = [threading.Thread(target=waiter) for _ in range(8)]
        for t in threads:
            t.start()
        proc.close_stdin()
        for t in threads:
            t.join(30)
            assert not t.is_alive()
        assert results == [7] * 8
        assert proc.wait() == 7


def test_wait_timeout_raises_timeout() -> None:
    with netrunner.start(["cat"]) as proc:
        start = time.monotonic()
        with pytest.raises(netrunner.Timeout) as ei:
            proc.wait(timeout=0.2)
        assert 0.15 <= time.monotonic() - start < 3
        assert isinstance(ei.value, TimeoutError)
        assert proc.alive
        proc.close_stdin()
        assert proc.wait(timeout=10) == 0


def test_poll_never_blocks() -> None:
    with netrunner.start(["cat"]) as proc:
        start = time.monotonic()
        for _ in range(100):
            assert proc.poll() is None
        assert time.monotonic() - start < 1
        proc.close_stdin()
        assert wait_until(lambda: proc.poll() is not None, timeout=10)
        assert proc.poll() == 0


# --- signals ----------------------------------------------------------------------

SIGNAL_TREE = r"""
import signal, subprocess, sys, os
GRAND = '''
import signal, os, sys
def h(s, f):
    os.write(1, b'grandchild got %d\\n' % s)
    if s == signal.SIGTERM:
        os._exit(0)
signal.signal(signal.SIGUSR1, h)
signal.signal(signal.SIGTERM, h)
print('grandchild ready', os.getpgid(0), flush=True)
while True:
    signal.pause()
'''
def h(s, f):
    os.write(1, b'child got %d\n' % s)
    if s == signal.SIGTERM:
        os._exit(0)
signal.signal(signal.SIGUSR1, h)
signal.signal(signal.SIGTERM, h)
g = subprocess.Popen([sys.executable, '-c', GRAND])
print('child ready', os.getpgid(0), flush=True)
while True:
    signal.pause()
"""


def _collect(reader: LineReader, want: set[bytes], timeout: float = 10.0) -> set[bytes]:
    seen: set[bytes] = set()
    deadline = time.monotonic() + timeout
    while not want <= seen:
        seen.add(reader.readline(timeout=max(0.01, deadline - time.monotonic())).strip())
    return seen


def test_send_signal_reaches_the_whole_group() -> None:
    with netrunner.start(py(SIGNAL_TREE)) as proc:
        reader = LineReader(proc)
        lines: set[bytes] = set()
        while len(lines) < 2:
            lines.add(reader.readline().strip())
        pgids = {line.split()[-1] for line in lines}
        assert {line.rsplit(b" ", 1)[0] for line in lines} == {b"child ready", b"grandchild ready"}
        assert pgids == {str(proc.pid).encode()}
        usr1 = int(signal.SIGUSR1)
        proc.send_signal(signal.SIGUSR1)
        _collect(reader, {b"child got %d" % usr1, b"grandchild got %d" % usr1})
        proc.terminate()
        term = int(signal.SIGTERM)
        _collect(reader, {b"child got %d" % term, b"grandchild got %d" % term})
        assert proc.wait(timeout=10) == 0


@pytest.mark.parametrize("sig", [signal.SIGUSR1, int(signal.SIGUSR1), "SIGUSR1", "usr1", "Usr1", "sigusr1"])
def test_send_signal_accepts_names_ints_and_signals(sig) -> None:  # type: ignore[no-untyped-def]
    code = (
        "import os, signal, sys\n"
        "signal.signal(signal.SIGUSR1, lambda s, f: (os.write(1, b'got %d\\n' % s), sys.exit(3)))\n"
        "print('ready', flush=True)\n"
        "while True: signal.pause()\n"
    )
    with netrunner.start(py(code)) as proc:
        reader = ready(proc)
        proc.send_signal(sig)
        assert reader.readline() == b"got %d\n" % int(signal.SIGUSR1)
        assert proc.wait(timeout=10) == 3


def test_send_signal_unknown_raises() -> None:
    with netrunner.start(["cat"]) as proc:
        with pytest.raises(netrunner.UnknownSignal):
            proc.send_signal("SIGNOPE")
        with pytest.raises(ValueError, match="not a valid signal"):
            proc.send_signal(0)
        assert proc.alive
        proc.close_stdin()
        proc.wait(timeout=10)


def test_send_signal_after_exit_is_a_noop() -> None:
    with netrunner.start(["true"]) as proc:
        assert proc.wait(timeout=10) == 0
        proc.send_signal(signal.SIGTERM)
        proc.send_signal("KILL")
        proc.terminate()
        proc.kill()
        assert proc.returncode == 0
        assert proc.wait() == 0


def test_terminate() -> None:
    with netrunner.start(READY_THEN_READ) as proc:
        ready(proc)
        proc.terminate()
        assert proc.wait(timeout=10) == -signal.SIGTERM
        assert proc.returncode == -15
        assert proc.exit_status == 143
        assert proc.signal == signal.SIGTERM


def test_kill() -> None:
    with netrunner.start(READY_THEN_READ) as proc:
        ready(proc)
        proc.kill()
        assert proc.wait(timeout=10) == -signal.SIGKILL
        assert proc.exit_status == 137
        assert proc.signal == signal.SIGKILL
        assert isinstance(proc.signal, signal.Signals)


def test_kill_reaches_the_group() -> None:
    with netrunner.start(["sh", "-c", "sleep 100 & echo $!; wait"]) as proc:
        sleep_pid = int(LineReader(proc).readline())
        proc.kill()
        assert proc.wait(timeout=10) == -9
        assert gone(sleep_pid)


# --- stop -------------------------------------------------------------------------


def test_stop_is_idempotent_and_returns_returncode() -> None:
    with netrunner.start(READY_THEN_READ) as proc:
        ready(proc)
        assert proc.stop() == -signal.SIGTERM
        assert proc.stop() == -signal.SIGTERM
        assert proc.returncode == -15
        assert not proc.alive


def test_stop_after_normal_exit() -> None:
    with netrunner.start(["sh", "-c", "exit 4"]) as proc:
        assert proc.wait(timeout=10) == 4
        assert proc.stop() == 4


TRAP_TERM = ["sh", "-c", "trap '' TERM; echo ready; exec sleep 100"]


def test_stop_respects_kill_timeout_of_the_process() -> None:
    with netrunner.start(TRAP_TERM, kill_timeout=0.5) as proc:
        assert LineReader(proc).readline() == b"ready\n"
        start = time.monotonic()
        assert proc.stop() == -signal.SIGKILL
        elapsed = time.monotonic() - start
        assert 0.45 <= elapsed < 0.5 + 2.5, elapsed


def test_stop_kill_timeout_argument_overrides() -> None:
    with netrunner.start(TRAP_TERM, kill_timeout=60) as proc:
        assert LineReader(proc).readline() == b"ready\n"
        start = time.monotonic()
        assert proc.stop(kill_timeout=0.3) == -signal.SIGKILL
        elapsed = time.monotonic() - start
        assert 0.25 <= elapsed < 0.3 + 2.5, elapsed


def test_stop_quick_when_term_is_honoured() -> None:
    with netrunner.start(READY_THEN_READ, kill_timeout=30) as proc:
        ready(proc)
        start = time.monotonic()
        assert proc.stop() == -signal.SIGTERM
        assert time.monotonic() - start < 5


def test_stop_kills_the_tree() -> None:
    with netrunner.start(["sh", "-c", "setsid sleep 100 & echo $!; sleep 100 & echo $!; echo go; wait"]) as proc:
        reader = LineReader(proc)
        escaped_pid = int(reader.readline())
        sleep_pid = int(reader.readline())
        assert reader.readline() == b"go\n"
        proc.stop()
        assert gone(sleep_pid)
        assert gone(escaped_pid)


# --- stats, status fields ---------------------------------------------------------


def test_stats_snapshot() -> None:
    with netrunner.start(["cat"]) as proc:
        proc.write(b"abcd")
        got = b""
        while len(got) < 4:
            got += proc.read(timeout=10)
        snap = proc.stats
        assert isinstance(snap, netrunner.Stats)
        assert snap.bytes_in == 4
        assert snap.bytes_out == 4
        assert snap.returncode is None
        assert snap.exit_status is None
        with pytest.raises((AttributeError, dataclasses.FrozenInstanceError)):
            snap.bytes_in = 0  # type: ignore[misc]
        proc.write(b"ef")
        proc.close_stdin()
        proc.wait(timeout=10)
        assert snap.bytes_in == 4  # a snapshot does not change
        final = proc.stats
        assert final.bytes_in == 6
        assert final.returncode == 0
        assert final.exit_status == 0


def test_status_fields_none_while_running() -> None:
    with netrunner.start(READY_THEN_READ) as proc:
        ready(proc)
        assert proc.returncode is None
        assert proc.exit_status is None
        assert proc.signal is None
        proc.close_stdin()
        proc.wait(timeout=10)
        assert proc.returncode == 0
        assert proc.exit_status == 0
        assert proc.signal is None


def test_set_window_size_without_pty_is_value_error() -> None:
    with netrunner.start(["cat"]) as proc:
        with pytest.raises(ValueError, match="pty=True"):
            proc.set_window_size(24, 80)
        proc.close_stdin()
        proc.wait(timeout=10)


# --- close and context manager ----------------------------------------------------


def test_close_is_idempotent() -> None:
    proc = netrunner.start(READY_THEN_READ)
    ready(proc)
    proc.close()
    assert not proc.alive
    assert proc.returncode == -signal.SIGTERM
    proc.close()
    assert not pid_alive(proc.pid)


def test_close_after_exit() -> None:
    proc = netrunner.start(["true"])
    proc.wait(timeout=10)
    proc.close()
    proc.close()
    assert proc.returncode == 0


def test_context_manager_stops_the_tree() -> None:
    with netrunner.start(["sh", "-c", "sleep 100 & echo $!; echo $$; wait"]) as proc:
        reader = LineReader(proc)
        sleep_pid = int(reader.readline())
        sh_pid = int(reader.readline())
        assert sh_pid == proc.pid
    assert gone(sh_pid)
    assert gone(sleep_pid)
    assert proc.returncode is not None
    assert not proc.alive


def test_context_manager_on_exception() -> None:
    with pytest.raises(KeyError):
        with netrunner.start(READY_THEN_READ) as proc:
            ready(proc)
            raise KeyError("x")
    assert gone(proc.pid)
    assert proc.returncode == -15


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_dropped_process_is_stopped() -> None:
    proc = netrunner.start(READY_THEN_READ)
    ready(proc)
    pid = proc.pid
    del proc
    gc.collect()
    assert gone(pid)


def test_close_releases_file_descriptors() -> None:
    netrunner.run(["true"])  # any long-lived helper exists from here on
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(30):
        proc = netrunner.start(["cat"])
        proc.close()
    for _ in range(30):
        with netrunner.start(["sh", "-c", "echo x; echo y >&2"]) as proc:
            proc.wait(timeout=10)
    assert len(os.listdir("/proc/self/fd")) == before


# --- reaping ----------------------------------------------------------------------


def test_shepherd_reaped_when_wait_returns() -> None:
    netrunner.run(["true"])
    before = own_children()
    for _ in range(10):
        proc = netrunner.start(["true"])
        proc.wait(timeout=10)
        assert stray_children(before) == set()
        proc.close()


def test_shepherd_reaped_when_stop_returns() -> None:
    netrunner.run(["true"])
    before = own_children()
    for _ in range(5):
        proc = netrunner.start(["sleep", "100"])
        proc.stop()
        assert stray_children(before) == set()
        proc.close()


def test_command_is_not_a_child_of_python() -> None:
    with netrunner.start(READY_THEN_READ) as proc:
        ready(proc)
        assert proc.pid not in own_children()
        proc.close_stdin()
        proc.wait(timeout=10)


# --- threads ----------------------------------------------------------------------


def test_thread_safety_smoke() -> None:
    writers, per_writer = 4, 500
    out = bytearray()
    errors: list[BaseException] = []
    with netrunner.start(["cat"]) as proc:

        def write(w: int) -> None:
            try:
                for i in range(per_writer):
                    proc.write(b"%d:%05d\n" % (w, i))
                    proc.poll()
                    _ = proc.alive, proc.stats
            except BaseException as exc:
                errors.append(exc)

        def read() -> None:
            try:
                while True:
                    chunk = proc.read(4096, timeout=30)
                    if not chunk:
                        return
                    out.extend(chunk)
            except BaseException as exc:
                errors.append(exc)

        reader = threading.Thread(target=read)
        reader.start()
        threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        proc.close_stdin()
        reader.join(60)
        assert not reader.is_alive()
        assert not errors, errors
        assert proc.wait(timeout=10) == 0
    lines = bytes(out).splitlines()
    assert sorted(lines) == sorted(b"%d:%05d" % (w, i) for w in range(writers) for i in range(per_writer))


def test_process_started_in_a_thread_outlives_the_thread() -> None:
    box: dict[str, object] = {}

    def body() -> None:
        box["proc"] = netrunner.start(READY_THEN_READ)

    t = threading.Thread(target=body)
    t.start()
    t.join(30)
    proc = box.pop("proc")
    with proc:  # type: ignore[attr-defined]
        ready(proc)
        assert proc.alive  # type: ignore[attr-defined]
        proc.write(b"data")  # type: ignore[attr-defined]
        proc.close_stdin()  # type: ignore[attr-defined]
        assert proc.wait(timeout=10) == 0  # type: ignore[attr-defined]


def test_stderr_options_in_start() -> None:
    with netrunner.start(["sh", "-c", "echo o; echo e >&2"], stderr="discard") as proc:
        assert LineReader(proc).read_until_eof() == b"o\n"
        proc.wait(timeout=10)
    with netrunner.start(["sh", "-c", "echo o; echo e >&2"], stderr="redirect") as proc:
        assert LineReader(proc).read_until_eof() == b"o\ne\n"
        proc.wait(timeout=10)


def test_read_and_wait_from_different_threads() -> None:
    code = "import sys, time; print('a', flush=True); sys.stdin.readline(); print('b', flush=True)"
    with netrunner.start(py(code)) as proc:
        reader = LineReader(proc)
        assert reader.readline() == b"a\n"
        rc: list[int] = []
        t = threading.Thread(target=lambda: rc.append(proc.wait(timeout=30)))
        t.start()
        proc.write(b"go\n")
        assert reader.readline() == b"b\n"  # wait() in another thread does not eat output
        t.join(30)
        assert rc == [0]


def test_communicate_str_input() -> None:
    with netrunner.start(["cat"]) as proc:
        out, _ = proc.communicate("héllo", timeout=10)
    assert out == "héllo".encode()


def test_wait_after_stop_and_close() -> None:
    proc = netrunner.start(["sleep", "100"])
    assert proc.stop() == -15
    assert proc.wait() == -15
    assert proc.wait(timeout=0.01) == -15
    assert proc.poll() == -15
    proc.close()
    assert proc.wait() == -15


def test_read_max_bytes_counts_bytes_in_text_mode() -> None:
    with netrunner.start(["printf", "éééé"], text=True) as proc:
        pieces = []
        while True:
            piece = proc.read(2, timeout=10)
            if piece == "":
                break
            assert len(piece.encode()) <= 2 + 1  # max_bytes read, plus a carried half character
            pieces.append(piece)
        assert "".join(pieces) == "éééé"
        proc.wait(timeout=10)


def test_no_thread_per_process() -> None:
    netrunner.run(["true"])
    before = threading.active_count()
    procs = [netrunner.start(["cat"]) for _ in range(10)]
    try:
        assert threading.active_count() <= before + 1  # at most one shared helper thread
    finally:
        for proc in procs:
            proc.close()


def test_wait_on_exited_process_returns_at_once() -> None:
    with netrunner.start(["sh", "-c", "exit 9"]) as proc:
        assert proc.wait(timeout=10) == 9
        start = time.monotonic()
        assert proc.wait(timeout=0.001) == 9
        assert time.monotonic() - start < 0.5


def test_stopped_child_is_not_exited() -> None:
    with netrunner.start(READY_THEN_READ) as proc:
        reader = ready(proc)
        proc.send_signal("STOP")
        assert wait_until(lambda: _state(proc.pid) == "T", timeout=10)
        assert proc.poll() is None
        assert proc.alive
        with pytest.raises(netrunner.Timeout):
            proc.wait(timeout=0.2)
        proc.send_signal("CONT")
        assert wait_until(lambda: _state(proc.pid) in ("S", "R"), timeout=10)
        proc.close_stdin()
        assert proc.wait(timeout=10) == 0
        del reader


def test_stop_a_stopped_child() -> None:
    with netrunner.start(READY_THEN_READ, kill_timeout=0.5) as proc:
        ready(proc)
        proc.send_signal(signal.SIGSTOP)
        assert wait_until(lambda: _state(proc.pid) == "T", timeout=10)
        start = time.monotonic()
        assert proc.stop() in (-signal.SIGTERM, -signal.SIGKILL)
        assert time.monotonic() - start < 0.5 + 2.5
        assert not pid_alive(proc.pid)


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0].decode()
    except OSError:
        return "gone"


def _holders(target: str) -> list[int]:
    """Our fds that name ``target`` (a ``pipe:[inode]`` or a path)."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == target:
                out.append(int(fd))
        except OSError:
            pass
    return out


def test_a_started_process_leaves_us_only_our_ends() -> None:
    """Our copies of the fds handed to the command are closed once the
    shepherd has answered (after the request is sent, not as it is sent):
    by the time start() returns, each of the command's pipes has one fd of
    ours, our end, and writing to a stdin it closed fails at once."""
    with netrunner.start(["sh", "-c", "exec 0<&-; echo closed; sleep 100"]) as p:
        assert p.readline(timeout=30) == b"closed\n"
        h = p._h
        for fd in (h.stdin_fd, h.stdout_fd, h.stderr_fd):
            assert fd is not None
            assert _holders(os.readlink(f"/proc/self/fd/{fd}")) == [fd]
        assert h.passed == []
        with pytest.raises(BrokenPipeError):  # no copy of the read end of ours keeps the pipe open
            p.write(b"x")


def test_a_release_before_any_news_needs_no_lock_of_the_zygote(marker: str) -> None:
    """A handle released before the shepherd's first record (a start()
    interrupted, a process dropped and collected) closes our copies of the
    command's fds without asking the zygote for a spare: a release may run
    in a finalizer, inside the garbage collector, in a thread that holds the
    zygote module's lock."""
    from netrunner._command import resolve
    from netrunner._engine import Handle
    from netrunner._io import zygote

    args, argv, opts = resolve("start", ["sleep", "100"], {})
    h = Handle(args, argv, opts, keep_stdin=True)
    passed = list(h.passed)
    assert passed, "nothing handed over?"
    done = threading.Event()

    def release() -> None:
        h.release()
        done.set()

    with zygote._lock:  # held, as by a thread the garbage collector interrupts
        t = threading.Thread(target=release)
        t.start()
        released = done.wait(5)
    t.join(timeout=30)
    assert released, "release() waited for the zygote's lock"
    assert h.passed == []  # closed: the marker fixture sees the command stopped by its shepherd
