"""Process-wide bookkeeping that keeps the lifetime promises (SPEC section 6).

* ``live``: every handle whose shepherd has not been reaped yet.
* detached shepherds: their owner was dropped or closed early; they stop
  their tree on their own (their control socket hung up). A reaper thread,
  which exists only while such shepherds do, waits on their pidfds and reaps
  each as it exits -- within its ``kill_timeout`` and no further call needed,
  so no zombie lingers. Spawns and interpreter exit reap them too.
* ``atexit``: hang up every live control socket (each shepherd stops its tree,
  all in parallel), then reap them all.
* after ``fork()`` in the child (see ``_io/fds``): every copy of a control
  socket and pipe is already closed; forget the parent's handles and
  shepherds without touching them.
"""

from __future__ import annotations

import atexit
import os
import select
import signal
import threading
import time
from typing import TYPE_CHECKING

from ._io import fds, zygote

if TYPE_CHECKING:
    from ._engine import Handle

WALL = zygote.WALL
#: How often the reaper looks again when no pidfd can be had.
_REAPER_TICK = 0.05

live: dict[int, Handle] = {}
#: shepherd pid -> its pidfd (or -1 when none could be opened)
_detached: dict[int, int] = {}
_lock = threading.RLock()  # re-entrant: a finalizer may run while it is held
_reaper: threading.Thread | None = None


def register(handle: Handle) -> None:
    live[id(handle)] = handle


def forget(handle: Handle) -> None:
    live.pop(id(handle), None)


def detach(pid: int) -> None:
    """Reap ``pid`` (a shepherd that was handed its stop) as soon as it exits."""
    global _reaper
    try:
        # Our unreaped child, so the number still names it.
        with fds.lock:
            pidfd = fds.adopt(os.pidfd_open(pid))
    except OSError:
        pidfd = -1
    with _lock:
        _detached[pid] = pidfd
        if _reaper is None:
            reaper = threading.Thread(target=_reap_loop, name="netrunner-reaper", daemon=True)
            # It starts with every signal blocked: the process's signals
            # are for the caller's threads (the CLI tells a stop from a
            # dropped one by the SIGCONT that ends it).
            held = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
            try:
                reaper.start()
            except RuntimeError:  # the interpreter is shutting down: atexit reaps
                return
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, held)
            _reaper = reaper


def _try_reap(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG | WALL)
    except ChildProcessError:  # reaped by someone else's wait()
        return True
    return bool(done)


def _settle(pid: int) -> None:
    pidfd = _detached.pop(pid)
    if pidfd >= 0:
        fds.close(pidfd)


def reap_detached() -> None:
    """Reap every detached shepherd that has exited; never blocks."""
    if not _detached:
        return
    with _lock:
        for pid in [p for p in _detached if _try_reap(p)]:
            _settle(pid)


def _reap_loop() -> None:
    global _reaper
    while True:
        with _lock:
            if not _detached:
                _reaper = None
                return
            pidfds = [fd for fd in _detached.values() if fd >= 0]
            blind = len(pidfds) < len(_detached)
        poller = select.poll()
        for fd in pidfds:
            poller.register(fd, select.POLLIN)
        try:
            poller.poll(_REAPER_TICK * 1000 if blind else 1000)
        except OSError:  # an fd closed under us by reap_detached: look again
            pass
        reap_detached()


def _at_exit() -> None:
    handles = list(live.values())
    deadline = time.monotonic()
    for h in handles:
        deadline = max(deadline, time.monotonic() + h.opts.kill_timeout + 1.0)
        h.release()
    while _detached and time.monotonic() < deadline:
        reap_detached()
        if _detached:
            time.sleep(0.005)
    zygote.shutdown()


def _after_fork_in_child() -> None:
    global _lock, _reaper
    _lock = threading.RLock()
    _reaper = None
    live.clear()
    _detached.clear()


atexit.register(_at_exit)
fds.on_fork_in_child(_after_fork_in_child)
