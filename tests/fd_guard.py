"""Who closes netrunner's fds: netrunner only, and netrunner only its own.

Installed once for the whole suite (``conftest``), it wraps the fd
registry of ``netrunner._io.fds`` and records the identity (device, inode,
type) of every fd netrunner registers. Then:

* a close through the registry of a number whose file is not the one
  registered under it (someone closed it behind netrunner's back and the
  number was reused), or that is a live socket object's number closed as a
  plain fd, or that was never registered, is a finding, with its stack;
* closing a control socket that a live handle still reads, or a handle
  hanging up (``_give_back``, ``_give_up``) a socket another live handle
  reads, or giving back a shepherd that is idle already, is a finding;
* after each test, a registered fd whose file changed is a finding.

The test during which a finding arose fails (``conftest.marker``), naming
it. Tests that break an fd on purpose say so with
``@pytest.mark.breaks_netrunner_fds``. Each check costs an ``fstat``: some
microseconds per command started, in the tests only.
"""

from __future__ import annotations

import os
import socket
import threading
import traceback
from typing import Any

findings: list[str] = []
_identity: dict[int, tuple[Any, ...]] = {}
_installed = False


def _id(fd: int) -> tuple[Any, ...]:
    try:
        st = os.fstat(fd)
    except OSError as exc:
        return ("closed", exc.errno)
    return (st.st_dev, st.st_ino, st.st_mode)


def _found(what: str) -> None:
    stack = "".join(traceback.format_stack(limit=12)[:-2])
    findings.append(f"[{threading.current_thread().name}] {what}\n{stack}")


def install() -> None:
    """Wrap the registry (once per process)."""
    global _installed
    if _installed:
        return
    _installed = True
    from netrunner import _lifetime
    from netrunner._engine import Handle
    from netrunner._io import fds, zygote

    def readers_of(sock: socket.socket, but: object = None) -> list[Any]:
        return [h for h in list(_lifetime.live.values())
                if h is not but and getattr(h, "ctl", None) is sock and h.ctl_open]

    register = fds._register

    def _register(fd: int, sock: Any = None) -> None:
        _identity[fd] = _id(fd)
        register(fd, sock)

    def check_plain(fd: int | None, how: str) -> None:
        if fd is None:
            return
        owner = fds._owned.get(fd, KeyError)
        if owner is KeyError:
            _found(f"{how}({fd}): not an fd of netrunner's (now {_id(fd)})")
        elif isinstance(owner, socket.socket) and owner.fileno() == fd:
            _found(f"{how}({fd}): the number of a live socket object, closed as a plain fd")
        elif _identity.get(fd) != _id(fd):
            _found(f"{how}({fd}): registered as {_identity.get(fd)}, now {_id(fd)}: closed and reused meanwhile")
        _identity.pop(fd, None)

    close, close_all, close_socket = fds.close, fds.close_all, fds.close_socket

    def _close(fd: int) -> None:
        with fds.lock:
            check_plain(fd, "close")
            close(fd)

    def _close_all(numbers: Any) -> None:
        numbers = list(numbers)
        with fds.lock:
            for fd in numbers:
                check_plain(fd, "close_all")
            close_all(numbers)

    def _close_socket(sock: socket.socket) -> None:
        with fds.lock:
            fd = sock.fileno()
            if fd >= 0:
                if _identity.get(fd, _id(fd)) != _id(fd):
                    _found(f"close_socket({fd}): registered as {_identity.get(fd)}, now {_id(fd)}")
                _identity.pop(fd, None)
                users = readers_of(sock)
                if users:
                    _found(f"close_socket({fd}): live handles still read it: {users}")
            close_socket(sock)

    def hang_up_check(name: str) -> Any:
        original = getattr(Handle, name)

        def wrapper(self: Any, *args: Any) -> Any:
            users = readers_of(self.ctl, but=self)
            if users:
                _found(f"{name}: hangs up a socket that other live handles read: {users}")
            return original(self, *args)

        return wrapper

    take_back = zygote.take_back

    def _take_back(pid: int, ctl: socket.socket, baseline: Any) -> bool:
        if any(p == pid or s is ctl for p, s, _ in zygote._idle):
            _found(f"take_back({pid}): idle already")
        return take_back(pid, ctl, baseline)

    fds._register = _register
    fds.close, fds.close_all, fds.close_socket = _close, _close_all, _close_socket
    for name in ("_give_back", "_give_up"):
        setattr(Handle, name, hang_up_check(name))
    zygote.take_back = _take_back


def changed_since_registered() -> list[str]:
    """Registered fds whose file is no longer the one registered."""
    from netrunner._io import fds

    changed = []
    with fds.lock:
        for fd, owner in list(fds._owned.items()):
            try:
                if owner is not None and owner.fileno() != fd:
                    continue  # an object closed directly (the raw tests' sockets): not registered any more
            except ValueError:  # a closed epoll object
                continue
            want = _identity.get(fd)
            now = _id(fd)
            if want is not None and now != want:
                changed.append(f"fd {fd} ({owner!r}): registered as {want}, now {now}")
                _identity[fd] = now
    return changed


def take() -> list[str]:
    """The findings so far, forgotten."""
    taken = findings[:]
    del findings[:]
    return taken
