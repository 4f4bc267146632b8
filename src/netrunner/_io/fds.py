"""Every file descriptor netrunner opens, so that a fork leaves none behind.

Linux has no close-on-fork flag, and a forked child that keeps a copy of a
control socket or a pipe breaks the lifetime promises: the shepherd no longer
sees its owner hang up when the owner dies, and a reader waits for an end of
file that the child's copy holds back. ``os.register_at_fork`` runs hooks in
the forking thread, but an fd that another thread has just created and not yet
stored anywhere is invisible to them.

So every netrunner fd is created and closed through this module, under
:data:`lock`, which ``os.register_at_fork(before=...)`` also takes: a fork
happens either before an fd exists or after it is registered, never between.
In the child, every registered fd is closed; socket objects are detached
first, so they cannot close the number again later, and epoll objects are
closed through the object for the same reason.

Invariants: the lock is only ever held around non-blocking system calls; a
netrunner fd is never closed except through :func:`close` or
:func:`close_socket`, so the registry never names a number that has since
been reused (a registered socket object is referenced here, so it cannot be
closed behind the registry's back by the garbage collector either).
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import socket
import threading
from collections.abc import Callable, Iterable

__all__ = [
    "lock", "pipe", "eventfd", "epoll", "socketpair", "open_fd", "devnull", "adopt", "close", "close_all",
    "close_socket", "close_epoll", "watch", "unwatch",
    "after_fork_in_child",
]

#: Held around every creation and close of a netrunner fd, and across fork().
lock = threading.RLock()
#: fd -> the socket or epoll object owning it, or None for a plain fd
_owned: dict[int, socket.socket | select.epoll | None] = {}
_child_hooks: list[Callable[[], None]] = []
#: fd -> what to call with it right before it is closed (:func:`watch`)
_watchers: dict[int, Callable[[int], None]] = {}


def _register(fd: int, sock: socket.socket | select.epoll | None = None) -> None:
    _owned[fd] = sock


def _above_stdio(fd: int, what: str) -> int:
    """``fd`` itself, or, when it took one of the numbers 0-2 that the
    interpreter left closed, a copy at 3 or above (the low number is closed
    again). netrunner never occupies the interpreter's stdio numbers: a later
    ``stderr="inherit"`` must find fd 2 as the interpreter left it."""
    if fd > 2:
        return fd
    try:
        return _copy_above_stdio(fd, what)
    finally:
        os.close(fd)


def _copy_above_stdio(fd: int, what: str) -> int:
    """A close-on-exec copy of ``fd`` at 3 or above, or the explained error."""
    try:
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    except OSError as exc:
        if exc.errno == errno.EINVAL:  # RLIMIT_NOFILE is 3 or less: no number above 0-2
            exc = OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        raise _explain(exc, what) from None


def _pair(make: Callable[[], tuple[int, int]], what: str) -> tuple[int, int]:
    """Two new fds from ``make``, above 0-2, registered."""
    with lock:
        try:
            a, b = make()
        except OSError as exc:
            raise _explain(exc, what) from None
        if a <= 2 or b <= 2:
            try:
                a = _above_stdio(a, what)
            except OSError:
                os.close(b)
                raise
            try:
                b = _above_stdio(b, what)
            except OSError:
                os.close(a)
                raise
        _register(a)
        _register(b)
    return a, b


def pipe() -> tuple[int, int]:
    """A close-on-exec pipe (read end, write end)."""
    return _pair(lambda: os.pipe2(os.O_CLOEXEC), "a pipe")


def openpty() -> tuple[int, int]:
    """A pseudo-terminal (master, slave), both close-on-exec; the slave is not
    made the interpreter's controlling terminal."""
    return _pair(os.openpty, "a pseudo-terminal")


def dup(fd: int, what: str) -> int:
    """A close-on-exec copy of ``fd`` (at 3 or above), registered."""
    with lock:
        copy = _copy_above_stdio(fd, what)
        _register(copy)
    return copy


def eventfd(what: str) -> int:
    """A non-blocking, close-on-exec eventfd (a wake-up counter), registered."""
    with lock:
        try:
            fd = _above_stdio(os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC), what)
        except OSError as exc:
            raise _explain(exc, what) from None
        _register(fd)
    return fd


def epoll(what: str) -> select.epoll:
    """A close-on-exec epoll instance, registered (close it with
    :func:`close_epoll`)."""
    with lock:
        try:
            ep = select.epoll()
            if ep.fileno() <= 2:
                try:
                    moved = _copy_above_stdio(ep.fileno(), what)
                finally:
                    ep.close()
                ep = select.epoll.fromfd(moved)
        except OSError as exc:
            raise _explain(exc, what) from None
        _register(ep.fileno(), ep)
    return ep


def close_epoll(ep: select.epoll) -> None:
    """Close a registered epoll object (idempotent)."""
    with lock:
        if not ep.closed:
            _owned.pop(ep.fileno(), None)
        ep.close()


def socketpair() -> tuple[socket.socket, socket.socket]:
    """A close-on-exec ``AF_UNIX``/``SOCK_SEQPACKET`` socket pair."""
    with lock:
        try:
            a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        except OSError as exc:
            raise _explain(exc, "a control socket") from None
        if a.fileno() <= 2 or b.fileno() <= 2:
            try:
                a = _sock_above_stdio(a)
            except OSError:
                b.close()
                raise
            try:
                b = _sock_above_stdio(b)
            except OSError:
                a.close()
                raise
        _register(a.fileno(), a)
        _register(b.fileno(), b)
    return a, b


def _sock_above_stdio(sock: socket.socket) -> socket.socket:
    if sock.fileno() > 2:
        return sock
    try:
        moved = _copy_above_stdio(sock.fileno(), "a control socket")
    finally:
        sock.close()
    return socket.socket(fileno=moved)


def open_fd(path: str | bytes, flags: int, what: str) -> int:
    """``os.open(path, flags | O_CLOEXEC)``, registered."""
    with lock:
        try:
            fd = _above_stdio(os.open(path, flags | os.O_CLOEXEC), what)
        except OSError as exc:
            raise _explain(exc, what) from None
        _register(fd)
    return fd


#: The kept ``/dev/null`` fds: flags -> fd (see :func:`devnull`).
_devnull: dict[int, int] = {}


def devnull(flags: int) -> int:
    """A registered fd open on ``/dev/null`` with ``flags`` (``O_RDONLY`` or
    ``O_WRONLY``), opened once and kept: a command given it as stdin reads
    its end at once, as stdout or stderr its writes vanish, and what the
    command does to the open file cannot matter (``/dev/null`` has no
    position, and never blocks). Not to be closed: it is not the caller's.
    A forked child opens its own."""
    fd = _devnull.get(flags)
    if fd is None:
        with lock:
            fd = _devnull.get(flags)
            if fd is None:
                fd = _devnull[flags] = open_fd(os.devnull, flags, os.devnull)
    return fd


def owns(fd: int) -> bool:
    """``fd`` is one of netrunner's."""
    return fd in _owned


def adopt(fd: int) -> int:
    """Register an fd received from a shepherd. Call with :data:`lock` held,
    right after the ``recvmsg`` that brought it. Returns the fd to use
    (moved above 0-2 if it landed there)."""
    fd = _above_stdio(fd, "a received fd")
    _register(fd)
    return fd


def watch(fd: int, hook: Callable[[int], None]) -> None:
    """Call ``hook(fd)`` right before ``fd`` is closed through this module,
    once, under :data:`lock` (:func:`unwatch` cancels it). The async drivers
    take the fd out of the epoll instances it is registered in there,
    before its number can be reused."""
    _watchers[fd] = hook


def unwatch(fd: int) -> None:
    """Cancel :func:`watch` for ``fd``."""
    _watchers.pop(fd, None)


def close(fd: int) -> None:
    """Close a registered fd."""
    with lock:
        _owned.pop(fd, None)
        hook = _watchers.pop(fd, None)
        if hook is not None:
            hook(fd)
        os.close(fd)


def close_all(numbers: Iterable[int | None]) -> None:
    """Close registered fds (None entries are skipped), holding the lock once."""
    with lock:
        for fd in numbers:
            if fd is not None:
                _owned.pop(fd, None)
                hook = _watchers.pop(fd, None)
                if hook is not None:
                    hook(fd)
                os.close(fd)


def close_socket(sock: socket.socket) -> None:
    """Close a registered socket object (idempotent)."""
    with lock:
        fd = sock.fileno()
        if fd >= 0:
            _owned.pop(fd, None)
            hook = _watchers.pop(fd, None)
            if hook is not None:
                hook(fd)
        sock.close()


def on_fork_in_child(hook: Callable[[], None]) -> None:
    """Run ``hook`` in a forked child, after every netrunner fd is closed."""
    _child_hooks.append(hook)


def _explain(exc: OSError, what: str) -> OSError:
    """The error for running out of fds or memory, saying what netrunner needed."""
    if exc.errno in (errno.EMFILE, errno.ENFILE):
        try:
            import resource

            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            limit = f"the limit is {soft}"
        except (ImportError, OSError, ValueError):  # pragma: no cover
            limit = "the limit is reached"
        scope = "this process" if exc.errno == errno.EMFILE else "the system"
        return OSError(
            exc.errno,
            f"netrunner could not open {what}: {scope} is out of file descriptors ({limit}; each "
            f"running command holds 4 and its start needs up to 9 at once). Close unused files "
            f"or raise the limit (`ulimit -n`, resource.setrlimit(RLIMIT_NOFILE, ...))",
        )
    return exc


def _before_fork() -> None:
    lock.acquire()


def _after_fork_in_parent() -> None:
    lock.release()


def after_fork_in_child() -> None:
    """Close every netrunner fd in a forked child and forget them."""
    global lock
    for fd, sock in list(_owned.items()):
        if isinstance(sock, select.epoll):
            if not sock.closed and sock.fileno() == fd:
                sock.close()  # through the object: it must never close the number again
            continue
        if sock is not None:
            if sock.fileno() != fd:
                continue  # closed directly, not through close_socket: not ours any more
            sock.detach()  # the object must never close the number again
        try:
            os.close(fd)
        except OSError:
            pass
    _owned.clear()
    _devnull.clear()
    _watchers.clear()
    lock = threading.RLock()
    for hook in _child_hooks:
        hook()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=after_fork_in_child)
