"""The types of the public signatures (SPEC section 15).

Only annotations use these names; at run time every value is checked by
``_options`` as before, with its clear errors. What a type checker makes of
them: a command is a sequence of arguments that is not itself a ``str`` or
``bytes`` (a shell line is flagged), each option has the type of the values
it accepts, and ``OutT`` -- ``bytes`` by default, ``str`` in text mode -- is
what a ``Result``, ``Stream`` or ``Process`` gives back as output.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Literal, Protocol, SupportsIndex, TypeAlias, TypeVar, Union, overload

if TYPE_CHECKING:
    from typing_extensions import TypeVar as _TypeVarWithDefault

    from ._cgroup import Cgroup
    from ._command import Command
    from ._pipeline import Pipeline
    from ._results import Result

    #: The output type: ``bytes``, or ``str`` in text mode (``text=True``,
    #: ``encoding=...``). ``Result``, ``Stream`` and ``Process`` without a
    #: parameter mean the ``bytes`` kind.
    OutT = _TypeVarWithDefault("OutT", bytes, str, default=bytes)
else:
    OutT = TypeVar("OutT", bytes, str)

_T_co = TypeVar("_T_co", covariant=True)


class SequenceNotStr(Protocol[_T_co]):
    """A sequence (a ``list``, a ``tuple``...) that is not a ``str`` or
    ``bytes``: their ``__contains__`` takes only a ``str`` (or buffer), so
    neither matches, and a shell line passed as ``cmd`` is a type error."""

    @overload
    def __getitem__(self, index: SupportsIndex, /) -> _T_co: ...
    @overload
    def __getitem__(self, index: slice, /) -> Sequence[_T_co]: ...
    def __contains__(self, value: object, /) -> bool: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[_T_co]: ...


class HasFileno(Protocol):
    """An object with ``fileno()``: an open file, a socket..."""

    def fileno(self) -> int: ...


class BinaryReadable(Protocol):
    """A binary file object, read in chunks."""

    def read(self, size: int, /) -> bytes: ...


#: One argument of a command.
Arg: TypeAlias = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]
#: A command as an argument vector (never a bare ``str``).
Argv: TypeAlias = SequenceNotStr[Arg]
#: Anything ``run``, ``stream`` and ``start`` accept as ``cmd``.
Cmd: TypeAlias = Union[Argv, "Command[bytes]", "Command[str]", "Pipeline[bytes]", "Pipeline[str]"]
#: A command whose output is ``bytes`` unless a text option is given.
BytesCmd: TypeAlias = Union[Argv, "Command[bytes]", "Pipeline[bytes]"]
#: A template or pipeline that sets text mode.
TextCmd: TypeAlias = Union["Command[str]", "Pipeline[str]"]
#: One command, not a pipeline (``Daemon``), likewise in its three kinds.
OneCmd: TypeAlias = Union[Argv, "Command[bytes]", "Command[str]"]
OneBytesCmd: TypeAlias = Union[Argv, "Command[bytes]"]
OneTextCmd: TypeAlias = "Command[str]"
#: A stage of a pipeline: an argv, a ``Command`` (which may not set text
#: mode: that is the pipeline's), or a pipeline whose stages are spliced in.
Stage: TypeAlias = Union[Argv, "Command[bytes]", "Pipeline[bytes]"]

#: A path (``cwd``).
StrOrBytesPath: TypeAlias = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]
#: ``input`` of the blocking calls.
Input: TypeAlias = bytes | bytearray | memoryview | str | Iterable[bytes | str] | BinaryReadable | None
#: ``input`` of the asyncio twins: an async iterable too (an ``aio.Stream`` included).
AsyncInput: TypeAlias = Input | AsyncIterable[bytes | str]
#: ``stdin``: a pipe (``None``), the interpreter's, ``/dev/null``, an fd or a file.
StdinTarget: TypeAlias = Literal["inherit", "discard"] | int | HasFileno | None
#: ``stdout``: captured, the interpreter's, ``/dev/null``, an fd or a file.
StdoutTarget: TypeAlias = Literal["capture", "inherit", "discard"] | int | HasFileno | None
#: ``stderr``: captured, merged into stdout, ``/dev/null``, the interpreter's, an fd or a file.
StderrTarget: TypeAlias = Literal["capture", "redirect", "discard", "inherit"] | int | HasFileno | None
#: ``leftovers``.
Leftovers: TypeAlias = Literal["kill", "detach"]
#: ``pty``: ``True``, or the terminal's ``(rows, cols)``.
Pty: TypeAlias = bool | tuple[int, int]
#: ``cgroup``: a path under netrunner's cgroup, or a ``Cgroup``.
CgroupSpec: TypeAlias = Union[str, "Cgroup", None]
#: ``env``: replaces the environment.
Env: TypeAlias = Mapping[str, StrOrBytesPath] | Mapping[bytes, StrOrBytesPath] | None
#: ``restart`` of a ``Daemon``.
RestartPolicy: TypeAlias = Literal["never", "no", "on-failure", "always"]
#: ``on_output`` of a ``Daemon`` whose output is ``bytes`` / ``str``.
OnOutputBytes: TypeAlias = Literal["discard", "log"] | Callable[[bytes], object]
OnOutputText: TypeAlias = Literal["discard", "log"] | Callable[[str], object]
OnOutputEither: TypeAlias = Literal["discard", "log"] | Callable[[bytes | str], object]
#: ``on_exit`` of a ``Daemon``.
OnExitBytes: TypeAlias = Callable[["Result[bytes]"], object] | None
OnExitText: TypeAlias = Callable[["Result[str]"], object] | None
OnExitEither: TypeAlias = Callable[["Result[bytes] | Result[str]"], object] | None
