"""Signal names and numbers.

>>> resolve("term") == resolve("SIGTERM") == resolve(15) == signal.SIGTERM
True
"""

from __future__ import annotations

import signal as _signal

from ._errors import UnknownSignal

__all__ = ["resolve"]

_VALID = frozenset(int(s) for s in _signal.valid_signals())


def resolve(sig: int | str | _signal.Signals) -> int:
    """Return the signal number for ``sig``.

    ``sig`` is a :class:`signal.Signals`, an ``int`` that is a valid signal on
    this platform, or a name in any case with or without the ``SIG`` prefix
    (``"SIGTERM"``, ``"term"``). Anything else raises :class:`UnknownSignal`.
    """
    if isinstance(sig, _signal.Signals):
        return int(sig)
    if isinstance(sig, bool):
        raise UnknownSignal(f"unknown signal {sig!r}: pass a signal.Signals, a number or a name such as 'SIGTERM'")
    if isinstance(sig, int):
        if sig in _VALID:
            return sig
        raise UnknownSignal(f"{sig} is not a valid signal number on this platform")
    if isinstance(sig, str):
        name = sig.strip().upper()
        if not name.startswith("SIG"):
            name = "SIG" + name
        member = getattr(_signal.Signals, "__members__", {}).get(name)
        if member is not None and not name.startswith("SIG_"):
            return int(member)
        raise UnknownSignal(f"unknown signal name {sig!r}: use a name such as 'SIGTERM' or 'term'")
    raise UnknownSignal(
        f"unknown signal {sig!r} of type {type(sig).__name__}: pass a signal.Signals, an int or a name"
    )


def to_signals(num: int) -> _signal.Signals | int:
    """``signal.Signals`` for ``num`` when the enum has it, else the int."""
    try:
        return _signal.Signals(num)
    except ValueError:
        return num
