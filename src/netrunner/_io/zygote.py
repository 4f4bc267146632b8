"""The zygote: one small pre-started process that forks shepherds.

Starting a shepherd by ``execve`` for every command would cost a second
process image per command (see docs/decisions/0002-zygote.md). Instead, on
first use, Python starts ``netrunner-shepherd --zygote 3`` once; a ``Z_FORK``
record carrying one end of a fresh socketpair makes it clone a shepherd with
``CLONE_PARENT``, so the shepherd is this process's child and is reaped here
with ``waitpid(pid, __WALL)``. One shepherd is always forked ahead of need
(the *spare*): a command is started by one ``sendmsg`` to it, and its
replacement is forked while the command runs.

A shepherd whose command is over and whose tree is gone reports
``EXITED_REUSABLE`` and stays, as a new one would, on the same socket: once
``run`` (or a stream) has released the command, :func:`take_back` keeps it
idle for the next command, instead of a new spare (at most
:data:`MAX_IDLE`; ADR 9). So a sequence of commands costs no fork at all,
and the zygote is asked only when no idle shepherd is left.

The zygote is started sharing this process's cwd, root and umask
(``CLONE_FS``, by the small ``netrunner-spawn.so`` loaded with ctypes), and so
is every shepherd it forks: a command, cloned without it, gets them as they
are at its clone, as a ``subprocess`` child does, and the umask is never read
nor sent (ADR 6). Where that cannot be done (no ctypes, no such library, an
architecture without it, ``clone3`` refused), the zygote is started as
before, with copies of them.

Each zygote keeps the attributes its shepherds inherit (the umask when it is
not shared, resource limits, nice, CPU affinity: ``_io/attrs.py``), read when
it has started; :func:`take_shepherd` hands them out with the shepherd, so
that a spawn sends the command what differs from them at the call.

Invariants: one zygote per process (a forked child starts its own); replies
are read in request order under a lock; a zygote that died is replaced once,
transparently; after a spawn, one idle shepherd or one pending request exists
(never more: one that comes back then exits instead).
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import threading
import time
from typing import Any

from .._core import codec, wire
from .._core.attrs import SHARED_UMASK, Attrs
from .._errors import ShepherdError
from . import attrs, fds, seqpacket
from .shepherd import find_shepherd, find_spawn_library

__all__ = ["take_shepherd", "take_back", "wants_back", "replenish", "current_pid", "helper_pids", "shutdown"]

WALL = 0x40000000  # __WALL: any kind of child, whatever its exit signal
#: Most shepherds kept idle or on their way (a requested one counts): one
#: is enough for commands started one after the other never to fork, and
#: keeps the number of fds and children the same after every spawn.
MAX_IDLE = 1
_REPLY_TIMEOUT = 30.0
_TERMINAL_STOPS = (signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)
_ENV_PREFIXES = ("ASAN_", "UBSAN_", "LSAN_", "MSAN_", "LD_")


class _Zygote:
    __slots__ = ("pid", "sock", "baseline")

    baseline: Attrs

    def __init__(self) -> None:
        check_kernel()
        path = find_shepherd()
        ours, theirs = fds.socketpair()
        moved = devnull = -1
        umask_before = attrs.current_umask()
        shared = False
        try:
            devnull = fds.open_fd(os.devnull, os.O_RDWR, "/dev/null")
            child_fd = theirs.fileno()
            if child_fd == 3:  # posix_spawn's dup2(3, 3) would keep close-on-exec
                with fds.lock:
                    moved = child_fd = fds.adopt(os.dup(child_fd))
            env = {k: v for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)}
            pid = _spawn_sharing_fs(path, env, devnull, child_fd)
            shared = pid is not None
            try:
                if pid is not None:
                    self.pid = pid
                else:
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
                        # held (blocked) through the exec: a Ctrl-Z typed while it
                        # is in our group would stop it before (see main.c)
                        setsigmask=_TERMINAL_STOPS,
                        setsigdef=signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP},
                    )
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOSYS):
                    raise
                # glibc's posix_spawn uses clone3 and falls back only when it
                # is missing, not when a seccomp profile refuses it (EPERM, in
                # older container runtimes): start it as subprocess does.
                self.pid = _spawn_with_vfork(path, theirs.fileno(), env)
        except OSError as exc:
            fds.close_socket(ours)
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.ENOMEM):
                raise  # out of fds, processes or memory: the message says which
            raise ShepherdError(exc.errno, f"cannot start the netrunner shepherd {path}: {exc.strerror}") from exc
        finally:
            for fd in (devnull, moved):
                if fd >= 0:
                    fds.close(fd)
            fds.close_socket(theirs)
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
        # Its setup is over (the hello comes last): what it has now, every
        # shepherd it forks has. A umask it shares is the caller's at every
        # clone; one changed by another thread while a copy was made is
        # unknown, and sent with every spawn.
        if shared:
            umask: int | None = SHARED_UMASK
        else:
            umask_after = attrs.current_umask()
            umask = umask_before if umask_before == umask_after else None
        self.baseline = attrs.of_zygote(self.pid, umask)

    def _receive(self) -> codec.Event:
        try:
            record = seqpacket.receive(self.sock, wire.MAX_RECORD)[0]
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
        ours, theirs = fds.socketpair()
        try:
            ours.setblocking(False)  # for good: see _engine's send_on
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, _fd_bytes([theirs.fileno()]))]
            self.sock.sendmsg([codec.encode_fork()], rights)
        except OSError as exc:
            fds.close_socket(ours)
            raise ShepherdError(exc.errno, f"the netrunner zygote is gone: {exc.strerror}") from None
        finally:
            fds.close_socket(theirs)
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

    def close(self, *, kill: bool = False) -> None:
        """Hang up (the zygote exits when its socket closes) and reap it. One
        that does not exit in time -- stopped, or not answering at all (``kill``)
        -- is SIGKILLed first: it is our unreaped child, so its pid is pinned."""
        fds.close_socket(self.sock)
        reap_child(self.pid, 0.0 if kill else 2.0)


#: Set once check_kernel() has passed in this process.
_kernel_ok = False


def check_kernel() -> None:
    """Raise a clear :class:`ShepherdError` on a system the shepherd cannot
    keep its guarantees on: not Linux, or a Linux without ``pidfd_open``
    (before 5.3; CLONE_PIDFD, 5.2, and pidfd_send_signal, 5.1, come with it),
    or where a seccomp profile refuses it. The shepherd pins every process it
    signals with a pidfd; without them it could not stop a command's
    descendants. Newer interfaces (clone3 with CLONE_INTO_CGROUP, 5.7;
    waitid P_PIDFD, 5.4; cgroup.kill, 5.14; PIDFD_SIGNAL_PROCESS_GROUP, 6.9)
    have fallbacks. Checked once per process, by trying the call."""
    global _kernel_ok
    if _kernel_ok:
        return
    release = os.uname().release
    if not hasattr(os, "pidfd_open"):
        raise ShepherdError(
            errno.ENOSYS, f"netrunner needs Linux 5.3 or later; this is {os.uname().sysname} {release}"
        )
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError as exc:
        if exc.errno == errno.ENOSYS:
            raise ShepherdError(
                exc.errno, f"netrunner needs Linux 5.3 or later (pidfd_open); this kernel is {release}"
            ) from None
        if exc.errno == errno.EPERM:
            raise ShepherdError(
                exc.errno, "netrunner needs pidfd_open (Linux 5.3), which a seccomp profile refuses here "
                "(EPERM; container runtimes older than pidfds did): allow pidfd_open and pidfd_send_signal"
            ) from None
        raise
    _kernel_ok = True


#: The starter of ``netrunner-spawn.so`` (None: none can be used here), loaded once.
_starter: Any = None


def _spawn_sharing_fs(path: str, env: dict[str, str], devnull: int, sock_fd: int) -> int | None:
    """Start the zygote ``path`` sharing our cwd, root and umask, as
    ``posix_spawn`` would start it otherwise (fds 0 and 1 on ``devnull``, 3
    on ``sock_fd``, its own process group, every signal at its default):
    its pid, or None where it cannot be started so (the caller then starts
    it without sharing). Raises what ``posix_spawn`` would for the rest (no
    such file, out of processes...)."""
    global _starter
    if _starter is None:
        _starter = _load_starter()
    if _starter is False:
        return None
    import ctypes  # loaded already by _load_starter

    argv = [os.fsencode(path), b"--zygote", b"3", None]
    envp = [*(os.fsencode(k) + b"=" + os.fsencode(v) for k, v in env.items()), None]
    pid = int(_starter(argv[0], (ctypes.c_char_p * len(argv))(*argv), (ctypes.c_char_p * len(envp))(*envp),
                       devnull, sock_fd))
    if pid in (-errno.ENOSYS, -errno.EPERM):  # no clone3 here, or a seccomp profile refuses it
        return None
    if pid < 0:
        raise OSError(-pid, os.strerror(-pid), path)
    return pid


def _load_starter() -> Any:
    """``nr_spawn_zygote`` of ``netrunner-spawn.so``, or False without ctypes or the library."""
    library = find_spawn_library()
    if library is None:
        return False
    try:
        import ctypes
    except ImportError:  # an interpreter built without it
        return False
    try:
        fn = ctypes.CDLL(library).nr_spawn_zygote
    except (OSError, AttributeError):
        return False
    c_args = ctypes.POINTER(ctypes.c_char_p)
    fn.argtypes = [ctypes.c_char_p, c_args, c_args, ctypes.c_int, ctypes.c_int]
    fn.restype = ctypes.c_long
    return fn


def _spawn_with_vfork(path: str, sock_fd: int, env: dict[str, str]) -> int:
    """Start the zygote through ``subprocess`` (vfork and exec, fds closed but
    its socket, which it moves to 3 itself; it also resets every signal and
    makes its own process group). netrunner reaps it, not ``subprocess``.

    The terminal's stop signals are blocked in this thread meanwhile, so
    the child inherits them blocked through its exec, as the other
    starters hand them: until then it is in our process group, and a
    Ctrl-Z that stopped it before its exec would leave this thread in
    ``vfork`` for good. The zygote drops one still pending; one meant for
    us is delivered here when the mask is restored."""
    import subprocess

    held = signal.pthread_sigmask(signal.SIG_BLOCK, _TERMINAL_STOPS)
    try:
        proc = subprocess.Popen(
            [path, "--zygote", str(sock_fd)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            pass_fds=(sock_fd,), env=env,
        )
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
    proc.returncode = 0  # ours to reap: keep subprocess from warning about, or reaping, it
    return proc.pid


def _fd_bytes(fds: list[int]) -> bytes:
    import array

    return array.array("i", fds).tobytes()


_lock = threading.Lock()
_zygote: _Zygote | None = None
#: Idle shepherds (pid, our end of the control socket, the attributes they
#: have), the last one given back at the end: forked ahead of need, or
#: given back by a command that is over, so that starting a command costs no
#: round trip to the zygote.
_idle: list[tuple[int, socket.socket, Attrs]] = []
#: Our end of a requested shepherd whose pid the zygote has not told us yet.
_pending: socket.socket | None = None


def _collect_pending() -> None:
    """The pid of the shepherd forked ahead by replenish(), into the idle
    list. A failure there (out of processes, say) is not the caller's: the
    request is dropped (a ShepherdError, a broken zygote, is raised)."""
    global _pending
    if _pending is None or _zygote is None:
        return
    sock, _pending = _pending, None
    try:
        _idle.append((_zygote.collect(), sock, _zygote.baseline))
    except OSError as exc:
        fds.close_socket(sock)
        if isinstance(exc, ShepherdError):
            raise


def take_shepherd() -> tuple[int, socket.socket, Attrs]:
    """An idle shepherd (its pid and our end of its control socket), ready to
    receive a spawn request, and the attributes it has (its zygote's). Call
    :func:`replenish` once it has its request."""
    global _zygote
    with _lock:
        if _idle:
            return _idle.pop()
        for attempt in (1, 2):
            try:
                if _zygote is None:
                    _zygote = _Zygote()
                _collect_pending()
                if not _idle:
                    sock = _zygote.request()
                    try:
                        _idle.append((_zygote.collect(), sock, _zygote.baseline))
                    except BaseException:
                        fds.close_socket(sock)
                        raise
                return _idle.pop()
            except ShepherdError:
                _discard_zygote()
                if attempt == 2:
                    raise
    raise AssertionError("unreachable")  # pragma: no cover


def replenish() -> None:
    """Fork the next spare shepherd, unless an idle one is left or one is
    on its way. Called once a command has been handed its shepherd, so the
    zygote's clone does not compete with the start."""
    global _pending
    with _lock:
        if _zygote is not None and not _idle and _pending is None:
            try:
                _pending = _zygote.request()
            except ShepherdError:
                _discard_zygote()


def _kept() -> int:
    return len(_idle) + (_pending is not None)


def wants_back() -> bool:
    """Whether :func:`take_back` would keep one more idle shepherd now."""
    return _kept() < MAX_IDLE


def take_back(pid: int, ctl: socket.socket, baseline: Attrs) -> bool:
    """Keep the shepherd ``pid``, which reported EXITED_REUSABLE on ``ctl``
    (our end of its control socket, which nobody waits on any more), as an
    idle one, with the attributes it has. False when it is not wanted
    (:data:`MAX_IDLE` are idle), or when the lock is busy -- this may run
    in a finalizer, inside the garbage collector, in a thread that holds
    it: the caller then hangs up and has it reaped."""
    if not _lock.acquire(blocking=False):
        return False
    try:
        if _kept() >= MAX_IDLE or ctl.fileno() < 0:
            return False
        _idle.append((pid, ctl, baseline))
        return True
    finally:
        _lock.release()


def _discard_zygote(*, kill: bool = True) -> None:
    """Forget a broken zygote (and what it owed us); reap what can be reaped,
    the idle shepherds too (they exit when their sockets close)."""
    global _zygote, _pending
    z, _zygote = _zygote, None
    idle = _idle[:]
    del _idle[:]
    pending, _pending = _pending, None
    if pending is not None:
        fds.close_socket(pending)
    for _, sock, _ in idle:
        fds.close_socket(sock)
    for pid, _, _ in idle:
        reap_child(pid, 2.0)
    if z is not None:
        z.close(kill=kill)


def reap_child(pid: int, grace: float) -> None:
    """Reap ``pid``, a helper of ours that was told to exit; if it has not
    within ``grace`` seconds (stopped, or stuck), SIGKILL it first. It is our
    unreaped child, so the number still names it."""
    deadline = time.monotonic() + grace
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG | WALL)
        except ChildProcessError:
            return
        if done:
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(0.001)
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, WALL)
    except (ChildProcessError, ProcessLookupError):
        pass


def helper_pids() -> set[int]:
    """The long-lived helpers of this process: the zygote and the idle
    shepherds (none is a per-command process)."""
    with _lock:
        pids = set()
        if _zygote is not None:
            pids.add(_zygote.pid)
            try:
                _collect_pending()
            except ShepherdError:
                pass
        pids.update(pid for pid, _, _ in _idle)
        return pids


def current_pid() -> int | None:
    """The zygote's pid, if one is running for this process."""
    z = _zygote
    return z.pid if z is not None else None


def shutdown() -> None:
    """Stop the idle shepherds and the zygote (all exit when their sockets
    close) and reap them."""
    with _lock:
        try:
            _collect_pending()
        except ShepherdError:
            pass
        _discard_zygote(kill=False)


def _after_fork_in_child() -> None:
    # The zygote and the spare belong to the parent (their sockets are
    # already closed here, see fds): start afresh on next use.
    global _zygote, _lock, _pending
    _lock = threading.Lock()
    _zygote = _pending = None
    del _idle[:]


fds.on_fork_in_child(_after_fork_in_child)
