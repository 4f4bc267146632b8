"""SPEC section 14: ``netrunner run --cgroup PATH --memory-max SIZE
--cpu-max CPUS --pids-max N -- CMD``; ``--stats-json`` carries
``peak_memory`` and ``oom_killed``; a bad limit is netrunner's own failure
(exit 125) with a message naming the flag, and nothing runs."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _host import (
    PY,
    MiB,
    Tracker,
    allocator,
    existing,
    expected_v2_line,
    new_dirs_settled,
    snapshot,
    tracked,
)


@pytest.fixture
def cg(marker: str) -> Iterator[Tracker]:
    yield from tracked()


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "netrunner", "run", *args], stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=timeout)


def stats_of(stdout: bytes) -> dict[str, Any]:
    """The JSON object ``--stats-json -`` writes after the command's output."""
    text = stdout.decode(errors="replace")
    start = text.rfind("\n{") + 1 if "\n{" in text else text.find("{")
    assert start >= 0, f"no JSON object on stdout: {text!r}"
    value: dict[str, Any] = json.loads(text[start:])
    return value


def test_cgroup_flag_places_the_command(cg: Tracker) -> None:
    path = cg.path("cli")
    r = cli("--cgroup", path, "--stats-json", "-", "--", "cat", "/proc/self/cgroup")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert expected_v2_line(path) in out.splitlines(), f"no {expected_v2_line(path)!r} in the output:\n{out}"
    stats = stats_of(r.stdout)
    assert isinstance(stats.get("peak_memory"), int), stats
    assert stats["peak_memory"] > 0, stats
    assert stats.get("oom_killed") is False, stats
    assert not existing(path.split("/")[0]), f"cgroup directories left by the CLI: {existing(path.split('/')[0])}"


def test_memory_max_oom_exits_137() -> None:
    before = snapshot()
    r = cli("--memory-max", "64M", "--stats-json", "-", "--", *allocator(512))
    assert r.returncode == 137, f"exit {r.returncode}; stderr: {r.stderr[-2000:]!r}"
    stats = stats_of(r.stdout)
    assert stats.get("oom_killed") is True, stats
    assert isinstance(stats.get("peak_memory"), int), stats
    assert stats["peak_memory"] <= 65 * MiB, stats
    assert stats.get("reason") == "signal", stats
    left = new_dirs_settled(before)
    assert not left, f"the CLI's unique cgroup was left behind: {sorted(left)}"


def test_limits_without_cgroup_get_a_unique_path() -> None:
    before = snapshot()
    forker = "import os\nn = 0\nfor i in range(30):\n    try:\n        os.fork() or os._exit(0)\n" \
             "    except OSError:\n        n += 1\nprint(n)"
    r = cli("--pids-max", "1", "--cpu-max", "1.5", "--memory-max", str(256 * MiB), "--", PY, "-c", forker)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == b"30", f"with --pids-max 1 every fork must fail: {r.stdout!r}"
    left = new_dirs_settled(before)
    assert not left, f"the CLI's unique cgroup was left behind: {sorted(left)}"


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--cpu-max", "abc"), ("--cpu-max", "-1"), ("--memory-max", "lots"), ("--pids-max", "many"),
     ("--pids-max", "0"), ("--cgroup", "/abs"), ("--cgroup", "a/../b")],
)
def test_bad_value_is_125_and_runs_nothing(flag: str, value: str, tmp_path: Path) -> None:
    witness = tmp_path / "ran"
    before = snapshot()
    r = cli(flag, value, "--", "touch", str(witness))
    assert r.returncode == 125, f"{flag} {value}: exit {r.returncode}; stderr {r.stderr!r}"
    assert flag.encode() in r.stderr, f"the message does not name {flag}: {r.stderr!r}"
    assert not witness.exists(), f"the command ran despite {flag} {value}"
    assert snapshot() == before, f"directories made: {sorted(snapshot() - before)}"
