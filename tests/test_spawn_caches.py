"""What a spawn keeps from the last one to go faster (ADR 9) never hides a
change: the environment is read at every call."""

from __future__ import annotations

import fcntl
import os

import pytest
from helpers import in_forked_child

import netrunner
from netrunner._io import fds


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


def _devnull_fds() -> set[int]:
    """Our fds open on /dev/null, as the kernel names them."""
    found = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == "/dev/null":
                found.add(int(name))
        except OSError:
            pass  # the fd of the listing itself
    return found


def test_discard_targets_use_one_kept_dev_null_each_way() -> None:
    """Without ``input``, and for ``"discard"``, a command gets /dev/null
    from one fd per direction that netrunner keeps open: a run opens and
    closes nothing for it, and the command still reads its end at once and
    writes into nothing."""
    describe = ["sh", "-c", "readlink /proc/self/fd/0 /proc/self/fd/2; head -c 1 >&2; cat"]
    netrunner.run(describe, stderr="discard")  # both kept fds exist from here on
    before = _devnull_fds()
    for _ in range(50):
        r = netrunner.run(describe, stderr="discard", timeout=30)
        assert r.stdout == b"/dev/null\n/dev/null\n"
        assert r.stderr == b""
        assert r.stats.bytes_in == 0
    p = netrunner.start(["sh", "-c", "readlink /proc/self/fd/1; cat"], stdin="discard", stdout="discard")
    assert p.wait(timeout=30) == 0
    assert _devnull_fds() == before
    # the two kept ones: one each way, above the interpreter's fds 0-2
    kept = set(fds._devnull.values())
    assert kept <= before
    assert sorted(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE for fd in kept) == [os.O_RDONLY, os.O_WRONLY]
    assert min(kept) > 2


def test_a_forked_child_opens_its_own_dev_null() -> None:
    """The kept /dev/null fds are closed in a forked child like every fd of
    netrunner's; its first command opens its own, and reads its end."""
    netrunner.run(["true"])
    kept = set(fds._devnull.values())
    assert kept

    def child() -> bytes:
        still_open = [fd for fd in kept if _open(fd)]
        out = netrunner.run(["sh", "-c", "readlink /proc/self/fd/0; cat"], timeout=30).stdout
        return repr((still_open, out)).encode()

    assert in_forked_child(child) == repr(([], b"/dev/null\n")).encode()


def _open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True
