"""Owner side of the cgroup pid-reuse test (test_hardening_cgroup_races.py).

Runs inside an owner process (``owners_hostile.Owner``) that is the init of a
new pid namespace, so that ``/proc/sys/kernel/ns_last_pid`` hands a chosen pid
number to a new process (the technique of test_hardening_pid_reuse.py).

What is staged, each round: a command in a cgroup keeps a few children
(``sleep``, SIGTERM ignored) and reaps whatever of them dies. Its shepherd is
held with ptrace at the entry of its first ``pidfd_open(X)`` -- the shepherd's
TERM round over the cgroup has read ``cgroup.procs`` and is about to pin the
member X. While it is held, X is SIGKILLed and reaped and an unrelated process
(an *outsider*, ``sleep`` in a process group of its own, outside the cgroup)
is given the number X. Released, the shepherd opens a pidfd that names the
outsider: only the second read of ``cgroup.procs`` (which does not list X any
more) keeps it from signalling it. The outsider must survive.

ptrace is used only to hold the shepherd at that instant and is detached
before the shepherd goes on; nothing of its behaviour is changed.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

SYS_PIDFD_OPEN = 434  # the same number on every architecture since Linux 5.1 (alpha aside)
PTRACE_SYSCALL = 24
PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_GET_SYSCALL_INFO = 0x420E
PTRACE_O_TRACESYSGOOD = 1
PTRACE_SYSCALL_INFO_ENTRY = 1
PTRACE_EVENT_STOP = 128
WALL = 0x40000000  # __WALL

#: The command: SIGTERM ignored (so its children are still listed when the
#: TERM round reaches the cgroup), four ``sleep 1000`` children (SIGTERM
#: ignored too: an ignored signal stays ignored across exec), their pids
#: written atomically to argv[1]; then it reaps whatever dies.
COMMAND = r"""
import os, signal, sys
signal.signal(signal.SIGTERM, signal.SIG_IGN)
sleep = sys.argv[2]
kids = [os.posix_spawn(sleep, [sleep, "1000"], dict(os.environ)) for _ in range(4)]
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(" ".join(map(str, kids)))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
while True:
    try:
        os.wait()
    except ChildProcessError:
        signal.pause()
"""


class _Libc:
    def __init__(self) -> None:
        self.lib = ctypes.CDLL(None, use_errno=True)
        self.lib.ptrace.restype = ctypes.c_long
        self.lib.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]

    def ptrace(self, request: int, pid: int, addr: int = 0, data: Any = 0) -> int:
        if isinstance(data, int):
            data = ctypes.c_void_p(data)
        r = self.lib.ptrace(request, pid, ctypes.c_void_p(addr), data)
        if r == -1:
            err = ctypes.get_errno()
            if err:
                raise OSError(err, f"ptrace({request:#x}, {pid}): {os.strerror(err)}")  # ESRCH: ProcessLookupError
        return int(r)


def _syscall_entry(libc: _Libc, pid: int) -> tuple[int, int] | None:
    """(number, first argument) at a syscall-entry stop, else None."""
    buf = ctypes.create_string_buffer(128)
    libc.ptrace(PTRACE_GET_SYSCALL_INFO, pid, 128, ctypes.cast(buf, ctypes.c_void_p))
    raw = buf.raw
    if raw[0] != PTRACE_SYSCALL_INFO_ENTRY:
        return None
    nr = int.from_bytes(raw[24:32], sys.byteorder)
    arg0 = int.from_bytes(raw[32:40], sys.byteorder)
    return nr, arg0


def hold_at_pidfd_open(libc: _Libc, shepherd: int, begin: Callable[[], None], timeout: float) -> int:
    """With ``shepherd`` seized (PTRACE_SEIZE), stop it, call ``begin()``
    (which makes it start a stop) and run it syscall by syscall until the
    entry of a ``pidfd_open``: return that call's pid argument, the shepherd
    still held there."""
    libc.ptrace(PTRACE_INTERRUPT, shepherd)
    _, status = os.waitpid(shepherd, WALL)
    if not os.WIFSTOPPED(status):
        raise RuntimeError(f"the shepherd did not stop for the tracer (status {status:#x})")
    begin()
    deadline = time.monotonic() + timeout
    inject = 0
    while time.monotonic() < deadline:
        libc.ptrace(PTRACE_SYSCALL, shepherd, 0, inject)
        _, status = os.waitpid(shepherd, WALL)
        inject = 0
        if not os.WIFSTOPPED(status):
            raise RuntimeError(f"the shepherd ended while traced (status {status:#x})")
        sig = os.WSTOPSIG(status)
        if sig == signal.SIGTRAP | 0x80:
            entry = _syscall_entry(libc, shepherd)
            if entry is not None and entry[0] == SYS_PIDFD_OPEN:
                return entry[1]
        elif status >> 16 == 0:
            inject = sig  # a signal on its way to the shepherd: deliver it
    raise RuntimeError(f"the shepherd made no pidfd_open within {timeout} s")


def _until(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(0.002)


def _reaped(pid: int) -> tuple[int] | None:
    """(wait status,) once our child ``pid`` has ended (and is reaped), else None."""
    done, status = os.waitpid(pid, os.WNOHANG)
    return (status,) if done == pid else None


def _pending(pid: int) -> list[str]:
    """The signals pending for ``pid`` (its SigPnd and ShdPnd masks), by name."""
    mask = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("SigPnd:", "ShdPnd:")):
                mask |= int(line.split()[1], 16)
    names = {int(sig): sig.name for sig in signal.Signals}
    return [names.get(n, str(n)) for n in range(1, 65) if mask >> (n - 1) & 1]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def _members(directory: str) -> list[int]:
    try:
        with open(os.path.join(directory, "cgroup.procs")) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _give_pid(number: int, sleep: str) -> int | None:
    """Start ``sleep 1000`` as its own group leader with pid ``number`` (we
    are the init of this pid namespace); None if another process took it."""
    for _ in range(50):
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(number - 1))
        pid = os.posix_spawn(sleep, [sleep, "1000"], dict(os.environ), setpgroup=0)
        if pid == number:
            return pid
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return None


def one_round(path: str, pidfile: str, kill_timeout: float) -> dict[str, Any]:
    """Stage the collision once; what happened, as JSON-able fields."""
    import netrunner
    from netrunner._io import zygote

    sleep = shutil.which("sleep")
    assert sleep is not None
    libc = _Libc()
    p = netrunner.start([sys.executable, "-c", COMMAND, pidfile, sleep], cgroup=path, kill_timeout=kill_timeout)
    out: dict[str, Any] = {"command": p.pid, "cgroup": p.cgroup}
    victim = None
    reaped = False
    box: list[Any] = []
    stopper = threading.Thread(target=lambda: box.append(_outcome(p.stop)), daemon=True)
    try:
        if not _until(lambda: os.path.exists(pidfile)):
            out["error"] = "precondition: the command never wrote its children's pids"
            return out
        kids = [int(x) for x in open(pidfile).read().split()]
        out["kids"] = kids
        cg = p.cgroup
        assert cg is not None
        if not _until(lambda: set(kids) <= set(_members(cg))):
            out["error"] = f"precondition: the children {kids} are not all in {cg}: {_members(cg)}"
            return out
        zygote.helper_pids()  # collect the spare: the zygote forks nothing meanwhile
        shepherd = p._h.shepherd_pid  # our unreaped child: the number is still its own
        libc.ptrace(PTRACE_SEIZE, shepherd, 0, PTRACE_O_TRACESYSGOOD)
        try:
            try:
                target = hold_at_pidfd_open(libc, shepherd, stopper.start, timeout=20.0)
            except (OSError, RuntimeError) as exc:
                out["error"] = f"precondition: could not hold the shepherd at its pidfd_open: {exc}"
                return out
            out["target"] = target
            if target not in kids:
                out["error"] = f"precondition: the first pidfd_open is for {target}, not a child {kids}"
                return out
            os.kill(target, signal.SIGKILL)  # alive (it ignores SIGTERM): the number is still its own
            if not _until(lambda: not os.path.exists(f"/proc/{target}")):
                out["error"] = f"precondition: the child {target} was not reaped by the command"
                return out
            victim = _give_pid(target, sleep)
            if victim is None:
                out["error"] = f"precondition: could not give the number {target} to an outsider"
                return out
            out["victim"] = victim
            out["victim_pgid"] = os.getpgid(victim)
            out["victim_in_cgroup"] = victim in _members(cg)
        finally:
            try:
                libc.ptrace(PTRACE_DETACH, shepherd, 0, 0)  # it goes on: pidfd_open(target) first
            except ProcessLookupError:
                pass  # not held (it ended): nothing to release
        stopper.join(timeout=30)
        out["stop"] = box[0] if box else "still blocked after 30 s"
        # stop() has returned: the shepherd is gone, and every signal it sent
        # was sent. One takes effect within microseconds; 0.5 s without the
        # outsider dying, and nothing pending for it, means none was sent.
        ended = _until(lambda: _reaped(victim), timeout=0.5)
        reaped = ended is not None
        out["victim_alive"] = not reaped
        out["victim_signal"] = os.WTERMSIG(ended[0]) if ended and os.WIFSIGNALED(ended[0]) else None
        out["victim_pending"] = None if reaped else _pending(victim)
        out["left"] = [d for d in (cg,) if os.path.isdir(d)]
        out["kids_alive"] = [k for k in kids if k != victim and _alive(k)]
        return out
    finally:
        if victim is not None and not reaped:
            os.kill(victim, signal.SIGKILL)
            os.waitpid(victim, 0)
        if stopper.ident is None:
            stopper.start()  # the stop was never begun: begin it, to end the command
        stopper.join(timeout=30)
        p.close()


def _outcome(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except Exception as exc:  # reported, not raised: the owner says what happened
        return f"{type(exc).__name__}: {exc}"


def main(paths: list[str], workdir: str, kill_timeout: float) -> None:
    """One round per cgroup path; prints ``RESULT {"rounds": [...]}``."""
    rounds = []
    for i, path in enumerate(paths):
        rounds.append(one_round(path, os.path.join(workdir, f"kids-{i}"), kill_timeout))
        if "error" in rounds[-1]:
            break
    sys.stdout.write("RESULT " + json.dumps({"rounds": rounds}) + "\n")
    sys.stdout.flush()

