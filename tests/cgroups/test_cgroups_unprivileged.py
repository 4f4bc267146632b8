"""SPEC section 9 for a user who is not root (uid 65534, "nobody").

The helper is a separate Python that starts as root, optionally moves
itself into a cgroup, drops to uid 65534 for good and only then imports
netrunner (``_host.run_unprivileged``). The kernel's delegation rule: an
unprivileged process may move a process only between cgroups whose common
ancestor's ``cgroup.procs`` it can write, so for the delegated cases the
helper lives in ``<delegated>/leaf`` and ``<delegated>`` is chown'ed to it.

* no root variable and no owned cgroup: ``CgroupUnavailable`` whose message
  says how to fix it (``NETRUNNER_CGROUP_ROOT``, ``systemd-run``);
* ``NETRUNNER_CGROUP_ROOT=<delegated>``: the command runs in
  ``<delegated>/job`` and the directory is removed afterwards;
* no variable, but the helper's own cgroup is the user's: it is used;
* a limit whose controller the delegated cgroup does not offer (and v1
  hierarchies are root's): ``CgroupUnavailable`` at the call.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from _host import (
    NOBODY,
    Tracker,
    cgroup_path_of,
    proc_cgroup,
    run_unprivileged,
    subtree,
    tracked,
    v2_controllers,
    v2_mount,
)

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def cg(marker: str) -> Iterator[Tracker]:
    yield from tracked()


@pytest.fixture
def delegated(cg: Tracker) -> str:
    """``<v2 mount>/<token>-delegated`` with an empty ``leaf`` inside, owned
    (recursively) by uid 65534; removed at teardown."""
    top = os.path.join(v2_mount().mount_point, cg.token + "-delegated")
    os.mkdir(top)
    cg.own_tree(top)
    os.mkdir(os.path.join(top, "leaf"))
    for d in subtree(top):
        os.chown(d, NOBODY, NOBODY)
        for name in os.listdir(d):
            p = os.path.join(d, name)
            if os.path.isfile(p):
                os.chown(p, NOBODY, NOBODY)
    return top


WHERE_AM_I = """
try:
    r = netrunner.run(["cat", "/proc/self/cgroup"], cgroup="job")
    report(stdout=r.stdout.decode(), returncode=r.returncode, uid=os.getuid(), peak=r.stats.peak_memory,
           oom=r.stats.oom_killed)
except Exception as exc:
    report(error=f"{type(exc).__name__}: {exc}", errno=getattr(exc, "errno", None), uid=os.getuid())
"""


def test_no_usable_cgroup_says_how_to_fix() -> None:
    mount = v2_mount()
    own = os.path.join(mount.mount_point, os.path.relpath(proc_cgroup()["v2"], mount.root))
    assert os.stat(own).st_uid != NOBODY, f"precondition: the helper's cgroup {own} belongs to uid {NOBODY}"
    info = run_as_nobody(WHERE_AM_I)
    assert info["uid"] == NOBODY
    assert "error" in info, f"as uid {NOBODY} without a delegated cgroup, run(cgroup='job') did not fail: {info}"
    assert info["error"].startswith("CgroupUnavailable:"), info["error"]
    assert "NETRUNNER_CGROUP_ROOT" in info["error"], f"the message does not name NETRUNNER_CGROUP_ROOT: {info['error']}"
    assert "systemd-run" in info["error"], f"the message does not mention systemd-run: {info['error']}"


def test_root_variable_names_a_delegated_cgroup(delegated: str) -> None:
    leaf = os.path.join(delegated, "leaf")
    info = run_as_nobody(WHERE_AM_I, join=leaf, root=delegated)
    assert info["uid"] == NOBODY
    assert "error" not in info, f"run() as uid {NOBODY} with NETRUNNER_CGROUP_ROOT={delegated}: {info}"
    assert info["returncode"] == 0, info
    want = "0::" + cgroup_path_of(os.path.join(delegated, "job"), v2_mount())
    assert want in info["stdout"].splitlines(), f"the command is not in {want!r}: {info['stdout']}"
    assert not os.path.exists(os.path.join(delegated, "job")), f"{delegated}/job was not removed"
    assert os.path.isdir(delegated), "netrunner removed the NETRUNNER_CGROUP_ROOT directory"


def test_own_delegated_cgroup_is_used_without_the_variable(delegated: str) -> None:
    leaf = os.path.join(delegated, "leaf")
    info = run_as_nobody(WHERE_AM_I, join=leaf)
    assert "error" not in info, f"run() as uid {NOBODY} living in its own cgroup {leaf}: {info}"
    assert info["returncode"] == 0, info
    v2 = [x for x in info["stdout"].splitlines() if x.startswith("0::")]
    assert v2, f"no v2 line: {info['stdout']}"
    own = cgroup_path_of(leaf, v2_mount())
    assert v2[0].startswith("0::" + own + "/"), f"the command's cgroup {v2[0]} is not inside the helper's {own}"
    assert v2[0].endswith("/job"), v2[0]
    mount = v2_mount()
    job = os.path.normpath(os.path.join(mount.mount_point, os.path.relpath(v2[0][3:], mount.root)))
    assert not os.path.exists(job), f"{job} was not removed"


def test_limit_without_controller_is_unavailable(delegated: str) -> None:
    offered = v2_controllers(delegated)
    assert "memory" not in offered, (
        f"precondition: the delegated cgroup offers the memory controller ({sorted(offered)}); "
        "this host cannot show a missing controller this way"
    )
    body = """
try:
    netrunner.run(["true"], cgroup=netrunner.Cgroup("job2", memory_max="64M"))
    report(ran=True)
except Exception as exc:
    report(error=f"{type(exc).__name__}: {exc}", isoserror=isinstance(exc, OSError))
"""
    info = run_as_nobody(body, join=os.path.join(delegated, "leaf"), root=delegated)
    assert "error" in info, f"memory_max without a memory controller ran (silently unlimited?): {info}"
    assert info["error"].startswith("CgroupUnavailable:"), info["error"]
    assert "memory" in info["error"], f"the message does not say which controller is missing: {info['error']}"
    assert not os.path.exists(os.path.join(delegated, "job2")), "a directory was left for the refused command"


def run_as_nobody(body: str, *, join: str | None = None, root: str | None = None) -> dict[str, Any]:
    return run_unprivileged("import netrunner\n" + body, join=join, root=root)
