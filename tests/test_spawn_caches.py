"""What a spawn keeps from the last one to go faster (ADR 9) never hides a
change: the environment is read at every call."""

from __future__ import annotations

import os

import pytest

import netrunner


def _seen(name: str) -> str:
    return netrunner.run(["sh", "-c", f'printf %s "${{{name}-unset}}"'], text=True).stdout


def test_environment_changes_reach_the_next_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NETRUNNER_CACHE_PROBE", raising=False)
    assert _seen("NETRUNNER_CACHE_PROBE") == "unset"
    assert _seen("NETRUNNER_CACHE_PROBE") == "unset"  # the encoded environment is now reused
    monkeypatch.setenv("NETRUNNER_CACHE_PROBE", "one")
    assert _seen("NETRUNNER_CACHE_PROBE") == "one"
    os.environ["NETRUNNER_CACHE_PROBE"] = "two"  # same keys, a new value
    assert _seen("NETRUNNER_CACHE_PROBE") == "two"
    os.environb[b"NETRUNNER_CACHE_PROBE"] = b"three"
    assert _seen("NETRUNNER_CACHE_PROBE") == "three"
    del os.environ["NETRUNNER_CACHE_PROBE"]
    assert _seen("NETRUNNER_CACHE_PROBE") == "unset"


def test_an_explicit_env_is_not_mixed_with_the_cached_one(marker_env: dict[str, str]) -> None:
    netrunner.run(["true"])
    got = netrunner.run(["env"], env={**marker_env, "ONLY": "this"}, text=True).stdout.splitlines()
    assert sorted(got) == sorted(f"{k}={v}" for k, v in {**marker_env, "ONLY": "this"}.items())
