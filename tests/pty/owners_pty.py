"""Owner side of the PTY hostile-host tests (test_pty_races.py).

Each function runs inside a separate Python, the *owner*: the init of a new
pid namespace, a process whose ``/proc`` is another namespace's, one with its
fds 0-2 closed or a tiny ``RLIMIT_NOFILE``, or uid 65534. It uses netrunner
with ``pty=True`` there and returns what it saw as a dict of JSON values,
which the caller reports (``RESULT {...}`` on stdout, or a file when stdout is
the thing under test). The checks are the test's, from outside.

The owner inherits the test's environment, its marker included, and so does
every command it starts: the autouse fixture still proves nothing survives.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

#: The command, its background sleep (in its group, the terminal's
#: foreground group) and a daemon that left the session with setsid all
#: ignore SIGHUP and SIGTERM: only SIGKILL ends them. The daemon prints
#: "daemon <pid>" once it has its own session, the command "ready <sh>
#: <background>" once it has started both (either may come first).
TREE = (
    "trap '' HUP TERM; "
    "setsid sh -c 'echo daemon $$; exec sleep 1000' & "
    "sleep 1000 & "
    "echo ready $$ $!; wait"
)
READY = re.compile(rb"ready (\d+) (\d+)\r\n")
DAEMON = re.compile(rb"daemon (\d+)\r\n")


def tree_ready(proc: Any, timeout: float = 15.0) -> tuple[int, int, int]:
    """Read TREE's two lines: (sh, background sleep, daemon) pids."""
    deadline = time.monotonic() + timeout
    seen = b""
    while not (READY.search(seen) and DAEMON.search(seen)):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"TREE did not report within {timeout} s: {seen!r}")
        seen += proc.read_until(b"\r\n", timeout=remaining)
    ready, daemon = READY.search(seen), DAEMON.search(seen)
    assert ready is not None
    assert daemon is not None
    return int(ready.group(1)), int(ready.group(2)), int(daemon.group(1))


#: A child that describes its terminal: the tty of each of fds 0-2 (None when
#: it is not one), whether it leads its session, and whether its group is the
#: terminal's foreground group (the terminal is its controlling terminal).
DESCRIBE_TTY = r"""
import json, os
def tty(fd):
    try:
        return os.ttyname(fd)
    except OSError:
        return None
print(json.dumps({"tty": [tty(fd) for fd in range(3)], "leader": os.getsid(0) == os.getpid(),
                  "foreground": os.tcgetpgrp(0) == os.getpgrp()}), flush=True)
"""


def until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.005) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def read_all(proc: Any, timeout: float) -> tuple[bytes, bool]:
    """What ``proc.read()`` returns until b"" or ``timeout``; whether the end came."""
    deadline = time.monotonic() + timeout
    out = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return out, False
        try:
            data = proc.read(timeout=remaining)
        except TimeoutError:
            continue
        if not data:
            return out, True
        out += data


def stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].decode().split()
    except (OSError, IndexError):
        return None


def session_of(pid: int) -> int | None:
    fields = stat_fields(pid)
    return int(fields[3]) if fields is not None else None


def alive(pid: int) -> bool:
    fields = stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def pending_signals(pid: int) -> list[int]:
    """Signals pending for ``pid`` (its own and its thread group's)."""
    mask = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("SigPnd:", "ShdPnd:")):
                    mask |= int(line.split()[1], 16)
    except OSError:
        return []
    return [n for n in range(1, 65) if mask >> (n - 1) & 1]


def marked(exclude: set[int]) -> list[list[Any]]:
    """[pid, cmdline] of live processes carrying this test's marker (as far
    as this owner's ``/proc`` shows them), ``exclude`` left out."""
    needle = ("NETRUNNER_TEST_MARKER=" + os.environ["NETRUNNER_TEST_MARKER"]).encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in exclude or not alive(int(name)):
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                environ = f.read().split(b"\0")
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if needle in environ:
            found.append([int(name), cmdline])
    return found


# --------------------------------------------------------------------------- a foreign /proc


def foreign_proc(kill_timeout: float) -> dict[str, Any]:
    """In a pid namespace of its own whose ``/proc`` is the parent
    namespace's: ``stop()`` of TREE on a terminal, then ``run()`` of a command
    that leaves a setsid'd daemon (ignoring HUP and TERM) behind."""
    import netrunner

    info: dict[str, Any] = {
        "pid": os.getpid(),
        "proc_self": os.readlink("/proc/self"),
    }
    p = netrunner.start(["sh", "-c", TREE], pty=True, kill_timeout=kill_timeout)
    try:
        info["tree"] = tree_ready(p)
        t0 = time.monotonic()
        info["stop"] = p.stop()
        info["stop_elapsed"] = time.monotonic() - t0
        # the end of output comes once nothing holds the terminal any more
        out, info["eof"] = read_all(p, timeout=3.0)
        info["after_stop"] = out.decode(errors="replace")
    finally:
        p.close()
    script = "trap '' HUP TERM; setsid sleep 1000 & echo started"
    t0 = time.monotonic()
    try:
        r = netrunner.run(["sh", "-c", script], pty=True, kill_timeout=kill_timeout, timeout=30)
        info["run"] = {"stdout": r.stdout.decode(errors="replace"), "returncode": r.returncode}
    except Exception as exc:
        info["run"] = {"error": f"{type(exc).__name__}: {exc}"}
    info["run_elapsed"] = time.monotonic() - t0
    return info


# --------------------------------------------------------------------------- pid reuse


def take_pid(number: int, exe: str, attempts: int = 50) -> int | None:
    """Start ``exe 1000`` (a ``sleep``: any signal but SIGCONT or SIGWINCH
    ends it) as the leader of a new session -- so of a process group too --
    with the pid ``number``, through ``ns_last_pid`` (this process is its pid
    namespace's init). Its pid, or None when another process took the number."""
    for _ in range(attempts):
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(number - 1))
        pid = os.posix_spawn(exe, [exe, "1000"], dict(os.environ), setsid=True)
        if pid == number:
            return pid
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return None


def victim_fate(victim: int, grace: float = 1.0) -> dict[str, Any]:
    """Whether ``victim`` (our child) is still alive ``grace`` seconds on
    (a signal already sent acts within microseconds), with what signals
    pending or what killed it; then it is killed and reaped."""
    box: list[tuple[int, int]] = []

    def ended() -> bool:
        box.append(os.waitpid(victim, os.WNOHANG))
        return box[-1][0] == victim

    until(ended, timeout=grace)
    done, status = box[-1]
    fate = {
        "victim_alive": done == 0,
        "victim_signal": os.WTERMSIG(status) if done and os.WIFSIGNALED(status) else None,
        "victim_pending": pending_signals(victim) if done == 0 else [],
    }
    if done == 0:
        os.kill(victim, signal.SIGKILL)
        os.waitpid(victim, 0)
    return fate


def reuse_after_reap(kill_timeout: float) -> dict[str, Any]:
    """The command (a session leader on its terminal) exits and is reaped
    while its shepherd goes on stopping a setsid'd daemon that ignores
    SIGTERM. An unrelated process is then given the command's number as the
    leader of a session and group of its own; everything the old command's
    ``Process`` can send its leftovers follows, then ``stop()``."""
    import netrunner

    sleep = shutil.which("sleep")
    assert sleep is not None
    script = "trap '' HUP TERM; setsid sh -c 'exec sleep 1000' & echo ready $$ $!; read line; exit 3"
    ready = re.compile(rb"ready (\d+) (\d+)\r\n")
    p = netrunner.start(["sh", "-c", script], pty=True, kill_timeout=kill_timeout)
    try:
        match = ready.search(p.read_until(ready, timeout=15))
        assert match is not None
        command, daemon = int(match.group(1)), int(match.group(2))
        info: dict[str, Any] = {"command": command, "daemon": daemon, "pid": p.pid}
        # "ready" may come before the daemon's setsid: wait until it has left the session
        if not until(lambda: session_of(daemon) == daemon):
            return dict(info, error=f"precondition: the daemon {daemon} never left the session")
        p.write(b"go\n")
        t0 = time.monotonic()
        # the command exits 3; its shepherd reaps it and stops the daemon (SIGTERM ignored)
        if not until(lambda: not os.path.exists(f"/proc/{command}"), timeout=kill_timeout / 2):
            return dict(info, error="precondition: the command was not reaped")
        victim = take_pid(command, sleep)
        info["victim"] = victim
        info["taken_after"] = time.monotonic() - t0
        if victim is None:
            return dict(info, error="precondition: could not give the command's old pid to another process")
        info["victim_sid"], info["victim_pgid"] = os.getsid(victim), os.getpgid(victim)
        info["still_stopping"] = p.poll() is None and alive(daemon)
        if not info["still_stopping"]:
            fate = victim_fate(victim, grace=0)
            return dict(info, **fate, error=f"precondition: the stop was over after {info['taken_after']:.2f} s")
        for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            p.send_signal(sig)
        p.terminate()
        p.kill()
        info["stop"] = p.stop()
        info["daemon_alive"] = alive(daemon)
        out, info["eof"] = read_all(p, timeout=5.0)
        info["output"] = out.decode(errors="replace")
        info.update(victim_fate(victim))
        return info
    finally:
        p.close()


def reuse_after_shepherd_killed() -> dict[str, Any]:
    """The shepherd of a command on a terminal is SIGKILLed; the command dies
    of its parent-death signal, is re-parented to this init and reaped; an
    unrelated session leader takes its number; only then does Python see the
    hang-up and kill the command's group through the pidfd."""
    import netrunner
    from netrunner._io import zygote

    sleep = shutil.which("sleep")
    assert sleep is not None
    p = netrunner.start([sleep, "1000"], pty=True, kill_timeout=1)
    zygote.helper_pids()  # the spare is collected: the zygote is idle
    command: int = p.pid
    shepherd: int = p._h.shepherd_pid
    info: dict[str, Any] = {"command": command}
    os.kill(shepherd, signal.SIGKILL)

    def reaped() -> bool:
        try:
            done, _ = os.waitpid(command, os.WNOHANG)
        except ChildProcessError:
            return False  # not re-parented yet
        return done == command

    try:
        if not until(reaped, timeout=10):
            return dict(info, error="precondition: the command was not re-parented to the owner and reaped")
        victim = take_pid(command, sleep)
        info["victim"] = victim
        if victim is None:
            return dict(info, error="precondition: could not give the command's old pid to another process")
        info["victim_sid"], info["victim_pgid"] = os.getsid(victim), os.getpgid(victim)
        try:
            p.wait(timeout=10)  # now Python sees the hang-up
            info["outcome"] = "returned"
        except Exception as exc:
            info["outcome"] = type(exc).__name__
        info["returncode"] = p.returncode
        info.update(victim_fate(victim))
        return info
    finally:
        p.close()


# --------------------------------------------------------------------------- file descriptors


def open_fds() -> set[int]:
    """This process's open fds (the one that lists them left out)."""
    listed = [int(name) for name in os.listdir("/proc/self/fd")]
    found = set()
    for fd in listed:
        try:
            fcntl.fcntl(fd, fcntl.F_GETFD)
        except OSError:
            continue
        found.add(fd)
    return found


def target(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError as exc:
        return repr(exc)


def closed_stdio(closed: list[int]) -> dict[str, Any]:
    """Close ``closed`` (of fds 0-2), then use terminals: a command that
    describes its fds 0-2, a dialogue, and run() of a command that leaves a
    setsid'd daemon. Also whether netrunner ever took one of the closed numbers."""
    import netrunner

    out: dict[str, Any] = {}
    for fd in closed:
        os.close(fd)
    taken: list[int] = []

    def attempt(name: str, fn: Callable[[], Any]) -> None:
        try:
            out[name] = fn()
        except BaseException as exc:
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
        taken.extend(fd for fd in closed if fd in open_fds())

    def describe() -> Any:
        r = netrunner.run([sys.executable, "-c", DESCRIBE_TTY], pty=True, timeout=30)
        return {"returncode": r.returncode, "stdout": r.stdout.decode(errors="replace")}

    def dialogue() -> Any:
        code = "import sys\nfor line in sys.stdin:\n    print(line.strip().upper(), flush=True)\n"
        with netrunner.start([sys.executable, "-c", code], pty=True, kill_timeout=1) as p:
            seen = []
            for word in ("hello", "terminal"):
                p.write(word + "\n")
                seen.append(p.read_until(word.upper().encode() + b"\r\n", timeout=15).decode())
                taken.extend(fd for fd in closed if fd in open_fds())  # while it runs, too
            p.close_stdin()
            rc = p.wait(timeout=15)
            rest, eof = read_all(p, timeout=5.0)
        return {"seen": seen, "returncode": rc, "rest": rest.decode(errors="replace"), "eof": eof}

    def leftover() -> Any:
        t0 = time.monotonic()
        script = "trap '' HUP TERM; setsid sleep 1000 & echo started $!"
        r = netrunner.run(["sh", "-c", script], pty=True, kill_timeout=0.5, timeout=30)
        elapsed = time.monotonic() - t0
        stdout = r.stdout.decode(errors="replace")
        daemon = int(stdout.split()[1]) if stdout.startswith("started ") else None
        return {"stdout": stdout, "returncode": r.returncode, "elapsed": elapsed,
                "daemon_alive": daemon is not None and alive(daemon)}

    attempt("describe", describe)
    attempt("dialogue", dialogue)
    attempt("leftover", leftover)
    out["taken"] = sorted(set(taken))
    return out


def limit_leaving(free: int, fds: set[int]) -> int:
    """The smallest ``RLIMIT_NOFILE`` under which exactly ``free`` fd numbers
    are free (a new fd takes the lowest free number below the limit)."""
    limit, room = 0, 0
    while room < free:
        room += limit not in fds
        limit += 1
    return limit


def fd_limit_sweep(close: list[int], most: int) -> dict[str, Any]:
    """With ``close`` (of fds 0-2) closed, run a command on a terminal under
    a soft ``RLIMIT_NOFILE`` that leaves 0, 1, ... ``most`` fd numbers free:
    each outcome (output, or the error), and the fds it left open."""
    import resource

    import netrunner
    from netrunner._io import zygote

    netrunner.run(["sh", "-c", "echo warm"], pty=True, timeout=30)  # helpers exist, lazy imports done
    for fd in close:
        os.close(fd)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    attempts = []
    for free in range(most + 1):
        zygote.helper_pids()  # a spare requested by the last start is collected
        before = open_fds()
        limit = limit_leaving(free, before)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
        try:
            r = netrunner.run(["sh", "-c", "echo hi; tty"], pty=True, kill_timeout=1, timeout=30)
            outcome: dict[str, Any] = {"ok": True, "stdout": r.stdout.decode(errors="replace"),
                                       "returncode": r.returncode}
        except Exception as exc:
            outcome = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "message": str(exc),
                       "errno": getattr(exc, "errno", None),
                       "errno_name": errno.errorcode.get(getattr(exc, "errno", None) or 0)}
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        zygote.helper_pids()
        after = open_fds()
        outcome.update(free=free, limit=limit, open_before=len(before), open_after=len(after),
                       new=[f"{fd} -> {target(fd)}" for fd in sorted(after - before)], gone=sorted(before - after))
        attempts.append(outcome)
    return {"attempts": attempts, "stdio_open": [fd for fd in close if fd in open_fds()]}


# --------------------------------------------------------------------------- an unprivileged owner


def unprivileged(kill_timeout: float) -> dict[str, Any]:
    """As uid 65534: run() of a command that reports who it is and its
    terminal and leaves a setsid'd daemon; stop() of TREE. After each, the
    processes of the test still alive, as this user sees them."""
    import netrunner
    from netrunner._io import zygote

    def others() -> list[list[Any]]:
        return marked({os.getpid()} | zygote.helper_pids())

    info: dict[str, Any] = {"uid": os.getuid()}
    script = "trap '' HUP TERM; setsid sleep 1000 & sleep 1000 & id -u; tty; echo done"
    t0 = time.monotonic()
    try:
        r = netrunner.run(["sh", "-c", script], pty=True, kill_timeout=kill_timeout, timeout=30)
        info["run"] = {"stdout": r.stdout.decode(errors="replace"), "returncode": r.returncode}
    except Exception as exc:
        info["run"] = {"error": f"{type(exc).__name__}: {exc}"}
    info["run_elapsed"] = time.monotonic() - t0
    info["after_run"] = others()
    try:
        with netrunner.start(["sh", "-c", TREE], pty=True, kill_timeout=kill_timeout) as p:
            info["tree"] = tree_ready(p)
            info["tree_alive"] = [alive(pid) for pid in info["tree"]]
            info["stop"] = p.stop()
            info["after_stop"] = others()
            _rest, info["eof"] = read_all(p, timeout=5.0)
    except Exception as exc:
        info["start"] = {"error": f"{type(exc).__name__}: {exc}"}
    return info


def report_to(path: str, info: dict[str, Any]) -> None:
    """Write ``info`` as JSON to ``path`` (for owners whose stdout is closed)."""
    with open(path + ".tmp", "w") as f:
        json.dump(info, f)
    os.rename(path + ".tmp", path)
