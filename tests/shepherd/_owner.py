"""An owner process for hostile hosts: run (as a script) inside a new pid
namespace, a foreign or empty /proc, or hidepid=2 with an unprivileged user.

It imports nothing of netrunner (an unprivileged user may not be able to
rebuild or even import the editable install): the test encodes the C_SPAWN
records and decodes what the owner relays. The owner starts its own zygote,
asks it for a shepherd, sends the records with the command's fds, relays
every record it receives (hex, with a timestamp and the number of fds), and
reports what it saw as one JSON object on stdout.

Scenarios (``scenario`` in the JSON request on argv[1]):

* ``run``: start the command, read its first stdout line ("ready ..."), then
  wait for the records to end. Reports whether the pid printed after "ready"
  (an escapee) was gone when S_EXITED arrived.
* ``reuse``: the pid-reuse reproduction (needs root and its own /proc): the
  command prints the pid of a grandchild G that exits 5 ms after SIGTERM;
  the owner sends C_STOP, and once G has exited forks processes until one
  gets G's pid (with ns_last_pid), and checks that it is never signalled.

Test side: :func:`run_owner` builds the request and runs the script under a
wrapper command (unshare, setpriv, ...).
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


# ---- test side ---------------------------------------------------------------

def world_runnable(path: str) -> bool:
    """Whether any user may run ``path``: every directory on the way (after
    symbolic links) searchable by others, the file executable by others."""
    real = os.path.realpath(path)
    parts = real.split("/")
    for i in range(2, len(parts)):
        if not os.stat("/".join(parts[:i])).st_mode & 0o001:
            return False
    return bool(os.stat(real).st_mode & 0o001)


def unprivileged_python() -> str:
    """A Python interpreter an unprivileged user can run (the test's own may
    live under a private home directory)."""
    for candidate in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.exists(candidate) and world_runnable(candidate):
            return candidate
    raise AssertionError("cannot set up the test: no Python interpreter that an unprivileged user may run")


def run_owner(wrapper: list[str], request: dict, timeout: float = 60.0, python: str | None = None,
              env: dict[str, str] | None = None) -> dict:
    """Run this file as a script under ``wrapper`` (a command prefix) and
    return its JSON report; fail with the owner's stderr when it breaks."""
    argv = [*wrapper, python or sys.executable, "-I", "-S", os.path.join(HERE, "_owner.py"), json.dumps(request)]
    r = subprocess.run(argv, capture_output=True, timeout=timeout, env=env)
    out = r.stdout.decode(errors="replace").strip().splitlines()
    assert r.returncode == 0 and out, (
        f"owner failed (exit {r.returncode}) under {wrapper}:\n{r.stderr.decode(errors='replace')}\n{out}")
    report = json.loads(out[-1])
    assert "precondition" not in report, f"cannot set up the test: {report['precondition']}"
    return report


# ---- owner side --------------------------------------------------------------

def start_zygote(shepherd: str) -> tuple[int, socket.socket]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    fd = os.dup(theirs.fileno())
    env = {k: v for k, v in os.environ.items() if k.startswith(("ASAN_", "UBSAN_", "LSAN_"))}
    pid = os.posix_spawn(shepherd, [shepherd, "--zygote", "3"], env,
                         file_actions=[(os.POSIX_SPAWN_DUP2, fd, 3)], setpgroup=0)
    os.close(fd)
    theirs.close()
    ours.settimeout(10)
    ours.recv(100)  # Z_HELLO
    return pid, ours


def fork_shepherd(zsock: socket.socket) -> tuple[int, socket.socket]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    socket.send_fds(zsock, [b"\x02"], [theirs.fileno()])
    theirs.close()
    reply = zsock.recv(100)
    pid, err = struct.unpack_from("<ii", reply, 1)
    assert pid > 0, f"Z_FORKED error {err}"
    return pid, ours


class Command:
    """A shepherd running one command, with the command's stdout readable."""

    def __init__(self, zsock: socket.socket, records: list[bytes]) -> None:
        self.pid, self.sock = fork_shepherd(zsock)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
        root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        for record in records[:-1]:
            self.sock.send(record)
        socket.send_fds(self.sock, [records[-1]], [null, out_w, 2, root])
        for fd in (null, out_w, root):
            os.close(fd)
        self.out = out_r
        self.records: list[dict] = []
        self.t0 = time.monotonic()

    def next_record(self, timeout: float) -> dict | None:
        """The next record as {hex, fds, t}; None at end-of-file."""
        if not select.select([self.sock], [], [], timeout)[0]:
            raise TimeoutError(f"no record within {timeout} s: {self.records}")
        try:
            data, fds, _, _ = socket.recv_fds(self.sock, 70000, 4)
        except ConnectionResetError:
            rec = {"hex": "", "fds": 0, "t": time.monotonic() - self.t0, "reset": True}
            self.records.append(rec)
            return rec
        for fd in fds:
            os.close(fd)
        if not data:
            return None
        rec = {"hex": data.hex(), "fds": len(fds), "t": time.monotonic() - self.t0}
        self.records.append(rec)
        return rec

    def line(self, timeout: float = 10.0) -> str:
        buf = b""
        deadline = time.monotonic() + timeout
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.out], [], [], left)[0]:
                raise TimeoutError(f"no line from the command: {buf!r}")
            chunk = os.read(self.out, 200)
            if not chunk:
                break
            buf += chunk
        return buf.decode()

    def finish(self, timeout: float) -> int:
        while self.next_record(timeout) is not None:
            pass
        self.sock.close()
        os.close(self.out)
        _, status = os.waitpid(self.pid, 0x40000000)  # __WALL
        return status


def gone(pid: int, pidfd: int | None) -> bool:
    if pidfd is None:
        return True  # it had already gone when we looked
    return bool(select.select([pidfd], [], [], 0)[0])


def open_pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None


def scenario_run(req: dict, zsock: socket.socket) -> dict:
    cmd = Command(zsock, [bytes.fromhex(r) for r in req["records"]])
    first = cmd.next_record(10)
    report: dict = {}
    ready = cmd.line()
    report["ready"] = ready.strip()
    words = ready.split()
    escapee = int(words[1]) if len(words) > 1 else 0
    pidfd = open_pidfd(escapee) if escapee else None
    t_ready = time.monotonic() - cmd.t0
    rec = cmd.next_record(req.get("timeout", 10))
    report["escapee_gone_at_exit"] = gone(escapee, pidfd) if escapee else None
    report["ready_to_exit_s"] = (rec["t"] - t_ready) if rec else None
    status = cmd.finish(10)
    report.update(first=first, records=cmd.records, shepherd_status=status)
    if pidfd is not None:
        os.close(pidfd)
    return report


def scenario_reuse(req: dict, zsock: socket.socket) -> dict:
    with open("/proc/self/mountinfo") as f:
        pass  # /proc must be this namespace's
    if os.readlink("/proc/self") != str(os.getpid()):
        return {"precondition": "/proc is not this pid namespace's (use --mount-proc)"}
    if not os.access("/proc/sys/kernel/ns_last_pid", os.W_OK):
        return {"precondition": "/proc/sys/kernel/ns_last_pid is not writable (needs root)"}
    # Blocked here, so every process forked to take G's pid starts with them
    # blocked: a signal sent to it stays pending, where we can see it.
    watched = {signal.SIGTERM, signal.SIGCONT, signal.SIGHUP, signal.SIGINT, signal.SIGUSR1}
    signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    attempts = []
    for _ in range(req["attempts"]):
        cmd = Command(zsock, [bytes.fromhex(r) for r in req["records"]])
        cmd.next_record(10)
        g = int(cmd.line().split()[1])
        gfd = os.pidfd_open(g)
        # Processes with larger pids than G make any scan of /proc between
        # reading G's entry and signalling G last long.
        filler = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c",
             "import os, signal, sys\n"
             f"for _ in range({req['fillers']}):\n"
             "    if os.fork() == 0:\n"
             "        signal.pause(); os._exit(0)\n"
             "print('ok', flush=True); signal.pause()"],
            stdout=subprocess.PIPE, start_new_session=True)
        assert filler.stdout is not None
        assert filler.stdout.readline() == b"ok\n"
        cmd.sock.send(struct.pack("<BI", 0x13, req["kill_timeout_ms"]))
        select.select([gfd], [], [], 10)
        taken = 0
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and not taken:
            with open("/proc/sys/kernel/ns_last_pid", "w") as f:
                f.write(str(g - 1))
            pid = os.fork()
            if pid == 0:
                while True:
                    signal.pause()
            if pid == g:
                taken = pid
            else:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        status = cmd.finish(10)
        result = {"g": g, "taken": bool(taken), "shepherd_status": status, "records": cmd.records}
        if taken:
            done, _ = os.waitpid(taken, os.WNOHANG)
            with open(f"/proc/{taken}/status") as f:
                fields = dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)
            result["alive"] = done == 0
            result["pending"] = int(fields.get("SigPnd", "0"), 16) | int(fields.get("ShdPnd", "0"), 16)
            os.kill(taken, signal.SIGKILL)
            os.waitpid(taken, 0)
        os.close(gfd)
        attempts.append(result)
        # The fillers go with their attempt: pid_max must not run out.
        os.killpg(filler.pid, signal.SIGKILL)  # our unreaped child leads it: pinned
        filler.wait()
        filler.stdout.close()
    return {"attempts": attempts}


def main() -> None:
    req = json.loads(sys.argv[1])
    check = req.get("check")
    if check == "foreign-proc" and os.readlink("/proc/self") == str(os.getpid()):
        print(json.dumps({"precondition": "/proc is this pid namespace's, not a foreign one"}))
        return
    if check == "empty-proc" and os.listdir("/proc"):
        print(json.dumps({"precondition": "/proc is not empty"}))
        return
    if check == "hidepid":
        with open("/proc/self/mountinfo") as f:
            opts = [line for line in f if " /proc " in line]
        if not any("hidepid=2" in o or "hidepid=invisible" in o for o in opts) or os.getuid() == 0:
            print(json.dumps({"precondition": f"no hidepid=2 /proc or running as root: {opts} uid {os.getuid()}"}))
            return
    zpid, zsock = start_zygote(req["shepherd"])
    try:
        report = {"run": scenario_run, "reuse": scenario_reuse}[req["scenario"]](req, zsock)
    finally:
        zsock.close()
        os.waitpid(zpid, 0)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
