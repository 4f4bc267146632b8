"""Hardening items 5, 9 and 12: file descriptors. netrunner's helpers hold
none of the interpreter's inheritable fds; the command gets exactly the
stdio targets asked for whatever the interpreter's fds 0-2 are (closed
included); running out of fds says what netrunner needed (SPEC sections 2
and 6). Each scenario runs in an owner process."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from owners_hostile import PY, Owner, owner_code

INHERITED_PIPE = """
r, w = os.pipe()
os.set_inheritable(w, True)   # before netrunner's first use
import select
import netrunner
from netrunner._io import zygote
netrunner.run(["true"])
p = netrunner.start(["sleep", "30"], kill_timeout=1)   # netrunner stays in use
zygote.helper_pids()   # the zygote has answered the spare's request: it holds no fd of it
zpid = zygote.current_pid()
fds = {}
if zpid is not None:
    for name in os.listdir(f"/proc/{zpid}/fd"):
        try:
            fds[name] = os.readlink(f"/proc/{zpid}/fd/{name}")
        except OSError as exc:
            fds[name] = repr(exc)
os.close(w)
t0 = time.monotonic()
readable = bool(select.select([r], [], [], 3.0)[0])
eof = readable and os.read(r, 1) == b""
report(eof=eof, waited=time.monotonic() - t0, zygote=zpid, zygote_fds=fds, w=w)
p.stop()
"""


def test_inheritable_fd_not_held_by_helpers(tmp_path: Path) -> None:
    owner = Owner(INHERITED_PIPE, tmp_path)
    try:
        info = owner.result(timeout=30)
    finally:
        owner.finish()
    assert info["zygote"] is not None, "precondition: no zygote after a run (netrunner._io.zygote.current_pid())"
    fds: dict[str, str] = info["zygote_fds"]
    extra = {fd: target for fd, target in fds.items() if int(fd) > 2}
    sockets = [fd for fd, target in extra.items() if target.startswith("socket:")]
    others = {fd: target for fd, target in extra.items() if not target.startswith("socket:")}
    assert info["eof"], (
        f"closing the caller's inheritable pipe end did not give EOF within 3 s: a netrunner helper holds a copy "
        f"(zygote fds: {fds})"
    )
    assert not others, f"the zygote holds more than fds 0-2 and its socket: {fds}"
    assert len(sockets) == 1, f"the zygote holds more than fds 0-2 and its socket: {fds}"


#: A child that describes its fds 0-2 (None when closed) on stdout and writes
#: to fd 2. Each is [device, inode, name, access mode]: two opens of
#: /dev/null, one to read (stdin) and one to write, share the first two.
DESCRIBE = r"""
import fcntl, json, os
def desc(fd):
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return [st.st_dev, st.st_ino, os.readlink(f"/proc/self/fd/{fd}"), fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE]
print(json.dumps({str(fd): desc(fd) for fd in range(3)}), flush=True)
try:
    os.write(2, b"to-stderr\n")
except OSError:
    pass
"""

CLOSED_STDIO = """
import netrunner
result_path = sys.argv[1]
closed = [int(x) for x in sys.argv[2].split(",")]
def ident(fd):
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return [st.st_dev, st.st_ino]
mine = {str(fd): ident(fd) for fd in range(3)}
for fd in closed:
    os.close(fd)
out = {"owner_fds": mine}
def attempt(name, fn):
    try:
        out[name] = fn()
    except BaseException as exc:
        out[name] = {"error": f"{type(exc).__name__}: {exc}"}
child = [sys.executable, "-c", DESCRIBE]
def capture():
    r = netrunner.run(child, stderr="capture")
    return {"stderr": r.stderr.decode(errors="replace"), "fds": json.loads(r.stdout)}
def inherit():
    r = netrunner.run(child, stderr="inherit")
    return {"fds": json.loads(r.stdout)}
attempt("capture", capture)
attempt("inherit", inherit)
attempt("echo", lambda: netrunner.run(["echo", "hi"]).stdout.decode())
with open(result_path, "w") as f:
    json.dump(out, f)
"""


@pytest.mark.parametrize("closed", ["2", "0", "1", "0,1,2"], ids=["fd2", "fd0", "fd1", "fd0-2"])
def test_closed_interpreter_stdio(closed: str, tmp_path: Path) -> None:
    """The owner closes some of its fds 0-2, then runs children with
    stderr="capture" and "inherit": capture gets the bytes; an inherited fd 2
    is the owner's own stderr, or (when that is closed) closed or /dev/null,
    never the child's stdin or stdout pipe."""
    result_path = tmp_path / "result.json"
    err_path = tmp_path / "owner.err"
    code = owner_code(f"DESCRIBE = {DESCRIBE!r}\n" + CLOSED_STDIO)
    with open(err_path, "wb") as err:
        proc = subprocess.run(
            [PY, "-c", code, str(result_path), closed],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, timeout=60,
        )
    assert result_path.exists(), f"the owner wrote no result (status {proc.returncode}): {err_path.read_text()}"
    info: dict[str, Any] = json.loads(result_path.read_text())
    closed_fds = {int(x) for x in closed.split(",")}
    problems = []
    cap = info["capture"]
    if "error" in cap:
        problems.append(f"stderr='capture' failed: {cap['error']}")
    elif cap["stderr"] != "to-stderr\n":
        problems.append(f"stderr='capture' got {cap['stderr']!r}")
    inh = info["inherit"]
    if "error" in inh:
        problems.append(f"stderr='inherit' failed: {inh['error']}")
    else:
        fds = inh["fds"]
        two = fds["2"]
        if two is not None:
            for other in ("0", "1"):
                if fds[other] is not None and two[:2] == fds[other][:2] and two[3] == fds[other][3]:
                    problems.append(f"the child's fd 2 is its fd {other} ({two[2]}): {fds}")
            if 2 in closed_fds:
                if two[2] != "/dev/null":
                    problems.append(
                        f"the owner's fd 2 was closed, the child's fd 2 is {two[2]} (not closed or /dev/null)"
                    )
            elif two[:2] != info["owner_fds"]["2"]:
                problems.append(f"the child's fd 2 ({two[2]}) is not the owner's stderr")
        elif 2 not in closed_fds:
            problems.append("the owner's fd 2 was open, the child's is closed")
    if info["echo"] != "hi\n":
        problems.append(f"run(['echo', 'hi']) gave {info['echo']!r}")
    assert not problems, "; ".join(problems) + f" (owner stderr: {err_path.read_text()!r})"


LOW_FD_LIMIT = """
import resource
import netrunner
netrunner.run(["true"])   # the helpers exist; what is left is per command
import fcntl
def is_open(fd):
    try:
        fcntl.fcntl(fd, fcntl.F_GETFD)
        return True
    except OSError:
        return False
used = {fd for fd in map(int, os.listdir("/proc/self/fd")) if is_open(fd)}  # not the listing's own
open_now = len(used)
# RLIMIT_NOFILE bounds fd numbers: the lowest limit below which exactly 3
# numbers are free (the fds open above it stay usable)
limit = free = 0
while free < 3:
    free += limit not in used
    limit += 1
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
try:
    p = netrunner.start(["sleep", "30"], kill_timeout=1)
    p.stop()
    report(outcome="started", open=open_now)
except BaseException as exc:
    report(outcome=type(exc).__name__, errno=getattr(exc, "errno", None), message=str(exc), open=open_now,
           is_oserror=isinstance(exc, OSError))
"""


def test_emfile_message_says_what_was_needed(tmp_path: Path) -> None:
    owner = Owner(LOW_FD_LIMIT, tmp_path)
    try:
        info = owner.result(timeout=30)
    finally:
        owner.finish()
    assert info["outcome"] != "started", f"precondition: start() succeeded with only 3 free fds: {info}"
    assert info["is_oserror"], f"expected OSError(EMFILE), got {info}"
    assert info["errno"] == 24, f"expected OSError(EMFILE), got {info}"
    message = info["message"].lower()
    said = info["message"]
    assert "descriptor" in message, f"the message does not say netrunner needed file descriptors: {said!r}"
    assert "ulimit -n" in message or "rlimit_nofile" in message, f"the message does not say how to raise it: {said!r}"
