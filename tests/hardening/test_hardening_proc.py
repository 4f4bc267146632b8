"""Hardening item 4: hosts where ``/proc`` is another pid namespace's,
missing, or restricted by ``hidepid=2`` (SPEC section 6: correctness never
rests on a ``/proc`` scan). Each owner runs in its own namespaces and reports
from inside; the test checks from the host's /proc that nothing survives."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from owners_hostile import PY, Owner, netrunner_src, shepherd_binary, wait_no_survivors

#: run() of a command that leaves a background sleep holding its stdout
RUN_LEFTOVER = """
import netrunner
t0 = time.monotonic()
try:
    r = netrunner.run(["sh", "-c", "sleep 8 & echo started"], kill_timeout=1)
    outcome = {"stdout": r.stdout.decode(errors="replace"), "returncode": r.returncode}
except Exception as exc:
    outcome = {"error": f"{type(exc).__name__}: {exc}"}
outcome["elapsed"] = time.monotonic() - t0
outcome["proc_entries"] = len(os.listdir("/proc"))
report(**outcome)
sys.stdin.readline()
"""


def _need(tool: str) -> str:
    path = shutil.which(tool)
    assert path, f"precondition: {tool} is needed for this test and is not on PATH"
    return path


def _check_run(owner: Owner, marker: str, info: dict[str, Any]) -> None:
    assert "error" not in info, f"run() failed: {info['error']}; owner stderr: {owner.stderr()}"
    assert info["elapsed"] < 4, f"run() took {info['elapsed']:.1f} s: it waited for the background sleep"
    assert info["stdout"] == "started\n"
    left = wait_no_survivors(marker, owner.chain(), timeout=5)
    assert not left, f"the background sleep survived run(): {left}"


def test_foreign_proc_pid_namespace(marker: str, tmp_path: Path) -> None:
    """The owner is in a new pid namespace but sees the host's /proc."""
    _need("unshare")
    owner = Owner(RUN_LEFTOVER, tmp_path, prefix=("unshare", "--pid", "--fork", "--kill-child"))
    try:
        _check_run(owner, marker, owner.result(timeout=30))
    finally:
        owner.finish()


#: run() of a command that leaves a daemon that escaped its group with setsid
#: (``started`` once the daemon is in its own session: before that a stop of
#: the command's group would reach it and prove nothing)
ESCAPE = (
    "f=$(mktemp -u); setsid sh -c 'touch $0; exec sleep 8' $f & "
    "while [ ! -e $f ]; do sleep 0.01; done; rm -f $f; echo started"
)
RUN_ESCAPED = RUN_LEFTOVER.replace('"sleep 8 & echo started"', repr(ESCAPE))


def test_foreign_proc_setsid_escapee(marker: str, tmp_path: Path) -> None:
    """The owner is in a new pid namespace but sees the host's /proc, and the
    command leaves a daemon outside its process group: the shepherd finds its
    children through that /proc (its own number there, translated back by
    NSpid), so the daemon is stopped too, and nothing is reported abandoned."""
    _need("unshare")
    owner = Owner(RUN_ESCAPED, tmp_path, prefix=("unshare", "--pid", "--fork", "--kill-child"))
    try:
        _check_run(owner, marker, owner.result(timeout=30))
        assert "left running" not in owner.stderr(), owner.stderr()
    finally:
        owner.finish()


def test_proc_is_an_empty_tmpfs(marker: str, tmp_path: Path) -> None:
    """The owner's /proc is an empty tmpfs in its own mount namespace."""
    _need("unshare")
    script = 'mount -t tmpfs none /proc || exit 99; exec "$0" "$@"'
    owner = Owner(RUN_LEFTOVER, tmp_path, prefix=("unshare", "--mount", "--propagation", "private", "sh", "-c", script))
    try:
        info = owner.result(timeout=30)
        entries = info["proc_entries"]
        assert entries == 0, f"precondition: the owner's /proc is not empty ({entries} entries)"
        _check_run(owner, marker, info)
    finally:
        owner.finish()


HIDDEN_DESCENDANT = r"""
import ctypes, os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
        print("hidden", os.getpid(), flush=True)
        time.sleep(12)
        os._exit(0)
    os._exit(0)
os.wait()
time.sleep(0.2)
"""

RUN_HIDDEN = f"""
import shutil
import netrunner
# an interpreter this unprivileged user may execute (a venv's may live under /root)
exe = sys.executable if os.access(sys.executable, os.X_OK) else shutil.which("python3")
if not exe or not os.access(exe, os.X_OK):
    report(error="precondition: no python3 executable by uid " + str(os.getuid()))
    sys.exit()
t0 = time.monotonic()
try:
    r = netrunner.run([exe, "-S", "-c", {HIDDEN_DESCENDANT!r}], kill_timeout=1)
    outcome = {{"stdout": r.stdout.decode(errors="replace"), "returncode": r.returncode}}
except Exception as exc:
    outcome = {{"error": f"{{type(exc).__name__}}: {{exc}}"}}
outcome["elapsed"] = time.monotonic() - t0
outcome["uid"] = os.getuid()
report(**outcome)
sys.stdin.readline()
"""


def test_hidepid_hides_a_nondumpable_descendant(marker: str, tmp_path: Path) -> None:
    """/proc mounted with hidepid=2, the owner unprivileged, and a setsid'd
    non-dumpable descendant it cannot see in /proc: run() returns promptly
    and the descendant is dead."""
    _need("unshare")
    _need("setpriv")
    src, shepherd = netrunner_src(), shepherd_binary()
    drop = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    env = dict(os.environ, PYTHONPATH=src, NETRUNNER_SHEPHERD=shepherd)
    # -S: skip site (the editable loader would try to rebuild as that user).
    # This interpreter, or else the system's: one installed under /root (a
    # pyenv build with its libpython there) cannot even start as that user.
    failures = []
    for exe in dict.fromkeys([PY, "/usr/bin/python3", "/usr/local/bin/python3"]):
        if not os.path.exists(exe):
            continue
        probe = subprocess.run(
            [*drop, exe, "-S", "-c", "import netrunner, os; os.stat(os.environ['NETRUNNER_SHEPHERD'])"],
            env=env, capture_output=True, text=True, timeout=30,
        )
        if probe.returncode == 0:
            break
        failures.append(f"{exe}: {probe.stderr.strip()}")
    else:
        raise AssertionError(
            f"precondition: uid 65534 cannot import netrunner from {src} or reach {shepherd} "
            f"(check the permissions of these paths): {failures}"
        )
    script = 'mount -t proc -o hidepid=2 proc /proc || exit 99; exec "$@"'
    owner = Owner(
        RUN_HIDDEN, tmp_path,
        prefix=("unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child",
                "sh", "-c", script, "sh", *drop),
        python=(exe, "-S"), env=env,
    )
    try:
        info = owner.result(timeout=40)
        assert info.get("uid") == 65534
        assert "error" not in info, f"run() failed: {info['error']}; owner stderr: {owner.stderr()}"
        assert info["stdout"].startswith("hidden "), f"precondition: the descendant never started: {info}"
        assert info["elapsed"] < 5, f"run() took {info['elapsed']:.1f} s with a hidden descendant"
        left = wait_no_survivors(marker, owner.chain(), timeout=5)
        assert not left, f"the hidden descendant survived run(): {left}"
    finally:
        owner.finish()
