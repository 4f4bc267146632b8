"""Talking to shepherds directly, with raw records (for the protocol tests)."""

from __future__ import annotations

import array
import os
import select
import socket
import time

from netrunner._core import codec, wire
from netrunner._io import zygote

WALL = zygote.WALL


def idle_shepherd() -> tuple[int, socket.socket]:
    """A fresh idle shepherd from this process's zygote: (pid, control socket)."""
    return zygote.take_shepherd()


def rights(fds: list[int]) -> list[tuple[int, int, bytes]]:
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
          detach: bool = False, kill_timeout: float = 5.0, paths: list[bytes] | None = None
          ) -> tuple[int, socket.socket, list[int]]:
    """Start argv on a fresh shepherd; return (shepherd pid, control socket, our pipe ends)."""
    pid, sock = idle_shepherd()
    ours = send_spawn(sock, argv, env=env, cwd=cwd, detach=detach, kill_timeout=kill_timeout, paths=paths)
    return pid, sock, ours


def send_spawn(sock: socket.socket, argv: list[bytes], *, env: list[bytes] | None = None,
               cwd: bytes | None = None, detach: bool = False, kill_timeout: float = 5.0,
               paths: list[bytes] | None = None) -> list[int]:
    """Send the SPAWN request (and its parts) for argv; return our pipe ends.
    The environment defaults to ours, so the test's marker goes along."""
    theirs, ours = std_fds()
    records = codec.encode_spawn(
        argv, env if env is not None else [k + b"=" + v for k, v in os.environb.items()],
        paths or [argv[0]], cwd, detach=detach, kill_timeout=kill_timeout,
    )
    for record in records[:-1]:
        sock.send(record)
    sock.sendmsg([records[-1]], rights(theirs))
    for fd in theirs:
        os.close(fd)
    return ours


def events(sock: socket.socket, timeout: float = 10.0) -> list[codec.Event | None]:
    """Every record until end-of-file (None marks EOF)."""
    out: list[codec.Event | None] = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([sock], [], [], left)[0]:
            raise TimeoutError(f"no end of file within {timeout} s; got {out}")
        record = sock.recv(wire.MAX_RECORD)
        if not record:
            out.append(None)
            return out
        out.append(codec.decode(record))


def reap(pid: int, timeout: float = 10.0, *, check: bool = True) -> int:
    """Reap a shepherd; fail if it has not exited within ``timeout`` or (with
    ``check``) did not exit with status 0 -- a sanitizer build exits non-zero
    when it finds an error or a leak."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG | WALL)
        if done:
            if check:
                assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, (
                    f"shepherd {pid} ended with wait status {status:#x}")
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
