"""netrunner for async code: the names of :mod:`netrunner`, as coroutines, on
asyncio (any loop), trio or anyio -- whichever runs the caller
(docs/async-libraries.md).

``run`` and ``start`` are awaited; ``stream`` is not (use ``async with``);
``Process`` has coroutine ``write``/``read``/``read_stderr``/``wait``/``stop``/
``communicate``/``aclose`` and plain ``close_stdin``/``send_signal``/
``terminate``/``kill``/``poll``/``set_window_size``.
"""

from .._async import Daemon, Process, Stream, run, start, stream

__all__ = ["Daemon", "Process", "Stream", "run", "start", "stream"]
