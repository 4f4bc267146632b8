"""cgroup discovery and limit validation (sans-IO; SPEC sections 2 and 9).

The I/O side reads ``/proc/self/mountinfo``, ``/proc/self/cgroup`` and the
cgroup interface files; everything it needs to *decide* from those texts is
here, as pure functions over strings, so each host layout (pure v2, hybrid
v1+v2, containers with a cgroup namespace) is testable from a literal fixture.

Invariants:

* :func:`locate` never guesses: a hierarchy's ``own`` directory is given only
  when the mount really shows this process's cgroup (its path lies under the
  mount's root); otherwise it is ``None``.
* :func:`relative` accepts only paths the kernel would create as nested
  directories strictly below netrunner's cgroup root: nothing absolute, no
  ``.``/``..``, no empty, over-long or reserved component.
* The limit checkers return exactly the value to write to the kernel, and
  refuse (naming the option and showing an accepted example) every value the
  kernel would refuse, so a bad limit fails at call time, never halfway
  through setting up a cgroup.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .._errors import InvalidCgroup

# Mount options of a v1 cgroup mount that are not controllers (the kernel's
# cgroup1 parameters, the generic ro/rw, and an LSM's label flag). Options
# with a value ("name=systemd", "release_agent=...") are never controllers.
_V1_NOT_CONTROLLERS = frozenset(
    {"rw", "ro", "none", "all", "noprefix", "clone_children", "cpuset_v2_mode", "xattr", "favordynmods",
     "nofavordynmods", "seclabel"}
)
_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True, slots=True)
class Mount:
    """One cgroup or cgroup2 mount from ``/proc/self/mountinfo``."""

    mount_point: str  # absolute, octal escapes (\040 etc.) decoded
    root: str  # the cgroup path this mount shows at its top
    version: int  # 1 ("cgroup") or 2 ("cgroup2")
    controllers: frozenset[str]  # v1: the controllers it carries; v2: empty


def _unescape(field: str) -> str:
    """Undo mountinfo's escaping of space, tab, newline and backslash."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """Every cgroup and cgroup2 mount in ``/proc/self/mountinfo`` text, in order.

    A line is ``id parent major:minor root mount-point options [optional...]
    - fstype source super-options``; the optional fields vary in number, so
    the fields after the lone ``-`` are found by position from it. Lines that
    do not have this shape are skipped rather than failing the whole parse.
    """
    mounts: list[Mount] = []
    for line in text.splitlines():
        fields = line.split()
        try:
            sep = fields.index("-", 6)
        except ValueError:
            continue
        tail = fields[sep + 1 :]
        if len(tail) < 2 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        root, mount_point = _unescape(fields[3]), _unescape(fields[4])
        if not (root.startswith("/") and mount_point.startswith("/")):
            continue
        if tail[0] == "cgroup2":
            mounts.append(Mount(mount_point, root, 2, frozenset()))
            continue
        options = tail[2].split(",") if len(tail) > 2 else []
        controllers = frozenset(o for o in options if o and "=" not in o and o not in _V1_NOT_CONTROLLERS)
        mounts.append(Mount(mount_point, root, 1, controllers))
    return mounts


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """``/proc/self/cgroup`` text -> ``{controller: cgroup path}``.

    The v2 line (``0::/path``) gives the key ``""``; a v1 line gives one key
    per item of its comma-separated list (``"cpu"`` and ``"cpuacct"`` for
    ``4:cpu,cpuacct:/path``; named hierarchies keep their ``name=`` prefix).
    The path is everything after the second colon, since it may itself
    contain colons. Malformed lines are skipped.
    """
    result: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3 or not parts[2].startswith("/"):
            continue
        hierarchy_id, names, path = parts
        if not hierarchy_id.isdigit():
            continue
        if names == "":
            if hierarchy_id == "0":
                result[""] = path
            continue
        for name in names.split(","):
            if name:
                result[name] = path
    return result


@dataclass(frozen=True, slots=True)
class Hierarchy:
    """A mounted cgroup hierarchy and, if the mount shows it, this process's
    own cgroup directory in it."""

    mount: Mount
    own: str | None  # e.g. "/sys/fs/cgroup/user.slice/..."; None if not visible


@dataclass(frozen=True, slots=True)
class Host:
    """The cgroup hierarchies usable from this process."""

    v2: Hierarchy | None  # the cgroup2 hierarchy, if mounted
    v1: dict[str, Hierarchy]  # v1 controller -> its hierarchy


def _own_dir(mount: Mount, path: str | None) -> str | None:
    """Where cgroup ``path`` appears under ``mount``, or None when it lies
    outside the part of the hierarchy the mount shows.

    A path with ``..`` (the kernel prints those for a cgroup outside the
    reader's cgroup namespace) is never considered visible.
    """
    if path is None or not path.startswith("/"):
        return None
    parts = [p for p in path.split("/") if p]
    if ".." in parts or "." in parts:
        return None
    root = [p for p in mount.root.split("/") if p]
    if parts[: len(root)] != root:
        return None
    below = parts[len(root) :]
    base = mount.mount_point.rstrip("/")
    return "/".join([base, *below]) if below else (base or "/")


def _choose(candidates: list[Mount]) -> Mount | None:
    """Of several mounts of one hierarchy: one showing the whole of it
    (root ``/``), else the first."""
    for mount in candidates:
        if mount.root == "/":
            return mount
    return candidates[0] if candidates else None


def locate(mountinfo: str, proc_cgroup: str) -> Host:
    """This process's cgroup hierarchies, from the texts of
    ``/proc/self/mountinfo`` and ``/proc/self/cgroup``."""
    mounts = parse_mountinfo(mountinfo)
    paths = parse_proc_cgroup(proc_cgroup)
    v2_mount = _choose([m for m in mounts if m.version == 2])
    v2 = Hierarchy(v2_mount, _own_dir(v2_mount, paths.get(""))) if v2_mount is not None else None
    v1: dict[str, Hierarchy] = {}
    controllers = sorted({c for m in mounts if m.version == 1 for c in m.controllers})
    for controller in controllers:
        mount = _choose([m for m in mounts if m.version == 1 and controller in m.controllers])
        assert mount is not None
        # Controllers co-mounted on one hierarchy share one path; any of them names it.
        path = next((paths[c] for c in sorted(mount.controllers) if c in paths), None)
        v1[controller] = Hierarchy(mount, _own_dir(mount, path))
    return Host(v2, v1)


_EXAMPLE_PATH = "e.g. 'jobs/123'"
_MAX_NAME = 255  # bytes: the longest directory name the kernel creates


def relative(path: str) -> tuple[str, ...]:
    """Validate a user's cgroup path (relative to netrunner's cgroup root)
    and return its components.

    Raises :class:`InvalidCgroup` naming the problem and the fix for anything
    that would escape the root, could not be created as nested directories,
    or would collide with the kernel's own ``cgroup.*`` interface files.
    """
    if not isinstance(path, str):
        raise InvalidCgroup(f"cgroup path must be a str such as 'jobs/123', got {path!r}")
    if not path:
        raise InvalidCgroup(f"cgroup path is empty; give a path relative to netrunner's cgroup root, {_EXAMPLE_PATH}")
    if path.startswith("/"):
        raise InvalidCgroup(
            f"cgroup path {path!r} is absolute; give a path relative to netrunner's cgroup root, {_EXAMPLE_PATH}"
        )
    if "\0" in path:
        raise InvalidCgroup(f"cgroup path {path!r} contains a NUL character; remove it")
    if "\n" in path:
        # The kernel refuses it: it would make /proc/<pid>/cgroup unparsable.
        raise InvalidCgroup(f"cgroup path {path!r} contains a newline; remove it")
    parts = tuple(path.split("/"))
    for part in parts:
        if part == "":
            raise InvalidCgroup(
                f"cgroup path {path!r} has an empty component (a doubled or trailing '/'); "
                f"separate names with a single '/', {_EXAMPLE_PATH}"
            )
        if part in (".", ".."):
            raise InvalidCgroup(
                f"cgroup path {path!r} has a {part!r} component; cgroups must stay below netrunner's "
                f"cgroup root, so use plain names only, {_EXAMPLE_PATH}"
            )
        try:
            size = len(part.encode("utf-8", "surrogateescape"))
        except UnicodeEncodeError:
            raise InvalidCgroup(f"cgroup path {path!r} has a component that cannot be encoded; "
                                "use UTF-8 text") from None
        if size > _MAX_NAME:
            raise InvalidCgroup(
                f"cgroup path {path!r} has a component of {size} bytes; each name between '/' "
                f"may be at most {_MAX_NAME} bytes (UTF-8)"
            )
        if part.startswith("cgroup."):
            raise InvalidCgroup(
                f"cgroup path {path!r} has the component {part!r}; names starting with 'cgroup.' are "
                f"reserved by the kernel, so choose another name, {_EXAMPLE_PATH}"
            )
    return parts


_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"([0-9]+)\s*(?:([kmgt])(?:i?b)?|b)?", re.IGNORECASE | re.ASCII)
_MAX_BYTES = (1 << 63) - 1  # the kernel parses limits as signed 64-bit
_SIZE_EXAMPLE = "an int number of bytes >= 1 or a size such as '512M', '512MiB' or '1G'"


def parse_memory(value: object, name: str = "memory_max") -> int:
    """A memory limit -> bytes.

    Accepts an int >= 1, or a str of digits with an optional binary unit
    (K, M, G, T: powers of 1024; any case), optionally followed by ``B`` or
    ``iB``, with whitespace around: ``"512M"``, ``"512MiB"``, ``"1g"``,
    ``"4096"``. ``bool`` and ``float`` are refused (``TypeError``) rather than
    taken as 1/0 or truncated.
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"{name} must be {_SIZE_EXAMPLE}, got {value!r}")
    if isinstance(value, str):
        match = _SIZE.fullmatch(value.strip())
        if match is None:
            raise ValueError(f"{name} must be {_SIZE_EXAMPLE}, got {value!r}")
        number = int(match.group(1)) * _UNITS[(match.group(2) or "").lower()]
    else:
        number = value
    if number < 1:
        raise ValueError(f"{name} must be {_SIZE_EXAMPLE}, got {value!r}")
    if number > _MAX_BYTES:
        raise ValueError(f"{name} must be at most {_MAX_BYTES} bytes (2**63 - 1), got {value!r}")
    return number


_MIN_QUOTA_US = 1000  # the kernel's minimum CFS quota: 1 ms per period
_MAX_QUOTA_US = (1 << 44) - 1  # the kernel's largest CFS quota


def cpu_quota(cpus: object, period_us: int = 100_000) -> int:
    """A CPU limit in CPUs (``0.5`` = half of one CPU, ``2`` = two CPUs) ->
    the quota in microseconds per ``period_us`` to write to the kernel.

    The kernel refuses a quota under 1 ms, so the smallest limit is 0.01 CPUs
    for the default 100 ms period.
    """
    smallest = max(0.01, _MIN_QUOTA_US / period_us)
    if isinstance(cpus, bool) or not isinstance(cpus, (int, float)):
        raise TypeError(f"cpu_max must be a number of CPUs such as 0.5 or 2, got {cpus!r}")
    if not math.isfinite(cpus) or cpus < smallest:
        raise ValueError(f"cpu_max must be a finite number of CPUs >= {smallest:g}, such as 0.5 or 2, got {cpus!r}")
    quota = round(cpus * period_us)
    if quota > _MAX_QUOTA_US:
        raise ValueError(f"cpu_max must be at most {_MAX_QUOTA_US // period_us} CPUs, got {cpus!r}")
    return max(quota, _MIN_QUOTA_US)


_MAX_PIDS = 1 << 22  # PID_MAX_LIMIT: pids.max refuses anything larger


def check_pids(value: object) -> int:
    """A process-count limit: an int from 1 to 4194304 (the kernel's largest
    pid count); ``bool`` refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"pids_max must be an int number of processes >= 1 such as 100, got {value!r}")
    if not 1 <= value <= _MAX_PIDS:
        raise ValueError(f"pids_max must be an int from 1 to {_MAX_PIDS} such as 100, got {value!r}")
    return value


_INT = re.compile(r"-?[0-9]+", re.ASCII)


def parse_keyed(text: str) -> dict[str, int]:
    """``key value`` lines (``cpu.stat``, ``memory.events``, ``cgroup.events``,
    v1 ``memory.oom_control``, ``memory.stat``) -> ``{key: int}``.

    Lines that are not exactly a key and an integer are skipped, so a field a
    newer kernel adds in another shape never breaks reading the rest.
    """
    result: dict[str, int] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 2:
            continue
        if _INT.fullmatch(fields[1]):
            result[fields[0]] = int(fields[1])
    return result
