"""Hardening item 6: a zygote that stops answering (SIGSTOPped). Starts fail
with ShepherdError or succeed within a bounded time, other threads are not
blocked forever, netrunner then works again with a new zygote, and the
stopped one is killed and reaped. Runs in an owner process."""

from __future__ import annotations

from pathlib import Path

import pytest
from owners_hostile import Owner

STOPPED_ZYGOTE = """
import netrunner
from netrunner._io import zygote
netrunner.run(["true"])
zygote.helper_pids()          # the spare is forked and collected: the zygote is idle
zpid = zygote.current_pid()
p0 = netrunner.start(["sleep", "30"], kill_timeout=1)   # takes the spare, asks for the next
zygote.helper_pids()
os.kill(zpid, signal.SIGSTOP)
until(lambda: open(f"/proc/{zpid}/stat").read().rsplit(")", 1)[1].split()[0] == "T")

outcomes = {}
def starter(name):
    t0 = time.monotonic()
    try:
        p = netrunner.start(["true"], kill_timeout=1)
        p.wait(timeout=10)
        outcomes[name] = ["ok", time.monotonic() - t0]
    except BaseException as exc:
        outcomes[name] = [type(exc).__name__, time.monotonic() - t0, isinstance(exc, netrunner.ShepherdError)]
threads = [threading.Thread(target=starter, args=(f"t{i}",), daemon=True) for i in range(2)]
t0 = time.monotonic()
for t in threads:
    t.start()
# another thread's use of an existing process must not wait for the zygote
t1 = time.monotonic()
p0.poll()
poll_took = time.monotonic() - t1
for t in threads:
    t.join(max(0.0, 40 - (time.monotonic() - t0)))
hung = [t.name for t in threads if t.is_alive()]
def state(pid):
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
zstate = state(zpid)
if hung:
    os.kill(zpid, signal.SIGKILL)   # unblock them, so this owner can end
    for t in threads:
        t.join(10)
after = {}
try:
    r = netrunner.run(["echo", "again"], timeout=20)
    after = {"stdout": r.stdout.decode(), "zygote": zygote.current_pid()}
except BaseException as exc:
    after = {"error": f"{type(exc).__name__}: {exc}"}
try:
    os.waitpid(zpid, os.WNOHANG)
    still_child = True
except ChildProcessError:
    still_child = False
report(outcomes=outcomes, hung=hung, poll_took=poll_took, old_zygote=zpid, old_zygote_state=zstate,
       old_zygote_still_our_child=still_child, after=after)
p0.stop()
if state(zpid) not in ("gone", "Z"):
    os.kill(zpid, signal.SIGKILL)
"""


@pytest.mark.slow
def test_stopped_zygote(tmp_path: Path) -> None:
    owner = Owner(STOPPED_ZYGOTE, tmp_path)
    try:
        info = owner.result(timeout=90)
    finally:
        owner.finish()
    assert not info["hung"], f"start() still blocked after 40 s in {info['hung']} with the zygote stopped: {info}"
    for name, outcome in info["outcomes"].items():
        assert outcome[0] == "ok" or outcome[2], f"{name}: start() raised {outcome[0]}, not ShepherdError"
        assert outcome[1] < 40, f"{name}: took {outcome[1]:.1f} s"
    assert info["poll_took"] < 1, f"poll() of another process waited {info['poll_took']:.1f} s"
    after = info["after"]
    assert "error" not in after, f"netrunner did not recover: {after['error']}"
    assert after["stdout"] == "again\n"
    assert after["zygote"] != info["old_zygote"], "still the stopped zygote"
    assert info["old_zygote_state"] == "gone", (
        f"the stopped zygote {info['old_zygote']} was left in state {info['old_zygote_state']} (not killed and reaped)"
    )
