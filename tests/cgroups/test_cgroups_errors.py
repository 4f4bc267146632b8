"""SPEC sections 2, 9 and 13: cgroup errors are raised at the call, before
anything is spawned (no new child process, no new cgroup directory).

* ``InvalidCgroup`` (a ``ValueError``): absolute, ``..``, ``.``, empty
  components, NUL, the empty string;
* ``TypeError`` for a value that is neither ``str`` nor ``Cgroup``;
* ``ValueError`` naming both options for ``leftovers="detach"`` with a cgroup;
* ``CgroupUnavailable`` (``EBUSY``, "in use") for an existing directory that
  already holds processes; and for an unusable ``NETRUNNER_CGROUP_ROOT``.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _host import Tracker, existing, members, netrunner_root, snapshot, tracked, v2_mount
from conftest import helper_pids, own_children

import netrunner
import netrunner.aio


@pytest.fixture
def cg(marker: str) -> Iterator[Tracker]:
    yield from tracked()


INVALID = [
    "/abs",
    "/",
    "..",
    "../x",
    "a/../b",
    "a/..",
    ".",
    "./a",
    "a/./b",
    "a//b",
    "a/",
    "",
    "a\0b",
]


def _sync_run(cgroup: Any, **kw: Any) -> Any:
    return netrunner.run(["true"], cgroup=cgroup, **kw)


def _sync_start(cgroup: Any, **kw: Any) -> Any:
    with netrunner.start(["true"], cgroup=cgroup, **kw) as p:
        return p.wait()


def _sync_stream(cgroup: Any, **kw: Any) -> Any:
    with netrunner.stream(["true"], cgroup=cgroup, **kw) as s:
        return list(s)


def _aio_run(cgroup: Any, **kw: Any) -> Any:
    return asyncio.run(netrunner.aio.run(["true"], cgroup=cgroup, **kw))


def _aio_start(cgroup: Any, **kw: Any) -> Any:
    async def go() -> Any:
        async with await netrunner.aio.start(["true"], cgroup=cgroup, **kw) as p:
            return await p.wait()

    return asyncio.run(go())


def _aio_stream(cgroup: Any, **kw: Any) -> Any:
    return netrunner.aio.stream(["true"], cgroup=cgroup, **kw)  # validates at the call


def _command(cgroup: Any, **kw: Any) -> Any:
    return netrunner.run(netrunner.Command("true", cgroup=cgroup, **kw))


ENTRIES: dict[str, Callable[..., Any]] = {
    "run": _sync_run, "start": _sync_start, "stream": _sync_stream, "aio.run": _aio_run,
    "aio.start": _aio_start, "aio.stream": _aio_stream, "Command": _command,
}


class NothingSpawned:
    """Snapshot of this process's children and of netrunner's cgroup
    directories; ``check()`` fails if either grew."""

    def __init__(self) -> None:
        self.kids = own_children() | helper_pids()
        self.dirs = snapshot()

    def check(self, what: str) -> None:
        new_kids = own_children() - self.kids - helper_pids()
        assert not new_kids, f"{what}: child processes were spawned before the error: {sorted(new_kids)}"
        new_dirs = snapshot() - self.dirs
        assert not new_dirs, f"{what}: cgroup directories were made before the error: {sorted(new_dirs)}"


@pytest.fixture(autouse=True)
def _warm() -> None:
    """Spawn once first, so a helper (zygote) started lazily is not counted."""
    netrunner.run(["true"])


@pytest.mark.parametrize("entry", list(ENTRIES))
@pytest.mark.parametrize("bad", INVALID, ids=[repr(b) for b in INVALID])
def test_invalid_path(entry: str, bad: str) -> None:
    before = NothingSpawned()
    with pytest.raises(netrunner.InvalidCgroup) as info:
        ENTRIES[entry](bad)
    assert isinstance(info.value, ValueError)
    before.check(f"{entry}(cgroup={bad!r})")
    with pytest.raises(netrunner.InvalidCgroup):
        ENTRIES[entry](netrunner.Cgroup(bad))
    before.check(f"{entry}(cgroup=Cgroup({bad!r}))")


@pytest.mark.parametrize("bad", INVALID, ids=[repr(b) for b in INVALID])
def test_invalid_path_in_cgroup_constructor_or_call(bad: str) -> None:
    with pytest.raises(netrunner.InvalidCgroup):
        netrunner.run(["true"], cgroup=netrunner.Cgroup(path=bad))


@pytest.mark.parametrize("entry", list(ENTRIES))
@pytest.mark.parametrize("bad", [123, b"jobs", ["jobs"], 1.5, {"path": "x"}], ids=repr)
def test_wrong_type(entry: str, bad: Any) -> None:
    before = NothingSpawned()
    with pytest.raises(TypeError) as info:
        ENTRIES[entry](bad)
    assert "cgroup" in str(info.value), f"the TypeError does not name the option: {info.value}"
    before.check(f"{entry}(cgroup={bad!r})")


@pytest.mark.parametrize("entry", ["run", "start", "stream", "aio.run", "aio.start", "aio.stream", "Command"])
def test_detach_with_cgroup(entry: str, cg: Tracker) -> None:
    before = NothingSpawned()
    with pytest.raises(ValueError, match="leftovers") as info:
        ENTRIES[entry](cg.path(), leftovers="detach")
    assert "cgroup" in str(info.value), f"the ValueError does not name 'cgroup': {info.value}"
    before.check(f"{entry}(cgroup=..., leftovers='detach')")


@pytest.mark.parametrize("entry", ["run", "start", "aio.run", "aio.start"])
def test_populated_existing_directory_is_busy(entry: str, cg: Tracker, marker_env: dict[str, str]) -> None:
    path = cg.path()
    os.makedirs(netrunner_root(), exist_ok=True)
    directory = cg.make(os.path.join(netrunner_root(), path))
    squatter = subprocess.Popen(["sleep", "1000"], env=marker_env)
    try:
        with open(os.path.join(directory, "cgroup.procs"), "w") as f:
            f.write(str(squatter.pid))
        assert members(directory) == [squatter.pid], f"precondition: {directory} holds {members(directory)}"
        before = NothingSpawned()
        with pytest.raises(netrunner.CgroupUnavailable) as info:
            ENTRIES[entry](path)
        err = info.value
        assert isinstance(err, OSError)
        assert err.errno == errno.EBUSY, f"errno {err.errno} ({err}), expected EBUSY"
        assert re.search(r"in use|has processes|busy", str(err), re.IGNORECASE), (
            f"the message does not say the path is in use: {err}"
        )
        assert path in str(err), f"the message does not name the path {path!r}: {err}"
        before.check(f"{entry}(cgroup={path!r}) with a populated directory")
        assert squatter.poll() is None, "netrunner killed the process that was already in the directory"
        assert members(directory) == [squatter.pid], f"{directory} now holds {members(directory)}"
        assert os.path.isdir(directory)
        others = [d for d in existing(path) if d != directory]
        assert not others, f"directories made for the refused command remain: {others}"
    finally:
        squatter.kill()
        squatter.wait()


def test_empty_existing_directory_is_fine(cg: Tracker) -> None:
    path = cg.path()
    os.makedirs(netrunner_root(), exist_ok=True)
    cg.make(os.path.join(netrunner_root(), path))
    assert netrunner.run(["true"], cgroup=path).returncode == 0


@pytest.mark.parametrize("kind", ["relative", "not-a-cgroup", "missing"])
def test_unusable_root_variable(kind: str, cg: Tracker, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    value = {
        "relative": "netrunner/relative",
        "not-a-cgroup": str(tmp_path),
        "missing": os.path.join(v2_mount().mount_point, cg.token + "-missing"),
    }[kind]
    monkeypatch.setenv("NETRUNNER_CGROUP_ROOT", value)
    before = NothingSpawned()
    with pytest.raises(netrunner.CgroupUnavailable) as info:
        netrunner.run(["true"], cgroup=cg.path())
    assert "NETRUNNER_CGROUP_ROOT" in str(info.value), f"the message does not name the variable: {info.value}"
    before.check(f"NETRUNNER_CGROUP_ROOT={value!r}")
    assert list(tmp_path.iterdir()) == [], f"netrunner wrote into {tmp_path}: {list(tmp_path.iterdir())}"


def test_invalid_limits_raise_at_construction() -> None:
    for kwargs in ({"memory_max": "lots"}, {"memory_max": -1}, {"cpu_max": 0}, {"cpu_max": -1.0},
                   {"pids_max": 0}, {"pids_max": -5}):
        with pytest.raises((ValueError, TypeError)) as info:
            netrunner.Cgroup(**kwargs)
        name = next(iter(kwargs))
        assert name in str(info.value), f"Cgroup({kwargs}) error does not name {name}: {info.value}"
    with pytest.raises(TypeError):
        netrunner.Cgroup(pids_max="10")  # type: ignore[arg-type]
