"""Hardening item 13: the command line (SPEC section 14), run as a real
subprocess: SIGPIPE in a pipeline, stdin left alone, the CLI's own stdout
handed to the command, ``--stats-json`` edge cases, /dev/full, --version."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest
from conftest import pids_with_marker, wait_until

PY = sys.executable
CLI = [PY, "-m", "netrunner"]


def test_pipe_reader_goes_away_gives_141(marker: str) -> None:
    """``netrunner run -- yes | head -2``: exit 141 quickly, no ``yes`` left."""
    proc = subprocess.Popen([*CLI, "run", "--", "yes"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    lines = [proc.stdout.readline(), proc.stdout.readline()]
    proc.stdout.close()
    t0 = time.monotonic()
    try:
        rc = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError("the CLI did not exit within 10 s of its stdout reader going away") from None
    took = time.monotonic() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    assert lines == [b"y\n", b"y\n"]
    assert rc == 141, f"exit status {rc}, expected 141; stderr: {err}"
    assert took < 5
    assert wait_until(lambda: not pids_with_marker(marker), timeout=5), f"left running: {pids_with_marker(marker)}"


def test_stdin_is_not_eaten() -> None:
    script = f"printf 'a\\nb\\nc\\n' | while read l; do {PY} -m netrunner run -- echo \"$l\"; done"
    r = subprocess.run(["sh", "-c", script], capture_output=True, timeout=60)
    assert r.stdout == b"a\nb\nc\n", f"got {r.stdout!r}; stderr: {r.stderr!r}"


def test_command_sees_the_clis_terminal() -> None:
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(
            [*CLI, "run", "--", PY, "-c", "import sys; print(sys.stdout.isatty())"],
            stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.DEVNULL,
        )
        os.close(slave)
        slave = -1
        out = b""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and b"\n" not in out:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    chunk = os.read(master, 1024)
                except OSError:  # EIO: the terminal's last writer is gone
                    break
                if not chunk:
                    break
                out += chunk
        rc = proc.wait(timeout=30)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    assert rc == 0
    assert out.strip() == b"True", f"the command's stdout is not the CLI's terminal: {out!r}"


def test_stats_json_unwritable_path_keeps_exit_status(tmp_path: Path) -> None:
    target = tmp_path / "missing-dir" / "stats.json"
    r = subprocess.run([*CLI, "run", "--stats-json", str(target), "--", "sh", "-c", "exit 3"],
                       capture_output=True, timeout=60)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 3, f"exit status {r.returncode}, expected the command's 3; stderr: {err}"
    assert "stats" in err.lower() or str(target) in err, f"the failure to write the stats is not reported: {err!r}"
    assert "Traceback" not in err


def test_stats_json_to_stdout(tmp_path: Path) -> None:
    r = subprocess.run([*CLI, "run", "--stats-json", "-", "--", "echo", "hello"],
                       capture_output=True, timeout=60, cwd=tmp_path)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 0, err
    assert not (tmp_path / "-").exists(), "a file named '-' was created"
    assert r.stdout.startswith(b"hello\n"), f"the command's output does not come first: {r.stdout!r}"
    stats = json.loads(r.stdout[len(b"hello\n"):])
    assert stats["reason"] == "exit"
    assert stats["exit_code"] == 0
    assert isinstance(stats["cpu_system"], float), f"cpu_system is {stats['cpu_system']!r}"


@pytest.mark.parametrize(
    "extra", [[], ["--stats-json", "-"], ["--max-output", "1000"]], ids=["plain", "stats-json", "max-output"]
)
def test_dev_full_gives_no_traceback(extra: list[str]) -> None:
    with open("/dev/full", "wb") as full:
        r = subprocess.run([*CLI, "run", *extra, "--", "echo", "hi"], stdout=full, stderr=subprocess.PIPE, timeout=60)
    err = r.stderr.decode(errors="replace")
    assert "Traceback" not in err, err


def test_version() -> None:
    r = subprocess.run([*CLI, "--version"], capture_output=True, timeout=60)
    text = (r.stdout + r.stderr).decode()
    assert r.returncode == 0, text
    assert version("pynetrunner") in r.stdout.decode(), f"--version printed {text!r}"
