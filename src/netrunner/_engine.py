"""The I/O engine shared by the blocking and the asyncio drivers.

A :class:`Handle` owns one command: its shepherd's control socket and the
non-blocking ends of its pipes. Every operation that may wait is a *flow*: a
generator that makes non-blocking system calls and, when one would block,
yields ``(readers, writers, deadline)``. The blocking driver answers with
``poll()``, the asyncio driver with the running loop's readers and writers;
both send back the set of fds that became ready (empty on timeout). So the
logic exists once, and a driver is a dozen lines.

Invariants:

* A flow changes state only right after a system call succeeded, never across
  a ``yield``: closing a flow at any ``yield`` (cancellation, an exception in
  the driver) leaves the handle consistent.
* Fds stay open (at EOF) until :meth:`Handle.release`, so a number a waiter
  polls is never reused under it; stdin is the exception, closed at once by
  ``close_stdin`` so the command sees EOF. Our copies of the command's own
  ends (``passed``, ``held``) are never waited on, and are closed earlier:
  at the first news from the shepherd, and once the tree is gone. A read or
  a write looks the fd up and uses it under ``fds.lock`` (it never blocks),
  so a release or ``close_stdin`` in another thread comes before or after it.
* Who reaps the shepherd -- this handle on its hang-up, or the reaper after
  a release -- is decided once (``_claim_reaping``).
* A flow takes the fds it will wait on *before* it checks whether it must
  wait, as with a condition variable. Another thread may read the command's
  last records in between; every control socket in the snapshot then still
  wakes the wait, because the shepherd hangs up after its last record and
  the socket stays readable at EOF. For that, ``ctl_open`` turns false only
  once the outcome is known (``_on_hangup`` keeps that order). Handles whose
  shepherd is given back for reuse (``run``, streams) are driven by one
  thread at a time: an idle shepherd's socket wakes nobody.
"""

from __future__ import annotations

import array
import errno
import fcntl
import logging
import os
import select
import signal as _signal
import socket
import struct
import termios
import threading
import time
import warnings
import weakref
from collections.abc import Generator
from datetime import datetime, timezone
from typing import Any

from . import _lifetime
from ._core import attrs, codec, wire
from ._core.output import Backlog, Capture, Decoder, InputSource, Tail, cut_head, encoded_size, text_prefix
from ._core.state import Phase, ProcessCore
from ._errors import ShepherdError
from ._io import attrs as read_attrs
from ._io import cgroup, fds, seqpacket, zygote
from ._options import Options, exec_paths
from ._results import Stats

Wait = tuple[tuple[int, ...], tuple[int, ...], "float | None"]
Flow = Generator[Wait, "set[int]", Any]

READ_SIZE = 65536
STDERR_TAIL = 65536
#: What a started process keeps of stderr that nobody has read yet (SPEC 5).
STDERR_BACKLOG = 1024 * 1024
_PIDFD_SIGNAL_PROCESS_GROUP = 4  # linux/pidfd.h, Linux 6.9
_CMSG_CLOEXEC = getattr(socket, "MSG_CMSG_CLOEXEC", 0x40000000)
_ANCILLARY = socket.CMSG_SPACE(4 * wire.STARTED_FDS)
_RECORD_ROOM = wire.MAX_RECORD + 1  # one byte more than any record: a longer one shows
_monotonic = time.monotonic


class WaitTimeout(Exception):
    """A flow's deadline passed (converted to the public error by the caller)."""


class LimitReached(Exception):
    """``read_until`` buffered ``max_bytes`` without a match."""


class EndOfOutput(Exception):
    """``read_until`` reached the end of output without a match."""


class Handle:
    """One running command, as seen from Python."""

    __slots__ = (
        "args", "opts", "core", "ctl", "ctl_fd", "stdin_fd", "stdout_fd", "stderr_fd",
        "shepherd_pid", "ctl_open", "reaped", "out_eof", "err_eof", "stdin_closed_by_user",
        "_lock", "text_out", "text_err", "lazy_reap", "pidfd", "owner_pid", "err_backlog",
        "_err_lock", "pending", "placement", "tty", "last_in", "attrs_sent", "baseline", "reuse", "held",
        "passed", "closed", "__weakref__",
    )

    #: A pipeline's handle (``_pipeline.PipelineHandle``) says so.
    staged = False

    stdin_fd: int | None
    stdout_fd: int | None
    stderr_fd: int | None
    ctl: socket.socket
    text_out: Decoder | None
    text_err: Decoder | None
    pidfd: int | None
    err_backlog: Backlog | None
    placement: cgroup.Placement | None
    attrs_sent: attrs.Changes | None
    baseline: attrs.Attrs
    #: The shepherd stays to serve again (EXITED_REUSABLE): "pending" until
    #: release() gives it back to the zygote module, then "given".
    reuse: str | None
    #: Write ends of the output pipes kept open until release (``hold_output``).
    held: list[int]
    #: Our copies of the fds handed to the command, closed at the first news
    #: from the shepherd (``pump_control``) or at release, not as soon as
    #: they are sent: see ``__init__``.
    passed: list[int]

    def __init__(
        self, args: tuple[Any, ...], argv: list[bytes], opts: Options, *, keep_stdin: bool,
        lazy_reap: bool = False, stream_pipe: bool = False, drain_stderr: bool = False,
        hold_output: bool = False, thread: read_attrs.Thread | None = None, report_stops: bool = False,
    ) -> None:
        """Start the command. It gets the caller's umask and resource limits
        as they are now, and the nice value and CPU affinity of ``thread``
        (``_io.attrs.thread_attrs()``) or else of the calling thread.

        ``hold_output`` (``run``): Python keeps the write ends of the stdout
        and stderr pipes it makes until :meth:`release`, so the pipes never
        reach their end while the command runs. ``run`` reads until the
        outcome is known and then takes what is left without waiting; the
        ends of file would only wake it, once or twice, in the instant
        between the command's exit and the shepherd's report of it.

        ``report_stops`` (the command line): the shepherd reports each stop
        of the command (``core.stops`` counts them), for job control."""
        _lifetime.reap_detached()
        self.lazy_reap = lazy_reap
        self.args = args
        self.opts = opts
        self.owner_pid = os.getpid()
        self.pidfd = None
        self.reuse = None
        self.held = []
        self.passed = []
        self.closed = False  # close_fds() ran: a pidfd received later is closed, not kept
        records = _spawn_records(argv, opts, lazy_reap, report_stops)
        self.stdin_fd = self.stdout_fd = self.stderr_fd = None
        self.tty = opts.pty is not None  # stdout_fd is a PTY master, stdin_fd a copy of it
        self.last_in: int | None = None  # a PTY: the last byte written to it
        self.core = ProcessCore(datetime.now(timezone.utc), _monotonic())
        child_fds: list[int] = []  # ours to close once the shepherd has its copies
        # The cgroup directories exist before the shepherd is asked: once it
        # has the records, removing them is its job (or _on_hangup's).
        self.placement = cgroup.prepare(opts.cgroup) if opts.cgroup is not None else None
        try:
            if self.placement is not None:
                records = self.placement.records + records
            # Targets taken from the interpreter's fds 0-2 are copied before
            # any pipe is made: with those fds closed, a new pipe could take
            # their numbers and be handed over in their place.
            targets = [
                self._given_target(opts.stdin, 0, os.O_RDONLY, child_fds),
                self._given_target(opts.stdout, 1, os.O_WRONLY, child_fds),
                self._given_target(opts.stderr, 2, os.O_WRONLY, child_fds),
            ]
            if opts.pty is not None:
                self.stdout_fd, slave = fds.openpty()
                child_fds.append(slave)
                set_window_size(self.stdout_fd, *opts.pty)
                self.stdin_fd = fds.dup(self.stdout_fd, "a pseudo-terminal")
                targets = [slave, slave, slave]
            if targets[0] is None:
                if keep_stdin:
                    stdin_r, self.stdin_fd = fds.pipe()
                    child_fds.append(stdin_r)
                    targets[0] = stdin_r
                else:  # at its end from the start: /dev/null, no pipe to make and close at once
                    targets[0] = self._given_target("discard", 0, os.O_RDONLY, child_fds)
            if targets[1] is None:
                self.stdout_fd, out_w = fds.pipe()
                (self.held if hold_output else child_fds).append(out_w)
                if stream_pipe:
                    _grow_pipe(out_w)
                targets[1] = out_w
            if targets[2] is None:
                if opts.stderr == "redirect":
                    targets[2] = targets[1]
                else:
                    self.stderr_fd, err_w = fds.pipe()
                    (self.held if hold_output else child_fds).append(err_w)
                    targets[2] = err_w
            here = fds.open_fd(".", os.O_PATH | os.O_DIRECTORY, "the current directory")
            child_fds.append(here)
            self._init_io(keep_stdin, drain_stderr)
            self.shepherd_pid, self.ctl, self.attrs_sent, self.baseline = _send_spawn(
                records, [*targets, here], thread  # type: ignore[list-item]
            )
        except BaseException:
            fds.close_all((*child_fds, self.stdin_fd, self.stdout_fd, self.stderr_fd, *self.held))
            if self.placement is not None:
                cgroup.remove(self.placement)
            raise
        # Nothing is left to do now that the request is sent (the caller
        # goes on to wait): the shepherd clones the command on this CPU, and
        # the command starts sooner when it does not have to share it with
        # us. Our copies of its fds are closed, and the next spare shepherd
        # asked for, at the first news from the shepherd (_after_send; the
        # kernel holds the fds in flight).
        self.passed = child_fds
        self.ctl_fd = self.ctl.fileno()
        self.ctl_open = True
        self.reaped = False
        _lifetime.register(self)

    def _init_io(self, keep_stdin: bool, drain_stderr: bool) -> None:
        """The Python side of stdin, stdout and stderr, once their fds are set."""
        opts = self.opts
        self.out_eof = self.stdout_fd is None
        self.err_eof = self.stderr_fd is None
        self.stdin_closed_by_user = False
        self._lock = threading.Lock()
        self._err_lock = threading.Lock()
        self.err_backlog = Backlog(STDERR_BACKLOG) if drain_stderr and self.stderr_fd is not None else None
        self.text_out = self.text_err = None
        self.pending: Any = "" if opts.encoding is not None else b""  # stdout read ahead by read_until
        if opts.encoding is not None:
            self.text_out = Decoder(opts.encoding, opts.errors)
            self.text_err = Decoder(opts.encoding, opts.errors)
        core = self.core
        core.observes_out = self.stdout_fd is not None
        core.observes_err = self.stderr_fd is not None or opts.stderr == "redirect" or self.tty  # 0 of its own
        core.observes_in = opts.stdin == "pipe"
        for fd in (self.stdin_fd, self.stdout_fd, self.stderr_fd):
            if fd is not None:
                os.set_blocking(fd, False)
        if not keep_stdin:
            self.close_stdin()

    def _given_target(self, mode: str | int, std: int, flags: int, child_fds: list[int]) -> int | None:
        """The fd to hand over for one of stdin/stdout/stderr, or None when
        netrunner makes a pipe for it (or, for stderr, redirects it)."""
        if isinstance(mode, int):
            try:  # named here, at the call: the shepherd would only see a failed hand-over
                fcntl.fcntl(mode, fcntl.F_GETFD)
            except OSError as exc:
                if exc.errno != errno.EBADF:
                    raise
                name = ("stdin", "stdout", "stderr")[std]
                raise OSError(errno.EBADF, f"{name}={mode} is not an open file descriptor") from None
            return mode
        if mode == "inherit":
            try:
                with fds.lock:
                    fd = fds.adopt(fcntl.fcntl(std, fcntl.F_DUPFD_CLOEXEC, 3))
                child_fds.append(fd)
                return fd
            except OSError as exc:
                if exc.errno != errno.EBADF:
                    raise
                mode = "discard"  # the interpreter has no such fd: the command reads EOF, writes vanish
        if mode == "discard":
            return fds.devnull(flags)  # kept open: not one of ours to close
        return None

    def own(self) -> None:
        """Raise unless called in the interpreter that started the command."""
        if self.foreign:
            from ._errors import NetRunnerError

            raise NetRunnerError(
                f"this process object belongs to the interpreter that started it (pid {self.owner_pid}); "
                f"it cannot be used in a forked child (pid {os.getpid()})"
            )

    @property
    def foreign(self) -> bool:
        """Used in a forked child: hands off, the command is the parent's."""
        return os.getpid() != self.owner_pid

    # --- control socket ---------------------------------------------------

    def control_fds(self) -> tuple[int, ...]:
        """The control sockets to wait on for news of the command. Take
        them before checking whether to wait (see the module's invariants)."""
        return (self.ctl_fd,) if self.ctl_open else ()

    def news_in(self, ready: Any) -> bool:
        """A wait found a control socket readable (``ready``: the fds it
        found ready). Flows that wait on their output read the control
        socket only then: the wait includes it and returns at once for a
        record already queued, so an empty read of it is never needed."""
        for fd in self.control_fds():
            if fd in ready:
                return True
        return False

    @property
    def finished(self) -> bool:
        """The outcome is known and the shepherd is reaped (or handed off)."""
        return self.core.done and not self.ctl_open

    def pump_control(self, drain: bool = True) -> None:
        """Process every record waiting on the control socket; never blocks.
        ``drain=False`` (a flow, which waits again at once): stop after
        STARTED, the first record, instead of reading on until the socket
        says it has no more; the next wait returns at once if it has."""
        if self.passed:
            self._after_send()
        if not self.ctl_open:
            return
        core, ctl = self.core, self.ctl
        with self._lock:
            resets = 0
            while self.ctl_open:
                try:
                    if core.phase is Phase.STARTING:  # STARTED brings the pidfd
                        with fds.lock:
                            record, ancillary = seqpacket.receive(ctl, _RECORD_ROOM, _ANCILLARY, _CMSG_CLOEXEC)
                            received = _adopt(_fds_of(ancillary)) if ancillary else []
                    else:  # no other record carries fds (any would be closed by the kernel)
                        record, received = seqpacket.receive(ctl, _RECORD_ROOM)[0], []
                except BlockingIOError:
                    return
                except ConnectionResetError:
                    # The shepherd exited with a frame of ours unread: Linux
                    # reports that before the records it sent us, which are
                    # still queued. The error is reported once; read on.
                    resets += 1
                    if resets < 3:
                        continue
                    record, received = b"", []
                except OSError as exc:
                    if self.closed:  # release() in another thread closed it: the reaper has the shepherd
                        self.ctl_open = False
                        return
                    # Not a hang-up: the shepherd may be running on. Hang
                    # up ourselves (it stops the tree) rather than wait for
                    # an exit that would never come.
                    self._give_up(f"reading the shepherd's control socket failed: {_strerror(exc)}")
                    return
                if not record:
                    self._on_hangup()
                    return
                try:
                    event = codec.decode(record)
                except codec.ProtocolError as exc:
                    _close_all(received)
                    self._give_up(f"the shepherd broke protocol: {exc}")
                    return
                if received:
                    if type(event) is codec.Started and len(received) == wire.STARTED_FDS and self.pidfd is None:
                        with fds.lock:  # against close_fds() in another thread: kept, or closed there, once
                            if not self.closed:
                                self.pidfd = received.pop()
                    _close_all(received)
                core.on_event(event, _monotonic())
                phase = core.phase
                if phase is Phase.RUNNING:
                    if not drain:
                        return
                elif phase is Phase.EXITED:
                    if type(event) is codec.Exited:
                        if event.flags & wire.EXITED_ABANDONED:
                            _report_abandoned(self, event.flags)
                        if event.flags & wire.EXITED_CGROUP_KEPT:
                            _report_kept(self)
                        if event.flags & wire.EXITED_REUSABLE:
                            self._give_back()
                elif phase is Phase.LOST:
                    self._give_up(core.fault or "the shepherd failed")
                    return

    def _give_back(self) -> None:
        """EXITED said the shepherd stays, idle, to serve again (asked for
        with FLAG_REUSE by the handles of ``run`` and streams, ``lazy_reap``:
        released right after, by the flow that read EXITED, so that no
        waiter polls the socket's number any more). It is given back at
        :meth:`release`, control socket and all -- unless enough are idle
        already: then we hang up now, and it exits and is reaped as
        before. Under the fd registry's lock, which :meth:`release` takes to
        claim the reaping: a release in another thread comes before (it has
        handed the pid to the reaper: the shepherd must not be kept too,
        and is hung up) or after (it finds the shepherd to give back)."""
        with fds.lock:
            keep = not self.reaped and not self.closed and zygote.wants_back()
            if keep:
                self.reuse = "pending"
                self.reaped = True  # by whoever takes it next, or the reaper
        if keep:
            self.ctl_open = False
            _lifetime.forget(self)
            return
        try:
            self.ctl.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _on_hangup(self) -> None:
        # The shepherd closed the socket: it has exited (or is exiting). The
        # socket itself stays open until release(), so no fd number a waiter
        # may be polling is ever reused under it. ctl_open turns false last,
        # once the outcome is known: a thread that finds it false without a
        # result would have nothing left to wait on.
        status = None
        if self._claim_reaping():  # else release() gave it to the reaper meanwhile
            try:
                status = os.waitpid(self.shepherd_pid, zygote.WALL)[1]
            except ChildProcessError:
                pass
        if self.lazy_reap:  # it did not come back to serve again: fork a spare in its place
            zygote.replenish()
        if not self.core.done:
            when = "before reporting the start" if self.core.phase is Phase.STARTING else "before reporting the exit"
            self.core.lose(f"the shepherd exited unexpectedly, {when} ({_describe_exit(status)})", _monotonic())
            self._kill_group()
            if self.placement is not None:  # what the shepherd would have done
                cgroup.kill(self.placement)
                if not cgroup.remove(self.placement, wait=1.0):
                    _report_kept(self)
        self.ctl_open = False
        _lifetime.forget(self)

    def _give_up(self, why: str) -> None:
        # A shepherd we cannot trust: kill the command ourselves, hang up (the
        # shepherd then stops whatever is left, and removes its cgroup) and
        # reap it later.
        self.core.lose(why, _monotonic())
        self._kill_group()
        if self.placement is not None:
            cgroup.kill(self.placement)
        self.ctl_open = False
        try:
            self.ctl.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if self._claim_reaping():
            _lifetime.detach(self.shepherd_pid)
        if self.lazy_reap:
            zygote.replenish()
        _lifetime.forget(self)

    def _claim_reaping(self) -> bool:
        """Whether the caller is the one to reap the shepherd (or hand it to
        the reaper): true once per handle. A release in one thread and a
        hang-up seen in another must not both wait for the same pid -- once
        one has reaped it, the number may name a new shepherd of ours."""
        with fds.lock:
            mine = not self.reaped
            self.reaped = True
        return mine

    def _kill_group(self) -> None:
        """The shepherd is gone: SIGKILL the command's process group through
        the pidfd the shepherd made at its birth, never by a number (the
        command may be reaped and its number reused by now). Under the fd
        registry's lock: a release in another thread cannot close the pidfd,
        and another command's take its number, in between."""
        if self.core.status is not None:
            return
        self.core.status = _signal.SIGKILL  # a raw wait status: killed by SIGKILL
        with fds.lock:
            pidfd = self.pidfd
            if pidfd is None:
                return  # never started, released, or the kernel's parent-death signal has it
            try:
                _signal.pidfd_send_signal(pidfd, _signal.SIGKILL, None, _PIDFD_SIGNAL_PROCESS_GROUP)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    return  # ESRCH: the whole group is gone already
                try:  # before Linux 6.9: the leader only; its group cannot be named safely
                    _signal.pidfd_send_signal(pidfd, _signal.SIGKILL)
                except OSError:
                    pass

    def send(self, frame: bytes) -> None:
        """Send one frame to the shepherd (dropped if it is already gone)."""
        if not self.ctl_open or self.core.done:
            return
        try:
            send_on(self.ctl, frame, timeout_ms=5000)
        except OSError:
            pass  # the shepherd is gone (pump_control will see it), or stuck for 5 s

    # --- fds ----------------------------------------------------------------

    def close_stdin(self) -> None:
        """The command sees the end of its input: the pipe closed, or on a
        PTY the terminal's EOF character (after a newline when the line being
        typed is not empty: in canonical mode EOF only ends an empty line)."""
        with fds.lock:  # two threads may close it at once: one takes the number
            fd, self.stdin_fd = self.stdin_fd, None
        if fd is None:
            return
        if self.tty:
            try:
                os.write(fd, _end_of_input(termios.tcgetattr(fd), self.last_in))
            except (OSError, termios.error):
                pass  # the terminal is gone: its reader has its end already
        fds.close(fd)

    def close_fds(self) -> None:
        """Close every fd of this handle without telling anyone."""
        self.close_stdin()
        if self.passed:
            self._after_send(replenish=False)
        with fds.lock:  # another thread may be releasing too: each fd is closed once
            self.closed = True
            mine = (self.stdout_fd, self.stderr_fd, self.pidfd, *self.held)
            self.stdout_fd = self.stderr_fd = self.pidfd = None
            self.held = []
            fds.close_all(mine)
            reuse = self.reuse
            if reuse == "pending":  # given back by one thread only
                self.reuse = "given"
        self.ctl_open = False
        if reuse is not None:
            if reuse == "pending":
                if zygote.take_back(self.shepherd_pid, self.ctl, self.baseline):
                    return
                fds.close_socket(self.ctl)  # not wanted after all: it exits
                _lifetime.detach(self.shepherd_pid)
            return
        fds.close_socket(self.ctl)  # idempotent

    def _after_send(self, replenish: bool = True) -> None:
        """What waits for the first news from the shepherd: close our copies
        of the fds it was handed, and ask for the next spare shepherd unless
        this one is expected back (FLAG_REUSE; see _on_hangup). A release
        that comes first only closes them: it may run in a finalizer, inside
        the garbage collector, in a thread that holds the zygote module's
        lock; the next spawn asks for a shepherd itself."""
        with fds.lock:  # two threads may find the list full; one takes it
            passed, self.passed = self.passed, []
            fds.close_all(passed)
        if passed and replenish and not self.lazy_reap:
            zygote.replenish()

    def _close_held(self) -> None:
        """Close the output pipes' write ends kept by ``hold_output``."""
        with fds.lock:
            held, self.held = self.held, []
            fds.close_all(held)

    def release(self) -> None:
        """Close every fd; a shepherd still running sees its owner hang up,
        stops the tree on its own, and is reaped later (within its
        kill_timeout, by a reaper that needs no further call). Never blocks.
        In a forked child it does nothing: the command is the parent's."""
        if self.foreign:
            return
        self.out_eof = self.err_eof = True
        handed_off = self._claim_reaping()  # before the close a pumping thread would see
        self.close_fds()
        if handed_off:
            _lifetime.detach(self.shepherd_pid)
        _lifetime.forget(self)

    def stats(self) -> Stats:
        return self.core.stats(_monotonic())

    def exec_error(self) -> OSError:
        failed = self.core.exec_error
        assert failed is not None
        if failed.stage == wire.STAGE_CHDIR:
            filename = self.opts.cwd_given
        else:
            filename = os.fsdecode(self.args[0]) if isinstance(self.args[0], bytes) else os.fspath(self.args[0])
        err = failed.error
        if failed.stage == wire.STAGE_ATTRS:
            return attrs_error(err, self.attrs_sent)
        if failed.stage == wire.STAGE_CGROUP:
            from ._errors import CgroupUnavailable

            where = self.placement.v2 if self.placement is not None else "its cgroup"
            return CgroupUnavailable(err, f"the command could not join {where}: {os.strerror(err)}")
        return OSError(err, os.strerror(err), filename)

    def shepherd_error(self) -> ShepherdError:
        return ShepherdError(f"{self.core.fault}; the command's process group was killed")

    # --- reading ----------------------------------------------------------

    def read_once(self, which: int, size: int) -> bytes | None:
        """One non-blocking read of stdout (1) or stderr (2): data, b"" at
        EOF, or None if nothing is there yet. Under the fd registry's lock:
        a release in another thread cannot close the number between the
        look and the read (the read would fail, or take another file's
        data once the number is reused); the read does not block."""
        with fds.lock:
            fd = self.stdout_fd if which == 1 else self.stderr_fd
            if fd is None or (self.out_eof if which == 1 else self.err_eof):
                return b""
            try:
                data = os.read(fd, size)
            except BlockingIOError:
                return None
            except OSError as exc:
                # A PTY master reads EIO once every slave fd is closed and all
                # that was written before is read: the end of output.
                if not (self.tty and which == 1 and exc.errno == errno.EIO):
                    raise
                data = b""
        if data:
            self.core.read_count += 1
            if which == 1:
                self.core.bytes_out += len(data)
            else:
                self.core.bytes_err += len(data)
        elif which == 1:
            self.out_eof = True
        else:
            self.err_eof = True
        return data

    def drain(self, which: int, sink: Any) -> None:
        """Read what is left of a stream once the tree is gone."""
        while True:
            data = self.read_once(which, READ_SIZE)
            if not data:
                if data is None:  # nobody can write any more: end of stream
                    if which == 1:
                        self.out_eof = True
                    else:
                        self.err_eof = True
                return
            if sink is not None:
                sink.add(data)

    def readers(self, out: bool = True, err: bool = True) -> tuple[int, ...]:
        """The fds to wait on for output (stdout, stderr) and news (the
        control socket): those still open and not at their end."""
        wait_on = self.control_fds()
        if err and not self.err_eof and self.stderr_fd is not None:
            wait_on = (self.stderr_fd, *wait_on)
        if out and not self.out_eof and self.stdout_fd is not None:
            wait_on = (self.stdout_fd, *wait_on)
        return wait_on

    # --- flows --------------------------------------------------------------

    def flow_reap(self) -> Flow:
        """After the outcome is known: reap the shepherd. After EXITED it is
        already on its way out (it exits right after sending), so with
        ``lazy_reap`` (``run`` and streams) the caller builds its result first
        and then calls :meth:`reap`, overlapping the shepherd's exit with its
        own work; otherwise it is waited for here."""
        if self.ctl_open and self.core.phase is Phase.EXITED:
            if not self.lazy_reap:
                self.reap()
            return
        while self.ctl_open:
            yield ((self.ctl_fd,), (), None)
            self.pump_control()

    def reap(self) -> None:
        """Reap the shepherd of a command that has EXITED (it is exiting: this
        waits at most for its last microseconds)."""
        if self.ctl_open and self.core.phase is Phase.EXITED:
            with self._lock:
                if self.ctl_open:
                    self._on_hangup()

    def flow_started(self) -> Flow:
        """Wait for STARTED; raise the exec error or ShepherdError."""
        while True:
            self.pump_control()
            if self.core.phase is not Phase.STARTING:
                break
            yield ((self.ctl_fd,), (), None)
        if self.core.phase is Phase.FAILED:
            while self.ctl_open:  # the shepherd exits right after reporting
                yield ((self.ctl_fd,), (), None)
                self.pump_control()
            self.release()
            raise self.exec_error()
        if self.core.phase is Phase.LOST:
            raise self.shepherd_error()

    def _wait(self, readers: tuple[int, ...], writers: tuple[int, ...], deadline: float | None) -> Flow:
        """Yield one wait; the fds that became ready. While it lasts, a
        started process's captured stderr keeps flowing into its backlog."""
        drain: tuple[int, ...] = ()
        if self.err_backlog is not None and not self.err_eof and self.stderr_fd is not None:
            drain = (self.stderr_fd,)
        ready: set[int] = yield ((*readers, *drain), writers, deadline)
        if drain and drain[0] in ready:
            self.pull_stderr()
        return ready

    def pull_stderr(self) -> None:
        """Move what stderr has into the backlog (``start``: a command must
        never block on a full stderr pipe that nobody reads)."""
        backlog = self.err_backlog
        assert backlog is not None
        with self._err_lock:
            data = self.read_once(2, READ_SIZE)
            if data:
                backlog.add(data)
                self.core.err_dropped = backlog.dropped

    def _read_stderr_once(self, size: int) -> bytes | None:
        backlog = self.err_backlog
        if backlog is None:
            return self.read_once(2, size)
        with self._err_lock:  # the backlog first: it holds the older bytes
            if len(backlog):
                return self.take_backlog(size)
            return self.read_once(2, size)

    def take_backlog(self, size: int) -> bytes:
        """Up to ``size`` of the oldest bytes of the stderr backlog (under
        ``_err_lock``). In text mode, when bytes were dropped from its front
        since the last take, the character the drop cut is dropped whole
        (``output.cut_head``: its bytes left at the front, and those the
        stderr decoder holds), and counted, so decoding never fails on it."""
        backlog = self.err_backlog
        assert backlog is not None
        if backlog.cut and self.text_err is not None:
            assert self.opts.encoding is not None
            offset = self.core.bytes_err - len(backlog)  # the backlog holds the last bytes read
            backlog.dropped += self.text_err.reset()  # the rest of the character it holds is gone
            backlog.drop(cut_head(backlog.head(16), self.opts.encoding, offset))
        data = backlog.take(size)
        self.core.err_dropped = backlog.dropped
        return data

    def flow_read(self, which: int, size: int, deadline: float | None) -> Flow:
        """The next bytes of stdout/stderr (b"" at the end). The control
        socket is read only when a wait says it is readable: the wait
        includes it, and returns at once for a record already queued."""
        ready: Any = ()
        while True:
            data = self.read_once(1, size) if which == 1 else self._read_stderr_once(size)
            if data is not None:
                return data
            if self.news_in(ready):
                self.pump_control()
            ctl = self.control_fds()  # before the check: see the invariants
            if self.core.done:  # the tree is gone: what is in the pipe is all
                data = self.read_once(which, size)
                if data is None:
                    if which == 1:
                        self.out_eof = True
                    else:
                        self.err_eof = True
                    return b""
                return data
            fd = self.stdout_fd if which == 1 else self.stderr_fd
            assert fd is not None
            if deadline is not None and _monotonic() >= deadline:
                self.pump_control()  # an end already reported is not a timeout
                if not self.core.done:
                    raise WaitTimeout
                continue
            if which == 1:
                ready = yield from self._wait((fd, *ctl), (), deadline)
            else:  # reading stderr itself
                ready = yield ((fd, *ctl), (), deadline)

    def flow_read_output(self, which: int, size: int, deadline: float | None, *, ahead: bool = True) -> Flow:
        """:meth:`flow_read`, decoded in text mode (a character split across
        reads is completed by the next read; "" only at the end). stdout read
        ahead by :meth:`flow_read_until` comes first, unless ``ahead`` is off.
        ``size`` counts bytes in text mode too: from what was read ahead, the
        most characters whose encoding fits in ``size`` (``output.text_prefix``),
        at least one, as a read from the pipe completes a character it began."""
        if ahead and which == 1 and self.pending:
            pending = self.pending
            n = size if self.opts.encoding is None else text_prefix(pending, size, self.opts.encoding)
            data, self.pending = pending[:n], pending[n:]
            return data
        decoder = self.text_out if which == 1 else self.text_err
        while True:
            data = yield from self.flow_read(which, size, deadline)
            if decoder is None:
                return data
            text = decoder(data, final=not data)
            if text or not data:
                return text

    def flow_read_until(self, find: Any, deadline: float | None, max_bytes: int | None, eof_ok: bool) -> Flow:
        """stdout up to and including the first match of ``find`` (see
        ``output.finder``); what follows stays in ``pending`` for the next
        read. At the end of output: everything left if ``eof_ok`` (readline),
        else :class:`EndOfOutput`. :class:`WaitTimeout` and
        :class:`LimitReached` leave what was read in ``pending``.
        ``max_bytes`` counts bytes in text mode too: those read by this call,
        and what was read ahead before it (``output.encoded_size``)."""
        searched = 0
        decoder = self.text_out
        buf = self.pending
        size = len(buf) if self.opts.encoding is None else encoded_size(buf, self.opts.encoding)
        at_end = False
        while True:
            end, searched = find(buf, searched)
            if end >= 0:
                self.pending = buf[end:]
                return buf[:end]
            if at_end:
                if eof_ok:
                    self.pending = buf[:0]
                    return buf
                raise EndOfOutput
            if max_bytes is not None and size >= max_bytes:
                raise LimitReached
            raw = yield from self.flow_read(1, READ_SIZE, deadline)
            size += len(raw)
            at_end = not raw
            data = raw if decoder is None else decoder(raw, final=at_end)
            if data:
                buf = self.pending = buf + data

    def flow_write(self, data: bytes) -> Flow:
        """Write all of ``data`` to stdin, waiting while the pipe is full."""
        view = memoryview(data).cast("B")
        while view:
            with fds.lock:  # a close_stdin() in another thread comes before or after, never between
                fd = self.stdin_fd
                if fd is None:
                    raise stdin_closed_error(self)
                try:
                    n = os.write(fd, view)
                except BlockingIOError:
                    n = -1
                except BrokenPipeError:
                    raise BrokenPipeError(errno.EPIPE, _NO_READER) from None
            if n < 0:
                yield from self._wait((), (fd,), None)  # a close_stdin() meanwhile shows at the next write
                continue
            self.core.bytes_in += n
            self.core.write_count += 1
            self.last_in = view[n - 1]
            view = view[n:]

    def flow_wait(self, deadline: float | None) -> Flow:
        """Wait until the tree is gone and the shepherd reaped."""
        lost_before = self.core.phase is Phase.LOST
        while True:
            self.pump_control()
            ctl = self.control_fds()  # before the check: see the invariants
            if self.finished:
                break
            if deadline is not None and _monotonic() >= deadline:
                raise WaitTimeout
            yield from self._wait(ctl, (), deadline)
        if self.core.phase is Phase.LOST and not lost_before:
            raise self.shepherd_error()
        return self.core.returncode

    def flow_stop(self, kill_timeout: float | None) -> Flow:
        """SIGTERM, ``kill_timeout``, SIGKILL (done by the shepherd); wait."""
        self.pump_control()
        if not self.core.done:
            self.send(codec.encode_stop(kill_timeout))
        while True:
            ctl = self.control_fds()  # before the check: see the invariants
            if self.finished:
                return self.core.returncode
            yield from self._wait(ctl, (), None)
            self.pump_control()

    def flow_collect(
        self,
        feeder: Feeder | None,
        out: Capture | Tail | None,
        err: Capture | Tail | None,
        deadline: float | None,
        stop_on_timeout: bool,
    ) -> Flow:
        """Feed stdin, read stdout and stderr into ``out``/``err`` until the
        tree is gone. A deadline either stops the tree (``run``) or raises
        :class:`WaitTimeout` (``communicate``). Returns why the tree was
        stopped: None, "timeout", "stdout" or "stderr" (a limit)."""
        stopped: str | None = None
        if self.err_backlog is not None and err is not None and len(self.err_backlog):
            with self._err_lock:
                err.add(self.take_backlog(len(self.err_backlog)))
        size = READ_SIZE
        # The control socket is read after a wait that found it readable, not
        # before the first: for a command just sent, the wait comes at once
        # (see __init__), and a record already queued makes it return at
        # once (every driver's wait is level-triggered).
        while True:
            readers = self.readers()  # before the check: see the invariants
            if self.core.done:
                # Nothing of the tree can write any more: without our copies
                # of the write ends, what is left reads to its end of file.
                self._close_held()
                self.drain(1, out)
                self.drain(2, err)
                if stopped is None:  # the limit passed in what was left in the pipes
                    if isinstance(out, Capture) and out.exceeded:
                        stopped = "stdout"
                    elif isinstance(err, Capture) and err.exceeded:
                        stopped = "stderr"
                yield from self.flow_reap()
                return stopped
            writers = (self.stdin_fd,) if feeder is not None and feeder.active else ()
            ready = yield (readers, writers, None if stopped else deadline)  # type: ignore[misc]
            if self.news_in(ready):
                self.pump_control(drain=False)
            if self.stdout_fd in ready:
                data = self.read_once(1, size)
                if data and out is not None and out.add(data) and stopped is None:
                    stopped = "stdout"
                    self.send(codec.encode_stop(None))
                if data and len(data) == size < STREAM_PIPE_SIZE:
                    # A full pipe: output in bulk. A larger pipe and larger
                    # reads from now on, a quarter of the wake-ups; commands
                    # with little output never pay for the pipe.
                    with fds.lock:
                        if self.stdout_fd is not None:
                            _grow_pipe(self.stdout_fd)
                    size = STREAM_PIPE_SIZE
            if self.stderr_fd in ready:
                data = self.read_once(2, READ_SIZE)
                if data and err is not None and err.add(data) and stopped is None:
                    stopped = "stderr"
                    self.send(codec.encode_stop(None))
            if writers and self.stdin_fd in ready:
                feeder.write_some()  # type: ignore[union-attr]
            if deadline is not None and stopped is None and _monotonic() >= deadline:
                if not stop_on_timeout:
                    raise WaitTimeout
                stopped = "timeout"
                self.send(codec.encode_stop(None))

    def flow_next_chunk(
        self, feeder: Feeder | None, size: int, err: Tail | Capture | None, deadline: float | None
    ) -> Flow:
        """The next chunk of stdout for a stream, or None at the end (the
        tree is gone and the shepherd reaped). The deadline is checked before
        each read: a consumer slower than the command finds data waiting at
        every call, and its timeout must still come. Once the tree is gone
        nothing is left to stop, and what it wrote is read to the end.

        The caller has just found stdout empty (``_chunk_waiting``), so the
        flow starts with its wait, and reads the control socket only when a
        wait says it is readable: the wait includes it, and returns at once
        for a record already queued. A consumer faster than the command then
        makes three system calls per chunk (the empty read, ``poll``, the
        read), not five."""
        ready: Any = None
        while True:
            if deadline is not None and _monotonic() >= deadline:
                self.pump_control()
                if not self.core.done:
                    raise WaitTimeout
            if ready is not None:
                data = self.read_once(1, size)
                if data:
                    return data
                if self.news_in(ready):
                    self.pump_control()
            readers = self.readers()  # before the check: see the invariants
            if self.core.done:  # the tree is gone: take what is left, then end
                data = self.read_once(1, size)
                if data:
                    return data
                self.out_eof = True
                self.drain(2, err)
                yield from self.flow_reap()
                return None
            if deadline is not None and _monotonic() >= deadline:
                raise WaitTimeout
            writers = (self.stdin_fd,) if feeder is not None and feeder.active else ()
            ready = yield (readers, writers, deadline)  # type: ignore[misc]
            if self.stderr_fd in ready:
                chunk = self.read_once(2, READ_SIZE)
                if chunk and err is not None:
                    err.add(chunk)
            if writers and self.stdin_fd in ready:
                feeder.write_some()  # type: ignore[union-attr]


def _fds_of(ancillary: list[tuple[int, int, bytes]]) -> list[int]:
    out: list[int] = []
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            arr = array.array("i")
            arr.frombytes(data[: len(data) - len(data) % arr.itemsize])
            out.extend(arr)
    return out


def _describe_exit(status: int | None) -> str:
    if status is None:
        return "reaped elsewhere"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            return f"killed by {_signal.Signals(sig).name}"
        except ValueError:
            return f"killed by signal {sig}"
    code = os.WEXITSTATUS(status)
    if code > wire.EXIT_SIGNALLED:
        try:
            return f"exit status {code}: it was sent {_signal.Signals(code - wire.EXIT_SIGNALLED).name}"
        except ValueError:
            pass
    meaning = {wire.EXIT_PROTOCOL: "protocol error", wire.EXIT_SYSTEM: "system error"}.get(code, "")
    return f"exit status {code}{' ' + meaning if meaning else ''}"


def _strerror(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return f"{name}, {exc.strerror}" if exc.strerror else name


def _adopt(received: list[int]) -> list[int]:
    """The fds a record brought, registered; one that landed on 0-2 with no
    number above free is closed and left out (STARTED's pidfd: the command
    is then signalled through its shepherd only)."""
    kept = []
    for fd in received:
        try:
            kept.append(fds.adopt(fd))
        except OSError:
            pass  # adopt closed it
    return kept


def _close_all(received: list[int]) -> None:
    for fd in received:
        fds.close(fd)


def _report_abandoned(h: Handle, flags: int) -> None:
    why = (
        "/proc could not be used to find them (missing, another pid namespace's, or restricted)"
        if flags & wire.EXITED_SCAN_FAILED
        else "they could not be found"
    )
    logging.getLogger("netrunner").warning(
        "command %r (pid %s) exited; some of its descendants were left running: %s",
        list(h.args), h.core.pid, why,
    )


def _end_of_input(attrs: list[Any], last: int | None) -> bytes:
    """What tells a terminal's reader that input has ended: its VEOF
    character, after a newline unless the line typed so far is empty (the
    last byte written ended a line: newline, VEOL, VEOL2, VEOF, or a carriage
    return that the terminal turns into a newline)."""
    iflag, cc = attrs[0], attrs[6]

    def char(index: int) -> int:
        value = cc[index]
        return value[0] if isinstance(value, bytes) else int(value)

    ends = {0x0A, char(termios.VEOL), char(termios.VEOL2), char(termios.VEOF)} - {0}  # 0: disabled
    if iflag & termios.ICRNL and not iflag & termios.IGNCR:
        ends.add(0x0D)
    eof = bytes([char(termios.VEOF) or 0x04])
    return eof if last is None or last in ends else b"\n" + eof


_WINSIZE = struct.Struct("HHHH")


def set_window_size(master: int, rows: int, cols: int) -> None:
    """Resize a PTY (its foreground process group gets SIGWINCH)."""
    fcntl.ioctl(master, termios.TIOCSWINSZ, _WINSIZE.pack(rows, cols, 0, 0))


def _report_kept(h: Handle) -> None:
    p = h.placement
    logging.getLogger("netrunner").warning(
        "command %r (pid %s): its cgroup %s could not be removed",
        list(h.args), h.core.pid, p.v2 if p is not None else "?",
    )


STREAM_PIPE_SIZE = 256 * 1024
_F_SETPIPE_SZ = 1031


def _grow_pipe(fd: int) -> None:
    """A larger stdout pipe (either end will do) for streams, and for a
    ``run`` whose output comes in bulk: the producer runs ahead by this much
    before it blocks, so a consumer wakes up once per several chunks instead
    of once per chunk. Best effort (the per-user pipe budget may refuse)."""
    try:
        fcntl.fcntl(fd, _F_SETPIPE_SZ, STREAM_PIPE_SIZE)
    except OSError:
        pass


#: The last environment encoded: a copy of ``os.environ``'s data, its keys
#: in order and its ``NAME=value`` list, reused while the data compares equal.
_environ_seen: tuple[dict[bytes, bytes], list[bytes], list[bytes]] = ({}, [], [])


def _current_environ() -> list[bytes]:
    """``os.environ`` as ``NAME=value`` bytes, as the command would inherit it.
    The list is made again only when the environment changed: comparing two
    dicts of bytes is one C loop, building the list is a Python one."""
    global _environ_seen
    data = getattr(os.environ, "_data", None)  # bytes -> bytes on POSIX: no re-encoding
    if isinstance(data, dict):
        seen, keys, encoded = _environ_seen
        if data == seen and list(data) == keys:  # the same, in the same order
            return encoded
        copy = dict(data)
        encoded = [k + b"=" + v for k, v in copy.items()]
        _environ_seen = (copy, list(copy), encoded)
        return encoded
    return [k + b"=" + v for k, v in os.environb.items()]  # pragma: no cover


#: The last spawn request encoded: (argv, environment, PATH candidates, the
#: other fields) and its records. The environment and candidate lists are
#: the cached ones of _current_environ and exec_paths, the same objects for
#: as long as they are valid, so they are compared by identity.
_spawn_seen: tuple[list[bytes], Any, Any, tuple[Any, ...], list[bytes]] = ([], None, None, (), [])


def _spawn_records(argv: list[bytes], opts: Options, reuse: bool, stops: bool = False) -> list[bytes]:
    """The records of a spawn request for ``argv`` with ``opts``; the last
    one's again when nothing differs (a loop running one command)."""
    global _spawn_seen
    env = opts.env if opts.env is not None else _current_environ()
    paths = exec_paths(argv[0], opts.path_env)
    rest = (opts.cwd, opts.leftovers, opts.kill_timeout, opts.pty is not None, reuse, stops)
    seen_argv, seen_env, seen_paths, seen_rest, records = _spawn_seen
    if env is seen_env and paths is seen_paths and argv == seen_argv and rest == seen_rest:
        return records
    records = codec.encode_spawn(
        argv, env, paths, opts.cwd,
        detach=opts.leftovers == "detach", kill_timeout=opts.kill_timeout, pty=opts.pty is not None, reuse=reuse,
        stops=stops,
    )
    _spawn_seen = (argv, env, paths, rest, records)
    return records


def _send_spawn(
    records: list[bytes], passed: list[int], thread: read_attrs.Thread | None = None
) -> tuple[int, socket.socket, attrs.Changes | None, attrs.Attrs]:
    """Hand the spawn request and the command's fds to an idle shepherd,
    preceded, when the caller's attributes differ from those the shepherd
    has (its zygote's), by a C_ATTRS record with the difference. Returns
    the shepherd's pid, its control socket, what C_ATTRS carried and the
    attributes the shepherd has."""
    rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", passed).tobytes())]
    now: attrs.Attrs | None = None
    last = zygote.MAX_IDLE + 2  # every idle shepherd may have been killed meanwhile
    for attempt in range(1, last + 1):
        pid, sock, baseline = zygote.take_shepherd()
        try:
            shared = baseline.umask == attrs.SHARED_UMASK
            if now is None or (now.umask == attrs.SHARED_UMASK) != shared:  # (another zygote, after a retry)
                now = read_attrs.current(thread, umask_shared=shared)
            sent = attrs.changes(baseline, now)
            if sent is not None:
                send_on(sock, codec.encode_attrs(sent))
            for record in records[:-1]:
                send_on(sock, record)
            send_on(sock, records[-1], rights)
            return pid, sock, sent, baseline
        except OSError:  # that shepherd was killed while idle: take another
            fds.close_socket(sock)
            zygote.reap_child(pid, 1.0)
            if attempt == last:
                raise ShepherdError("cannot hand the command to a netrunner shepherd") from None
        except BaseException:  # it hangs up and exits, having started nothing
            fds.close_socket(sock)
            zygote.reap_child(pid, 1.0)
            raise
    raise AssertionError("unreachable")  # pragma: no cover


def send_on(
    sock: socket.socket, record: bytes, rights: list[tuple[int, int, bytes]] | None = None,
    timeout_ms: int | None = None,
) -> None:
    """Send one record on a control socket. Control sockets are
    non-blocking from their creation to their close (no mode to switch on
    every spawn); a record that does not fit now -- practically never, the
    shepherd reads them at once -- waits for room, for ever or
    ``timeout_ms`` (then :class:`TimeoutError`)."""
    deadline = None if timeout_ms is None else _monotonic() + timeout_ms / 1000.0
    while True:
        try:
            if rights is None:
                sock.send(record)
            else:
                sock.sendmsg([record], rights)
            return
        except BlockingIOError:
            left = None if deadline is None else (deadline - _monotonic()) * 1000.0
            if left is not None and left <= 0:
                raise TimeoutError(errno.ETIMEDOUT, "a netrunner shepherd is not reading its control socket") from None
            waiter = select.poll()
            waiter.register(sock.fileno(), select.POLLOUT)
            waiter.poll(left)


def attrs_error(err: int, sent: attrs.Changes | None) -> OSError:
    """The error for a command that could not be given the caller's
    attributes (STAGE_ATTRS): the OSError subclass of ``err``, naming what
    the C_ATTRS record asked for (the kernel does not say which one it
    refused: in practice a resource limit)."""
    given = attrs.describe(sent, read_attrs.RESOURCE_NAMES) if sent is not None else "attributes"
    return OSError(err, f"the command could not be given the caller's {given}: {os.strerror(err)}")


#: A write's EPIPE: the command closed its stdin, or ended (by itself, or
#: stopped by a close() or stop() in another thread).
_NO_READER = "the command's stdin has no reader any more (the command closed it, or ended)"


def stdin_closed_error(handle: Handle) -> BrokenPipeError:
    """Why nothing can be written to the command's stdin (its fd is None)."""
    from ._errors import StdinClosed

    if handle.stdin_closed_by_user:
        return StdinClosed()
    if handle.opts.stdin != "pipe":
        return BrokenPipeError(
            errno.EPIPE, f"the command's stdin is not a pipe to write to (stdin={handle.opts.stdin!r})"
        )
    return BrokenPipeError(errno.EPIPE, "stdin is closed: the command's input has ended")


class Feeder:
    """Writes the ``input`` option to stdin as the command accepts it."""

    __slots__ = ("_handle", "_source", "_pending")

    def __init__(self, handle: Handle, source: InputSource) -> None:
        self._handle = handle
        self._source = source
        self._pending = memoryview(b"")

    @property
    def active(self) -> bool:
        return self._handle.stdin_fd is not None

    def write_some(self) -> None:
        h = self._handle
        if not self._pending:
            chunk = self._source.next_chunk()
            if chunk is None:
                h.close_stdin()
                return
            self._pending = memoryview(chunk)
        with fds.lock:  # against a close_stdin() in another thread (see flow_write)
            fd = h.stdin_fd
            if fd is None:  # closed meanwhile: nothing more goes in
                self._pending = memoryview(b"")
                return
            try:
                n = os.write(fd, self._pending)
            except BlockingIOError:
                return
            except BrokenPipeError:  # the command stopped reading: drop the rest
                n = -1
        if n < 0:
            h.close_stdin()
            self._pending = memoryview(b"")
            return
        h.core.bytes_in += n
        h.core.write_count += 1
        h.last_in = self._pending[n - 1]
        self._pending = self._pending[n:]


def feeder_for(handle: Handle, opts: Options) -> Feeder | None:
    if opts.input is None:
        return None
    return Feeder(handle, InputSource(opts.input, opts.encoding))


def finalize_on_drop(owner: object, handle: Handle, *, warn: bool = False) -> weakref.finalize[Any, Any]:
    """Hand the stop to the shepherd when ``owner`` is garbage-collected
    (with ``warn``, a ``ResourceWarning`` first if it was still running)."""
    fin = weakref.finalize(owner, _dropped, handle, warn)
    fin.atexit = False  # interpreter exit is _lifetime's job
    return fin


def _dropped(handle: Handle, warn: bool) -> None:
    # Runs inside the garbage collector: no lock of the handle, nothing that blocks.
    if handle.foreign:
        return
    try:
        if warn and not handle.core.done:
            warnings.warn(
                f"netrunner: process {handle.core.pid} {list(handle.args)!r} was dropped while still "
                f"running; its tree is being stopped. Use `with netrunner.start(...)` or call close().",
                ResourceWarning,
                stacklevel=2,
            )
    finally:  # even when warnings are errors
        handle.release()
