"""``Result`` and ``Stats``: frozen records of a finished (or running) command."""

from __future__ import annotations

import functools
import os
import signal as _signal
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic

from ._errors import ProcessError
from .signals import to_signals

if TYPE_CHECKING:
    from ._types import Arg, OutT
else:
    from ._types import OutT


@functools.lru_cache(maxsize=512)
def decode_status(status: int) -> tuple[int, int, _signal.Signals | int | None]:
    """A raw wait status -> (returncode, exit_status, signal). Remembered:
    a handful of statuses come back again and again, and each is asked for
    several times per command."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return -sig, 128 + sig, to_signals(sig)
    code = os.WEXITSTATUS(status)
    return code, code, None


@dataclass(frozen=True, slots=True)
class Stats:
    """A snapshot of a command's I/O and resource statistics.

    The CPU and memory fields are filled once the command has exited, from the
    shepherd's accounting of every process it reaped -- or, for the CPU times,
    from the command's cgroup when it ran in one (then every process of the
    tree counts, whoever reaped it). They stay ``None`` when nothing was
    accounted: the command never ran, or its shepherd was lost and netrunner
    killed its group itself. ``peak_memory`` (bytes, the whole tree) and
    ``oom_killed`` (the cgroup's memory limit killed a process of the tree)
    are known only with a cgroup, else ``None``.
    """

    bytes_in: int | None
    bytes_out: int | None
    bytes_err: int | None
    read_count: int
    write_count: int
    started_at: datetime
    duration: float
    returncode: int | None = None
    exit_status: int | None = None
    cpu_user: float | None = None
    cpu_system: float | None = None
    max_rss: int | None = None
    peak_memory: int | None = None
    oom_killed: bool | None = None
    bytes_err_dropped: int | None = None

    def as_dict(self) -> dict[str, int | float | bool | str | None]:
        """The fields as JSON-friendly values (``started_at`` in ISO 8601)."""
        out: dict[str, Any] = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["started_at"] = self.started_at.isoformat()
        return out


@dataclass(frozen=True, slots=True)
class Result(Generic[OutT]):
    """The outcome of :func:`netrunner.run`; duck-types ``subprocess.CompletedProcess``.

    Generic in its output type: ``Result[bytes]`` (the default), or
    ``Result[str]`` in text mode (``text=True``, ``encoding=...``).

    For a pipeline (:func:`netrunner.pipe`), ``args`` holds each stage's
    argv, ``returncode`` is the rightmost non-zero stage's (``pipefail``),
    ``pipestatus`` every stage's in order and ``stage_stats`` every stage's
    statistics (``stats`` is the total). For one command they have one item.
    """

    args: tuple[Arg, ...]
    stdout: OutT
    stderr: OutT
    returncode: int
    exit_status: int
    signal: _signal.Signals | int | None
    stats: Stats
    pipestatus: tuple[int, ...] = ()
    stage_stats: tuple[Stats, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if not self.pipestatus:
            object.__setattr__(self, "pipestatus", (self.returncode,))
        if not self.stage_stats:
            object.__setattr__(self, "stage_stats", (self.stats,))

    @property
    def ok(self) -> bool:
        """``True`` when the command exited with status 0."""
        return self.returncode == 0

    def check(self) -> Result[OutT]:
        """Return ``self``, or raise :class:`ProcessError` for a non-zero exit."""
        if self.returncode != 0:
            raise ProcessError(
                self.returncode,
                list(self.args),
                self.stdout,
                self.stderr,
                exit_status=self.exit_status,
                signal=self.signal,
                stats=self.stats,
            )
        return self

    check_returncode = check
