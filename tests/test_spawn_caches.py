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


def test_a_repeated_request_differs_as_soon_as_one_field_does(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # the last request's records are reused only when argv, environment,
    # PATH candidates, cwd and flags are all the same
    def pwd(**kw) -> str:  # type: ignore[no-untyped-def]
        return netrunner.run(["sh", "-c", 'printf "%s %s" "$PWD" "$0"'], text=True, **kw).stdout

    here = os.getcwd()
    assert pwd() == f"{here} sh"
    assert pwd() == f"{here} sh"
    assert pwd(cwd=tmp_path) == f"{tmp_path} sh"
    assert pwd() == f"{here} sh"
    assert netrunner.run(["sh", "-c", 'printf "%s" "$0"', "other"], text=True).stdout == "other"
    out = netrunner.run(["sh", "-c", "sleep 100 & echo $!"], leftovers="detach", text=True).stdout
    os.kill(int(out), 9)  # detached: still running until killed here
    assert pwd() == f"{here} sh"


def test_options_without_values_are_the_defaults_each_time() -> None:
    assert netrunner.run(["sh", "-c", "exit 3"]).returncode == 3
    with pytest.raises(netrunner.AbnormalExit), netrunner.stream(["sh", "-c", "exit 3"]) as s:
        for _ in s:
            pass  # a stream checks by default
    assert netrunner.run(["sh", "-c", "exit 3"]).returncode == 3  # check stays off for run
