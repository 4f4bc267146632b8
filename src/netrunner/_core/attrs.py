"""The attributes a command inherits from the interpreter at the call (sans-IO).

A command is started by a shepherd forked from the zygote, so it inherits
the umask, resource limits, nice value and CPU affinity the zygote had when
it was started, not those of the caller at the call. The zygote's are read
once, as the *baseline*; at each spawn the caller's are read again
(``_io/attrs.py``), and :func:`changes` says what a ``C_ATTRS`` record must
carry for the command to have the caller's: nothing at all in the common
case, where nothing changed.

Where the zygote shares the interpreter's umask (``CLONE_FS``, the common
case: ``_io/zygote.py``), a command gets the umask at its clone, and both
the baseline and the caller's snapshot say :data:`SHARED_UMASK` instead of
a value: the umask is neither read nor sent.

Invariants: pure functions of their arguments; a field the baseline does not
know (None) is always sent when the caller's is known; a field of the caller
that could not be read (None) is never sent, so the command keeps the
shepherd's; a shared umask is never sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import NamedTuple

from . import wire

#: The umask of a snapshot where the shepherds share the interpreter's (a
#: command gets it at its clone): never compared with a value, never sent.
SHARED_UMASK = -1

#: Resource limits in Python's units (``resource.getrlimit``): (soft, hard).
Limit = tuple[int, int]


class Attrs(NamedTuple):
    """A snapshot of a process's (or a thread's) inheritable attributes.

    ``rlimits[i]`` is the limit of resource ``resources[i]`` as
    ``resource.getrlimit`` gives it (``RLIM_INFINITY`` is -1), or None when
    it is unknown. ``affinity`` is the set of CPUs (``os.sched_getaffinity``
    gives a set: it is never changed here), ``nice`` the nice value (both
    per thread on Linux), ``umask`` the file mode creation mask
    (:data:`SHARED_UMASK`: the shepherds share it). A named tuple: one is
    made at every spawn, and compared."""

    umask: int | None
    nice: int | None
    affinity: AbstractSet[int] | None
    resources: tuple[int, ...]
    rlimits: tuple[Limit | None, ...]


@dataclass(frozen=True, slots=True)
class Changes:
    """What one C_ATTRS record carries: None leaves a field as the shepherd
    has it; ``rlimits`` holds (resource, soft, hard) in Python's units."""

    umask: int | None = None
    nice: int | None = None
    affinity: AbstractSet[int] | None = None
    rlimits: tuple[tuple[int, int, int], ...] = ()


def changes(baseline: Attrs, now: Attrs) -> Changes | None:
    """What a command started by a shepherd with ``baseline`` needs to have
    the attributes ``now``: None when it has them already."""
    if now == baseline:  # the common case: nothing changed since the zygote started
        return None
    umask = now.umask if now.umask is not None and now.umask != baseline.umask else None
    if umask == SHARED_UMASK or baseline.umask == SHARED_UMASK:
        umask = None  # the command has the caller's at its clone
    nice = now.nice if now.nice is not None and now.nice != baseline.nice else None
    affinity = now.affinity if now.affinity is not None and now.affinity != baseline.affinity else None
    if affinity is not None and not fits_mask(affinity):
        affinity = None  # CPUs a record cannot name: the command keeps the shepherd's affinity
    limits: tuple[tuple[int, int, int], ...] = ()
    if now.rlimits != baseline.rlimits or now.resources != baseline.resources:
        known = dict(zip(baseline.resources, baseline.rlimits, strict=True))
        limits = tuple(
            (resource, *limit)
            for resource, limit in zip(now.resources, now.rlimits, strict=True)
            if limit is not None and known.get(resource) != limit
        )
    if umask is None and nice is None and affinity is None and not limits:
        return None
    return Changes(umask, nice, affinity, limits)


def affinity_mask(cpus: Iterable[int]) -> bytes:
    """The C_ATTRS affinity mask of a set of CPUs: CPU n is bit n % 8 of
    byte n // 8, padded to whole 64-bit words as a ``cpu_set_t`` is."""
    mask = 0
    for cpu in cpus:
        if cpu < 0:
            raise ValueError(f"a CPU number cannot be negative: {cpu}")
        mask |= 1 << cpu
    if mask == 0:
        raise ValueError("a CPU affinity needs at least one CPU")
    size = (mask.bit_length() + 63) // 64 * 8
    if size > wire.AFFINITY_MAX_BYTES:
        raise ValueError(f"CPU {mask.bit_length() - 1} does not fit a mask of {wire.AFFINITY_MAX_BYTES} bytes")
    return mask.to_bytes(size, "little")


def fits_mask(cpus: AbstractSet[int]) -> bool:
    """Whether :func:`affinity_mask` can express these CPUs."""
    return bool(cpus) and min(cpus) >= 0 and max(cpus) < wire.AFFINITY_MAX_BYTES * 8


def describe(sent: Changes, names: dict[int, str] | None = None) -> str:
    """The attributes of a record in words, for an error message; ``names``
    maps resource numbers to names (RLIMIT_NOFILE...)."""
    parts = []
    if sent.umask is not None:
        parts.append(f"umask {sent.umask:04o}")
    if sent.nice is not None:
        parts.append(f"nice {sent.nice}")
    if sent.affinity is not None:
        parts.append(f"CPU affinity {sorted(sent.affinity)}")
    for resource, soft, hard in sent.rlimits:
        name = (names or {}).get(resource, f"resource limit {resource}")
        parts.append(f"{name} ({_limit(soft)}, {_limit(hard)})")
    return ", ".join(parts) if parts else "nothing"


def _limit(value: int) -> str:
    return "unlimited" if value < 0 or value == wire.RLIM_INFINITY else str(value)
