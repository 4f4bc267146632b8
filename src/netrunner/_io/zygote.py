"""The zygote: one small pre-started process that forks shepherds.

Starting a shepherd by ``execve`` for every command would cost a second
process image per command (see docs/decisions/0002-zygote.md). Instead, on
first use, Python starts ``netrunner-shepherd --zygote 3`` once; a ``Z_FORK``
record carrying one end of a fresh socketpair makes it clone a shepherd with
``CLONE_PARENT``, so the shepherd is this process's child and is reaped here
with ``waitpid(pid, __WALL)``. One shepherd is always forked ahead of need
(the *spare*): a command is started by one ``sendmsg`` to it, and its
replacement is forked while the command runs.

Invariants: one zygote per process (a forked child starts its own); replies
are read in request order under a lock; a zygote that died is replaced once,
transparently; at most one spare and one pending request exist.
"""

from __future__ import annotations

import os
import signal
import socket
import threading

from .._core import codec, wire
from .._errors import ShepherdError
from .shepherd import find_shepherd

__all__ = ["take_shepherd", "current_pid", "helper_pids", "shutdown"]

WALL = 0x40000000  # __WALL: any kind of child, whatever its exit signal
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

    def request(self) -> socket.socket:
        """Ask for a shepherd; return our end of its control socket. The
        reply (its pid) is read later by :meth:`collect`, in order."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, _fd_bytes([theirs.fileno()]))]
            self.sock.sendmsg([codec.encode_fork()], rights)
        except OSError as exc:
            ours.close()
            raise ShepherdError(exc.errno, f"the netrunner zygote is gone: {exc.strerror}") from None
        finally:
            theirs.close()
        return ours

    def collect(self) -> int:
        """The pid of the oldest requested shepherd."""
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


def _fd_bytes(fds: list[int]) -> bytes:
    import array

    return array.array("i", fds).tobytes()


_lock = threading.Lock()
_zygote: _Zygote | None = None
#: A shepherd forked ahead of need (pid, our end of its control socket), so
#: that starting a command costs no round trip to the zygote.
_spare: tuple[int, socket.socket] | None = None
#: Our end of a requested shepherd whose pid the zygote has not told us yet.
_pending: socket.socket | None = None


def take_shepherd() -> tuple[int, socket.socket]:
    """An idle shepherd (its pid and our end of its control socket), ready to
    receive a spawn request. Call :func:`replenish` once it has its request."""
    global _zygote, _spare, _pending
    with _lock:
        for attempt in (1, 2):
            try:
                if _zygote is None:
                    _zygote = _Zygote()
                if _spare is None:
                    if _pending is None:
                        _pending = _zygote.request()
                    sock, _pending = _pending, None
                    try:
                        _spare = (_zygote.collect(), sock)
                    except BaseException:
                        sock.close()
                        raise
                taken, _spare = _spare, None
                return taken
            except ShepherdError:
                _discard_zygote()
                if attempt == 2:
                    raise
    raise AssertionError("unreachable")  # pragma: no cover


def replenish() -> None:
    """Fork the next spare shepherd. Called once a command has been handed
    its shepherd, so the zygote's clone does not compete with the start."""
    global _pending
    with _lock:
        if _zygote is not None and _spare is None and _pending is None:
            try:
                _pending = _zygote.request()
            except ShepherdError:
                _discard_zygote()


def _discard_zygote() -> None:
    """Forget a broken zygote (and what it owed us); reap what can be reaped."""
    global _zygote, _spare, _pending
    z, _zygote = _zygote, None
    spare, _spare = _spare, None
    pending, _pending = _pending, None
    if pending is not None:
        pending.close()
    if spare is not None:
        spare[1].close()
        _reap(spare[0])
    if z is not None:
        z.close()


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, WALL)
    except ChildProcessError:
        pass


def helper_pids() -> set[int]:
    """The long-lived helpers of this process: the zygote and the spare
    shepherd (neither is a per-command process)."""
    global _spare, _pending
    with _lock:
        pids = set()
        if _zygote is not None:
            pids.add(_zygote.pid)
            if _spare is None and _pending is not None:
                sock, _pending = _pending, None
                try:
                    _spare = (_zygote.collect(), sock)
                except (OSError, ShepherdError):
                    sock.close()
        if _spare is not None:
            pids.add(_spare[0])
        return pids


def current_pid() -> int | None:
    """The zygote's pid, if one is running for this process."""
    z = _zygote
    return z.pid if z is not None else None


def shutdown() -> None:
    """Stop the spare shepherd and the zygote (both exit when their sockets
    close) and reap them."""
    global _zygote, _spare, _pending
    with _lock:
        if _zygote is not None and _spare is None and _pending is not None:
            sock, _pending = _pending, None
            try:
                _spare = (_zygote.collect(), sock)
            except (OSError, ShepherdError):
                sock.close()
        _discard_zygote()


def _after_fork_in_child() -> None:
    # The zygote and the spare belong to the parent: drop our copies of their
    # sockets without touching them and start afresh on next use.
    global _zygote, _lock, _spare, _pending
    _lock = threading.Lock()
    z, _zygote = _zygote, None
    spare, _spare = _spare, None
    pending, _pending = _pending, None
    for sock in (z.sock if z else None, spare[1] if spare else None, pending):
        if sock is not None:
            sock.close()


os.register_at_fork(after_in_child=_after_fork_in_child)
