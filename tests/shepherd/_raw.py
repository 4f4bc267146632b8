"""Talking to shepherds directly, with raw records (for the protocol tests)."""

from __future__ import annotations

import array
import os
import select
import socket
import sys
import time
from collections.abc import Sequence

from netrunner._core import codec, wire
from netrunner._io import zygote

WALL = zygote.WALL


def idle_shepherd() -> tuple[int, socket.socket]:
    """A fresh idle shepherd from this process's zygote: (pid, control socket,
    blocking, as a raw client's would be; netrunner's own are not)."""
    pid, sock, _ = zygote.take_shepherd()
    sock.setblocking(True)
    return pid, sock


def rights(fds: Sequence[int]) -> list[tuple[int, int, bytes]]:
    return [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]


def std_fds() -> tuple[list[int], list[int]]:
    """(fds to send with C_SPAWN, our ends): stdin read end, stdout and stderr
    write ends, and the current directory; our ends are stdin's write end
    and the read ends of stdout and stderr."""
    in_r, in_w = os.pipe2(os.O_CLOEXEC)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    here = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    return [in_r, out_w, err_w, here], [in_w, out_r, err_r]


def spawn(argv: list[bytes], *, env: list[bytes] | None = None, cwd: bytes | None = None,
          detach: bool = False, kill_timeout: float = 5.0, paths: list[bytes] | None = None,
          reuse: bool = False) -> tuple[int, socket.socket, list[int]]:
    """Start argv on a fresh shepherd; return (shepherd pid, control socket, our pipe ends)."""
    pid, sock = idle_shepherd()
    ours = send_spawn(sock, argv, env=env, cwd=cwd, detach=detach, kill_timeout=kill_timeout, paths=paths,
                      reuse=reuse)
    return pid, sock, ours


def send_spawn(sock: socket.socket, argv: list[bytes], *, env: list[bytes] | None = None,
               cwd: bytes | None = None, detach: bool = False, kill_timeout: float = 5.0,
               paths: list[bytes] | None = None, reuse: bool = False) -> list[int]:
    """Send the SPAWN request (and its parts) for argv; return our pipe ends.
    The environment defaults to ours, so the test's marker goes along."""
    theirs, ours = std_fds()
    records = codec.encode_spawn(
        argv, env if env is not None else [k + b"=" + v for k, v in os.environb.items()],
        paths or [argv[0]], cwd, detach=detach, kill_timeout=kill_timeout, reuse=reuse,
    )
    for record in records[:-1]:
        sock.send(record)
    sock.sendmsg([records[-1]], rights(theirs))
    for fd in theirs:
        os.close(fd)
    return ours


def recv_record(sock: socket.socket) -> tuple[bytes, list[int]]:
    """One record and the fds that came with it (close-on-exec); ``b""`` at
    an end of file read twice (see ``netrunner._io.seqpacket``: the kernel
    can report one with the peer's last record still queued)."""
    fds = array.array("i")
    for _ in range(2):
        record, anc, flags, _ = sock.recvmsg(wire.MAX_RECORD, socket.CMSG_SPACE(8 * fds.itemsize),
                                             socket.MSG_CMSG_CLOEXEC)
        if record:
            break
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    assert not flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC), flags
    return record, list(fds)


def recv_event(sock: socket.socket, timeout: float | None = 10.0) -> tuple[codec.Event | None, list[int]]:
    """The next event (None at end-of-file) and the fds it carried, which the
    caller owns. Checks that exactly S_STARTED carries fds, STARTED_FDS of them."""
    if timeout is not None and not select.select([sock], [], [], timeout)[0]:
        raise TimeoutError(f"no record within {timeout} s")
    record, fds = recv_record(sock)
    if not record:
        assert not fds
        return None, fds
    event = codec.decode(record)
    want = wire.STARTED_FDS if isinstance(event, codec.Started) else 0
    if len(fds) != want:
        close_all(fds)
        raise AssertionError(f"{event} came with {len(fds)} fds, not {want}")
    return event, fds


def started(sock: socket.socket, timeout: float = 10.0) -> int:
    """Expect S_STARTED; close its pidfd and return the pid."""
    event, fds = recv_event(sock, timeout)
    close_all(fds)
    assert isinstance(event, codec.Started), event
    return event.pid


def events(sock: socket.socket, timeout: float = 10.0) -> list[codec.Event | None]:
    """Every record until end-of-file (None marks EOF); fds that came along
    (S_STARTED's pidfd) are closed."""
    out: list[codec.Event | None] = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no end of file within {timeout} s; got {out}")
        try:
            event, fds = recv_event(sock, left)
        except TimeoutError:
            raise TimeoutError(f"no end of file within {timeout} s; got {out}") from None
        close_all(fds)
        out.append(event)
        if event is None:
            return out


def reap(pid: int, timeout: float = 10.0, *, check: bool = True, expect: int = wire.EXIT_OK) -> int:
    """Reap a shepherd; fail if it has not exited within ``timeout`` or (with
    ``check``) did not exit with ``expect`` (EXIT_OK by default; EXIT_PROTOCOL
    after a bad frame) -- a sanitizer build exits otherwise when it finds an
    error or a leak."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG | WALL)
        if done:
            if check:
                assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == expect, (
                    f"shepherd {pid} ended with wait status {status:#x}, not exit {expect}")
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"shepherd {pid} did not exit")
        time.sleep(0.002)


def close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


# ---- cgroups -----------------------------------------------------------------

def cgroup_mounts() -> tuple[str | None, dict[str, str]]:
    """(the cgroup-v2 mount point or None, {v1 controller or name=...: its mount point}),
    read from /proc/self/mountinfo (never assumed to be /sys/fs/cgroup)."""
    v2: str | None = None
    v1: dict[str, str] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            point = fields[4].replace("\\040", " ")
            fstype, options = fields[sep + 1], fields[sep + 3].split(",")
            if fstype == "cgroup2" and v2 is None:
                v2 = point
            elif fstype == "cgroup":  # its super options name its controllers (and rw, ...)
                for option in options:
                    v1.setdefault(option, point)
    return v2, v1


def cgroup_record(role: int, path: bytes, flags: int = 0, *, raw_tail: bytes | None = None) -> bytes:
    """A C_CGROUP record: role, flags, then the path and its NUL (or `raw_tail`
    as is, for malformed records)."""
    head = wire.BY_NAME["C_CGROUP"].struct.pack(wire.BY_NAME["C_CGROUP"].code, role, flags)
    return head + (raw_tail if raw_tail is not None else path + b"\0")


def spawn_in(cgroups: list[bytes], argv: list[bytes], **kw: object) -> tuple[int, socket.socket, list[int]]:
    """Like spawn, with these C_CGROUP records sent before the SPAWN request."""
    pid, sock = idle_shepherd()
    for record in cgroups:
        sock.send(record)
    ours = send_spawn(sock, argv, **kw)  # type: ignore[arg-type]
    return pid, sock, ours


PY = sys.executable.encode()


def py(script: str, python: bytes = PY) -> list[bytes]:
    """argv of an isolated ``python -c script`` (no site, no user paths)."""
    return [python, b"-I", b"-S", b"-c", script.encode()]


def read_line(fd: int, timeout: float = 10.0) -> bytes:
    """Read from ``fd`` until a newline, end of file or ``timeout``."""
    line = b""
    deadline = time.monotonic() + timeout
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 100)
        if not chunk:
            break
        line += chunk
    return line
