"""A container runtime whose seccomp profile refuses ``clone3`` with EPERM
(older Docker and Podman profiles did): netrunner must fall back to ``clone``
and work, with nothing left behind. The owner installs the filter on itself
(a classic BPF program, through prctl), so the zygote and every shepherd
inherit it. The same filter refusing ``pidfd_open`` stands in for a kernel
before 5.3 (ENOSYS) or a profile that predates pidfds (EPERM): the first
start raises a ``ShepherdError`` that says what is missing."""

from __future__ import annotations

import errno
import re
import signal
from pathlib import Path

import pytest
from owners_hostile import Owner

# A seccomp filter program in classic BPF, installed by the owner on itself.
SECCOMP_PRELUDE = """
import ctypes, errno, platform, struct
import netrunner  # before the filter: an editable install rebuilds on import, with posix_spawn
libc = ctypes.CDLL(None, use_errno=True)

# struct seccomp_data: int nr; u32 arch; u64 ip; u64 args[6]
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}[platform.machine()]
LD_W_ABS, JEQ_K, RET_K = 0x20, 0x15, 0x06
ALLOW, KILL, ERRNO = 0x7FFF0000, 0x80000000, 0x00050000

def insn(code, jt, jf, k):
    return struct.pack("HBBI", code, jt, jf, k)
"""

SECCOMP_INSTALL = """
buf = ctypes.create_string_buffer(prog)
fprog = struct.pack("HxxxxxxQ", len(prog) // 8, ctypes.addressof(buf))
fbuf = ctypes.create_string_buffer(fprog)
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
ul = ctypes.c_ulong  # prctl's arguments are unsigned longs (a bare int would be passed as an int)
assert libc.prctl(PR_SET_NO_NEW_PRIVS, ul(1), ul(0), ul(0), ul(0)) == 0, ctypes.get_errno()
filter_address = ul(ctypes.addressof(fbuf))
assert libc.prctl(PR_SET_SECCOMP, ul(SECCOMP_MODE_FILTER), filter_address, ul(0), ul(0)) == 0, ctypes.get_errno()
"""

# Refuses one system call (REFUSED_NR) with one errno (REFUSED_ERRNO).
SECCOMP_FILTER = SECCOMP_PRELUDE + """
SYS_REFUSED = REFUSED_NR  # the same number on x86_64 and aarch64
prog = b"".join([
    insn(LD_W_ABS, 0, 0, 4),                 # A = arch
    insn(JEQ_K, 1, 0, AUDIT_ARCH),           # our arch? skip the kill
    insn(RET_K, 0, 0, KILL),
    insn(LD_W_ABS, 0, 0, 0),                 # A = syscall number
    insn(JEQ_K, 0, 1, SYS_REFUSED),
    insn(RET_K, 0, 0, ERRNO | errno.REFUSED_ERRNO),
    insn(RET_K, 0, 0, ALLOW),
])
""" + SECCOMP_INSTALL

# clone3 refused with EPERM, as by an older container runtime's profile;
# ``refused`` says whether it is (the precondition of a test using it). A
# thread made after it cannot start: glibc makes threads with clone3 too.
CLONE3_REFUSED = SECCOMP_FILTER.replace("REFUSED_NR", "435").replace("REFUSED_ERRNO", "EPERM") + """
SYS_clone3 = 435
refused = libc.syscall(ul(SYS_clone3), None, ul(0)) == -1 and ctypes.get_errno() == errno.EPERM
"""

SECCOMP_OWNER = CLONE3_REFUSED + """

results = [netrunner.run(["sh", "-c", "echo $$"]).stdout.strip().decode() for _ in range(20)]
leftover = netrunner.run(["sh", "-c", "sleep 30 & setsid sleep 30 & echo started"], timeout=10)
with netrunner.start(["sleep", "30"]) as p:
    stopped = p.stop(kill_timeout=1)
report(refused=refused, runs=len(results), distinct=len(set(results)),
       leftover=leftover.stdout.decode(), stopped=stopped)
"""


def test_clone3_refused_by_seccomp_falls_back_to_clone(tmp_path: Path) -> None:
    owner = Owner(SECCOMP_OWNER, tmp_path)
    try:
        result = owner.result(timeout=60)
    finally:
        status = owner.finish()
    assert status == 0, f"the owner ended with {status}: {owner.stderr()!r}"
    assert result["refused"], "precondition: the seccomp filter did not make clone3 fail with EPERM"
    assert result["runs"] == 20 and result["distinct"] == 20, result
    assert result["leftover"] == "started\n", result
    assert result["stopped"] == -15, result


# A kernel before 5.3 has no pidfd_open (ENOSYS), and a container runtime's
# seccomp profile from before pidfds refuses it (EPERM): the same filter,
# aimed at pidfd_open, stands in for either. netrunner must say what it needs
# at the first start, and start nothing.
NO_PIDFD_OWNER = SECCOMP_FILTER.replace("REFUSED_NR", "434") + """
import os
try:
    os.close(os.pidfd_open(os.getpid()))
    refused = None
except OSError as exc:
    refused = exc.errno
errors = []
for _ in range(2):  # the first start and the next say the same
    try:
        netrunner.run(["true"])
        errors.append(None)
    except Exception as exc:
        errors.append([type(exc).__name__, exc.errno, str(exc)])
report(refused=refused, errors=errors, uname=os.uname().release)
"""


@pytest.mark.parametrize(
    ("errno_name", "message"),
    [
        ("ENOSYS", r"netrunner needs Linux 5\.3 or later \(pidfd_open\); this kernel is {uname}$"),
        ("EPERM", r"netrunner needs pidfd_open \(Linux 5\.3\), which a seccomp profile refuses here .*"
                  r"allow pidfd_open and pidfd_send_signal$"),
    ],
)
def test_no_pidfd_open_is_a_clear_error(tmp_path: Path, errno_name: str, message: str) -> None:
    owner = Owner(NO_PIDFD_OWNER.replace("REFUSED_ERRNO", errno_name), tmp_path)
    try:
        result = owner.result(timeout=60)
    finally:
        status = owner.finish()
    assert status == 0, f"the owner ended with {status}: {owner.stderr()!r}"
    assert result["refused"] == getattr(errno, errno_name), "precondition: pidfd_open was not refused"
    want = re.escape(f"[Errno {getattr(errno, errno_name)}] ")
    want += message.replace("{uname}", re.escape(result["uname"]))
    for error in result["errors"]:
        assert error is not None, "a command ran without pidfd_open"
        kind, number, text = error
        assert (kind, number) == ("ShepherdError", getattr(errno, errno_name)), error
        assert re.fullmatch(want, text), text


# Before Linux 5.4 waitid() knows no P_PIDFD (EINVAL): the shepherd then
# reaps its command by pid, which is still its unreaped child. The filter
# refuses exactly waitid(P_PIDFD, ...), so every command takes that path.
NO_P_PIDFD_OWNER = SECCOMP_PRELUDE + """
SYS_WAITID = {"x86_64": 247, "aarch64": 95}[platform.machine()]
P_PIDFD = 3
prog = b"".join([
    insn(LD_W_ABS, 0, 0, 4),                 # A = arch
    insn(JEQ_K, 1, 0, AUDIT_ARCH),
    insn(RET_K, 0, 0, KILL),
    insn(LD_W_ABS, 0, 0, 0),                 # A = syscall number
    insn(JEQ_K, 0, 3, SYS_WAITID),           # not waitid: allow
    insn(LD_W_ABS, 0, 0, 16),                # A = args[0], the idtype (low half)
    insn(JEQ_K, 0, 1, P_PIDFD),              # not P_PIDFD: allow
    insn(RET_K, 0, 0, ERRNO | errno.EINVAL),
    insn(RET_K, 0, 0, ALLOW),
])
""" + SECCOMP_INSTALL + """
import os, signal
pidfd = os.pidfd_open(os.getpid())
try:
    os.waitid(P_PIDFD, pidfd, os.WEXITED | os.WNOHANG)
    refused = None
except OSError as exc:
    refused = exc.errno
os.close(pidfd)
codes = [netrunner.run(["sh", "-c", f"exit {n}"]).returncode for n in (0, 3, 255)]
killed = netrunner.run(["sh", "-c", "kill -9 $$"]).returncode
leftover = netrunner.run(["sh", "-c", "sleep 30 & setsid sleep 30 & echo started"], timeout=10)
with netrunner.start(["sleep", "30"]) as p:
    stopped = p.stop(kill_timeout=1)
    rusage = p.stats.cpu_user is not None
# The command line's stop reports (FLAG_STOPS) come by pid too.
import select, time
from netrunner._command import resolve
from netrunner._core import codec
from netrunner._drivers import drive
from netrunner._engine import Handle
args, argv, opts = resolve("start", ["sh", "-c", "kill -STOP $$; exit 7"], {})
h = Handle(args, argv, opts, keep_stdin=False, report_stops=True)
try:
    deadline = time.monotonic() + 20
    while not h.core.done and time.monotonic() < deadline:
        h.pump_control()
        if h.core.stops == 1 and not h.core.done:
            h.send(codec.encode_signal(signal.SIGCONT))
        if h.ctl_open and not h.core.done:
            select.select([h.ctl_fd], [], [], 0.05)
    drive(h.flow_wait(time.monotonic() + 10))
    stop_report = [h.core.stops, h.core.stop_signal, h.core.returncode]
finally:
    h.release()
report(refused=refused, codes=codes, killed=killed, leftover=leftover.stdout.decode(), stopped=stopped,
       rusage=rusage, stop_report=stop_report)
"""


def test_no_waitid_p_pidfd_reaps_by_pid(tmp_path: Path) -> None:
    owner = Owner(NO_P_PIDFD_OWNER, tmp_path)
    try:
        result = owner.result(timeout=60)
    finally:
        status = owner.finish()
    assert status == 0, f"the owner ended with {status}: {owner.stderr()!r}"
    assert result["refused"] == errno.EINVAL, "precondition: waitid(P_PIDFD) was not refused"
    assert result["codes"] == [0, 3, 255]
    assert result["killed"] == -9
    assert result["leftover"] == "started\n"
    assert result["stopped"] == -15
    assert result["rusage"]
    assert result["stop_report"] == [1, signal.SIGSTOP, 7]
