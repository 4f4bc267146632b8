"""The phase machine of one command, driven by plain calls."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from netrunner._core import codec
from netrunner._core.state import TRANSITIONS, Phase, ProcessCore


def core() -> ProcessCore:
    return ProcessCore(datetime.now(timezone.utc), now=100.0)


def test_normal_life() -> None:
    c = core()
    c.on_event(codec.Started(42), 100.1)
    assert (c.phase, c.pid, c.returncode) == (Phase.RUNNING, 42, None)
    c.on_event(codec.Exited(3 << 8, 1_500_000, 250_000, 2048), 101.0)
    assert c.phase is Phase.EXITED
    assert c.done
    assert (c.returncode, c.exit_status, c.signal) == (3, 3, None)
    s = c.stats(now=200.0)
    assert s.duration == pytest.approx(1.0)  # frozen at exit, whatever "now" is
    assert (s.cpu_user, s.cpu_system, s.max_rss) == (1.5, 0.25, 2048 * 1024)


def test_killed_by_signal() -> None:
    c = core()
    c.on_event(codec.Started(1), 100.0)
    c.on_event(codec.Exited(9, 0, 0, 0), 100.0)
    assert (c.returncode, c.exit_status, int(c.signal)) == (-9, 137, 9)


def test_exec_failure() -> None:
    c = core()
    c.on_event(codec.ExecFailed(2, 3), 100.0)
    assert c.phase is Phase.FAILED
    assert c.exec_error == codec.ExecFailed(2, 3)


def test_unexpected_event_loses_the_shepherd() -> None:
    c = core()
    c.on_event(codec.Exited(0, 0, 0, 0), 100.0)  # EXITED before STARTED
    assert c.phase is Phase.LOST
    assert "unexpected" in (c.fault or "")


def test_lose_is_final_and_noop_after_exit() -> None:
    c = core()
    c.on_event(codec.Started(5), 100.0)
    c.on_event(codec.Exited(0, 0, 0, 0), 100.0)
    c.lose("too late", 101.0)
    assert c.phase is Phase.EXITED


def test_stats_while_running_leave_exit_fields_empty() -> None:
    c = core()
    c.on_event(codec.Started(5), 100.0)
    s = c.stats(now=100.5)
    assert s.returncode is None
    assert s.cpu_user is None
    assert s.max_rss is None
    assert s.duration == pytest.approx(0.5)
    assert s.started_at.tzinfo is not None


def test_transition_table_only_moves_forward() -> None:
    order = [Phase.STARTING, Phase.RUNNING, Phase.EXITED]
    for (before, _), after in TRANSITIONS.items():
        assert before in (Phase.STARTING, Phase.RUNNING)
        if after in order:
            assert order.index(after) > order.index(before)


def test_a_stop_is_counted_while_running_and_breaks_protocol_otherwise() -> None:
    core = ProcessCore(datetime.now(timezone.utc), 0.0)
    core.on_event(codec.Stopped(20), 0.1)  # before STARTED
    assert core.phase is Phase.LOST
    core = ProcessCore(datetime.now(timezone.utc), 0.0)
    core.on_event(codec.Started(42), 0.1)
    core.on_event(codec.Stopped(20), 0.2)
    core.on_event(codec.Stopped(19), 0.3)
    assert (core.phase, core.stops, core.stop_signal) == (Phase.RUNNING, 2, 19)
