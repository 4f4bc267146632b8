"""The hub: one background thread driving many flows over one ``poll()``
(what runs every sync ``Daemon``). Real pipes, real threads."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Generator
from typing import Any

import pytest
from conftest import wait_until

from netrunner._drivers import Hub


def echo_flow(r: int, got: list[bytes], done: threading.Event) -> Generator[Any, Any, None]:
    """Read ``r`` until EOF, waiting on it like an engine flow."""
    try:
        while True:
            ready = yield ((r,), (), None)
            assert r in ready
            data = os.read(r, 100)
            if not data:
                return
            got.append(data)
    finally:
        done.set()


def sleep_flow(seconds: float, woke: list[float]) -> Generator[Any, Any, None]:
    start = time.monotonic()
    ready = yield ((), (), start + seconds)
    assert ready == set()
    woke.append(time.monotonic() - start)


def test_many_flows_share_one_thread_and_each_gets_only_its_fds() -> None:
    hub = Hub("test-hub")
    pipes = [os.pipe() for _ in range(20)]
    got: list[list[bytes]] = [[] for _ in pipes]
    done = [threading.Event() for _ in pipes]
    try:
        for (r, _), g, d in zip(pipes, got, done, strict=True):
            hub.add(echo_flow(r, g, d))
        for i, (_, w) in enumerate(pipes):
            os.write(w, f"{i}".encode())
        for _, w in pipes:
            os.close(w)
        assert all(d.wait(10) for d in done)
        assert got == [[f"{i}".encode()] for i in range(len(pipes))]
        threads = [t for t in threading.enumerate() if t.name == "test-hub"]
        assert len(threads) <= 1
    finally:
        for r, _ in pipes:
            os.close(r)


def test_deadlines_wake_flows_in_time() -> None:
    hub = Hub("test-hub")
    woke: list[float] = []
    hub.add(sleep_flow(0.3, woke))
    hub.add(sleep_flow(0.1, woke))
    assert wait_until(lambda: len(woke) == 2, timeout=10)
    assert 0.1 <= woke[0] < 0.3 <= woke[1], woke


def test_the_thread_exists_only_while_there_are_flows() -> None:
    hub = Hub("test-hub-life")
    woke: list[float] = []
    hub.add(sleep_flow(0.05, woke))
    assert any(t.name == "test-hub-life" for t in threading.enumerate())
    assert wait_until(lambda: not any(t.name == "test-hub-life" for t in threading.enumerate()), timeout=10)
    assert woke
    hub.add(sleep_flow(0.01, woke))  # and comes back for the next one
    assert wait_until(lambda: len(woke) == 2, timeout=10)


def test_a_failing_flow_is_logged_and_the_others_go_on(caplog: pytest.LogCaptureFixture) -> None:
    hub = Hub("test-hub")

    def bad() -> Generator[Any, Any, None]:
        yield ((), (), time.monotonic())
        raise RuntimeError("boom")

    woke: list[float] = []
    with caplog.at_level(logging.ERROR, logger="netrunner.daemon"):
        hub.add(bad())
        hub.add(sleep_flow(0.2, woke))
        assert wait_until(lambda: woke, timeout=10)
    assert any("boom" in (r.exc_text or "") or (r.exc_info and "boom" in str(r.exc_info[1])) for r in caplog.records)


def test_running_here_is_true_only_on_the_hub_thread() -> None:
    hub = Hub("test-hub")
    seen: list[bool] = []

    def flow() -> Generator[Any, Any, None]:
        seen.append(hub.running_here())
        yield ((), (), time.monotonic())
        seen.append(hub.running_here())

    hub.add(flow())
    assert wait_until(lambda: len(seen) == 2, timeout=10)
    assert seen == [True, True]
    assert not hub.running_here()


def test_fds_left_as_they_were() -> None:
    before = set(os.listdir("/proc/self/fd"))
    hub = Hub("test-hub-fds")
    woke: list[float] = []
    for _ in range(3):
        hub.add(sleep_flow(0.01, woke))
        assert wait_until(lambda: not any(t.name == "test-hub-fds" for t in threading.enumerate()), timeout=10)
    assert len(woke) == 3
    assert set(os.listdir("/proc/self/fd")) == before
