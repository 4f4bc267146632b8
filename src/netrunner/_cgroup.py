"""The public :class:`Cgroup` value: where a command's cgroup goes and what
limits it gets (SPEC section 9).

It is pure data, validated when built, so a bad path or limit fails where the
user wrote it, before anything is spawned; the cgroup itself is created only
when a command using it starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._core.cgroups import check_pids, cpu_quota, parse_memory, relative


@dataclass(frozen=True, slots=True, init=False, repr=False)
class Cgroup:
    """A cgroup for a command, with optional resource limits.

    ``path`` is relative to netrunner's cgroup root (``None``: netrunner picks
    a unique path); the limits are keyword-only:

    * ``memory_max``: bytes, as an int or a size such as ``"512M"`` or
      ``"1GiB"`` (powers of 1024); kept as an int number of bytes.
    * ``cpu_max``: CPUs as a number, e.g. ``0.5`` for half a CPU, ``2`` for
      two; at least 0.01.
    * ``pids_max``: how many processes and threads the cgroup may hold.

    >>> Cgroup("jobs/42", memory_max="512M", cpu_max=0.5, pids_max=100)
    Cgroup('jobs/42', memory_max='512M', cpu_max=0.5, pids_max=100)
    >>> Cgroup(memory_max="1G").memory_max
    1073741824

    Pass it as ``cgroup=``; a plain str is the same as ``Cgroup(path)``. A
    bad path raises :class:`InvalidCgroup` (a ``ValueError``), a bad limit
    ``ValueError`` or ``TypeError`` naming the option. A limit whose
    controller the host lacks raises :class:`CgroupUnavailable` when a
    command is started, never silently runs unlimited.
    """

    path: str | None
    memory_max: int | None  # bytes
    cpu_max: float | None
    pids_max: int | None

    def __init__(
        self,
        path: str | None = None,
        *,
        memory_max: int | str | None = None,
        cpu_max: float | None = None,
        pids_max: int | None = None,
    ) -> None:
        # Written out (not generated) so the signature takes "512M" while the
        # attribute is always an int: the frozen fields are set once, here.
        if path is not None:
            relative(path)
        setattr_ = object.__setattr__
        setattr_(self, "path", path)
        setattr_(self, "memory_max", None if memory_max is None else parse_memory(memory_max, "memory_max"))
        if cpu_max is not None:
            cpu_quota(cpu_max)
        setattr_(self, "cpu_max", None if cpu_max is None else float(cpu_max))
        setattr_(self, "pids_max", None if pids_max is None else check_pids(pids_max))

    @property
    def limits(self) -> bool:
        """Whether any limit is set (a cgroup without limits only groups)."""
        return self.memory_max is not None or self.cpu_max is not None or self.pids_max is not None

    def __repr__(self) -> str:
        args = [] if self.path is None else [repr(self.path)]
        if self.memory_max is not None:
            args.append(f"memory_max={_size(self.memory_max)}")
        if self.cpu_max is not None:
            args.append(f"cpu_max={self.cpu_max!r}")
        if self.pids_max is not None:
            args.append(f"pids_max={self.pids_max!r}")
        return f"Cgroup({', '.join(args)})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Explicit, because frozen slotted dataclasses do not pickle on every
        # Python 3.10 release; rebuilding through the constructor re-validates.
        return (_rebuild, (self.path, self.memory_max, self.cpu_max, self.pids_max))


def _rebuild(path: str | None, memory_max: int | None, cpu_max: float | None, pids_max: int | None) -> Cgroup:
    return Cgroup(path, memory_max=memory_max, cpu_max=cpu_max, pids_max=pids_max)


def _size(n: int) -> str:
    """Bytes as the repr of the shortest exact spelling ``Cgroup`` accepts:
    ``'512M'`` for 536870912, ``1000`` for 1000."""
    for unit, factor in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n % factor == 0:
            return repr(f"{n // factor}{unit}")
    return repr(n)
