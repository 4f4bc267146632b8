"""SPEC sections 6 and 9: a descendant that no /proc scan can find is still
killed when it is in the command's cgroup (``cgroup.kill``).

The owner's shepherds run with an empty /proc (the shepherd it is given is a
wrapper that mounts a tmpfs there in a mount namespace of its own, then execs
the real one), so their listing of their children fails; the owner itself
keeps the host's /proc, which finding its cgroup needs. The command leaves a setsid'd, double-
forked sleeper and exits. The control run, without a cgroup, proves the
sleeper really is out of the scan's reach (it survives run(): the test then
kills it); the run with a cgroup must kill it and remove the directories.
Everything is checked from the real /proc of the test process, while the
owner (whose namespace would take the sleeper with it) is still alive."""

from __future__ import annotations

import json
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from _host import (
    Owner,
    Tracker,
    existing,
    expected_v2_line,
    kill_quietly,
    pid_alive,
    proc_cgroup,
    tracked,
)
from conftest import pids_with_env, wait_until

from netrunner._io.shepherd import find_shepherd


@pytest.fixture
def cg(marker: str) -> Iterator[Tracker]:
    yield from tracked()


HIDDEN_VAR = "NR_TEST_HIDDEN"

#: argv: the command leaves `env NR_TEST_HIDDEN=<token> sleep 1000`, setsid'd
#: and double-forked, then waits for the test's go file and exits.
def hidden_cmd(token: str, go: Path) -> list[str]:
    script = (
        f"(setsid env {HIDDEN_VAR}=\"$1\" sleep 1000 </dev/null >/dev/null 2>&1 &); "
        'while [ ! -e "$2" ]; do sleep 0.02; done; echo done'
    )
    return ["sh", "-c", script, "sh", token, str(go)]


OWNER = """
import netrunner
plan = json.loads(sys.argv[1])
for i, (cmd, path) in enumerate(plan):
    t0 = time.monotonic()
    try:
        r = netrunner.run(cmd, cgroup=path, kill_timeout=1, timeout=60)
        outcome = {"stdout": r.stdout.decode(errors="replace"), "returncode": r.returncode,
                   "oom_killed": r.stats.oom_killed}
    except Exception as exc:
        outcome = {"error": f"{type(exc).__name__}: {exc}"}
    outcome["elapsed"] = time.monotonic() - t0
    outcome["self"] = os.readlink("/proc/self") if os.path.exists("/proc/self") else None
    outcome["getpid"] = os.getpid()
    report(f"RESULT{i}", **outcome)
    sys.stdin.readline()
"""


def _one_pid(token: str) -> int:
    found = wait_until(lambda: pids_with_env(HIDDEN_VAR, token), timeout=20)
    assert found, f"precondition: the hidden sleeper ({HIDDEN_VAR}={token}) never appeared in the host's /proc"
    assert len(found) == 1, f"several processes carry {HIDDEN_VAR}={token}: {found}"
    return found[0]


def blind_shepherd(tmp_path: Path) -> Path:
    """A shepherd that sees an empty /proc: a wrapper around the real one."""
    real = find_shepherd()
    wrapper = tmp_path / "blind-shepherd"
    wrapper.write_text(
        "#!/bin/sh\n"
        "exec unshare --mount --propagation private -- "
        f"sh -c 'mount -t tmpfs none /proc && exec \"$0\" \"$@\"' {shlex.quote(real)} \"$@\"\n"
    )
    wrapper.chmod(0o755)
    return wrapper


def test_descendant_hidden_from_proc_dies_with_the_cgroup(cg: Tracker, tmp_path: Path) -> None:
    assert shutil.which("unshare"), "precondition: unshare is needed for this test"
    path = cg.path()
    control_token, token = cg.token + "-control", cg.token + "-hidden"
    go_control, go = tmp_path / "go-control", tmp_path / "go"
    plan = [(hidden_cmd(control_token, go_control), None), (hidden_cmd(token, go), path)]
    owner = Owner(OWNER, tmp_path, json.dumps(plan),
                  prefix=("env", f"NETRUNNER_SHEPHERD={blind_shepherd(tmp_path)}"))
    strays: list[int] = []
    try:
        # --- control: no cgroup; the shepherd cannot list the sleeper
        sleeper = _one_pid(control_token)
        strays.append(sleeper)
        go_control.touch()
        info = owner.result("RESULT0")
        assert "error" not in info, f"control run() failed: {info}; owner stderr: {owner.stderr()}"
        assert pid_alive(sleeper), (
            "precondition: without a cgroup, netrunner found and killed the setsid'd sleeper although "
            "its shepherd's /proc is empty; this test could not tell cgroup.kill from a scan"
        )
        kill_quietly([sleeper])
        owner.tell()

        # --- with a cgroup
        sleeper = _one_pid(token)
        strays.append(sleeper)
        lines = proc_cgroup(sleeper)
        assert "0::" + lines.get("v2", "") == expected_v2_line(path), (
            f"the hidden sleeper {sleeper} is not in the command's cgroup: {lines}"
        )
        go.touch()
        info = owner.result("RESULT1")
        assert "error" not in info, f"run() with a cgroup failed: {info}; owner stderr: {owner.stderr()}"
        assert info["stdout"] == "done\n", info
        assert info["elapsed"] < 15, f"run() took {info['elapsed']:.1f} s"
        died = wait_until(lambda: not pid_alive(sleeper), timeout=5)
        assert died, (
            f"the setsid'd sleeper {sleeper}, hidden from the shepherd's /proc scan, survived run() with "
            f"cgroup={path!r}: the cgroup was not killed (cgroup.kill); /proc/{sleeper}/cgroup: "
            f"{proc_cgroup(sleeper) if pid_alive(sleeper) else 'gone'}"
        )
        left = existing(path)
        assert not left, f"cgroup directories left after run(): {left}"
        assert info["oom_killed"] is False, info
    finally:
        owner.finish()
        kill_quietly([pid for pid in strays if pid_alive(pid)])
