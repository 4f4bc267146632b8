"""What ``help()`` shows for the entry points (SPEC section 15).

The type checker reads the typed overloads in ``_sync``/``_async``/
``_command``; at run time each entry point takes ``**options`` (so that
``_options.validate`` can answer a ``subprocess`` spelling with the
netrunner way). :func:`document` gives each one the signature a reader
expects -- keyword-only options with their defaults -- and appends an
"Options" section with a line of meaning per option, from the table below:
one place for the text, so no entry point's help can fall behind.
"""

from __future__ import annotations

import inspect
from typing import Any, NamedTuple

from ._options import ALL_OPTIONS, ENTRY_OPTIONS


class _Option(NamedTuple):
    default: object
    type: str
    meaning: str


#: Every option, in the order the signatures list them.
OPTIONS: dict[str, _Option] = {
    "input": _Option(
        None, "bytes | str | Iterable[bytes | str] | binary file | None",
        "fed to stdin as the command reads it, then stdin is closed; None: stdin is at EOF at once",
    ),
    "stdin": _Option(
        None, "None | 'inherit' | 'discard' | int | file",
        "where stdin comes from when it is not `input`: None (a pipe), the interpreter's, /dev/null, an fd",
    ),
    "stdout": _Option(
        "capture", "'capture' | 'inherit' | 'discard' | int | file",
        "read by netrunner ('capture'), or handed to the command: the interpreter's, /dev/null, an fd",
    ),
    "stderr": _Option(
        "capture", "'capture' | 'redirect' | 'discard' | 'inherit' | int | file",
        "captured separately, merged into stdout ('redirect'), /dev/null, the interpreter's, or an fd",
    ),
    "text": _Option(False, "bool", "decode the output (str instead of bytes), with `encoding` (UTF-8)"),
    "encoding": _Option(None, "str | None", "the codec of text mode; giving one implies text=True"),
    "errors": _Option(None, "str | None", "the decoding error handler of text mode ('strict'); implies text=True"),
    "leftovers": _Option(
        "kill", "'kill' | 'detach'",
        "descendants still running when the command exits: stopped ('kill') or left running ('detach')",
    ),
    "pty": _Option(False, "bool | (rows, cols)", "run on a pseudo-terminal of its own (True: 24 x 80)"),
    "kill_timeout": _Option(
        5.0, "float", "seconds between SIGTERM and SIGKILL whenever the tree is stopped (0 < s <= 3600)",
    ),
    "timeout": _Option(
        None, "float | None", "seconds for the whole command; then the tree is stopped and Timeout raised",
    ),
    "max_output_size": _Option(
        None, "int | None",
        "byte cap on captured stdout (and stderr); past it OutputLimitExceeded (stream: the stderr kept)",
    ),
    "chunk_size": _Option(65536, "int", "the largest chunk of stdout read at once"),
    "cgroup": _Option(None, "str | Cgroup | None", "run in a cgroup: a path, or a Cgroup with limits"),
    "cwd": _Option(None, "str | bytes | os.PathLike | None", "the command's working directory"),
    "env": _Option(None, "Mapping | None", "the command's whole environment (None: the interpreter's)"),
    "check": _Option(False, "bool", "raise ProcessError when the exit status is not 0"),
}

#: A ``Daemon``'s own options, before those of ``start``.
DAEMON_OPTIONS: dict[str, _Option] = {
    "on_output": _Option(
        "discard", "'discard' | 'log' | Callable[[bytes | str], object]",
        "dropped, logged line by line to 'netrunner.daemon', or a callable taking each chunk (str in text mode)",
    ),
    "restart": _Option(
        "on-failure", "'never' | 'no' | 'on-failure' | 'always'",
        "when a run that ended is started again ('on-failure': a non-zero exit or a signal)",
    ),
    "max_restarts": _Option(5, "int", "more restarts than this inside `restart_window` gives up"),
    "restart_window": _Option(60.0, "float", "seconds; a run that lasted longer resets the count and backoff"),
    "backoff": _Option((0.1, 30.0), "(float, float)", "first and largest delay before a restart, doubling"),
    "on_exit": _Option(None, "Callable[[Result], object] | None", "called with the Result of each run"),
    "name": _Option(None, "str | None", "the daemon's name in logs (default: argv[0])"),
}

#: Defaults that depend on the entry point.
_DEFAULTS: dict[tuple[str, str], object] = {
    ("stream", "check"): True,
    ("pipe", "check"): None,
    ("Daemon", "stderr"): "redirect",
}
_MEANINGS: dict[tuple[str, str], str] = {
    ("pipe", "check"): "raise ProcessError when a stage exits non-zero; None: the entry point's default",
    ("pipe", "stdin"): "where the first stage's stdin comes from when it is not `input`",
    ("pipe", "stdout"): "where the last stage's stdout goes ('capture': read by netrunner)",
    ("pipe", "stderr"): "every stage's: captured (all stages' merged), 'redirect' (each into its stdout), ...",
    ("pipe", "env"): "every stage's environment, unless its Command sets one",
    ("pipe", "cwd"): "every stage's working directory, unless its Command sets one",
    ("Daemon", "stderr"): "merged into the output by default; 'capture' keeps its last 64 KiB for on_exit",
}


def options_of(entry: str) -> list[str]:
    """The option names of ``entry``, in the signature's order."""
    if entry == "pipe":  # what run and stream take, less what one command alone can have
        names = (ENTRY_OPTIONS["run"] | ENTRY_OPTIONS["stream"]) - {"pty", "cgroup"}
    else:
        names = ALL_OPTIONS if entry == "Command" else ENTRY_OPTIONS[entry]
    own = list(DAEMON_OPTIONS) if entry == "Daemon" else []
    return own + [name for name in OPTIONS if name in names]


#: ``input`` of the asyncio twins.
_ASYNC_INPUT = _Option(
    None, "bytes | str | Iterable[bytes | str] | AsyncIterable[bytes | str] | binary file | None",
    "fed to stdin as the command reads it (an async iterable, an aio.Stream too), then stdin is closed",
)


def _option(entry: str, name: str, aio: bool = False) -> _Option:
    opt = _ASYNC_INPUT if aio and name == "input" else DAEMON_OPTIONS.get(name) or OPTIONS[name]
    return opt._replace(
        default=_DEFAULTS.get((entry, name), opt.default), meaning=_MEANINGS.get((entry, name), opt.meaning)
    )


def document(
    fn: Any, entry: str, head: list[inspect.Parameter], returns: object, *, doc_of: Any = None, aio: bool = False
) -> None:
    """Give ``fn`` the signature ``head`` + the keyword-only options of
    ``entry`` -> ``returns``, and append the "Options" section to the
    docstring of ``doc_of`` (default: ``fn``); ``aio`` for the asyncio twins."""
    names = options_of(entry)
    options = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=_option(entry, name).default)
        for name in names
    ]
    fn.__signature__ = inspect.Signature([*head, *options], return_annotation=returns)
    target = doc_of if doc_of is not None else fn
    if target.__doc__ is None:  # python -OO
        return
    width = max(len(name) for name in names)
    lines = ["", "", "Options (keyword-only; default, accepted values, meaning):", ""]
    for name in names:
        opt = _option(entry, name, aio)
        lines.append(f"    {name.ljust(width)} = {opt.default!r}: {opt.type}")
        lines.append(f"    {'':{width}}   {opt.meaning}")
    target.__doc__ = inspect.cleandoc(target.__doc__) + "\n".join(lines)


def params(*names: str, **defaults: object) -> list[inspect.Parameter]:
    """Positional-or-keyword parameters: ``names``, then ``defaults``."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return [inspect.Parameter(n, kind) for n in names] + [
        inspect.Parameter(n, kind, default=d) for n, d in defaults.items()
    ]
