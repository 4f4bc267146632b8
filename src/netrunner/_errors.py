"""Every error netrunner raises.

Each derives from :class:`NetRunnerError` and from the builtin or
``subprocess`` class whose meaning it shares, fills that class's fields, and
survives ``pickle`` with its type and fields intact (errors cross
``multiprocessing`` and ``concurrent.futures``).
"""

from __future__ import annotations

import errno
import subprocess
from typing import Any


def _rebuild(cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]) -> BaseException:
    err = cls.__new__(cls)
    BaseException.__init__(err, *args)
    err.__dict__.update(state)
    return err


class NetRunnerError(Exception):
    """Base class of every netrunner error."""

    def __reduce__(self) -> tuple[Any, ...]:
        # The subprocess classes keep their fields outside ``args``, so carry
        # the whole __dict__; OSError ones rebuild from ``args`` (errno,
        # strerror, filename) like OSError itself.
        if isinstance(self, OSError) and not isinstance(self, subprocess.SubprocessError):
            return tuple(OSError.__reduce__(self))
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


class InvalidCommand(NetRunnerError, ValueError, TypeError):
    """The command is not a valid argv (or ``Command``); nothing was started."""


class UnknownSignal(NetRunnerError, ValueError):
    """A signal name or number that this platform does not have."""


class InvalidCgroup(NetRunnerError, ValueError):
    """A cgroup path that is absolute or climbs out with ``..``."""


class CgroupUnavailable(NetRunnerError, OSError):
    """cgroups, or a controller a limit needs, cannot be used here."""


class ShepherdError(NetRunnerError, OSError):
    """The shepherd died, is missing or stale, or broke the protocol."""


class StdinClosed(NetRunnerError, BrokenPipeError):
    """``write`` after ``close_stdin()``. ``errno`` is ``EPIPE``, as for any
    ``BrokenPipeError``."""

    def __init__(self, message: str = "stdin was closed with close_stdin(); nothing more can be written") -> None:
        super().__init__(errno.EPIPE, message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.strerror,), self.__dict__ or None)

    def __str__(self) -> str:
        return str(self.strerror or "")


class Timeout(NetRunnerError, subprocess.TimeoutExpired, TimeoutError):
    """The command (or a wait) took longer than its ``timeout``.

    ``stdout``/``stderr`` hold the output read so far; ``stats`` the
    statistics at that moment. ``kill_timeout`` is set when the timeout
    stopped the command's tree (``run``, ``stream``): SIGTERM, then SIGKILL
    after that many seconds, so the call returned within ``timeout +
    kill_timeout``; it is None when only a wait timed out and the command
    runs on (``Process.wait``, ``read``, ``communicate``...).
    """

    def __init__(
        self,
        cmd: Any,
        timeout: float,
        output: bytes | str | None = None,
        stderr: bytes | str | None = None,
        stats: Any = None,
        *,
        kill_timeout: float | None = None,
    ) -> None:
        subprocess.TimeoutExpired.__init__(self, cmd, timeout, output, stderr)
        self.stats = stats
        self.kill_timeout = kill_timeout

    def __str__(self) -> str:
        said = f"Command {self.cmd!r} timed out after {self.timeout:g} seconds"
        kill_timeout = getattr(self, "kill_timeout", None)  # None in one pickled by an older netrunner
        if kill_timeout is None:
            return said
        return f"{said}; its tree was stopped (SIGTERM, then SIGKILL after kill_timeout={kill_timeout:g} seconds)"


class OutputLimitExceeded(NetRunnerError):
    """Captured output went past ``max_output_size``; the tree was stopped.

    ``stdout``/``stderr`` hold exactly the first ``limit`` bytes of the stream
    that overflowed (and what was read of the other), ``stream`` names it.

    Raised by ``read_until`` too, when ``max_bytes`` of stdout were read
    without a match (``option`` is then ``"max_bytes"``): the command runs
    on, and ``stdout`` holds what was read, which stays buffered for the
    next read.
    """

    def __init__(
        self,
        cmd: Any,
        limit: int,
        stream: str,
        stdout: bytes | str = b"",
        stderr: bytes | str = b"",
        stats: Any = None,
        *,
        option: str = "max_output_size",
    ) -> None:
        super().__init__(cmd, limit, stream)
        self.cmd = cmd
        self.limit = limit
        self.stream = stream
        self.stdout = stdout
        self.stderr = stderr
        self.output = stdout
        self.stats = stats
        self.option = option

    def __str__(self) -> str:
        if self.option == "max_bytes":
            return (
                f"read_until found no match in the first max_bytes={self.limit} bytes of {self.stream} "
                f"of {self.cmd!r} (they stay buffered for the next read)"
            )
        return f"Command {self.cmd!r} wrote more than max_output_size={self.limit} bytes to {self.stream}"


class ProcessError(NetRunnerError, subprocess.CalledProcessError):
    """The command exited with a non-zero status while ``check`` was on."""

    def __init__(
        self,
        returncode: int,
        cmd: Any,
        output: bytes | str | None = None,
        stderr: bytes | str | None = None,
        exit_status: int | None = None,
        signal: Any = None,
        stats: Any = None,
    ) -> None:
        subprocess.CalledProcessError.__init__(self, returncode, cmd, output, stderr)
        self.exit_status = exit_status
        self.signal = signal
        self.stats = stats


class AbnormalExit(ProcessError):
    """A streamed command exited with a non-zero status."""
