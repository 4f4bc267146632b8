"""The restart policy of a daemon, on its own: no process, the clock given."""

from __future__ import annotations

import pytest

from netrunner._core.restart import Decision, Policy, Restarts


def policy(**kw: object) -> Policy:
    base: dict[str, object] = {"restart": "on-failure", "max_restarts": 5, "restart_window": 60.0,
                               "backoff": (0.1, 30.0)}
    base.update(kw)
    return Policy.checked(base["restart"], base["max_restarts"], base["restart_window"], base["backoff"])


def runs(r: Restarts, returncodes: list[int], length: float = 1.0, start: float = 0.0) -> list[Decision]:
    """Runs of ``length`` seconds back to back, each after the delay decided."""
    t = start
    out = []
    for rc in returncodes:
        d = r.after_run(rc, t, t + length)
        out.append(d)
        t += length + d.delay
    return out


def test_on_failure_restarts_a_failure_and_not_a_success() -> None:
    r = Restarts(policy())
    assert r.after_run(1, 0.0, 1.0).restart
    assert r.after_run(-9, 2.0, 3.0).restart  # a signal is a failure
    done = r.after_run(0, 4.0, 5.0)
    assert done == Decision(False, failed=False)


def test_never_and_no_run_once_failed_only_when_not_zero() -> None:
    for name in ("never", "no"):
        assert Restarts(policy(restart=name)).after_run(0, 0.0, 1.0) == Decision(False, failed=False)
        assert Restarts(policy(restart=name)).after_run(2, 0.0, 1.0) == Decision(False, failed=True)
    assert policy(restart="no").restart == "never"


def test_always_restarts_after_exit_zero() -> None:
    r = Restarts(policy(restart="always"))
    assert all(d.restart for d in runs(r, [0, 0, 0]))


def test_delays_double_up_to_the_largest() -> None:
    r = Restarts(policy(backoff=(0.5, 3.0), max_restarts=100))
    delays = [d.delay for d in runs(r, [1] * 6, length=0.1)]
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


def test_more_than_max_restarts_inside_the_window_gives_up() -> None:
    r = Restarts(policy(max_restarts=3, backoff=(0.1, 0.1)))
    decisions = runs(r, [1, 1, 1, 1], length=0.1)
    assert [d.restart for d in decisions] == [True, True, True, False]
    assert decisions[-1] == Decision(False, failed=True, gave_up=True)


def test_zero_max_restarts_gives_up_at_the_first_failure() -> None:
    assert Restarts(policy(max_restarts=0)).after_run(1, 0.0, 1.0) == Decision(False, failed=True, gave_up=True)


def test_restarts_older_than_the_window_no_longer_count() -> None:
    r = Restarts(policy(max_restarts=2, restart_window=10.0, backoff=(0.0, 0.0)))
    assert r.after_run(1, 0.0, 1.0).restart  # restart at t=1
    assert r.after_run(1, 1.0, 2.0).restart  # t=2: two inside the window
    assert not r.after_run(1, 2.0, 3.0).restart  # t=3: a third would be too many
    r = Restarts(policy(max_restarts=2, restart_window=10.0, backoff=(0.0, 0.0)))
    assert r.after_run(1, 0.0, 1.0).restart
    assert r.after_run(1, 1.0, 2.0).restart
    assert r.after_run(1, 5.0, 11.5).restart  # t=11.5: the restart at t=1 left the window


def test_a_run_longer_than_the_window_resets_count_and_backoff() -> None:
    r = Restarts(policy(max_restarts=2, restart_window=5.0, backoff=(1.0, 8.0)))
    first = runs(r, [1, 1], length=0.1)
    assert [d.delay for d in first] == [1.0, 2.0]
    healthy = r.after_run(1, 10.0, 16.0)  # lasted 6 s > 5 s
    assert healthy.restart
    assert healthy.delay == 1.0
    assert r.after_run(1, 17.0, 17.1).restart  # the count started over too
    assert not r.after_run(1, 17.2, 17.3).restart  # and counts again


@pytest.mark.parametrize(
    ("kw", "exc", "names"),
    [
        ({"restart": "sometimes"}, ValueError, "restart"),
        ({"restart": 1}, TypeError, "restart"),
        ({"max_restarts": -1}, ValueError, "max_restarts"),
        ({"max_restarts": 2.0}, TypeError, "max_restarts"),
        ({"max_restarts": True}, TypeError, "max_restarts"),
        ({"restart_window": 0}, ValueError, "restart_window"),
        ({"restart_window": "60"}, TypeError, "restart_window"),
        ({"restart_window": float("inf")}, ValueError, "restart_window"),
        ({"backoff": 1.0}, TypeError, "backoff"),
        ({"backoff": (1.0,)}, TypeError, "backoff"),
        ({"backoff": (2.0, 1.0)}, ValueError, "backoff"),
        ({"backoff": (-1.0, 1.0)}, ValueError, "backoff"),
        ({"backoff": (0.1, float("nan"))}, ValueError, "backoff"),
    ],
)
def test_bad_options_name_themselves(kw: dict[str, object], exc: type[Exception], names: str) -> None:
    with pytest.raises(exc, match=names):
        policy(**kw)


def test_zero_backoff_is_allowed() -> None:
    r = Restarts(policy(backoff=(0, 0)))
    assert r.after_run(1, 0.0, 1.0) == Decision(True, 0.0)
