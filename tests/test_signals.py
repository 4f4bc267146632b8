"""SPEC section 10: ``netrunner.signals.resolve``."""

from __future__ import annotations

import signal

import pytest

import netrunner
from netrunner import signals


@pytest.mark.parametrize(
    "value",
    [signal.SIGTERM, 15, "SIGTERM", "term", "Term", "sigterm", "TERM", "SigTerm", "sIgTeRm"],
)
def test_resolve_sigterm_spellings(value) -> None:  # type: ignore[no-untyped-def]
    result = signals.resolve(value)
    assert result == signal.SIGTERM
    assert isinstance(result, int)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("SIGKILL", signal.SIGKILL),
        ("kill", signal.SIGKILL),
        ("hup", signal.SIGHUP),
        ("int", signal.SIGINT),
        ("usr1", signal.SIGUSR1),
        ("SIGUSR2", signal.SIGUSR2),
        ("chld", signal.SIGCHLD),
        ("winch", signal.SIGWINCH),
        ("pipe", signal.SIGPIPE),
        ("sigstop", signal.SIGSTOP),
        ("cont", signal.SIGCONT),
        (signal.SIGINT, signal.SIGINT),
    ],
)
def test_resolve_names(value, expected: signal.Signals) -> None:  # type: ignore[no-untyped-def]
    assert signals.resolve(value) == int(expected)


def test_resolve_every_signals_member() -> None:
    for sig in signal.Signals:
        assert signals.resolve(sig) == int(sig)
        assert signals.resolve(sig.name) == int(sig)
        assert signals.resolve(sig.name.lower()) == int(sig)
        assert signals.resolve(sig.name[3:].lower()) == int(sig)


def test_resolve_every_valid_int() -> None:
    for num in signal.valid_signals():
        assert signals.resolve(int(num)) == int(num)


def test_resolve_realtime_signals() -> None:
    assert signals.resolve(signal.SIGRTMIN) == int(signal.SIGRTMIN)
    assert signals.resolve("rtmin") == int(signal.SIGRTMIN)
    assert signals.resolve(int(signal.SIGRTMIN) + 1) == int(signal.SIGRTMIN) + 1


@pytest.mark.parametrize(
    "value", ["SIGFOO", "foo", "", "SIG", "sig", "SIG_IGN", "SIG_DFL", "SIGTERMX", "-15", "kill -9", "SIGRTMAX+1"]
)
def test_unknown_names(value: str) -> None:
    with pytest.raises(netrunner.UnknownSignal) as ei:
        signals.resolve(value)
    assert isinstance(ei.value, ValueError)


@pytest.mark.parametrize(("value", "meaning"), [(" TERM", 15), ("15", 15), ("9", 9)])
def test_borderline_strings_never_mean_another_signal(value: str, meaning: int) -> None:
    # not names in the SPEC's sense: rejecting them is right, and accepting them
    # is tolerated only if they mean the obvious signal
    try:
        assert signals.resolve(value) == meaning
    except netrunner.UnknownSignal:
        pass


@pytest.mark.parametrize("value", [0, -1, -15, 65, 1000, 2**31, 2**64, -(2**64)])
def test_invalid_numbers(value: int) -> None:
    with pytest.raises(netrunner.UnknownSignal) as ei:
        signals.resolve(value)
    assert isinstance(ei.value, ValueError)


@pytest.mark.parametrize("value", [None, 15.0, 1.5, [15], (15,), {"sig": 15}, b"TERM", object()])
def test_wrong_types(value) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(netrunner.UnknownSignal) as ei:
        signals.resolve(value)
    assert isinstance(ei.value, ValueError)
    assert isinstance(ei.value, netrunner.NetRunnerError)


def test_unknown_signal_message_names_the_value() -> None:
    with pytest.raises(netrunner.UnknownSignal) as ei:
        signals.resolve("SIGBOGUS")
    assert "SIGBOGUS" in str(ei.value)


def test_signals_module_is_reachable_from_package() -> None:
    assert netrunner.signals is signals
    assert callable(netrunner.signals.resolve)
