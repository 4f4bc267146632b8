"""netrunner: safe OS process execution.

Nothing it starts outlives its owner; output streams with backpressure;
whole process trees are stopped; the same API for threads and asyncio
(:mod:`netrunner.aio`).
"""

from . import signals
from ._cgroup import Cgroup
from ._command import Command
from ._errors import (
    AbnormalExit,
    CgroupUnavailable,
    InvalidCgroup,
    InvalidCommand,
    NetRunnerError,
    OutputLimitExceeded,
    ProcessError,
    ShepherdError,
    StdinClosed,
    Timeout,
    UnknownSignal,
)
from ._pipeline import Pipeline, pipe
from ._results import Result, Stats
from ._sync import Daemon, Process, Stream, run, start, stream

__version__ = "0.1.0"

__all__ = [
    "AbnormalExit",
    "Cgroup",
    "CgroupUnavailable",
    "Command",
    "Daemon",
    "InvalidCgroup",
    "InvalidCommand",
    "NetRunnerError",
    "OutputLimitExceeded",
    "Pipeline",
    "Process",
    "ProcessError",
    "Result",
    "ShepherdError",
    "Stats",
    "StdinClosed",
    "Stream",
    "Timeout",
    "UnknownSignal",
    "pipe",
    "run",
    "signals",
    "start",
    "stream",
]
