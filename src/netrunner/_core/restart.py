"""A daemon's restart policy: whether a run that ended is started again, after
what delay, and when to give up. Pure: times are given by the caller.

* ``"never"`` (or ``"no"``): one run; it failed if it did not exit with 0.
* ``"on-failure"``: runs again after a non-zero exit or a signal.
* ``"always"``: runs again whatever the outcome.

The delay before a restart starts at ``backoff[0]`` and doubles up to
``backoff[1]``. More than ``max_restarts`` restarts inside ``restart_window``
seconds is giving up. A run that lasted longer than the window was healthy:
the count and the delay start over.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

POLICIES = ("never", "no", "on-failure", "always")


@dataclass(frozen=True)
class Policy:
    restart: str = "on-failure"
    max_restarts: int = 5
    restart_window: float = 60.0
    backoff: tuple[float, float] = (0.1, 30.0)

    @classmethod
    def checked(cls, restart: Any, max_restarts: Any, restart_window: Any, backoff: Any) -> Policy:
        """The policy, or ``TypeError``/``ValueError`` naming the bad option."""
        if not isinstance(restart, str):
            raise TypeError(f"restart must be one of {', '.join(map(repr, POLICIES))}, got {restart!r}")
        if restart not in POLICIES:
            raise ValueError(f"restart must be one of {', '.join(map(repr, POLICIES))}, got {restart!r}")
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int):
            raise TypeError(f"max_restarts must be an int >= 0, got {max_restarts!r}")
        if max_restarts < 0:
            raise ValueError(f"max_restarts must be an int >= 0, got {max_restarts!r}")
        window = _seconds("restart_window", restart_window)
        if not isinstance(backoff, (tuple, list)) or len(backoff) != 2:
            raise TypeError(f"backoff must be a pair (first, largest) of seconds, got {backoff!r}")
        first, largest = (_seconds("backoff", value, zero=True) for value in backoff)
        if largest < first:
            raise ValueError(f"backoff must be (first, largest) with first <= largest, got {backoff!r}")
        return cls("never" if restart == "no" else restart, max_restarts, window, (first, largest))


def _seconds(name: str, value: Any, *, zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if not (value >= 0 if zero else value > 0) or value == float("inf"):
        raise ValueError(f"{name} must be a finite number of seconds {'>= 0' if zero else '> 0'}, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Decision:
    """What follows a run: ``restart`` after ``delay`` seconds, or not; when
    not, ``failed`` says whether the daemon stopped for good in failure and
    ``gave_up`` whether that was the restart limit."""

    restart: bool
    delay: float = 0.0
    failed: bool = False
    gave_up: bool = False


class Restarts:
    """The restart bookkeeping of one daemon."""

    __slots__ = ("policy", "_recent", "_delay")

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._recent: deque[float] = deque()  # when each restart inside the window was decided
        self._delay = policy.backoff[0]

    def after_run(self, returncode: int, started: float, ended: float) -> Decision:
        """Decide what follows a run that started and ended at these times
        (the same monotonic clock) with this returncode."""
        policy = self.policy
        failure = returncode != 0
        if policy.restart == "never" or (policy.restart == "on-failure" and not failure):
            return Decision(False, failed=failure)
        window = policy.restart_window
        if ended - started > window:  # a healthy run: start over
            self._recent.clear()
            self._delay = policy.backoff[0]
        while self._recent and self._recent[0] <= ended - window:
            self._recent.popleft()
        if len(self._recent) >= policy.max_restarts:
            return Decision(False, failed=True, gave_up=True)
        self._recent.append(ended)
        delay, self._delay = self._delay, min(self._delay * 2, policy.backoff[1])
        return Decision(True, delay)
