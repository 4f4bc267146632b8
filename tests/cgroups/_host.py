"""Host probes for the cgroup tests (SPEC section 9).

Everything is discovered from ``/proc/self/mountinfo``: the cgroup-v2 mount
(netrunner's root for root is ``<v2 mount>/netrunner`` unless
``NETRUNNER_CGROUP_ROOT`` says otherwise) and every cgroup-v1 hierarchy
(on a hybrid host the limits go to ``<v1 mount>/netrunner/<path>``). No path
is hard-coded.

Also here: a tracker that gives each test unique cgroup paths and fails it
when a directory it caused is left behind (removing it, and killing what is
in it, to keep the host clean); an owner process (a separate Python that
uses netrunner and is then SIGKILLed or put in a foreign pid namespace); and
a runner for Python code as an unprivileged user.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conftest import MARKER_VAR, wait_until
from helpers import pid_alive

ROOT_VARIABLE = "NETRUNNER_CGROUP_ROOT"
NOBODY = 65534
PY = sys.executable
MiB = 1 << 20

# ------------------------------------------------------------------ mounts


@dataclass(frozen=True)
class Mount:
    """One ``cgroup``/``cgroup2`` line of /proc/self/mountinfo."""

    mount_point: str
    root: str  # the cgroup path shown at the top of the mount
    version: int
    controllers: frozenset[str]


_NOT_CONTROLLERS = {"rw", "ro", "none", "all", "noprefix", "clone_children", "cpuset_v2_mode", "xattr",
                    "favordynmods", "nofavordynmods", "seclabel"}


def _unescape(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def cgroup_mounts() -> list[Mount]:
    """Every cgroup and cgroup2 mount this process sees."""
    mounts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if "-" not in fields[6:]:
                continue
            sep = fields.index("-", 6)
            fstype, options = fields[sep + 1], (fields[sep + 3] if len(fields) > sep + 3 else "")
            if fstype not in ("cgroup", "cgroup2"):
                continue
            controllers: frozenset[str] = frozenset()
            if fstype == "cgroup":
                controllers = frozenset(
                    o for o in options.split(",") if o and "=" not in o and o not in _NOT_CONTROLLERS
                )
            mounts.append(Mount(_unescape(fields[4]), _unescape(fields[3]), 2 if fstype == "cgroup2" else 1,
                                controllers))
    return mounts


def v2_mount() -> Mount:
    found = [m for m in cgroup_mounts() if m.version == 2]
    assert found, "precondition: no cgroup2 mount in /proc/self/mountinfo"
    return found[0]


def v1_mounts() -> dict[str, Mount]:
    """controller -> its v1 hierarchy's mount (hybrid hosts)."""
    out: dict[str, Mount] = {}
    for m in cgroup_mounts():
        if m.version == 1:
            for c in m.controllers:
                out.setdefault(c, m)
    return out


def v1_mount_points() -> list[str]:
    """Every distinct v1 mount point (named hierarchies such as name=systemd included)."""
    seen: list[str] = []
    for m in cgroup_mounts():
        if m.version == 1 and m.mount_point not in seen:
            seen.append(m.mount_point)
    return seen


def v2_controllers(directory: str | None = None) -> set[str]:
    """The controllers a v2 directory (default: the top of the mount) offers."""
    directory = directory or v2_mount().mount_point
    with open(os.path.join(directory, "cgroup.controllers")) as f:
        return set(f.read().split())


def netrunner_root() -> str:
    """netrunner's v2 cgroup root as root sees it (SPEC 9)."""
    given = os.environ.get(ROOT_VARIABLE)
    return given if given else os.path.join(v2_mount().mount_point, "netrunner")


def limit_home(controller: str) -> str:
    """Where netrunner must put a limit of ``controller``: "v2" when the v2
    root offers it, else "v1" (hybrid). Fails when neither has it."""
    if controller in v2_controllers():
        return "v2"
    assert controller in v1_mounts(), (
        f"precondition: the {controller} controller is neither in the v2 hierarchy "
        f"({sorted(v2_controllers())}) nor on a v1 hierarchy ({sorted(v1_mounts())})"
    )
    return "v1"


def dirs_of(path: str, root: str | None = None) -> dict[str, str]:
    """Every directory netrunner could make for ``path``: ``"v2"`` and one per
    v1 mount point (keyed by the mount point)."""
    out = {"v2": os.path.join(root or netrunner_root(), path)}
    for mp in v1_mount_points():
        out[mp] = os.path.join(mp, "netrunner", path)
    return out


def existing(path: str, root: str | None = None) -> list[str]:
    """The directories of ``dirs_of(path)`` that exist."""
    return [d for d in dirs_of(path, root).values() if os.path.isdir(d)]


def memory_v1_dir(path: str) -> str | None:
    """``<memory v1 mount>/netrunner/<path>``, or None without a v1 memory hierarchy."""
    m = v1_mounts().get("memory")
    return None if m is None else os.path.join(m.mount_point, "netrunner", path)


def cgroup_path_of(directory: str, mount: Mount) -> str:
    """The path /proc/<pid>/cgroup shows for a member of ``directory``."""
    rel = os.path.relpath(directory, mount.mount_point)
    return os.path.normpath(os.path.join(mount.root, rel)) if rel != "." else mount.root


def expected_v2_line(path: str, root: str | None = None) -> str:
    """``0::/...`` as the command's /proc/self/cgroup must show it."""
    return "0::" + cgroup_path_of(os.path.join(root or netrunner_root(), path), v2_mount())


# ------------------------------------------------------- /proc/<pid>/cgroup


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """``/proc/<pid>/cgroup`` text -> {"v2": path, "<controller>": path, ...}."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, controllers, path = parts
        if hid == "0" and controllers == "":
            out["v2"] = path
        else:
            for c in controllers.split(","):
                out[c] = path
    return out


def proc_cgroup(pid: int | str = "self") -> dict[str, str]:
    with open(f"/proc/{pid}/cgroup") as f:
        return parse_proc_cgroup(f.read())


def controller_dir(pid: int, controller: str) -> str:
    """The directory holding ``pid``'s ``controller`` settings: its v2
    directory when v2 offers the controller, else its v1 one."""
    lines = proc_cgroup(pid)
    if limit_home(controller) == "v2":
        m = v2_mount()
        return os.path.join(m.mount_point, os.path.relpath(lines["v2"], m.root))
    m = v1_mounts()[controller]
    return os.path.join(m.mount_point, os.path.relpath(lines[controller], m.root))


def members(directory: str) -> list[int]:
    """The pids in a cgroup directory ([] when it is gone, or going: a
    cgroup removed between the open and the read answers ENODEV)."""
    try:
        with open(os.path.join(directory, "cgroup.procs")) as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            return []
        raise


def read(directory: str, name: str) -> str:
    with open(os.path.join(directory, name)) as f:
        return f.read().strip()


def dead(pid: int, timeout: float = 5.0) -> bool:
    return bool(wait_until(lambda: not pid_alive(pid), timeout=timeout))


def kill_quietly(pids: list[int] | set[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# ------------------------------------------------------- cleaning the host


def subtree(top: str) -> list[str]:
    """``top`` and every directory below it, parents first ([] if missing)."""
    if not os.path.isdir(top):
        return []
    out = []
    for here, dirs, _files in os.walk(top):
        out.append(here)
        dirs.sort()
    return out


def kill_and_remove(top: str) -> list[str]:
    """Kill everything in the cgroup subtree ``top`` and remove it, deepest
    first. Returns what could not be removed."""
    failed = []
    for d in reversed(subtree(top)):
        kill_file = os.path.join(d, "cgroup.kill")
        if os.path.exists(kill_file):
            try:
                with open(kill_file, "w") as f:
                    f.write("1")
            except OSError:
                pass
        wait_until(lambda d=d: _kill_members(d), timeout=5.0)
        removed = wait_until(lambda d=d: _rmdir(d), timeout=5.0)
        if not removed:
            failed.append(d)
    return failed


def _kill_members(d: str) -> bool:
    """SIGKILL what is left in ``d`` (v1 has no cgroup.kill); True once empty."""
    kill_quietly(members(d))
    return not members(d)


def _rmdir(d: str) -> bool:
    try:
        os.rmdir(d)
    except FileNotFoundError:
        return True
    except OSError as exc:
        if exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
            return False
        raise
    return True


#: The tokens of this process's Trackers. A directory whose top component is
#: another token's (``t-<12 hex>-<n>``) belongs to another run of this suite
#: on the same machine, and is none of this run's business.
_OWN_TOKENS: set[str] = set()
_TOKEN_TOP = re.compile(r"(t-[0-9a-f]{12})-\d+")


def _foreign(base: str, directory: str) -> bool:
    top = os.path.relpath(directory, base).split(os.sep, 1)[0]
    match = _TOKEN_TOP.fullmatch(top)
    return match is not None and match.group(1) not in _OWN_TOKENS


def snapshot(extra_bases: tuple[str, ...] = ()) -> set[str]:
    """Every directory below netrunner's roots (v2 root, each v1 ``netrunner``),
    but those of another run of the suite (another process's Tracker)."""
    out: set[str] = set()
    bases = [netrunner_root(), *(os.path.join(mp, "netrunner") for mp in v1_mount_points()), *extra_bases]
    for base in bases:
        out.update(d for d in subtree(base) if d != base and not _foreign(base, d))
    return out


def new_dirs_settled(before: set[str], timeout: float = 5.0) -> set[str]:
    """Directories created since ``before`` that are still there after ``timeout``."""
    wait_until(lambda: not (snapshot() - before), timeout=timeout)
    return snapshot() - before


@dataclass
class Tracker:
    """Unique cgroup paths for one test, and the proof none is left behind.

    ``path()`` gives a fresh top-level name (``t-<hex>-<n>``) with an optional
    sub-path; at teardown every directory under any netrunner root whose top
    component is one of those names, and that the test did not make itself
    (``make``), fails the test. Everything is then killed and removed."""

    token: str = field(default_factory=lambda: "t-" + uuid.uuid4().hex[:12])
    tops: list[str] = field(default_factory=list)
    bases: list[str] = field(default_factory=list)
    made: list[str] = field(default_factory=list)
    removable: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _OWN_TOKENS.add(self.token)
        self.bases = [netrunner_root(), *(os.path.join(mp, "netrunner") for mp in v1_mount_points())]

    def path(self, sub: str = "") -> str:
        top = f"{self.token}-{len(self.tops)}"
        self.tops.append(top)
        return f"{top}/{sub}" if sub else top

    def add_base(self, base: str) -> None:
        """Also watch ``base`` (a custom NETRUNNER_CGROUP_ROOT)."""
        self.bases.append(base)

    def make(self, directory: str) -> str:
        """Create a cgroup directory the test owns (parents too); removed at
        teardown without counting as a leftover."""
        parts = []
        d = directory
        while not os.path.isdir(d):
            parts.append(d)
            d = os.path.dirname(d)
        for p in reversed(parts):
            os.mkdir(p)
            self.made.append(p)
        return directory

    def own_tree(self, directory: str) -> None:
        """A test-owned subtree (e.g. a delegated cgroup): removed at teardown."""
        self.removable.append(directory)

    def leftovers(self) -> list[str]:
        out: list[str] = []
        for base in self.bases:
            for top in self.tops:
                out.extend(d for d in subtree(os.path.join(base, top)) if d not in self.made)
        return out

    def cleanup(self) -> list[str]:
        failed = []
        for base in self.bases:
            for top in self.tops:
                failed += kill_and_remove(os.path.join(base, top))
        for d in [*self.removable, *reversed(self.made)]:
            failed += kill_and_remove(d)
        return failed


def tracked() -> Iterator[Tracker]:
    """The body of the per-module ``cg`` fixture."""
    tracker = Tracker()
    try:
        yield tracker
    finally:
        wait_until(lambda: not tracker.leftovers(), timeout=5.0)
        left = tracker.leftovers()
        failed = tracker.cleanup()
        assert not failed, f"could not remove cgroup directories (still populated?): {failed}"
    assert not left, f"cgroup directories left behind after the test (now removed): {left}"


# --------------------------------------------------------------- commands

#: argv of a command that prints its own /proc/self/cgroup, starts a
#: double-forked setsid'd sleeper that writes "<pid>\n<its /proc/self/cgroup>"
#: to $1 (atomically), waits for that file, and then reads one line of stdin
#: (EOF at once in run()).
def placement_cmd(report: Path) -> list[str]:
    inner = '{ echo $$; cat /proc/self/cgroup; } > "$0.tmp" && mv "$0.tmp" "$0"; exec sleep 1000'
    script = (
        f"(setsid sh -c '{inner}' \"$1\" </dev/null >/dev/null 2>&1 &); "
        'cat /proc/self/cgroup; while [ ! -s "$1" ]; do sleep 0.01; done; read x; exit 0'
    )
    return ["sh", "-c", script, "sh", str(report)]


def read_report(report: Path, timeout: float = 10.0) -> tuple[int, dict[str, str], str]:
    """(pid, parsed cgroup lines, raw text) that the sleeper of ``placement_cmd`` wrote."""
    assert wait_until(lambda: report.exists() and report.stat().st_size > 0, timeout=timeout), (
        f"the setsid'd descendant never wrote {report}"
    )
    first, _, rest = report.read_text().partition("\n")
    return int(first), parse_proc_cgroup(rest), rest


def with_daemon(pidfile: Path, then: str) -> list[str]:
    """argv of a shell that double-forks a setsid'd ``sleep 1000`` (which
    writes its pid to ``pidfile`` first), waits for that pid, then runs the
    shell text ``then``."""
    inner = 'echo $$ > "$0.tmp" && mv "$0.tmp" "$0"; exec sleep 1000'
    script = (
        f"(setsid sh -c '{inner}' \"$1\" </dev/null >/dev/null 2>&1 &); "
        'while [ ! -s "$1" ]; do sleep 0.01; done; ' + then
    )
    return ["sh", "-c", script, "sh", str(pidfile)]


def daemon_pid(pidfile: Path, timeout: float = 10.0) -> int:
    """The pid the daemon of ``with_daemon`` wrote."""
    assert wait_until(lambda: pidfile.exists() and pidfile.stat().st_size > 0, timeout=timeout), (
        f"the setsid'd daemon never wrote its pid to {pidfile}"
    )
    return int(pidfile.read_text())


#: argv of a command that allocates and touches ``mib`` MiB, then exits 0.
def allocator(mib: int) -> list[str]:
    return [PY, "-c", f"b = b'x' * ({mib} << 20); print(len(b) >> 20, flush=True)"]


# ------------------------------------------------------------------ owners

OWNER_PRELUDE = textwrap.dedent(
    """
    import json, os, signal, sys, time

    def report(tag="RESULT", **fields):
        sys.stdout.write(tag + " " + json.dumps(fields) + "\\n")
        sys.stdout.flush()

    def until(predicate, timeout=10.0, interval=0.005):
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value or time.monotonic() >= deadline:
                return value
            time.sleep(interval)

    def members(d):
        try:
            with open(os.path.join(d, "cgroup.procs")) as f:
                return [int(x) for x in f.read().split()]
        except OSError:
            return []
    """
)


class Owner:
    """A separate Python (``OWNER_PRELUDE`` + ``body``, argv ``args``) whose
    stdout and stderr go to files; it inherits the test's environment (the
    marker)."""

    def __init__(self, body: str, tmp: Path, *args: str, prefix: tuple[str, ...] = ()) -> None:
        self.out_path = tmp / f"owner-{id(self)}.out"
        self.err_path = tmp / f"owner-{id(self)}.err"
        code = OWNER_PRELUDE + textwrap.dedent(body)
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen([*prefix, PY, "-c", code, *args], stdin=subprocess.PIPE,
                                         stdout=out, stderr=err)

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def result(self, tag: str = "RESULT", timeout: float = 30.0) -> dict[str, Any]:
        def lines() -> list[str]:
            return [x for x in self.stdout().splitlines() if x.startswith(tag + " ")]

        wait_until(lambda: lines() or self.proc.poll() is not None, timeout=timeout)
        found = lines()
        assert found, (
            f"the owner never reported {tag} within {timeout} s (exit status {self.proc.poll()}); "
            f"stdout: {self.stdout()!r}; stderr: {self.stderr()!r}"
        )
        value: dict[str, Any] = json.loads(found[0][len(tag) + 1:])
        return value

    def tell(self, text: str = "go\n") -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def kill(self) -> None:
        try:
            self.proc.send_signal(signal.SIGKILL)
        except ProcessLookupError:
            pass

    def finish(self, timeout: float = 20.0) -> int | None:
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.wait()


# ------------------------------------------------------------ unprivileged

#: Runs first in the unprivileged helper, still as root: join a cgroup if
#: asked (the kernel lets an unprivileged process move commands only within
#: a cgroup it owns, so the helper itself must live in the delegated one),
#: then drop to the uid for good -- before netrunner is imported.
DROP_PRELUDE = textwrap.dedent(
    """
    import json, os, sys

    def report(**fields):
        sys.stdout.write("RESULT " + json.dumps(fields) + "\\n")
        sys.stdout.flush()

    _join = os.environ.pop("NR_TEST_JOIN", "")
    if _join:
        with open(os.path.join(_join, "cgroup.procs"), "w") as _f:
            _f.write(str(os.getpid()))
    _uid = int(os.environ.pop("NR_TEST_UID"))
    os.setgroups([])
    os.setgid(_uid)
    os.setuid(_uid)
    assert os.getuid() == os.geteuid() == _uid and os.getgid() == _uid
    """
)

_PROBE = """
import netrunner, netrunner.aio, asyncio, errno, pwd, uuid
shepherd = os.environ.get("NETRUNNER_SHEPHERD", "")
assert not shepherd or os.access(shepherd, os.X_OK), f"cannot execute {shepherd}"
report(uid=os.getuid(), ok=True)
"""

_python_for_nobody: list[str] = []


def netrunner_src() -> str:
    import netrunner

    return str(Path(netrunner.__file__).resolve().parent.parent)


def shepherd_binary() -> str:
    from netrunner._io.shepherd import find_shepherd

    return str(find_shepherd())


def _unprivileged_env(join: str | None, root: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (ROOT_VARIABLE, "PYTHONHOME")}
    env.update(PYTHONPATH=netrunner_src(), NETRUNNER_SHEPHERD=shepherd_binary(), NR_TEST_UID=str(NOBODY),
               PYTHONDONTWRITEBYTECODE="1")
    assert env.get(MARKER_VAR), "the autouse marker fixture must be active"
    if join:
        env["NR_TEST_JOIN"] = join
    if root:
        env[ROOT_VARIABLE] = root
    return env


def python_for_nobody() -> str:
    """An interpreter that still imports netrunner (and what it lazily needs)
    after dropping to uid 65534: this venv's if its standard library is
    readable by that user, else the system's python3. Fails, saying why,
    when there is none."""
    if _python_for_nobody:
        return _python_for_nobody[0]
    failures = []
    for exe in dict.fromkeys([PY, "/usr/bin/python3", "/usr/local/bin/python3"]):
        if not os.path.exists(exe):
            continue
        r = subprocess.run([exe, "-S", "-c", DROP_PRELUDE + _PROBE], env=_unprivileged_env(None, None),
                           capture_output=True, text=True, timeout=60, cwd="/")
        if r.returncode == 0 and "RESULT " in r.stdout:
            _python_for_nobody.append(exe)
            return exe
        failures.append(f"{exe}: exit {r.returncode}: {r.stderr.strip()[-400:]}")
    raise AssertionError(
        f"precondition: no Python can import netrunner from {netrunner_src()} as uid {NOBODY} "
        f"(make the checkout and the shepherd readable by that user): {failures}"
    )


def run_unprivileged(body: str, *, join: str | None = None, root: str | None = None,
                     timeout: float = 60.0) -> dict[str, Any]:
    """Run ``body`` as uid 65534 (optionally living in cgroup ``join``, with
    ``NETRUNNER_CGROUP_ROOT=root``) and return its ``RESULT`` JSON."""
    exe = python_for_nobody()
    r = subprocess.run([exe, "-S", "-c", DROP_PRELUDE + textwrap.dedent(body)], env=_unprivileged_env(join, root),
                       capture_output=True, text=True, timeout=timeout, cwd="/")
    found = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")]
    assert found, f"the unprivileged helper ({exe}) reported nothing (exit {r.returncode}); stderr: {r.stderr!r}"
    value: dict[str, Any] = json.loads(found[-1][len("RESULT "):])
    value.setdefault("_stderr", r.stderr)
    return value


def elapsed(t0: float) -> float:
    return round(time.monotonic() - t0, 3)
