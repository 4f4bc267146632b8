"""Pipelines (SPEC section 16): ``pipe(cmd1, cmd2, ...)`` and ``cmd1 | cmd2``.

A pipeline runs each stage as an ordinary command, with its own shepherd and
process group, joined to its neighbours by kernel pipes that are handed to the
shepherds fd to fd: no byte passes through Python between stages. Python
holds only the pipeline's ends: the first stage's stdin, the last stage's
stdout and one stderr pipe that every stage writes to.

:class:`PipelineHandle` presents those ends and the stages' combined life as
one :class:`~netrunner._engine.Handle`, so every flow of the engine (reading,
writing, collecting, waiting, stopping) serves a pipeline unchanged: a stop
or a signal goes to every stage, and the pipeline is done when every stage
is.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Generic, Literal, overload

from . import _lifetime
from ._core import codec
from ._core.state import Phase, ProcessCore
from ._engine import Flow, Handle, _grow_pipe
from ._errors import ShepherdError
from ._help import document
from ._io import attrs as read_attrs
from ._io import fds
from ._options import Options, argv_of, validate
from ._results import Stats, decode_status

if TYPE_CHECKING:
    from ._types import Env, Input, Leftovers, OutT, Stage, StderrTarget, StdinTarget, StdoutTarget, StrOrBytesPath
else:
    from ._types import OutT

#: Options a stage's own ``Command`` may carry: they concern that stage only.
#: The others (input and stdio, text, timeout, check, ...) belong to the
#: whole pipeline and are given to ``pipe()`` or at the call.
STAGE_OPTIONS = frozenset({"env", "cwd", "kill_timeout", "leftovers", "cgroup"})
#: Pipeline-wide options that are also each stage's default.
_STAGE_DEFAULTS = frozenset({"env", "cwd", "kill_timeout", "leftovers"})


class Pipeline(Generic[OutT]):
    """Commands joined stdout to stdin, as a shell's ``a | b | c``; accepted
    by ``run``, ``stream``, ``start`` and their ``aio`` twins in place of a
    command. Made by :func:`netrunner.pipe` or ``Command | Command``; frozen.
    ``Pipeline[str]`` when ``pipe()`` was given text mode.
    """

    __slots__ = ("_stages", "_options")

    _stages: tuple[Any, ...]
    _options: dict[str, Any]

    def __init__(self) -> None:
        raise TypeError("Pipeline objects come from netrunner.pipe() or Command | Command")

    @classmethod
    def _make(cls, stages: tuple[Any, ...], options: dict[str, Any]) -> Pipeline[Any]:
        new = object.__new__(cls)
        object.__setattr__(new, "_stages", stages)
        object.__setattr__(new, "_options", options)
        return new

    @property
    def stages(self) -> tuple[Any, ...]:
        """The stages, each a ``Command`` or an argv tuple, in order."""
        return self._stages

    @property
    def options(self) -> dict[str, Any]:
        """A copy of the pipeline-wide options given to ``pipe()``."""
        return dict(self._options)

    def __or__(self, other: Stage) -> Pipeline[OutT]:
        return _join(self, other)

    def __ror__(self, other: Stage) -> Pipeline[OutT]:
        return _join(other, self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Pipeline):
            return NotImplemented
        from ._command import _freeze

        return self._stages == other._stages and _freeze(self._options) == _freeze(other._options)

    def __hash__(self) -> int:
        from ._command import _freeze

        return hash((self._stages, _freeze(self._options)))

    def __repr__(self) -> str:
        stages = ", ".join(repr(s if not isinstance(s, tuple) else list(s)) for s in self._stages)
        opts = "".join(f", {k}={v!r}" for k, v in self._options.items())
        return f"pipe({stages}{opts})"

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Pipeline is immutable: use pipe(...) or |")


@overload
def pipe(
    *cmds: Stage,
    input: Input = ...,
    stdin: StdinTarget = ...,
    stdout: StdoutTarget = ...,
    stderr: StderrTarget = ...,
    text: Literal[False] = ...,
    encoding: None = ...,
    errors: None = ...,
    leftovers: Leftovers = ...,
    kill_timeout: float = ...,
    timeout: float | None = ...,
    max_output_size: int | None = ...,
    chunk_size: int = ...,
    cwd: StrOrBytesPath | None = ...,
    env: Env = ...,
    check: bool = ...,
) -> Pipeline[bytes]: ...
@overload
def pipe(
    *cmds: Stage,
    input: Input = ...,
    stdin: StdinTarget = ...,
    stdout: StdoutTarget = ...,
    stderr: StderrTarget = ...,
    text: Literal[True],
    encoding: str | None = ...,
    errors: str | None = ...,
    leftovers: Leftovers = ...,
    kill_timeout: float = ...,
    timeout: float | None = ...,
    max_output_size: int | None = ...,
    chunk_size: int = ...,
    cwd: StrOrBytesPath | None = ...,
    env: Env = ...,
    check: bool = ...,
) -> Pipeline[str]: ...
@overload
def pipe(
    *cmds: Stage,
    input: Input = ...,
    stdin: StdinTarget = ...,
    stdout: StdoutTarget = ...,
    stderr: StderrTarget = ...,
    text: bool = ...,
    encoding: str,
    errors: str | None = ...,
    leftovers: Leftovers = ...,
    kill_timeout: float = ...,
    timeout: float | None = ...,
    max_output_size: int | None = ...,
    chunk_size: int = ...,
    cwd: StrOrBytesPath | None = ...,
    env: Env = ...,
    check: bool = ...,
) -> Pipeline[str]: ...
def pipe(*cmds: Any, **options: Any) -> Pipeline[Any]:
    """A pipeline of ``cmds`` (argv lists or ``Command``\\ s, at least two),
    each stage's stdout joined to the next one's stdin by a kernel pipe.

    ``options`` apply to the whole pipeline, as if given at the call (which
    overrides them): ``input``/``stdin`` feed the first stage, ``stdout``
    takes the last one's, ``stderr`` applies to every stage (captured, it is
    the stages' stderr merged), ``env``, ``cwd``, ``kill_timeout`` and
    ``leftovers`` are every stage's unless its ``Command`` says otherwise;
    ``timeout``, ``max_output_size`` and ``check`` cover every stage.
    """
    if options.get("check", False) is None:  # the entry point's default, as help() shows it
        del options["check"]
    stages = _flatten(cmds)
    if len(stages) < 2:
        raise TypeError(f"pipe() needs at least two commands, got {len(stages)}: run a single command as it is")
    if "pty" in options and options["pty"] not in (None, False):
        raise TypeError("pipe(): option 'pty' does not apply to a pipeline; run one command on a terminal instead")
    validate("Command", options)  # names and values; the entry point checks the rest
    return Pipeline._make(stages, dict(options))


def _flatten(cmds: Iterable[Any]) -> tuple[Any, ...]:
    from ._command import Command

    out: list[Any] = []
    for i, cmd in enumerate(cmds):
        if isinstance(cmd, Pipeline):
            if cmd._options:
                raise TypeError(
                    "a pipeline with options cannot be a stage of another: give the options to the outer pipe()"
                )
            out.extend(cmd._stages)
        elif isinstance(cmd, Command):
            _stage_options(cmd._options, i)
            out.append(cmd)
        else:
            args, _ = argv_of(cmd)
            out.append(tuple(args))
    return tuple(out)


def _join(left: Any, right: Any) -> Pipeline[Any]:
    options: dict[str, Any] = {}
    for side in (left, right):
        if isinstance(side, Pipeline):
            options.update(side._options)
    parts = [s._stages if isinstance(s, Pipeline) else (s,) for s in (left, right)]
    return Pipeline._make(_flatten([*parts[0], *parts[1]]), options)


def _stage_options(options: dict[str, Any], index: int) -> None:
    for name in options:
        if name not in STAGE_OPTIONS:
            raise TypeError(
                f"pipeline stage {index}: option {name!r} applies to the whole pipeline: give it to pipe() or "
                f"at the call (a stage's Command may carry {', '.join(sorted(STAGE_OPTIONS))})"
            )


@dataclasses.dataclass(frozen=True)
class Plan:
    """A resolved pipeline: each stage's (args, encoded argv, options)."""

    stages: tuple[tuple[tuple[Any, ...], list[bytes], Options], ...]


def resolve_pipeline(
    entry: str, pipeline: Pipeline[Any], options: dict[str, Any]
) -> tuple[tuple[Any, ...], Plan, Options]:
    """(every stage's args, the plan, the pipeline's options) for ``entry``."""
    from ._command import Command

    if entry == "Daemon":
        raise TypeError("Daemon() supervises one command, not a pipeline: supervise e.g. ['sh', '-c', 'a | b']")
    given = {**pipeline._options, **options}
    if given.get("pty") not in (None, False):
        raise TypeError(f"{entry}(): option 'pty' does not apply to a pipeline")
    if given.get("cgroup") is not None:
        raise TypeError(
            f"{entry}(): a pipeline has no cgroup of its own: give each stage one, e.g. "
            "Command('sort', cgroup='jobs/sort') | ..."
        )
    opts = validate(entry, given)
    defaults = {k: v for k, v in given.items() if k in _STAGE_DEFAULTS}
    stages = []
    for i, stage in enumerate(pipeline._stages):
        if isinstance(stage, Command):
            _stage_options(stage._options, i)
            raw = {**defaults, **stage._options}
            argv_given: Sequence[Any] = stage._argv
        else:
            raw, argv_given = defaults, stage
        args, argv = argv_of(argv_given)
        stages.append((args, argv, validate("start", raw)))
    return tuple(s[0] for s in stages), Plan(tuple(stages)), opts


class PipelineCore(ProcessCore):
    """The stages' combined life, read like one command's: done when every
    stage is, its status the rightmost non-zero stage's (``pipefail``), its
    counters the pipeline's own ends."""

    __slots__ = ("stages",)

    def __init__(self, stages: list[ProcessCore], started_at: datetime, now: float) -> None:
        # No ProcessCore.__init__: the phase and the status are the stages'.
        self.stages = stages
        self.started_at = started_at
        self.t_start = now
        self.bytes_in = self.bytes_out = self.bytes_err = 0
        self.read_count = self.write_count = 0
        self.observes_in = self.observes_out = self.observes_err = True
        self.err_dropped = 0

    @property
    def phase(self) -> Phase:  # type: ignore[override]
        phases = [s.phase for s in self.stages]
        for busy in (Phase.STARTING, Phase.RUNNING):
            if busy in phases:
                return busy
        for bad in (Phase.FAILED, Phase.LOST):
            if bad in phases:
                return bad
        return Phase.EXITED

    @property
    def status(self) -> int | None:  # type: ignore[override]
        statuses = [s.status for s in self.stages]
        if None in statuses:
            return None
        for status in reversed(statuses):
            assert status is not None
            if decode_status(status)[0] != 0:
                return status
        return statuses[-1]

    @property
    def t_end(self) -> float | None:  # type: ignore[override]
        ends = [s.t_end for s in self.stages]
        return None if None in ends else max(ends)  # type: ignore[type-var]

    @property
    def pid(self) -> int | None:  # type: ignore[override]
        return self.stages[-1].pid  # as a shell's $!

    @property
    def exec_error(self) -> codec.ExecFailed | None:  # type: ignore[override]
        return next((s.exec_error for s in self.stages if s.exec_error is not None), None)

    @property
    def fault(self) -> str | None:  # type: ignore[override]
        return next((s.fault for s in self.stages if s.fault is not None), None)

    @property
    def pipestatus(self) -> tuple[int, ...] | None:
        codes = [s.returncode for s in self.stages]
        return None if None in codes else tuple(codes)  # type: ignore[arg-type]

    def stats(self, now: float) -> Stats:
        stages = [s.stats(now) for s in self.stages]
        exited = self.status is not None
        end = self.t_end if self.t_end is not None else now
        peaks = [s.peak_memory for s in stages if s.peak_memory is not None]
        ooms = [s.oom_killed for s in stages if s.oom_killed is not None]
        return Stats(
            bytes_in=self.bytes_in if self.observes_in else None,
            bytes_out=self.bytes_out if self.observes_out else None,
            bytes_err=self.bytes_err if self.observes_err else None,
            read_count=self.read_count,
            write_count=self.write_count,
            started_at=self.started_at,
            duration=end - self.t_start,
            returncode=self.returncode,
            exit_status=self.exit_status,
            cpu_user=sum(s.cpu_user or 0.0 for s in stages) if exited else None,
            cpu_system=sum(s.cpu_system or 0.0 for s in stages) if exited else None,
            max_rss=max(s.max_rss or 0 for s in stages) if exited else None,
            peak_memory=sum(peaks) if peaks else None,
            oom_killed=any(ooms) if ooms else None,
            bytes_err_dropped=self.err_dropped if self.observes_err else None,
        )


class PipelineHandle(Handle):
    """A running pipeline, as one handle: its own fds are the pipeline's
    ends; its control is every stage's."""

    __slots__ = ("stages", "_stopping")

    staged = True
    stages: list[Handle]
    core: PipelineCore

    def __init__(
        self, args: tuple[Any, ...], plan: Plan, opts: Options, *, keep_stdin: bool,
        lazy_reap: bool = False, stream_pipe: bool = False, drain_stderr: bool = False,
        hold_output: bool = False, thread: read_attrs.Thread | None = None,
    ) -> None:
        """Start every stage; the spawn requests all go out before any
        answer is awaited (``flow_started``). ``hold_output`` as for a
        :class:`Handle`: the pipeline's own output pipes."""
        _lifetime.reap_detached()
        started_at, t_start = datetime.now(timezone.utc), time.monotonic()
        self.args = args
        self.opts = opts
        self.lazy_reap = lazy_reap
        self.owner_pid = os.getpid()
        self.pidfd = None
        self.placement = None
        self.tty = False
        self.last_in = None
        self.attrs_sent = None
        self.shepherd_pid = 0
        self.reaped = False
        self.stdin_fd = self.stdout_fd = self.stderr_fd = None
        self.held = []
        self.passed = []  # the stages hold their own
        self.closed = False
        self.stages = []
        self._stopping = False
        if thread is None:
            thread = read_attrs.thread_attrs()  # every stage gets the caller's nice value and affinity
        ours: list[int] = []  # the commands' ends: closed once every shepherd has its copy
        try:
            stdin: str | int = opts.stdin
            if stdin == "pipe" and keep_stdin:
                stdin, self.stdin_fd = fds.pipe()
                ours.append(stdin)
            elif stdin == "pipe":  # at its end from the start
                stdin = "discard"
            stdout: str | int = opts.stdout
            if stdout == "capture":
                self.stdout_fd, stdout = fds.pipe()
                (self.held if hold_output else ours).append(stdout)
                if stream_pipe:
                    _grow_pipe(stdout)
            stderr: str | int = opts.stderr
            if stderr == "capture":
                self.stderr_fd, stderr = fds.pipe()
                (self.held if hold_output else ours).append(stderr)
            last = len(plan.stages) - 1
            for i, (stage_args, argv, stage_opts) in enumerate(plan.stages):
                out: str | int
                if i < last:
                    next_stdin, out = fds.pipe()
                    ours += (next_stdin, out)
                else:
                    out = stdout
                self.stages.append(Handle(
                    stage_args, argv,
                    dataclasses.replace(stage_opts, stdin=stdin, stdout=out, stderr=stderr),
                    keep_stdin=False, lazy_reap=lazy_reap, thread=thread,
                ))
                if i < last:
                    stdin = next_stdin
        except BaseException:
            for h in self.stages:
                h.release()  # its shepherd stops what it started
            for fd in (self.stdin_fd, self.stdout_fd, self.stderr_fd, *self.held):
                if fd is not None:
                    fds.close(fd)
            raise
        finally:
            for fd in ours:
                fds.close(fd)
        self.core = PipelineCore([h.core for h in self.stages], started_at, t_start)
        self._init_io(keep_stdin, drain_stderr)  # the stages fork spares (or give theirs back) themselves

    # --- control: every stage's -----------------------------------------------

    def control_fds(self) -> tuple[int, ...]:
        return tuple(h.ctl_fd for h in self.stages if h.ctl_open)

    @property
    def ctl_open(self) -> bool:  # type: ignore[override]
        return any(h.ctl_open for h in self.stages)

    @property
    def finished(self) -> bool:
        return all(h.finished for h in self.stages)

    def pump_control(self, drain: bool = True) -> None:
        """Every stage's news. A stage that failed to start or lost its
        shepherd stops the others: the pipeline cannot go on without it."""
        for h in self.stages:
            h.pump_control(drain)
        if not self._stopping and any(h.core.phase in (Phase.FAILED, Phase.LOST) for h in self.stages):
            self._stopping = True
            self.send(codec.encode_stop(None))

    def send(self, frame: bytes) -> None:
        """A stop or a signal concerns every stage still running."""
        for h in self.stages:
            h.send(frame)

    def flow_started(self) -> Flow:
        """Wait until every stage has started; if one could not, stop the
        others and raise its error."""
        while True:
            self.pump_control()
            ctl = self.control_fds()  # before the check: see _engine's invariants
            if all(h.core.phase is not Phase.STARTING for h in self.stages):
                break
            yield (ctl, (), None)
        if any(h.core.phase in (Phase.FAILED, Phase.LOST) for h in self.stages):
            yield from self.flow_stop(None)
            self.release()
            if self.core.exec_error is not None:
                raise self.exec_error()
            raise self.shepherd_error()

    def flow_reap(self) -> Flow:
        for h in self.stages:
            yield from h.flow_reap()

    def reap(self) -> None:
        for h in self.stages:
            h.reap()

    def _close_ends(self) -> None:
        """Close the pipeline's own ends (the stages' fds are theirs)."""
        self.close_stdin()
        with fds.lock:  # several threads may release at once: each fd is closed once
            mine = (self.stdout_fd, self.stderr_fd)
            self.stdout_fd = self.stderr_fd = None
            fds.close_all(mine)
        self._close_held()

    def close_fds(self) -> None:
        self._close_ends()
        for h in self.stages:
            h.close_fds()

    def release(self) -> None:
        if self.foreign:
            return
        self.out_eof = self.err_eof = True
        self._close_ends()
        for h in self.stages:
            h.release()

    def exec_error(self) -> OSError:
        failed = next(h for h in self.stages if h.core.phase is Phase.FAILED)
        return failed.exec_error()

    def shepherd_error(self) -> ShepherdError:
        lost = next((h for h in self.stages if h.core.phase is Phase.LOST), self.stages[-1])
        return lost.shepherd_error()

    def stage_stats(self) -> tuple[Stats, ...]:
        now = time.monotonic()
        return tuple(h.core.stats(now) for h in self.stages)



def handle_for(args: tuple[Any, ...], argv: list[bytes] | Plan, opts: Options, **kw: Any) -> Handle:
    """Start what ``resolve`` returned: one command, or a pipeline."""
    if isinstance(argv, Plan):
        return PipelineHandle(args, argv, opts, **kw)
    return Handle(args, argv, opts, **kw)


document(pipe, "pipe", [inspect.Parameter("cmds", inspect.Parameter.VAR_POSITIONAL)], "Pipeline")
