"""Reading the attributes a command inherits: the caller's, and the zygote's.

SPEC 1: a command inherits the umask, resource limits, nice value and CPU
affinity of the interpreter as it is at the call. Shepherds are forked from a
zygote started earlier, so :func:`of_zygote` reads what the zygote has (the
*baseline*, read once, from the zygote itself: what its shepherds inherit),
and :func:`current` what the caller has, at every spawn; ``_core.attrs``
compares the two. ``current`` costs about 8 us in a loop and 20 us in the
middle of a spawn (cold caches), half of it the kernel writing
``/proc/self/status``; the limits are read from ``/proc/self/limits`` and
parsed only when its text changed.

Per thread on Linux: the nice value (``os.nice``, ``os.setpriority(
PRIO_PROCESS, 0, ...)``) and the CPU affinity (``os.sched_setaffinity(0,
...)``) belong to the calling thread, so a command gets those of the thread
that starts it, as a ``subprocess`` child does. The umask and the resource
limits belong to the process.

The umask is not read at all where the shepherds share it (``CLONE_FS``,
the common case: ``zygote.py``): a command gets it at its clone. Otherwise
it is read from the ``Umask:`` line of ``/proc/self/status`` (Linux 4.7):
setting it and setting it back, the only other way, would change it for
every thread meanwhile. Where that cannot be read, the command keeps the
shepherd's umask.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Set as AbstractSet

from .._core.attrs import SHARED_UMASK, Attrs, Limit
from . import fds

__all__ = ["current", "current_umask", "of_zygote", "thread_attrs", "Thread", "RESOURCES", "RESOURCE_NAMES"]

#: A thread's nice value and CPU affinity (None: unreadable).
Thread = tuple[int | None, AbstractSet[int] | None]

#: Every resource limit the resource module knows, each once (RLIMIT_OFILE is RLIMIT_NOFILE).
RESOURCE_NAMES: dict[int, str] = {}
for _name in sorted(n for n in dir(resource) if n.startswith("RLIMIT_")):
    RESOURCE_NAMES.setdefault(getattr(resource, _name), _name)
RESOURCES: tuple[int, ...] = tuple(sorted(RESOURCE_NAMES))
del _name

_getrlimit = resource.getrlimit
_getpriority = os.getpriority
_getaffinity = os.sched_getaffinity
_pread = os.pread
_PRIO_PROCESS = os.PRIO_PROCESS


class _ProcFile:
    """A file of ``/proc/self`` kept open: reading it again from offset 0
    makes the kernel write it anew, without the path lookup of an open.
    Registered with fds, so a forked child closes it (and opens its own)."""

    __slots__ = ("path", "fd")

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: int | None = None
        fds.on_fork_in_child(self._forget)

    def _forget(self) -> None:
        self.fd = None

    def read(self, size: int) -> bytes | None:
        """Its first ``size`` bytes now, or None where it cannot be read."""
        fd = self.fd
        if fd is None:
            try:
                fd = fds.open_fd(self.path, os.O_RDONLY, self.path)
            except OSError:
                return None
            with fds.lock:
                if self.fd is None:
                    self.fd = fd
                else:  # another thread was first
                    fds.close(fd)
                    fd = self.fd
        try:
            return _pread(fd, size, 0)
        except OSError:  # closed behind our back: do without it
            return self._read_once(size)

    def _read_once(self, size: int) -> bytes | None:
        try:
            with fds.lock:  # no fork copies the fd meanwhile (see fds)
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    return os.read(fd, size)
                finally:
                    os.close(fd)
        except OSError:
            return None


_status = _ProcFile("/proc/self/status")
#: /proc/self/limits: its text changes exactly when a limit does, so the
#: limits are read again (one getrlimit each) only then.
_limits_text = _ProcFile("/proc/self/limits")
_limits_seen: tuple[bytes | None, tuple[Limit | None, ...]] = (None, ())


def _umask_in(text: bytes | None) -> int | None:
    """The ``Umask:`` of a ``/proc/<pid>/status`` text (its second line)."""
    if text is None:
        return None
    try:
        start = text.index(b"\nUmask:") + 7
        return int(text[start : text.index(b"\n", start)], 8)
    except ValueError:
        return None


def current_umask() -> int | None:
    """The process's umask, or None where ``/proc/self/status`` cannot tell."""
    return _umask_in(_status.read(512))


def thread_attrs() -> Thread:
    """The calling thread's nice value and CPU affinity (None: unreadable)."""
    try:
        nice: int | None = _getpriority(_PRIO_PROCESS, 0)
    except OSError:
        nice = None
    try:
        cpus: AbstractSet[int] | None = _getaffinity(0)
    except OSError:
        cpus = None
    return nice, cpus


def current_limits() -> tuple[Limit | None, ...]:
    """The process's limit of each of :data:`RESOURCES` (None: unreadable).
    Parsed from ``/proc/self/limits`` when its text changed, and then only."""
    global _limits_seen
    text = _limits_text.read(4096)
    seen, limits = _limits_seen
    if text is not None and text == seen:
        return limits
    parsed = _parse_limits(text) if text is not None else None
    if parsed is None:  # no /proc, or a layout this code does not know
        return tuple(map(_one_limit, RESOURCES))
    _limits_seen = (text, parsed)
    return parsed


def _parse_limits(text: bytes) -> tuple[Limit | None, ...] | None:
    """The limits in a ``/proc/<pid>/limits`` text: a header, then one line
    per resource in the order of their numbers, the name in 26 columns,
    then the soft and hard limits (``unlimited`` or a number)."""
    lines = text.split(b"\n")
    if not lines[0].startswith(b"Limit "):
        return None
    limits: list[Limit | None] = []
    try:
        for res in RESOURCES:
            soft, hard = lines[1 + res][26:].split()[:2]
            limits.append((-1 if soft == b"unlimited" else int(soft), -1 if hard == b"unlimited" else int(hard)))
    except (IndexError, ValueError):
        return None
    return tuple(limits)


def current(thread: Thread | None = None, *, umask_shared: bool = False) -> Attrs:
    """The caller's attributes now: the process's umask (not read when the
    shepherds share it: :data:`SHARED_UMASK`) and resource limits, and the
    nice value and CPU affinity of ``thread`` (from :func:`thread_attrs`) or
    else of the calling thread."""
    nice, cpus = thread if thread is not None else thread_attrs()
    umask = SHARED_UMASK if umask_shared else _umask_in(_status.read(512))
    return Attrs(umask, nice, cpus, RESOURCES, current_limits())


def _one_limit(res: int) -> Limit | None:
    try:
        return _getrlimit(res)
    except (OSError, ValueError):
        return None


def of_zygote(pid: int, umask: int | None) -> Attrs:
    """The attributes of the zygote ``pid`` (our unreaped child, so the
    number is its own), which every shepherd it forks inherits: each one
    read from the kernel, None where it cannot be. ``umask`` is the
    interpreter's around the zygote's start (None if it changed meanwhile):
    neither the zygote nor a shepherd sets one, and reading another
    process's needs a ``/proc`` of our own pid namespace."""
    try:
        nice: int | None = _getpriority(_PRIO_PROCESS, pid)
    except OSError:
        nice = None
    try:
        cpus: AbstractSet[int] | None = _getaffinity(pid)
    except OSError:
        cpus = None
    limits: list[Limit | None] = []
    for res in RESOURCES:
        try:
            limits.append(resource.prlimit(pid, res))
        except (OSError, ValueError):
            limits.append(None)
    return Attrs(umask, nice, cpus, RESOURCES, tuple(limits))
