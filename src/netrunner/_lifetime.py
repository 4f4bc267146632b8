"""Process-wide bookkeeping that keeps the lifetime promises (SPEC section 6).

* ``live``: every handle whose shepherd has not been reaped yet.
* ``detached``: shepherds whose owner was dropped; they stop their tree on
  their own (their control socket hung up) and are reaped here later, at the
  next spawn or at interpreter exit, never blocking a finalizer.
* ``atexit``: hang up every live control socket (each shepherd stops its tree,
  all in parallel), then reap them all.
* after ``fork()`` in the child: close every copy of a control socket and pipe,
  so the parent's death is still seen and no pipe is held open.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from typing import TYPE_CHECKING

from ._io import zygote

if TYPE_CHECKING:
    from ._engine import Handle

WALL = zygote.WALL

live: dict[int, Handle] = {}
_detached: list[int] = []
_lock = threading.Lock()


def register(handle: Handle) -> None:
    live[id(handle)] = handle


def forget(handle: Handle) -> None:
    live.pop(id(handle), None)


def detach(pid: int) -> None:
    """Reap ``pid`` (a shepherd that was handed its stop) later."""
    with _lock:
        _detached.append(pid)


def reap_detached() -> None:
    """Reap every detached shepherd that has exited; never blocks."""
    if not _detached:
        return
    with _lock:
        keep = []
        for pid in _detached:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG | WALL)
            except ChildProcessError:
                continue
            if not done:
                keep.append(pid)
        _detached[:] = keep


def _at_exit() -> None:
    handles = list(live.values())
    deadline = time.monotonic()
    for h in handles:
        deadline = max(deadline, time.monotonic() + h.opts.kill_timeout + 1.0)
        h.release()
    with _lock:
        pids = list(_detached)
        _detached.clear()
    while pids and time.monotonic() < deadline:
        for pid in list(pids):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG | WALL)
            except ChildProcessError:
                done = pid
            if done:
                pids.remove(pid)
        if pids:
            time.sleep(0.005)
    zygote.shutdown()


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()
    for h in list(live.values()):
        h.close_fds()
    live.clear()
    _detached.clear()


atexit.register(_at_exit)
os.register_at_fork(after_in_child=_after_fork_in_child)
