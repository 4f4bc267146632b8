"""``Command``: a frozen, reusable command template (SPEC section 7)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ._options import Options, argv_of, validate
from ._pipeline import Pipeline, _join, resolve_pipeline


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


class Command:
    """A program, its arguments and options, ready to pass to ``run``,
    ``stream``, ``start`` (or their ``aio`` twins).

    ``cmd("more", "args")`` returns a new ``Command`` with arguments appended;
    ``cmd.with_options(**opts)`` one with options merged. Options given at the
    call site override the template's.
    """

    __slots__ = ("_argv", "_options")

    def __init__(self, executable: str | bytes | os.PathLike[str], args: Any = (), **options: Any) -> None:
        if isinstance(args, (str, bytes)):
            args = (args,)
        argv, _ = argv_of((executable, *tuple(args)))
        validate("Command", options)
        self._argv = argv
        self._options = dict(options)

    @classmethod
    def _make(cls, argv: tuple[Any, ...], options: dict[str, Any]) -> Command:
        new = cls.__new__(cls)
        new._argv = argv
        new._options = options
        return new

    @property
    def argv(self) -> tuple[Any, ...]:
        """The full argument vector, program first."""
        return self._argv

    @property
    def options(self) -> dict[str, Any]:
        """A copy of the template's options."""
        return dict(self._options)

    def __call__(self, *more_args: Any) -> Command:
        argv, _ = argv_of((*self._argv, *more_args))
        return Command._make(argv, self._options)

    def with_options(self, **options: Any) -> Command:
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

    def __or__(self, other: Any) -> Pipeline:
        """``Command | Command``: a pipeline (see :func:`netrunner.pipe`)."""
        return _join(self, other)

    def __ror__(self, other: Any) -> Pipeline:
        return _join(other, self)

    def __setattr__(self, name: str, value: Any) -> None:
        if hasattr(self, "_options"):
            raise AttributeError("Command is immutable: use cmd(*args) or cmd.with_options(...)")
        object.__setattr__(self, name, value)


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
