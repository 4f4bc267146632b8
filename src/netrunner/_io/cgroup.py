"""A command's cgroups: finding the root, making the directories, writing the
limits -- and, when the shepherd is gone, killing and removing them.

The policy lives here, in Python, where errors can be explained; the
shepherd only joins, kills, measures and removes what it is told
(``C_CGROUP`` records, docs/protocol.md). Discovery reads
``/proc/self/mountinfo`` and ``/proc/self/cgroup`` and is decided by the pure
functions of :mod:`netrunner._core.cgroups`; no path is hard-coded.

Layout (docs/cgroups.md): the command's cgroup-v2 directory is
``<root>/<path>``, where the root is ``$NETRUNNER_CGROUP_ROOT``, else (for
root) ``netrunner/`` at the top of the cgroup-v2 mount, else ``netrunner/``
inside a cgroup-v2 directory this user owns (a delegated one). A controller
that the v2 root cannot offer is taken from a cgroup-v1 hierarchy when the
host has one (hybrid hosts): the command then also joins
``<v1 mount>/netrunner/<path>`` there. Every directory made here is recorded
so that exactly those are removed at the end.
"""

from __future__ import annotations

import errno
import itertools
import os
import signal as _signal
import threading
import time
from dataclasses import dataclass, field

from .._cgroup import Cgroup
from .._core import cgroups as pure
from .._core import codec, wire
from .._errors import CgroupUnavailable, InvalidCgroup

ROOT_VARIABLE = "NETRUNNER_CGROUP_ROOT"
#: The deepest cgroup path accepted: every level may need a record of its own
#: in each hierarchy (wire.MAX_CGROUPS records in all).
MAX_DEPTH = 7
#: cpu_max is a quota per period of this many microseconds.
CPU_PERIOD_US = 100_000
#: v2 controllers, by the limit that needs them.
_LIMIT_CONTROLLER = {"memory_max": "memory", "cpu_max": "cpu", "pids_max": "pids"}
_FIX = (
    "set {var} to a cgroup-v2 directory this user owns and runs in (as root: "
    "`mkdir {example} && chown -R {user} {example}`), or start Python in a delegated "
    "cgroup: `systemd-run --user --scope -p Delegate=yes python ...`"
)

_names = itertools.count(1)
_lock = threading.Lock()
_host: tuple[int, pure.Host] | None = None
#: Intermediate directories commands of this interpreter have made.
_made_parents: set[str] = set()
#: Roots this interpreter has made sure exist (netrunner/ in each hierarchy).
_bases: set[str] = set()


def _after_fork_in_child() -> None:
    # Another thread may have held the lock when the process forked: the
    # child has no such thread, so the lock starts afresh.
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


@dataclass
class Placement:
    """The directories of one command, as the shepherd is told about them."""

    v2: str  # the command's cgroup-v2 directory
    records: list[bytes] = field(default_factory=list)  # C_CGROUP records, outer to inner
    created: list[str] = field(default_factory=list)  # made here, outer to inner
    members: list[str] = field(default_factory=list)  # every directory the command joins


def check_path(value: Cgroup) -> None:
    """Call-time checks beyond :class:`Cgroup`'s own: the depth."""
    if value.path is not None and len(pure.relative(value.path)) > MAX_DEPTH:
        raise InvalidCgroup(
            f"cgroup path {value.path!r} has {len(pure.relative(value.path))} levels; "
            f"netrunner accepts at most {MAX_DEPTH}"
        )


def host() -> pure.Host:
    """The cgroup hierarchies of this host as this process sees them (read
    once per process: mounts and membership do not change under a program)."""
    global _host
    pid = os.getpid()
    cached = _host
    if cached is not None and cached[0] == pid:
        return cached[1]
    try:
        with open("/proc/self/mountinfo") as f:
            mountinfo = f.read()
        with open("/proc/self/cgroup") as f:
            membership = f.read()
    except OSError as exc:
        raise CgroupUnavailable(
            exc.errno, f"cannot read {exc.filename} to find the cgroup hierarchies: {exc.strerror}"
        ) from None
    found = pure.locate(mountinfo, membership)
    _host = (pid, found)
    return found


def prepare(spec: Cgroup) -> Placement:
    """Make the command's cgroup directories and write its limits. Raises
    :class:`CgroupUnavailable` saying what to do when that cannot be done;
    nothing is left behind then."""
    h = host()
    needs = {c for name, c in _LIMIT_CONTROLLER.items() if getattr(spec, name) is not None}
    wanted = needs | {"memory"}  # memory for Stats.peak_memory and oom_killed, even without a limit
    root = _v2_root(h, wanted, needs)
    v2_offers = _read_words(os.path.join(root, "cgroup.controllers"))
    in_v2 = wanted & v2_offers
    in_v1 = {c for c in wanted - in_v2 if c in h.v1 and _v1_usable(h, c)}
    for c in sorted(needs - in_v2 - in_v1):
        raise CgroupUnavailable(errno.ENOTSUP, _missing_controller(c, root, h))
    placement = Placement(v2="")
    try:
        with _lock:
            parts = _components(spec, root)
        placement.v2 = _make(placement, root, parts, wire.CGROUP_V2, in_v2, needs)
        _refuse_busy(spec, placement.v2)
        for c in sorted(in_v1):
            mount = h.v1[c].mount.mount_point
            role = wire.CGROUP_MEMORY_V1 if c == "memory" else wire.CGROUP_V1
            base = os.path.join(mount, "netrunner")
            _ensure_base(base)
            leaf = _make(placement, base, parts, role, set(), needs if c in needs else set())
            _limit_v1(c, leaf, spec)
        _limit_v2(placement.v2, spec, in_v2 & needs)
    except BaseException:
        remove(placement)
        raise
    return placement


def _v2_root(h: pure.Host, wanted: set[str], needs: set[str]) -> str:
    """The directory commands' cgroup-v2 directories go under (SPEC 9). For
    root, the controllers ``wanted`` that the top of the hierarchy offers are
    enabled for it (the top cgroup may hold processes and still do so)."""
    given = os.environ.get(ROOT_VARIABLE)
    if given:
        if not os.path.isabs(given):
            raise CgroupUnavailable(
                errno.EINVAL, f"{ROOT_VARIABLE} must be the absolute path of a cgroup-v2 directory, not {given!r}"
            )
        if not os.path.isfile(os.path.join(given, "cgroup.controllers")):
            raise CgroupUnavailable(
                errno.ENOTDIR,
                f"{ROOT_VARIABLE}={given} is not a cgroup-v2 directory (it has no cgroup.controllers); "
                "point it at a directory inside the cgroup2 mount",
            )
        _check_delegation(h, given)
        return given
    if h.v2 is None:
        raise CgroupUnavailable(
            errno.ENOENT,
            "no cgroup-v2 hierarchy is mounted (none in /proc/self/mountinfo); mount one "
            "(`mount -t cgroup2 none /sys/fs/cgroup/unified`) or boot with "
            "systemd.unified_cgroup_hierarchy=1",
        )
    top = h.v2.mount.mount_point
    if os.geteuid() == 0:
        root = os.path.join(top, "netrunner")
        _ensure_base(root)
        _enable(top, wanted & _read_words(os.path.join(top, "cgroup.controllers")), needs)
        return root
    own = h.v2.own
    if own is not None and _owned(own):
        root = os.path.join(own, "netrunner")
        _ensure_base(root)
        return root
    user = _user_name()
    raise CgroupUnavailable(
        errno.EACCES,
        f"no cgroup-v2 directory usable by {user}: this process's cgroup "
        f"({own or 'not visible'}) is not delegated to it, and {ROOT_VARIABLE} is not set; "
        + _FIX.format(var=ROOT_VARIABLE, example=os.path.join(top, user), user=user),
    )


def _check_delegation(h: pure.Host, root: str) -> None:
    """Unprivileged, a process may move a child only between cgroups whose
    common ancestor's cgroup.procs it can write: say so before spawning."""
    if os.geteuid() == 0 or h.v2 is None or h.v2.own is None:
        return
    ancestor = os.path.commonpath([os.path.realpath(root), os.path.realpath(h.v2.own)])
    if not os.access(os.path.join(ancestor, "cgroup.procs"), os.W_OK):
        user = _user_name()
        raise CgroupUnavailable(
            errno.EACCES,
            f"{ROOT_VARIABLE}={root} is not usable from this process's cgroup {h.v2.own}: the kernel "
            f"lets {user} move a command only within a cgroup it owns, and {ancestor} is not; "
            f"start Python inside {root} (or a cgroup below it), e.g. "
            "`systemd-run --user --scope -p Delegate=yes python ...`",
        )


def _owned(path: str) -> bool:
    try:
        return os.stat(path).st_uid == os.geteuid() and os.access(os.path.join(path, "cgroup.procs"), os.W_OK)
    except OSError:
        return False


def _user_name() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return str(os.geteuid())


def _missing_controller(controller: str, root: str, h: pure.Host) -> str:
    limit = {c: n for n, c in _LIMIT_CONTROLLER.items()}[controller]
    where = (
        f"not in {root}/cgroup.controllers"
        + ("" if controller in h.v1 else " and no cgroup-v1 hierarchy has it")
        + (f" (the {controller} controller is on a cgroup-v1 hierarchy, which only root can use)"
           if controller in h.v1 and os.geteuid() != 0 else "")
    )
    parent = os.path.dirname(root)
    fix = f"enable it in {parent}/cgroup.subtree_control (`echo +{controller} > {parent}/cgroup.subtree_control`)"
    if controller not in _read_words(os.path.join(parent, "cgroup.controllers")):
        fix = f"have it delegated to {parent} (systemd: Delegate=yes, or `systemd-run -p Delegate=yes ...`)"
    elif _read(os.path.join(parent, "cgroup.procs")).split():
        fix += (
            f"; {parent} holds processes (the interpreter, perhaps), and the kernel's no-internal-processes "
            f"rule forbids that then: move them into a leaf first, e.g. `mkdir {parent}/interpreter` and "
            f"write their pids to {parent}/interpreter/cgroup.procs"
        )
    return f"{limit} needs the {controller} cgroup controller, which is {where}; {fix}"


def _v1_usable(h: pure.Host, controller: str) -> bool:
    return os.access(h.v1[controller].mount.mount_point, os.W_OK)


def _components(spec: Cgroup, root: str) -> tuple[str, ...]:
    """The path's components; for ``path=None`` a name not in use under root."""
    if spec.path is not None:
        return pure.relative(spec.path)
    while True:
        name = f"run-{os.getpid()}-{next(_names)}"
        if not os.path.lexists(os.path.join(root, name)):
            return (name,)


def _make(placement: Placement, base: str, parts: tuple[str, ...], role: int,
          controllers: set[str], needs: set[str]) -> str:
    """Make base/parts... (recording what is new), enabling ``controllers``
    for every level below base; returns the leaf.

    A level made by an earlier command of this interpreter counts as made
    here too: whichever of the commands sharing it ends last removes it. That
    command may end while this one is being set up, so a level that vanishes
    under us is made again."""
    for attempt in range(3):
        here = base
        records: list[bytes] = []
        try:
            for i, part in enumerate(parts):
                _enable(here, controllers, needs)
                here = os.path.join(here, part)
                last = i == len(parts) - 1
                if last:
                    made = _mkdir(here, remember=placement.created)
                else:
                    with _lock:  # made and recorded as one step: a sharer sees both or neither
                        made = _mkdir(here, remember=placement.created)
                        if made:
                            _made_parents.add(here)
                        elif here in _made_parents:
                            made = True
                            placement.created.append(here)
                records.append(
                    codec.encode_cgroup(role if last else wire.CGROUP_PARENT, os.fsencode(here), remove=made)
                )
        except CgroupUnavailable as exc:
            if exc.errno != errno.ENOENT or attempt == 2:
                raise
            _bases.discard(base)  # removed behind our back: make it again
            if base != os.environ.get(ROOT_VARIABLE):
                _ensure_base(base)
            continue
        placement.records.extend(records)
        placement.members.append(here)
        return here
    raise AssertionError("unreachable")  # pragma: no cover


def _ensure_base(path: str) -> None:
    """Make a root (kept for good) unless this interpreter already has."""
    if path not in _bases:
        _mkdir(path, remember=None)
        _bases.add(path)


def _mkdir(path: str, remember: list[str] | None) -> bool:
    """Make one directory; True when it is new (and then remembered)."""
    try:
        os.mkdir(path)
    except FileExistsError:
        if not os.path.isdir(path):
            if not os.path.lexists(path):  # removed meanwhile, by the last command that shared it
                raise CgroupUnavailable(errno.ENOENT, f"{path} vanished while it was being made") from None
            raise CgroupUnavailable(errno.ENOTDIR, f"{path} exists and is not a cgroup directory") from None
        return False
    except OSError as exc:
        raise CgroupUnavailable(exc.errno, f"cannot create the cgroup {path}: {exc.strerror}") from None
    if remember is not None:
        remember.append(path)
    return True


def _enable(parent: str, controllers: set[str], needs: set[str]) -> None:
    """Let parent's children use ``controllers`` (v2 cgroup.subtree_control).
    Only those in ``needs`` must succeed; the others (memory, for the peak)
    are best effort."""
    if not controllers:
        return
    have = _read_words(os.path.join(parent, "cgroup.subtree_control"))
    for c in sorted(controllers - have):
        try:
            _write(os.path.join(parent, "cgroup.subtree_control"), f"+{c}")
        except OSError as exc:
            if c not in needs:
                continue
            why = (
                " (the kernel's no-internal-processes rule: a cgroup holding processes cannot give "
                "controllers to its children; move them into a leaf cgroup)"
                if exc.errno == errno.EBUSY else ""
            )
            raise CgroupUnavailable(
                exc.errno, f"cannot enable the {c} controller in {parent}: {exc.strerror}{why}"
            ) from None


def _refuse_busy(spec: Cgroup, leaf: str) -> None:
    """A cgroup that already holds processes is someone else's: everything in
    a command's cgroup is killed when the command ends."""
    events = pure.parse_keyed(_read(os.path.join(leaf, "cgroup.events")))
    if events.get("populated", 0):
        raise CgroupUnavailable(
            errno.EBUSY,
            f"cgroup {spec.path!r} ({leaf}) already has processes in it; netrunner kills everything "
            "in a command's cgroup when the command ends, so give each command a path of its own",
        )


def _limit_v2(leaf: str, spec: Cgroup, controllers: set[str]) -> None:
    if "memory" in controllers and spec.memory_max is not None:
        _set(leaf, "memory.max", str(spec.memory_max))
        _set(leaf, "memory.swap.max", "0", optional=True)  # the limit bounds swap too
    if "pids" in controllers and spec.pids_max is not None:
        _set(leaf, "pids.max", str(spec.pids_max))
    if "cpu" in controllers and spec.cpu_max is not None:
        _set(leaf, "cpu.max", f"{pure.cpu_quota(spec.cpu_max, CPU_PERIOD_US)} {CPU_PERIOD_US}")


def _limit_v1(controller: str, leaf: str, spec: Cgroup) -> None:
    if controller == "memory" and spec.memory_max is not None:
        _set(leaf, "memory.limit_in_bytes", str(spec.memory_max))
        _set(leaf, "memory.memsw.limit_in_bytes", str(spec.memory_max), optional=True)
    elif controller == "pids" and spec.pids_max is not None:
        _set(leaf, "pids.max", str(spec.pids_max))
    elif controller == "cpu" and spec.cpu_max is not None:
        _set(leaf, "cpu.cfs_period_us", str(CPU_PERIOD_US))
        _set(leaf, "cpu.cfs_quota_us", str(pure.cpu_quota(spec.cpu_max, CPU_PERIOD_US)))


def _set(leaf: str, name: str, value: str, *, optional: bool = False) -> None:
    try:
        _write(os.path.join(leaf, name), value)
    except OSError as exc:
        if optional and exc.errno in (errno.ENOENT, errno.EACCES, errno.EINVAL):
            return
        raise CgroupUnavailable(exc.errno, f"cannot set {name} to {value} in {leaf}: {exc.strerror}") from None


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _read(path: str) -> str:
    """A small cgroup file's text ("" when it cannot be read)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        return os.read(fd, 65536).decode(errors="replace")
    except OSError:
        return ""
    finally:
        os.close(fd)


def _read_words(path: str) -> set[str]:
    return set(_read(path).split())


# --- the end, when the shepherd cannot do it ----------------------------------


def kill(placement: Placement) -> None:
    """SIGKILL everything in the command's cgroup: ``cgroup.kill``, or, before
    Linux 5.14, each member through a pidfd opened while it was listed."""
    try:
        _write(os.path.join(placement.v2, "cgroup.kill"), "1")
        return
    except OSError:
        pass
    for _ in range(100):
        pids = _members(placement.v2)
        if not pids:
            return
        for pid in pids:
            try:
                pidfd = os.pidfd_open(pid)
            except OSError:
                continue
            try:
                if pid in _members(placement.v2):  # still the member listed, not a reused number
                    _signal.pidfd_send_signal(pidfd, _signal.SIGKILL)
            except OSError:
                pass
            finally:
                os.close(pidfd)
        time.sleep(0.001)


def _members(leaf: str) -> set[int]:
    return {int(w) for w in _read(os.path.join(leaf, "cgroup.procs")).split() if w.isdigit()}


def remove(placement: Placement, wait: float = 0.0) -> bool:
    """Remove the directories made for the command, innermost first, waiting
    up to ``wait`` seconds for killed members to be gone. True when every
    leaf went (a parent another command uses stays, rightly)."""
    deadline = time.monotonic() + wait
    ok = True
    for path in reversed(placement.created):
        while True:
            try:
                if path in placement.members:
                    _remove_below(path)
                os.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if exc.errno == errno.EBUSY and path in placement.members and time.monotonic() < deadline:
                    time.sleep(0.002)
                    continue
                if path in placement.members:
                    ok = False
                break
    return ok


def _remove_below(leaf: str) -> None:
    """The cgroups the command made inside its own, deepest first."""
    for here, _dirs, _files in os.walk(leaf, topdown=False):
        if here == leaf:
            break
        try:
            os.rmdir(here)
        except OSError:
            pass
