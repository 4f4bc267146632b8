"""Hardening item 3: after the shepherd is SIGKILLed, Python must never
signal a pid number read earlier (SPEC section 6: pid reuse). In a new pid
namespace (the owner is its init), the command dies and is reaped, an
unrelated process is given the command's old pid and made a group leader,
and only then does Python notice the shepherd's hang-up: that process must
survive."""

from __future__ import annotations

import shutil
from pathlib import Path

from owners_hostile import Owner

PID_REUSE = """
import netrunner
from netrunner._io import zygote
p = netrunner.start(["sleep", "1000"], kill_timeout=1)
zygote.helper_pids()                 # the spare is collected: the zygote is idle
command, shepherd = p.pid, p._h.shepherd_pid
os.kill(shepherd, signal.SIGKILL)    # the command dies of its parent-death signal
# the command is reparented to us (this namespace's init): reap it, freeing its pid
def reaped():
    try:
        done, _ = os.waitpid(command, os.WNOHANG)
    except ChildProcessError:
        return False                 # not reparented yet
    return done == command
if not until(reaped, timeout=10):
    report(error="precondition: the command was not reparented to the owner and reaped")
    sys.exit()
sleep = shutil_which("sleep")
victim = None
for attempt in range(50):
    with open("/proc/sys/kernel/ns_last_pid", "w") as f:
        f.write(str(command - 1))
    pid = os.posix_spawn(sleep, ["sleep", "1000"], os.environ, setpgroup=0)
    if pid == command:
        victim = pid
        break
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
if victim is None:
    report(error="precondition: could not give the command's old pid to another process")
    sys.exit()
pgid = os.getpgid(victim)
try:
    p.wait(timeout=10)               # now Python sees the hang-up
    outcome = "returned"
except Exception as exc:
    outcome = type(exc).__name__
# a signal already sent takes effect within microseconds: 2 s without the
# victim dying means it was never signalled
box = []
until(lambda: box.append(os.waitpid(victim, os.WNOHANG)) or box[-1][0] == victim, timeout=2.0)
done, status = box[-1]
report(command=command, victim=victim, victim_pgid=pgid, outcome=outcome,
       victim_alive=done == 0, victim_signal=os.WTERMSIG(status) if done and os.WIFSIGNALED(status) else None)
if done == 0:
    os.kill(victim, signal.SIGKILL)
    os.waitpid(victim, 0)
"""


def test_reused_pid_is_never_signalled(tmp_path: Path) -> None:
    assert shutil.which("unshare"), "precondition: unshare is needed for this test"
    body = "from shutil import which as shutil_which\n" + PID_REUSE
    owner = Owner(body, tmp_path, prefix=("unshare", "--pid", "--fork", "--mount-proc", "--kill-child"))
    try:
        info = owner.result(timeout=60)
    finally:
        owner.finish()
    assert "error" not in info, f"{info['error']}; owner stderr: {owner.stderr()}"
    assert info["victim"] == info["command"] == info["victim_pgid"], f"precondition: pid not reused as a group: {info}"
    assert info["victim_alive"], (
        f"an unrelated process that reused the command's pid {info['command']} was killed by signal "
        f"{info['victim_signal']} when Python saw the shepherd die (p.wait() -> {info['outcome']})"
    )
