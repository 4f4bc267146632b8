"""Timeouts everywhere they are accepted: a method's ``timeout`` and the
``timeout`` option (None or ``float("inf")`` is no limit, as in
``Popen.wait``; a wrong type is a ``TypeError``, a negative number or NaN a
``ValueError``), and the message of the ``Timeout`` of ``run`` and
``stream``, which says both ``timeout`` and ``kill_timeout`` (SPEC 2)."""

from __future__ import annotations

import math
import pickle
import threading
import time
from typing import Any

import pytest
from helpers_aio import arun

import netrunner
import netrunner._drivers
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


def test_an_infinite_timeout_option_is_no_limit(marker: str) -> None:
    # As for the methods: float("inf") is the same as None, in run, stream,
    # their aio twins and a Command's options.
    cmd = ["sh", "-c", f": {marker}; echo out; exit 3"]
    assert netrunner.run(cmd, timeout=math.inf).returncode == 3
    with netrunner.stream(cmd, timeout=math.inf, check=False) as s:
        assert list(s.lines()) == [b"out\n"]
    assert s.result is not None and s.result.returncode == 3
    assert netrunner.run(netrunner.Command("sh", cmd[1:], timeout=math.inf)).stdout == b"out\n"

    async def main() -> None:
        assert (await netrunner.aio.run(cmd, timeout=math.inf)).returncode == 3

    arun(main())
    for entry in (netrunner.run, netrunner.stream):
        with pytest.raises(ValueError, match="option 'timeout' must be a number of seconds > 0, got -inf"):
            entry(cmd, timeout=-math.inf)


# Longer than poll() can wait at once (an int of milliseconds: 24.8 days), than
# threading.TIMEOUT_MAX (292 years), and than a time_t of milliseconds.
HUGE_TIMEOUTS = [60 * 86_400.0, 1e12, 1e300]


@pytest.mark.parametrize("huge", HUGE_TIMEOUTS)
def test_a_timeout_longer_than_one_wait_can_last_is_waited_in_steps(marker: str, huge: float) -> None:
    cmd = ["sh", "-c", f": {marker}; sleep 0.2; echo out; exit 3"]
    assert netrunner.run(cmd, timeout=huge).stdout == b"out\n"
    with netrunner.stream(cmd, timeout=huge, check=False) as s:
        assert b"".join(s) == b"out\n"
    with netrunner.start(cmd) as p:
        # The second reader waits for the lock the first one holds, with the same timeout.
        got: list[bytes] = []
        other = threading.Thread(target=lambda: got.append(p.read(timeout=huge)))
        other.start()
        got.append(p.read(timeout=huge))
        other.join(10)
        assert sorted(got) == [b"", b"out\n"]
        assert p.wait(timeout=huge) == 3
        assert p.communicate(timeout=huge) == (b"", b"")
    with netrunner.Daemon(cmd, restart="never") as d:
        assert d.wait(timeout=huge) is True

    async def main() -> None:
        assert (await netrunner.aio.run(cmd, timeout=huge)).stdout == b"out\n"
        async with await netrunner.aio.start(cmd) as p:
            assert await p.wait(timeout=huge) == 3

    arun(main())


def test_a_wait_in_steps_ends_at_its_deadline_not_at_a_step(marker: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Steps of 50 ms: each wait wakes several times before its deadline or its news.
    monkeypatch.setattr(netrunner._drivers, "LONGEST_WAIT", 0.05)
    with netrunner.start(["sh", "-c", f": {marker}; sleep 0.4; echo late; exec sleep 100"]) as p:
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            p.read(timeout=0.2)
        assert 0.2 <= time.monotonic() - t0 < 0.4
        assert p.read(timeout=1e12) == b"late\n"  # about eight steps
        busy = threading.Thread(target=lambda: p.read(timeout=5))  # holds the read lock, sleeping in poll
        busy.start()
        assert wait_until_locked(p)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            p.read(timeout=0.3)  # waits for the lock in steps
        assert 0.3 <= time.monotonic() - t0 < 0.6
        with pytest.raises(netrunner.Timeout):
            p.wait(timeout=0.2)
        p.stop()
        busy.join(10)
    with netrunner.Daemon(["sh", "-c", f": {marker}; sleep 0.3"], restart="never") as d:
        t0 = time.monotonic()
        assert d.wait(timeout=0.1) is False
        assert time.monotonic() - t0 >= 0.1
        assert d.wait(timeout=1e12) is True


def wait_until_locked(p: netrunner.Process[bytes]) -> bool:
    deadline = time.monotonic() + 10
    while not p._out_lock.locked():  # type: ignore[attr-defined]
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


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
