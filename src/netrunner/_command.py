"""``Command``: a frozen, reusable command template (SPEC section 7)."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, Literal, overload

from ._help import document, params
from ._options import Options, argv_of, validate
from ._pipeline import Pipeline, _join, resolve_pipeline

if TYPE_CHECKING:
    from ._types import (
        Arg,
        Argv,
        AsyncInput,
        CgroupSpec,
        Env,
        Leftovers,
        OutT,
        Pty,
        Stage,
        StderrTarget,
        StdinTarget,
        StdoutTarget,
        StrOrBytesPath,
    )
else:
    from ._types import OutT


def _freeze(value: Any) -> Any:
    """A hashable stand-in for an option value (dicts become sorted tuples)."""
    if isinstance(value, Mapping):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    try:
        hash(value)
    except TypeError:
        return id(value)
    return value


class Command(Generic[OutT]):
    """A program, its arguments and options, ready to pass to ``run``,
    ``stream``, ``start`` (or their ``aio`` twins).

    ``cmd("more", "args")`` returns a new ``Command`` with arguments appended;
    ``cmd.with_options(**opts)`` one with options merged. Options given at the
    call site override the template's; an option left out takes the default
    of the entry point the template is passed to.

    For a type checker a template is ``Command[bytes]``, or ``Command[str]``
    when it sets text mode (``text=True``, ``encoding=``, ``errors=``), and
    ``run`` gives a ``Result`` of the same kind. Give ``text`` as a literal
    ``True``/``False``; for a flag computed at run time use
    ``Command(...).with_options(text=flag)``, a ``Command[bytes] | Command[str]``.
    """

    __slots__ = ("_argv", "_options")

    @overload
    def __init__(
        self: Command[str],
        executable: Arg,
        args: Iterable[Arg] = (),
        *,
        input: AsyncInput = None,
        stdin: StdinTarget = None,
        stdout: StdoutTarget = "capture",
        stderr: StderrTarget = "capture",
        text: Literal[True],
        encoding: str | None = None,
        errors: str | None = None,
        leftovers: Leftovers = "kill",
        pty: Pty = False,
        kill_timeout: float = 5.0,
        timeout: float | None = None,
        max_output_size: int | None = None,
        chunk_size: int = 65536,
        cgroup: CgroupSpec = None,
        cwd: StrOrBytesPath | None = None,
        env: Env = None,
        check: bool = False,
    ) -> None: ...
    @overload
    def __init__(
        self: Command[str],
        executable: Arg,
        args: Iterable[Arg] = (),
        *,
        input: AsyncInput = None,
        stdin: StdinTarget = None,
        stdout: StdoutTarget = "capture",
        stderr: StderrTarget = "capture",
        text: bool = False,
        encoding: str,
        errors: str | None = None,
        leftovers: Leftovers = "kill",
        pty: Pty = False,
        kill_timeout: float = 5.0,
        timeout: float | None = None,
        max_output_size: int | None = None,
        chunk_size: int = 65536,
        cgroup: CgroupSpec = None,
        cwd: StrOrBytesPath | None = None,
        env: Env = None,
        check: bool = False,
    ) -> None: ...
    @overload
    def __init__(
        self: Command[str],
        executable: Arg,
        args: Iterable[Arg] = (),
        *,
        input: AsyncInput = None,
        stdin: StdinTarget = None,
        stdout: StdoutTarget = "capture",
        stderr: StderrTarget = "capture",
        text: bool = False,
        encoding: str | None = None,
        errors: str,
        leftovers: Leftovers = "kill",
        pty: Pty = False,
        kill_timeout: float = 5.0,
        timeout: float | None = None,
        max_output_size: int | None = None,
        chunk_size: int = 65536,
        cgroup: CgroupSpec = None,
        cwd: StrOrBytesPath | None = None,
        env: Env = None,
        check: bool = False,
    ) -> None: ...
    @overload
    def __init__(
        self: Command[bytes],
        executable: Arg,
        args: Iterable[Arg] = (),
        *,
        input: AsyncInput = None,
        stdin: StdinTarget = None,
        stdout: StdoutTarget = "capture",
        stderr: StderrTarget = "capture",
        text: Literal[False] = False,
        encoding: None = None,
        errors: None = None,
        leftovers: Leftovers = "kill",
        pty: Pty = False,
        kill_timeout: float = 5.0,
        timeout: float | None = None,
        max_output_size: int | None = None,
        chunk_size: int = 65536,
        cgroup: CgroupSpec = None,
        cwd: StrOrBytesPath | None = None,
        env: Env = None,
        check: bool = False,
    ) -> None: ...
    def __init__(self, executable: Arg, args: Any = (), **options: Any) -> None:
        if isinstance(args, (str, bytes)):
            args = (args,)
        argv, _ = argv_of((executable, *tuple(args)))
        validate("Command", options)
        self._argv = argv
        self._options = dict(options)

    @classmethod
    def _make(cls, argv: tuple[Any, ...], options: dict[str, Any]) -> Command[Any]:
        new = cls.__new__(cls)
        new._argv = argv
        new._options = options
        return new

    @property
    def argv(self) -> tuple[Arg, ...]:
        """The full argument vector, program first."""
        return self._argv

    @property
    def options(self) -> dict[str, object]:
        """A copy of the template's options."""
        return dict(self._options)

    def __call__(self, *more_args: Arg) -> Command[OutT]:
        argv, _ = argv_of((*self._argv, *more_args))
        return Command._make(argv, self._options)

    @overload
    def with_options(
        self: Command[OutT],
        *,
        input: AsyncInput = None,
        stdin: StdinTarget = None,
        stdout: StdoutTarget = "capture",
        stderr: StderrTarget = "capture",
        leftovers: Leftovers = "kill",
        pty: Pty = False,
        kill_timeout: float = 5.0,
        timeout: float | None = None,
        max_output_size: int | None = None,
        chunk_size: int = 65536,
        cgroup: CgroupSpec = None,
        cwd: StrOrBytesPath | None = None,
        env: Env = None,
        check: bool = False,
    ) -> Command[OutT]: ...
    @overload
    def with_options(
        self: Command[OutT],
        *,
        input: AsyncInput = None,
        stdin: StdinTarget = None,
        stdout: StdoutTarget = "capture",
        stderr: StderrTarget = "capture",
        text: Literal[True],
        encoding: str | None = None,
        errors: str | None = None,
        leftovers: Leftovers = "kill",
        pty: Pty = False,
        kill_timeout: float = 5.0,
        timeout: float | None = None,
        max_output_size: int | None = None,
        chunk_size: int = 65536,
        cgroup: CgroupSpec = None,
        cwd: StrOrBytesPath | None = None,
        env: Env = None,
        check: bool = False,
    ) -> Command[str]: ...
    @overload
    def with_options(
        self: Command[OutT],
        *,
        input: AsyncInput = None,
        stdin: StdinTarget = None,
        stdout: StdoutTarget = "capture",
        stderr: StderrTarget = "capture",
        text: bool = False,
        encoding: str,
        errors: str | None = None,
        leftovers: Leftovers = "kill",
        pty: Pty = False,
        kill_timeout: float = 5.0,
        timeout: float | None = None,
        max_output_size: int | None = None,
        chunk_size: int = 65536,
        cgroup: CgroupSpec = None,
        cwd: StrOrBytesPath | None = None,
        env: Env = None,
        check: bool = False,
    ) -> Command[str]: ...
    @overload
    def with_options(
        self: Command[OutT],
        *,
        input: AsyncInput = None,
        stdin: StdinTarget = None,
        stdout: StdoutTarget = "capture",
        stderr: StderrTarget = "capture",
        text: bool = False,
        encoding: str | None = None,
        errors: str,
        leftovers: Leftovers = "kill",
        pty: Pty = False,
        kill_timeout: float = 5.0,
        timeout: float | None = None,
        max_output_size: int | None = None,
        chunk_size: int = 65536,
        cgroup: CgroupSpec = None,
        cwd: StrOrBytesPath | None = None,
        env: Env = None,
        check: bool = False,
    ) -> Command[str]: ...
    @overload
    def with_options(
        self: Command[OutT],
        *,
        input: AsyncInput = None,
        stdin: StdinTarget = None,
        stdout: StdoutTarget = "capture",
        stderr: StderrTarget = "capture",
        text: bool = False,
        encoding: str | None = None,
        errors: str | None = None,
        leftovers: Leftovers = "kill",
        pty: Pty = False,
        kill_timeout: float = 5.0,
        timeout: float | None = None,
        max_output_size: int | None = None,
        chunk_size: int = 65536,
        cgroup: CgroupSpec = None,
        cwd: StrOrBytesPath | None = None,
        env: Env = None,
        check: bool = False,
    ) -> Command[bytes] | Command[str]: ...
    def with_options(self, **options: Any) -> Command[Any]:
        """A new template with ``options`` merged into this one's."""
        validate("Command", options)
        return Command._make(self._argv, {**self._options, **options})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Command):
            return NotImplemented
        return self._argv == other._argv and _freeze(self._options) == _freeze(other._options)

    def __hash__(self) -> int:
        return hash((self._argv, _freeze(self._options)))

    def __repr__(self) -> str:
        opts = "".join(f", {k}={v!r}" for k, v in self._options.items())
        return f"Command({list(self._argv)!r}{opts})"

    def __or__(self, other: Stage) -> Pipeline[bytes]:
        """``Command | Command``: a pipeline (see :func:`netrunner.pipe`)."""
        return _join(self, other)

    def __ror__(self, other: Argv) -> Pipeline[bytes]:
        return _join(other, self)

    def __setattr__(self, name: str, value: Any) -> None:
        if hasattr(self, "_options"):
            raise AttributeError("Command is immutable: use cmd(*args) or cmd.with_options(...)")
        object.__setattr__(self, name, value)


document(Command.__init__, "Command", params("self", "executable", args=()), inspect.Signature.empty, doc_of=Command)
document(Command.with_options, "Command", params("self"), "Command")


def resolve(entry: str, cmd: Any, options: dict[str, Any]) -> tuple[tuple[Any, ...], Any, Options]:
    """(args as given, encoded argv, validated options) for a call of
    ``entry``; for a pipeline, every stage's args and the plan of its stages
    in place of the argv (``_pipeline.handle_for`` starts either)."""
    if isinstance(cmd, Pipeline):
        return resolve_pipeline(entry, cmd, options)
    if isinstance(cmd, Command):
        options = {**cmd._options, **options}
        cmd = cmd._argv
    args, argv = argv_of(cmd)
    return args, argv, validate(entry, options)
