"""The zygote: one small pre-started process that forks shepherds.

Starting a shepherd by ``execve`` for every command would cost a second
process image per command (see docs/decisions/0002-zygote.md). Instead, on
first use, Python starts ``netrunner-shepherd --zygote 3`` once; each spawn
sends it one ``Z_FORK`` record carrying four fds, and it clones a shepherd with
``CLONE_PARENT``, so the shepherd is this process's child and is reaped here
with ``waitpid(pid, __WALL)``.

Invariants: one zygote per process (a forked child starts its own); requests
are serialised by a lock; a zygote that died is replaced once, transparently.
"""

from __future__ import annotations

import os
import signal
import socket
import threading

from .._core import codec, wire
from .._errors import ShepherdError
from .shepherd import find_shepherd

__all__ = ["fork_shepherd", "current_pid", "shutdown"]

WALL = 0x40000000  # __WALL: also wait for children that send no SIGCHLD
_REPLY_TIMEOUT = 30.0
_ENV_PREFIXES = ("ASAN_", "UBSAN_", "LSAN_", "MSAN_", "LD_")


class _Zygote:
    __slots__ = ("pid", "sock")

    def __init__(self) -> None:
        path = find_shepherd()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        child_fd = theirs.fileno()
        moved = -1
        if child_fd == 3:  # posix_spawn's dup2(3, 3) would keep close-on-exec
            moved = child_fd = os.dup(child_fd)
        try:
            env = {k: v for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)}
            self.pid = os.posix_spawn(
                path,
                [path, "--zygote", "3"],
                env,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, devnull, 0),
                    (os.POSIX_SPAWN_DUP2, devnull, 1),
                    (os.POSIX_SPAWN_DUP2, child_fd, 3),
                ],
                setpgroup=0,
                setsigmask=(),
                setsigdef=signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP},
            )
        except OSError as exc:
            ours.close()
            raise ShepherdError(exc.errno, f"cannot start the netrunner shepherd {path}: {exc.strerror}") from exc
        finally:
            os.close(devnull)
            theirs.close()
            if moved >= 0:
                os.close(moved)
        self.sock = ours
        ours.settimeout(_REPLY_TIMEOUT)
        try:
            hello = self._receive()
        except ShepherdError:
            self.close()
            raise
        if not isinstance(hello, codec.Hello):
            self.close()
            raise ShepherdError(f"the netrunner shepherd {path} sent {hello!r} instead of a hello")
        if hello.version != wire.PROTOCOL_VERSION or hello.digest != wire.PROTOCOL_DIGEST:
            self.close()
            raise ShepherdError(
                f"stale shepherd build at {path}: it speaks protocol {hello.version} "
                f"(digest {hello.digest:#010x}), this netrunner needs {wire.PROTOCOL_VERSION} "
                f"(digest {wire.PROTOCOL_DIGEST:#010x}); rebuild with `pip install -e .` or reinstall"
            )

    def _receive(self) -> codec.Event:
        try:
            record = self.sock.recv(wire.MAX_RECORD)
        except TimeoutError:
            raise ShepherdError("the netrunner zygote did not answer") from None
        except OSError as exc:
            raise ShepherdError(exc.errno, f"the netrunner zygote is gone: {exc.strerror}") from None
        if not record:
            raise ShepherdError("the netrunner zygote exited")
        try:
            return codec.decode(record)
        except codec.ProtocolError as exc:
            raise ShepherdError(f"the netrunner zygote broke protocol: {exc}") from None

    def fork(self, fds: list[int]) -> int:
        try:
            self.sock.sendmsg([codec.encode_fork()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, bytes(_fd_array(fds)))])
        except OSError as exc:
            raise ShepherdError(exc.errno, f"the netrunner zygote is gone: {exc.strerror}") from None
        reply = self._receive()
        if not isinstance(reply, codec.Forked):
            raise ShepherdError(f"the netrunner zygote sent {reply!r} instead of a fork reply")
        if reply.pid <= 0:
            err = reply.error or 0
            raise OSError(err, f"cannot start a shepherd: {os.strerror(err)}")
        return reply.pid

    def close(self) -> None:
        self.sock.close()
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


def _fd_array(fds: list[int]) -> memoryview:
    import array

    return memoryview(array.array("i", fds))


_lock = threading.Lock()
_zygote: _Zygote | None = None


def fork_shepherd(fds: list[int]) -> int:
    """Fork a shepherd that receives ``fds`` (control, stdin, stdout, stderr);
    return its pid. The fds stay open here; the caller closes them."""
    global _zygote
    with _lock:
        for attempt in (1, 2):
            if _zygote is None:
                _zygote = _Zygote()
            try:
                return _zygote.fork(fds)
            except ShepherdError:
                dead, _zygote = _zygote, None
                dead.close()
                if attempt == 2:
                    raise
    raise AssertionError("unreachable")  # pragma: no cover


def current_pid() -> int | None:
    """The zygote's pid, if one is running for this process."""
    z = _zygote
    return z.pid if z is not None else None


def shutdown() -> None:
    """Stop the zygote (it exits when its socket closes) and reap it."""
    global _zygote
    with _lock:
        z, _zygote = _zygote, None
    if z is not None:
        z.close()


def _after_fork_in_child() -> None:
    # The zygote belongs to the parent: drop our copy of its socket without
    # touching it (the parent still uses it) and start afresh on next use.
    global _zygote, _lock
    _lock = threading.Lock()
    z, _zygote = _zygote, None
    if z is not None:
        z.sock.close()


os.register_at_fork(after_in_child=_after_fork_in_child)
