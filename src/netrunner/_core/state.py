"""The life of one command as the shepherd reports it (sans-IO).

Invariants:

* Phases only move forward along :data:`TRANSITIONS`; an event that the table
  does not allow moves the machine to ``LOST`` (the shepherd broke protocol),
  as does the control socket closing before ``EXITED``.
* ``STOPPED`` (asked for by the command line) is news while ``RUNNING``, counted
  in ``stops`` (the last one's signal in ``stop_signal``); it moves no phase,
  and at any other time it is a broken protocol.
* The exit status, once known, never changes.
* Time is passed in by the driver (``now``); nothing here reads a clock, an fd
  or a thread.
"""

from __future__ import annotations

import enum
import signal as _signal
from datetime import datetime

from .._results import Stats, decode_status
from . import codec, wire


class Phase(enum.Enum):
    # Members are singletons: hashed by identity, in C (Enum's own __hash__
    # is a Python function, and TRANSITIONS hashes a phase per record).
    __hash__ = object.__hash__

    STARTING = "starting"  # spawn sent, waiting for STARTED or EXEC_FAILED
    RUNNING = "running"
    EXITED = "exited"  # EXITED received: the tree is gone
    FAILED = "failed"  # EXEC_FAILED received: nothing ran
    LOST = "lost"  # the shepherd died or broke protocol


#: (phase, event type) -> next phase
TRANSITIONS: dict[tuple[Phase, type], Phase] = {
    (Phase.STARTING, codec.Started): Phase.RUNNING,
    (Phase.STARTING, codec.ExecFailed): Phase.FAILED,
    (Phase.RUNNING, codec.Exited): Phase.EXITED,
    (Phase.STARTING, codec.ShepherdFault): Phase.LOST,
    (Phase.RUNNING, codec.ShepherdFault): Phase.LOST,
}


class ProcessCore:
    """Phase, exit status and counters of one command."""

    __slots__ = (
        "phase", "pid", "status", "exec_error", "fault", "utime_us", "stime_us", "maxrss_kb",
        "started_at", "t_start", "t_end", "bytes_in", "bytes_out", "bytes_err", "read_count",
        "write_count", "peak_memory", "oom_killed", "observes_in", "observes_out", "observes_err", "err_dropped",
        "stops",
        "stop_signal",
    )

    def __init__(self, started_at: datetime, now: float) -> None:
        self.phase = Phase.STARTING
        self.pid: int | None = None
        self.status: int | None = None
        self.exec_error: codec.ExecFailed | None = None
        self.fault: str | None = None
        # The shepherd's accounting of the tree, from EXITED; None without one
        # (the shepherd lost, its command killed by us): nothing was measured.
        self.utime_us: int | None = None
        self.stime_us: int | None = None
        self.maxrss_kb: int | None = None
        self.started_at = started_at
        self.t_start = now
        self.t_end: float | None = None
        self.bytes_in = self.bytes_out = self.bytes_err = 0
        self.read_count = self.write_count = 0
        self.peak_memory: int | None = None
        self.oom_killed: bool | None = None  # None: no cgroup
        # Whether netrunner sees each stream (it does not when one was handed
        # to the command directly); counts it does not see are None.
        self.observes_in = self.observes_out = self.observes_err = True
        self.err_dropped = 0
        self.stops = 0  # S_STOPPED records seen (FLAG_STOPS: the command line's job control)
        self.stop_signal = 0  # the signal of the last of them

    # --- events -----------------------------------------------------------

    def on_event(self, event: codec.Event, now: float) -> None:
        kind = type(event)
        if isinstance(event, codec.Stopped) and self.phase is Phase.RUNNING:  # news, not a phase (FLAG_STOPS only)
            self.stops += 1
            self.stop_signal = event.signo
            return
        nxt = TRANSITIONS.get((self.phase, kind))
        if nxt is None:
            self.lose(f"unexpected {kind.__name__} while {self.phase.value}", now)
            return
        self.phase = nxt
        if type(event) is codec.Started:
            self.pid = event.pid
        elif type(event) is codec.Exited:
            self.status = event.status
            self.utime_us, self.stime_us, self.maxrss_kb = event.utime_us, event.stime_us, event.maxrss_kb
            if event.flags & wire.EXITED_CGROUP:
                self.oom_killed = bool(event.flags & wire.EXITED_OOM_KILLED)
            if event.flags & wire.EXITED_PEAK_MEMORY:
                self.peak_memory = event.peak_memory
            self.t_end = now
        elif isinstance(event, codec.ExecFailed):
            self.exec_error = event
            self.t_end = now
        elif isinstance(event, codec.ShepherdFault):
            self.fault = f"the shepherd reported error code {event.code} (errno {event.error})"
            self.t_end = now

    def lose(self, why: str, now: float) -> None:
        """The shepherd is gone or unusable (no-op once the outcome is known)."""
        if self.phase in (Phase.STARTING, Phase.RUNNING):
            self.phase = Phase.LOST
            self.fault = self.fault or why
            self.t_end = now

    # --- queries ----------------------------------------------------------

    @property
    def done(self) -> bool:
        """The outcome is known (exited, failed to start, or shepherd lost)."""
        return self.phase not in (Phase.STARTING, Phase.RUNNING)

    @property
    def returncode(self) -> int | None:
        return None if self.status is None else decode_status(self.status)[0]

    @property
    def exit_status(self) -> int | None:
        return None if self.status is None else decode_status(self.status)[1]

    @property
    def signal(self) -> _signal.Signals | int | None:
        return None if self.status is None else decode_status(self.status)[2]

    def stats(self, now: float) -> Stats:
        # Positional, in Stats' field order, with the status decoded once:
        # this runs at the end of every command.
        if self.status is None:
            returncode = exit_status = cpu_user = cpu_system = max_rss = None
        else:
            returncode, exit_status, _ = decode_status(self.status)
            if self.utime_us is None or self.stime_us is None or self.maxrss_kb is None:
                cpu_user = cpu_system = max_rss = None
            else:
                cpu_user, cpu_system, max_rss = self.utime_us / 1e6, self.stime_us / 1e6, self.maxrss_kb * 1024
        return Stats(
            self.bytes_in if self.observes_in else None,
            self.bytes_out if self.observes_out else None,
            self.bytes_err if self.observes_err else None,
            self.read_count, self.write_count, self.started_at,
            (self.t_end if self.t_end is not None else now) - self.t_start,
            returncode, exit_status, cpu_user, cpu_system, max_rss,
            self.peak_memory, self.oom_killed,
            self.err_dropped if self.observes_err else None,
        )
