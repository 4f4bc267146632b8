"""Timeouts everywhere they are accepted: a method's ``timeout`` (None or
``float("inf")`` waits for ever, as ``Popen.wait`` does; a wrong type is a
``TypeError``, a negative number or NaN a ``ValueError``), and the message
of the ``Timeout`` of ``run`` and ``stream``, which says both ``timeout`` and
``kill_timeout`` (SPEC 2)."""

from __future__ import annotations

import math
import pickle
from typing import Any

import pytest
from helpers_aio import arun

import netrunner
import netrunner.aio


def test_an_infinite_timeout_waits_for_ever_in_every_method(marker: str) -> None:
    inf = math.inf
    with netrunner.start(["sh", "-c", "echo one; echo two; echo err >&2; printf 'end>'; exit 3"]) as p:
        assert p.readline(timeout=inf) == b"one\n"
        assert p.read_until(b"two\n", timeout=inf) == b"two\n"
        assert p.read_until(b">", timeout=inf) == b"end>"
        assert p.read_stderr(timeout=inf) == b"err\n"
        assert p.read(timeout=inf) == b""
        assert p.wait(timeout=inf) == 3
        assert p.communicate(timeout=inf) == (b"", b"")


def test_an_infinite_timeout_waits_for_ever_in_aio(marker: str) -> None:
    async def main() -> None:
        async with await netrunner.aio.start(["sh", "-c", "echo one; exit 4"]) as p:
            assert await p.readline(timeout=math.inf) == b"one\n"
            assert await p.wait(timeout=math.inf) == 4

    arun(main())


@pytest.mark.parametrize(
    ("bad", "error", "says"),
    [
        *((bad, TypeError, "timeout must be a number of seconds") for bad in ("1", b"1", [1], True)),
        *((bad, ValueError, "timeout must be a number of seconds >= 0") for bad in (-1, -0.5, math.nan, -math.inf)),
    ],
)
def test_a_bad_method_timeout_is_refused(marker: str, bad: Any, error: type[Exception], says: str) -> None:
    # A wrong type is a TypeError; a negative number or NaN a ValueError.
    with netrunner.start(["cat"]) as p:
        for call in (
            lambda: p.read(timeout=bad), lambda: p.readline(timeout=bad),
            lambda: p.wait(timeout=bad), lambda: p.communicate(timeout=bad),
        ):
            with pytest.raises(error, match=says):
                call()
        p.close_stdin()
        assert p.wait(timeout=10) == 0


def test_the_timeout_of_run_names_both_timeout_and_kill_timeout(marker: str) -> None:
    with pytest.raises(netrunner.Timeout) as ei:
        netrunner.run(["sleep", "30"], timeout=0.2, kill_timeout=1.5)
    err = ei.value
    assert (err.timeout, err.kill_timeout) == (0.2, 1.5)
    assert str(err) == (
        "Command ['sleep', '30'] timed out after 0.2 seconds; "
        "its tree was stopped (SIGTERM, then SIGKILL after kill_timeout=1.5 seconds)"
    )
    again = pickle.loads(pickle.dumps(err))
    assert (type(again), again.kill_timeout, str(again)) == (netrunner.Timeout, 1.5, str(err))


def test_the_timeout_of_aio_run_names_both(marker: str) -> None:
    async def main() -> None:
        with pytest.raises(netrunner.Timeout) as ei:
            await netrunner.aio.run(["sleep", "30"], timeout=0.2)
        assert ei.value.kill_timeout == 5.0  # the default
        assert "kill_timeout=5 seconds" in str(ei.value)

    arun(main())


def test_a_wait_that_times_out_says_nothing_of_a_stop(marker: str) -> None:
    # Only the wait ended: the command runs on, and the message says no more.
    with netrunner.start(["sleep", "30"]) as p:
        with pytest.raises(netrunner.Timeout) as ei:
            p.wait(timeout=0.1)
        assert ei.value.kill_timeout is None
        assert str(ei.value) == "Command ['sleep', '30'] timed out after 0.1 seconds"
        assert p.poll() is None
