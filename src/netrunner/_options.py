"""Call-time validation of commands and options (SPEC sections 1 and 2).

Everything here runs before anything is spawned: a bad argv raises
:class:`InvalidCommand`, a bad option ``TypeError``/``ValueError`` naming the
option and saying what it accepts.
"""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._errors import InvalidCommand

# Which options each entry point accepts.
COMMON = frozenset(
    {"stdin", "stdout", "stderr", "text", "encoding", "errors", "leftovers", "pty", "kill_timeout", "cgroup",
     "cwd", "env"}
)
ENTRY_OPTIONS: dict[str, frozenset[str]] = {
    "start": COMMON,
    "Daemon": COMMON,
    "run": COMMON | {"input", "timeout", "max_output_size", "check"},
    "stream": COMMON | {"input", "timeout", "max_output_size", "check", "chunk_size"},
}
ALL_OPTIONS = frozenset().union(*ENTRY_OPTIONS.values())

#: ``subprocess`` options that netrunner spells differently or does not need:
#: what to write instead (the ``TypeError`` for them says it).
SUBPROCESS_WAY: dict[str, str] = {
    "capture_output": "stdout and stderr are captured by default (stdout='capture', stderr='capture'); "
                      "leave it out",
    "universal_newlines": "use text=True (output is decoded; newlines are not translated)",
    "shell": "pass the argv as a list, e.g. ['ls', '-l']; for a shell line, write ['sh', '-c', line]",
    "executable": "put the program first in the argv (a Command's executable)",
    "close_fds": "the command always gets fds 0-2 only; leave it out",
    "pass_fds": "the command gets fds 0-2 only; give it a path to open, or data through stdin",
    "start_new_session": "every command already runs in a process group of its own, stopped as a whole "
                         "(with pty=True, in a session of its own); leave it out",
    "process_group": "every command already runs in a process group of its own; leave it out",
    "preexec_fn": "no Python code can run between fork and exec in a threaded interpreter; run the command "
                  "through a program that makes the change, e.g. ['nice', '-n', '10', ...], "
                  "['setpriv', ...], ['prlimit', ...], and use cwd= and env=",
    "restore_signals": "signals are always reset to their defaults in the command; leave it out",
    "bufsize": "pipes are read unbuffered, on demand; leave it out (stream(chunk_size=) sizes the reads)",
    "user": "run the command through a program that switches, e.g. ['setpriv', '--reuid=USER', '--regid=GROUP', "
            "'--init-groups', ...]",
    "group": "run the command through a program that switches, e.g. ['setpriv', '--regid=GROUP', ...]",
    "extra_groups": "run the command through a program that switches, e.g. ['setpriv', '--groups=G1,G2', ...]",
    "umask": "a command gets the interpreter's umask as it is at the call (os.umask() before it), or run "
             "it through a shell that sets one, e.g. ['sh', '-c', 'umask 077 && exec \"$0\" \"$@\"', program, ...]",
    "pipesize": "netrunner sizes its pipes itself; leave it out",
    "startupinfo": "a Windows option; netrunner runs on Linux",
    "creationflags": "a Windows option; netrunner runs on Linux",
}

# Each stdio option: what its spellings mean. An int fd >= 0 or an object
# with fileno() is handed to the command as it is.
STDIN_MODES: dict[Any, str] = {
    None: "pipe", subprocess.PIPE: "pipe", "inherit": "inherit", "discard": "discard",
    subprocess.DEVNULL: "discard",
}
STDOUT_MODES: dict[Any, str] = {
    "capture": "capture", "inherit": "inherit", "discard": "discard",
    subprocess.PIPE: "capture", subprocess.DEVNULL: "discard", None: "inherit",
}
STDERR_MODES: dict[Any, str] = {
    "capture": "capture",
    "redirect": "redirect",
    "discard": "discard",
    "inherit": "inherit",
    subprocess.PIPE: "capture",
    subprocess.STDOUT: "redirect",
    subprocess.DEVNULL: "discard",
    None: "inherit",
}
_SPELLINGS = {
    "stdin": "None, 'inherit', 'discard' (or subprocess.DEVNULL)",
    "stdout": "'capture', 'inherit', 'discard' (or subprocess.PIPE, DEVNULL, None)",
    "stderr": "'capture', 'redirect', 'discard', 'inherit' (or subprocess.PIPE, STDOUT, DEVNULL, None)",
}


#: File descriptors are C ints.
_MAX_FD = 2**31 - 1


def _stdio(entry: str, name: str, value: Any, modes: dict[Any, str]) -> str | int:
    """One stdio option -> a mode name, or an fd to hand over."""
    if not isinstance(value, bool):
        try:
            return modes[value]
        except (KeyError, TypeError):
            pass
        if isinstance(value, int) and 0 <= value <= _MAX_FD:
            return value
        fileno = getattr(value, "fileno", None)
        if fileno is not None and not isinstance(value, (str, bytes)):
            try:
                fd = fileno()
            except io.UnsupportedOperation as exc:  # io.StringIO, io.BytesIO: no fd to hand over
                if name != "stdin":
                    way = f"capture it ({name}='capture') and write the result's {name} there"
                elif entry in ("run", "stream"):
                    way = "pass it as input= instead"
                else:
                    way = "write its contents to the command with write()"
                raise TypeError(
                    f"{entry}(): option {name!r} must be a file with a file descriptor, and a "
                    f"{type(value).__name__} has none (it lives in memory): {way}"
                ) from exc
            except (OSError, ValueError) as exc:
                raise _fail(entry, name, "an open file", value) from exc
            if isinstance(fd, int) and 0 <= fd <= _MAX_FD:
                return fd
    raise _fail(entry, name, f"{_SPELLINGS[name]}, an fd or an object with fileno()", value,
                TypeError if not isinstance(value, (str, int)) else ValueError)


@dataclass(frozen=True, slots=True)
class Options:
    """Validated options; defaults are SPEC section 2's."""

    input: Any = None
    stdin: str | int = "pipe"
    stdout: str | int = "capture"
    stderr: str | int = "capture"
    text: bool = False
    encoding: str | None = None  # set iff text mode
    errors: str = "strict"
    leftovers: str = "kill"
    kill_timeout: float = 5.0
    timeout: float | None = None
    max_output_size: int | None = None
    cwd: bytes | None = None
    cwd_given: Any = None  # as the user spelled it, for OSError.filename
    env: tuple[bytes, ...] | None = None
    path_env: Mapping[Any, Any] | None = None  # for PATH lookup
    check: bool = False
    chunk_size: int = 65536
    cgroup: Any = None  # a netrunner.Cgroup
    pty: tuple[int, int] | None = None  # (rows, cols) of the command's terminal


def _fail(entry: str, name: str, expected: str, value: Any, exc: type[Exception] = ValueError) -> Exception:
    return exc(f"{entry}(): option {name!r} must be {expected}, got {value!r}")


def _positive_number(entry: str, name: str, value: Any, upper: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(entry, name, "a number of seconds", value, TypeError)
    if not (value > 0 and math.isfinite(value)) or (upper is not None and value > upper):
        bound = f"> 0 and <= {upper:g}" if upper is not None else "> 0"
        raise _fail(entry, name, f"a number of seconds {bound}", value)
    return float(value)


def _positive_int(entry: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(entry, name, "an int >= 1", value, TypeError)
    if value < 1:
        raise _fail(entry, name, "an int >= 1", value)
    return value


def _flag(entry: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(entry, name, "True or False", value, TypeError)
    return value


def _codec_name(entry: str, name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail(entry, name, "a str or None", value, TypeError)
    import codecs

    try:
        if name == "encoding":
            codecs.lookup(value)
        else:
            codecs.lookup_error(value)
    except LookupError:
        raise _fail(entry, name, f"a known {name} name", value) from None
    return value


def _path(entry: str, name: str, value: Any) -> bytes:
    if not isinstance(value, (str, bytes, os.PathLike)):
        raise _fail(entry, name, "a str, bytes or os.PathLike path", value, TypeError)
    encoded = os.fsencode(value)
    if b"\0" in encoded:
        raise _fail(entry, name, "a path without NUL bytes", value)
    return encoded


def _environment(entry: str, value: Any) -> tuple[bytes, ...]:
    if not isinstance(value, Mapping):
        raise _fail(entry, "env", "a mapping of names to values, or None", value, TypeError)
    out = []
    for key, val in value.items():
        if not isinstance(key, (str, bytes)) or not isinstance(val, (str, bytes, os.PathLike)):
            raise _fail(entry, "env", "a mapping of str/bytes names to str/bytes values", {key: val}, TypeError)
        k, v = os.fsencode(key), os.fsencode(val)
        if not k or b"=" in k or b"\0" in k or b"\0" in v:
            raise _fail(entry, "env", "names without '=' or NUL and values without NUL", {key: val})
        out.append(k + b"=" + v)
    return tuple(out)


#: The Options of a call without options, per entry point (Options is frozen).
_DEFAULTS: dict[str, Options] = {}


def validate(entry: str, given: Mapping[str, Any]) -> Options:
    """Validate the options ``given`` for the entry point ``entry``."""
    if not given:
        opts = _DEFAULTS.get(entry)
        if opts is None:
            opts = _DEFAULTS[entry] = _validate(entry, given)
        return opts
    return _validate(entry, given)


def _validate(entry: str, given: Mapping[str, Any]) -> Options:
    allowed = ALL_OPTIONS if entry == "Command" else ENTRY_OPTIONS[entry]
    for name in given:
        if name not in allowed:
            if name in ALL_OPTIONS:
                raise TypeError(f"{entry}() does not take the option {name!r} (it applies to "
                                f"{', '.join(e + '()' for e, opts in ENTRY_OPTIONS.items() if name in opts)})")
            hint = SUBPROCESS_WAY.get(name)
            if hint is not None:
                raise TypeError(f"{entry}() has no option {name!r}: {hint}")
            raise TypeError(f"{entry}() got an unexpected option {name!r}")
    kw: dict[str, Any] = {}
    g = given.get
    if g("pty") not in (None, False):
        kw["pty"] = _pty(entry, given["pty"])
        for name in ("stdin", "stdout", "stderr"):
            if name in given:
                raise TypeError(
                    f"{entry}(): option {name!r} cannot be combined with 'pty': the terminal is the command's "
                    "stdin, stdout and stderr (stderr merged into the output); leave out one of them"
                )
    if "stdin" in given:
        kw["stdin"] = _stdio(entry, "stdin", given["stdin"], STDIN_MODES)
        if kw["stdin"] != "pipe" and g("input") is not None:
            raise TypeError(f"{entry}(): give either 'stdin' or 'input', not both")
    if "stdout" in given:
        kw["stdout"] = _stdio(entry, "stdout", given["stdout"], STDOUT_MODES)
        if entry == "stream" and kw["stdout"] != "capture":
            raise _fail(entry, "stdout", "'capture' (a stream reads the command's stdout)", given["stdout"])
    if "stderr" in given:
        kw["stderr"] = _stdio(entry, "stderr", given["stderr"], STDERR_MODES)
    text = _flag(entry, "text", g("text", False))
    encoding = _codec_name(entry, "encoding", g("encoding"))
    errors = _codec_name(entry, "errors", g("errors"))
    if text or encoding is not None or errors is not None:
        kw["text"] = True
        kw["encoding"] = encoding or "utf-8"
    if errors is not None:
        kw["errors"] = errors
    if "leftovers" in given:
        if given["leftovers"] not in ("kill", "detach"):
            raise _fail(entry, "leftovers", "'kill' or 'detach'", given["leftovers"])
        kw["leftovers"] = given["leftovers"]
    if "kill_timeout" in given:
        kw["kill_timeout"] = _positive_number(entry, "kill_timeout", given["kill_timeout"], 3600.0)
    timeout = g("timeout")
    if timeout is not None and not (isinstance(timeout, float) and timeout == math.inf):  # inf: no limit, as None
        kw["timeout"] = _positive_number(entry, "timeout", timeout)
    if g("max_output_size") is not None:
        kw["max_output_size"] = _positive_int(entry, "max_output_size", given["max_output_size"])
        _refuse_moot_limit(entry, kw)
    if "chunk_size" in given:
        kw["chunk_size"] = _positive_int(entry, "chunk_size", given["chunk_size"])
    if "check" in given:
        kw["check"] = _flag(entry, "check", given["check"])
    elif entry == "stream":
        kw["check"] = True
    if g("cwd") is not None:
        kw["cwd"] = _path(entry, "cwd", given["cwd"])
        kw["cwd_given"] = given["cwd"]
    if g("env") is not None:
        kw["env"] = _environment(entry, given["env"])
        kw["path_env"] = given["env"]
    if g("input") is not None:
        kw["input"] = _input(entry, given["input"])
    if g("cgroup") is not None:
        kw["cgroup"] = _cgroup(entry, given["cgroup"])
        if kw.get("leftovers") == "detach":
            raise ValueError(
                f"{entry}(): leftovers='detach' cannot be combined with option 'cgroup': everything "
                "in a command's cgroup is killed when the command ends; leave out one of them"
            )
    return Options(**kw)


def _refuse_moot_limit(entry: str, kw: Mapping[str, Any]) -> None:
    """``max_output_size`` caps captured output: ``run``'s stdout and stderr
    (a terminal's output with ``pty``), the stderr a ``stream`` keeps. Given
    where nothing it caps is captured, it would silently limit nothing. (A
    ``Command``'s own options are checked with the call's, merged.)"""
    if entry == "run":
        if "pty" in kw or kw.get("stdout", "capture") == "capture" or kw.get("stderr", "capture") == "capture":
            return
        raise TypeError(
            "run(): option 'max_output_size' caps captured output, and this call captures neither stdout "
            "nor stderr; leave it out, or capture one (stdout='capture')"
        )
    if entry == "stream" and ("pty" in kw or kw.get("stderr", "capture") != "capture"):
        where = "goes to the terminal with pty" if "pty" in kw else "is not captured here"
        raise TypeError(
            "stream(): option 'max_output_size' caps the stderr a stream keeps (its stdout is read as it "
            f"comes), and stderr {where}; leave it out"
            + ("" if "pty" in kw else ", or capture stderr (stderr='capture')")
        )


#: The terminal size given by ``pty=True`` (what terminals and pexpect default to).
DEFAULT_PTY_SIZE = (24, 80)


def _pty(entry: str, value: Any) -> tuple[int, int]:
    """``True`` or ``(rows, cols)`` -> (rows, cols)."""
    if value is True:
        return DEFAULT_PTY_SIZE
    if (
        isinstance(value, tuple) and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        if all(1 <= v <= 0xFFFF for v in value):
            return value[0], value[1]
        raise _fail(entry, "pty", "a (rows, cols) pair of ints from 1 to 65535", value)
    raise _fail(entry, "pty", "True, False or a (rows, cols) pair of positive ints", value, TypeError)


def _cgroup(entry: str, value: Any) -> Any:
    """A path (str) or a Cgroup -> a checked Cgroup."""
    from ._cgroup import Cgroup
    from ._io.cgroup import check_path

    if isinstance(value, str):
        value = Cgroup(value)
    elif not isinstance(value, Cgroup):
        raise _fail(entry, "cgroup", "a path (str, e.g. 'jobs/42') or a netrunner.Cgroup", value, TypeError)
    check_path(value)
    return value


def _input(entry: str, value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview, str)):
        return value
    if hasattr(value, "read") or hasattr(value, "__iter__") or hasattr(value, "__aiter__"):
        return value  # an async iterable is for the aio twins only: they check
    raise _fail(entry, "input", "bytes, str, an iterable of bytes/str or a binary file object", value, TypeError)


def is_async_input(value: Any) -> bool:
    """``input`` is an async iterable (an ``aio.Stream`` included), which only
    ``aio.run``/``aio.stream`` can consume."""
    return hasattr(value, "__aiter__") and not (hasattr(value, "__iter__") or hasattr(value, "read"))


def refuse_async_input(entry: str, opts: Options) -> None:
    """The blocking entry points cannot await an async iterable."""
    if is_async_input(opts.input):
        raise TypeError(
            f"{entry}(): input is an async iterable ({type(opts.input).__name__}); a blocking call cannot "
            f"await it: use netrunner.aio.{entry}(), or pass bytes, str, an iterable or a file"
        )


# --- commands -----------------------------------------------------------------


def argv_of(cmd: Any) -> tuple[tuple[Any, ...], list[bytes]]:
    """Validate ``cmd`` (a sequence, not a string) -> (args as given, encoded argv)."""
    if isinstance(cmd, (str, bytes, bytearray)):
        raise InvalidCommand(
            f"cmd must be a list of arguments, not a single {type(cmd).__name__} "
            f"(no shell is used): pass e.g. ['ls', '-l'] instead of {cmd!r}"
        )
    if type(cmd) is not list and type(cmd) is not tuple and not isinstance(cmd, Sequence):
        raise InvalidCommand(
            f"cmd must be a non-empty list of str, bytes or os.PathLike (or a netrunner.Command), "
            f"got {type(cmd).__name__}"
        )
    if not cmd:
        raise InvalidCommand("cmd is empty: pass at least the program, e.g. ['true']")
    argv = []
    for i, arg in enumerate(cmd):
        if type(arg) is str:  # the common case, as os.fsencode would encode it
            encoded = arg.encode(_FS_ENCODING, _FS_ERRORS)
        elif not isinstance(arg, (str, bytes, os.PathLike)):
            raise InvalidCommand(
                f"cmd[{i}] must be str, bytes or os.PathLike, got {type(arg).__name__}: {arg!r}"
            )
        else:
            try:
                encoded = os.fsencode(arg)
            except TypeError as exc:  # a PathLike returning something odd
                raise InvalidCommand(f"cmd[{i}] is not a valid path-like argument: {exc}") from None
        if b"\0" in encoded:
            raise InvalidCommand(f"cmd[{i}] contains a NUL byte, which no argument can hold: {arg!r}")
        argv.append(encoded)
    if not argv[0]:
        raise InvalidCommand("cmd[0] (the program) is empty")
    return tuple(cmd), argv


_PATHS: dict[tuple[bytes, bytes | str | None], list[bytes]] = {}
#: What os.fsencode uses.
_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()


def exec_paths(program: bytes, path_env: Mapping[Any, Any] | None) -> list[bytes]:
    """Where to look for ``program``, exactly as ``subprocess`` does. With the
    inherited environment the answer is cached per (program, ``$PATH``)."""
    if b"/" in program:
        return [program]
    if path_env is not None:
        return [os.path.join(os.fsencode(d), program) for d in os.get_exec_path(path_env)]
    data = getattr(os.environ, "_data", None)  # bytes -> bytes on POSIX: no decoding on every call
    key = (program, data.get(b"PATH") if isinstance(data, dict) else os.environ.get("PATH"))
    paths = _PATHS.get(key)
    if paths is None:
        if len(_PATHS) > 256:
            _PATHS.clear()
        paths = _PATHS[key] = [os.path.join(os.fsencode(d), program) for d in os.get_exec_path(None)]
    return paths
