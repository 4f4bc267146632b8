"""A container runtime whose seccomp profile refuses ``clone3`` with EPERM
(older Docker and Podman profiles did): netrunner must fall back to ``clone``
and work, with nothing left behind. The owner installs the filter on itself
(a classic BPF program, through prctl), so the zygote and every shepherd
inherit it."""

from __future__ import annotations

from pathlib import Path

from owners_hostile import Owner

SECCOMP_OWNER = """
import ctypes, errno, platform, struct
import netrunner  # before the filter: an editable install rebuilds on import, with posix_spawn
libc = ctypes.CDLL(None, use_errno=True)

# struct seccomp_data: int nr; u32 arch; u64 ip; u64 args[6]
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}[platform.machine()]
SYS_CLONE3 = 435  # the same number on x86_64 and aarch64
LD_W_ABS, JEQ_K, RET_K = 0x20, 0x15, 0x06
ALLOW, KILL, ERRNO = 0x7FFF0000, 0x80000000, 0x00050000

def insn(code, jt, jf, k):
    return struct.pack("HBBI", code, jt, jf, k)

prog = b"".join([
    insn(LD_W_ABS, 0, 0, 4),                 # A = arch
    insn(JEQ_K, 1, 0, AUDIT_ARCH),           # our arch? skip the kill
    insn(RET_K, 0, 0, KILL),
    insn(LD_W_ABS, 0, 0, 0),                 # A = syscall number
    insn(JEQ_K, 0, 1, SYS_CLONE3),
    insn(RET_K, 0, 0, ERRNO | errno.EPERM),  # clone3 -> EPERM
    insn(RET_K, 0, 0, ALLOW),
])
buf = ctypes.create_string_buffer(prog)
fprog = struct.pack("HxxxxxxQ", len(prog) // 8, ctypes.addressof(buf))
fbuf = ctypes.create_string_buffer(fprog)
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
ul = ctypes.c_ulong  # prctl's arguments are unsigned longs (a bare int would be passed as an int)
assert libc.prctl(PR_SET_NO_NEW_PRIVS, ul(1), ul(0), ul(0), ul(0)) == 0, ctypes.get_errno()
assert libc.prctl(PR_SET_SECCOMP, ul(SECCOMP_MODE_FILTER), ul(ctypes.addressof(fbuf)), ul(0), ul(0)) == 0, ctypes.get_errno()

# The precondition: clone3 is refused here (and so in every child).
SYS_clone3 = 435
refused = libc.syscall(ul(SYS_clone3), None, ul(0)) == -1 and ctypes.get_errno() == errno.EPERM

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
