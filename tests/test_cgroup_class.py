"""netrunner.Cgroup: a validated, immutable, hashable value."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

import netrunner
from netrunner import Cgroup, InvalidCgroup


def test_exported() -> None:
    assert "Cgroup" in netrunner.__all__
    assert netrunner.Cgroup is Cgroup


def test_defaults() -> None:
    c = Cgroup()
    assert (c.path, c.memory_max, c.cpu_max, c.pids_max) == (None, None, None, None)
    assert c.limits is False
    assert repr(c) == "Cgroup()"


def test_full_construction_and_normalization() -> None:
    c = Cgroup("jobs/42", memory_max="512M", cpu_max=0.5, pids_max=100)
    assert c.path == "jobs/42"
    assert c.memory_max == 512 * 1024 * 1024
    assert type(c.memory_max) is int
    assert c.cpu_max == 0.5
    assert c.pids_max == 100
    assert c.limits is True


@pytest.mark.parametrize(
    "kwargs", [{"memory_max": 1}, {"cpu_max": 2}, {"pids_max": 1}],
)
def test_any_limit_counts(kwargs: dict[str, object]) -> None:
    assert Cgroup(**kwargs).limits is True  # type: ignore[arg-type]
    assert Cgroup("a", **kwargs).limits is True  # type: ignore[arg-type]
    assert Cgroup("a").limits is False


def test_cpu_max_is_kept_as_float() -> None:
    c = Cgroup(cpu_max=2)
    assert c.cpu_max == 2.0
    assert type(c.cpu_max) is float


def test_path_is_kept_as_given() -> None:
    assert Cgroup("a b/ü").path == "a b/ü"
    assert Cgroup(path="x").path == "x"


def test_equality_and_hash() -> None:
    a = Cgroup("jobs/1", memory_max="1G", cpu_max=1, pids_max=10)
    b = Cgroup("jobs/1", memory_max=1 << 30, cpu_max=1.0, pids_max=10)
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b, Cgroup("jobs/2"), Cgroup("jobs/2")}) == 2
    assert a != Cgroup("jobs/1", memory_max="1G", cpu_max=1, pids_max=11)
    assert Cgroup() == Cgroup()
    assert Cgroup() != Cgroup("x")
    assert Cgroup("x") != "x"  # type: ignore[comparison-overlap]


def test_immutable() -> None:
    c = Cgroup("jobs", memory_max="1M")
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.path = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.memory_max = 5  # type: ignore[misc]
    with pytest.raises((AttributeError, TypeError)):
        c.extra = 1  # type: ignore[attr-defined]
    assert not hasattr(c, "__dict__")


def test_limits_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        Cgroup("jobs", 1 << 20)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Cgroup("jobs", mem=1)  # type: ignore[call-arg]


def test_repr() -> None:
    assert repr(Cgroup("jobs/42", memory_max="512M", cpu_max=0.5, pids_max=100)) == (
        "Cgroup('jobs/42', memory_max='512M', cpu_max=0.5, pids_max=100)"
    )
    assert repr(Cgroup(memory_max=1000)) == "Cgroup(memory_max=1000)"
    assert repr(Cgroup(memory_max=3 << 40)) == "Cgroup(memory_max='3T')"
    assert repr(Cgroup(memory_max="1536K")) == "Cgroup(memory_max='1536K')"
    assert repr(Cgroup(cpu_max=2)) == "Cgroup(cpu_max=2.0)"
    for c in (Cgroup("a", memory_max=12345, pids_max=3), Cgroup(memory_max="2G", cpu_max=0.25)):
        assert eval(repr(c), {"Cgroup": Cgroup}) == c


def test_pickle_and_copy_round_trip() -> None:
    for c in (Cgroup(), Cgroup("jobs/42", memory_max="512M", cpu_max=0.5, pids_max=100)):
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            back = pickle.loads(pickle.dumps(c, protocol))
            assert back == c
            assert type(back) is Cgroup
            assert hash(back) == hash(c)
        assert copy.copy(c) == c
        assert copy.deepcopy(c) == c


@pytest.mark.parametrize("path", ["", "/jobs", "a/../b", "..", "a//b", "cgroup.procs", "a\0b"])
def test_bad_path_is_invalid_cgroup(path: str) -> None:
    with pytest.raises(InvalidCgroup, match="cgroup path") as info:
        Cgroup(path)
    assert isinstance(info.value, ValueError)


def test_absolute_path_message() -> None:
    with pytest.raises(InvalidCgroup) as info:
        Cgroup("/jobs")
    assert str(info.value) == (
        "cgroup path '/jobs' is absolute; give a path relative to netrunner's cgroup root, e.g. 'jobs/123'"
    )


def test_non_str_path_is_invalid_cgroup() -> None:
    with pytest.raises(InvalidCgroup, match="must be a str"):
        Cgroup(b"jobs")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "exc", "option"),
    [
        ({"memory_max": "lots"}, ValueError, "memory_max"),
        ({"memory_max": 0}, ValueError, "memory_max"),
        ({"memory_max": "1.5G"}, ValueError, "memory_max"),
        ({"memory_max": 1.5}, TypeError, "memory_max"),
        ({"memory_max": True}, TypeError, "memory_max"),
        ({"cpu_max": 0}, ValueError, "cpu_max"),
        ({"cpu_max": 0.001}, ValueError, "cpu_max"),
        ({"cpu_max": float("nan")}, ValueError, "cpu_max"),
        ({"cpu_max": "1"}, TypeError, "cpu_max"),
        ({"cpu_max": True}, TypeError, "cpu_max"),
        ({"pids_max": 0}, ValueError, "pids_max"),
        ({"pids_max": 1.0}, TypeError, "pids_max"),
        ({"pids_max": False}, TypeError, "pids_max"),
    ],
)
def test_bad_limit_names_the_option(kwargs: dict[str, object], exc: type[Exception], option: str) -> None:
    with pytest.raises(exc, match=f"^{option} must be") as info:
        Cgroup("jobs", **kwargs)  # type: ignore[arg-type]
    assert not isinstance(info.value, InvalidCgroup)
    if exc is ValueError:
        assert not isinstance(info.value, TypeError)
