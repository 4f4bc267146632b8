"""The async drivers' waits (``_drivers.adrive``), under asyncio and trio:
a flow's fds stay registered in its epoll instance from one wait to the
next and no longer than the flow, and an fd closed between two waits, its
number then reused, is waited on as the new file. Real pipes, real loops."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

import pytest
import trio
import trio.testing
from helpers_aio import await_until

from netrunner import _drivers
from netrunner._drivers import AsyncWaiter, TrioWaiter, adrive
from netrunner._io import fds

T = TypeVar("T")
LIBS = ["asyncio", "trio"]


def run_under(lib: str, main: Callable[[Any], Awaitable[T]]) -> T:
    """``main(waiter)`` under ``lib``, failing instead of hanging."""
    if lib == "asyncio":
        async def guarded_asyncio() -> T:
            return await asyncio.wait_for(main(AsyncWaiter()), 20)

        return asyncio.run(guarded_asyncio())

    async def guarded_trio() -> T:
        with trio.fail_after(20):
            return await main(TrioWaiter())

    return trio.run(guarded_trio)


def registered(*numbers: int) -> list[int]:
    return [fd for fd in numbers if fd in _drivers._registered]


@pytest.mark.parametrize("lib", LIBS)
def test_an_fd_closed_between_waits_and_its_number_reused_wakes_the_next_wait(lib: str) -> None:
    """The daemon's flows outlive a command: its control socket is closed
    between two waits and the next command's may get the same number. The
    second wait must watch the new file, not trust a registration the
    kernel dropped with the old one."""

    def flow() -> Generator[Any, Any, tuple[int, int, bytes]]:
        r1, w1 = fds.pipe()
        os.write(w1, b"1")
        ready = yield ((r1,), (), None)
        assert r1 in ready
        fds.close_all((r1, w1))
        r2, w2 = fds.pipe()  # the lowest free numbers: those just closed
        try:
            os.write(w2, b"2")
            ready = yield ((r2,), (), None)
            assert r2 in ready
            return r1, r2, os.read(r2, 10)
        finally:
            fds.close_all((r2, w2))

    async def main(waiter: Any) -> tuple[int, int, bytes]:
        return await adrive(flow(), waiter)  # type: ignore[no-any-return]

    r1, r2, got = run_under(lib, main)
    assert r1 == r2, "the precondition failed: the second pipe did not reuse the number"
    assert got == b"2"


@pytest.mark.parametrize("lib", LIBS)
def test_a_flows_fds_stay_registered_between_its_waits_and_not_after(lib: str) -> None:
    r, w = fds.pipe()
    seen: list[list[int]] = []

    def flow() -> Generator[Any, Any, None]:
        for _ in range(3):
            os.write(w, b"x")
            ready = yield ((r, w), (), None)
            assert r in ready
            os.read(r, 10)
            seen.append(registered(r, w))

    async def main(waiter: Any) -> None:
        await adrive(flow(), waiter)

    try:
        run_under(lib, main)
        assert seen == [[r, w]] * 3
        assert registered(r, w) == []
        assert r not in fds._watchers and w not in fds._watchers
    finally:
        fds.close_all((r, w))


@pytest.mark.parametrize("lib", LIBS)
def test_a_wait_changes_what_is_registered_as_the_flow_asks(lib: str) -> None:
    """A reader dropped, a writer added, then the same fd both ways: each
    wait answers for exactly the fds and directions of its own request."""
    r, w = fds.pipe()

    def flow() -> Generator[Any, Any, list[set[int]]]:
        answers = []
        answers.append(set((yield ((r,), (w,), None))))  # w writable at once
        os.write(w, b"x")
        answers.append(set((yield ((r,), (), None))))
        os.read(r, 10)
        answers.append(set((yield ((), (w,), None))))
        return answers

    async def main(waiter: Any) -> list[set[int]]:
        return await adrive(flow(), waiter)  # type: ignore[no-any-return]

    try:
        assert run_under(lib, main) == [{w}, {r}, {w}]
        assert registered(r, w) == []
    finally:
        fds.close_all((r, w))


@pytest.mark.parametrize("lib", LIBS)
def test_a_cancelled_flow_leaves_nothing_registered(lib: str) -> None:
    r, w = fds.pipe()
    waiting: list[bool] = []

    def flow() -> Generator[Any, Any, None]:
        waiting.append(True)
        yield ((r,), (), None)  # nothing is ever written

    async def main_asyncio(waiter: Any) -> None:
        task = asyncio.ensure_future(adrive(flow(), waiter))
        await await_until(lambda: registered(r) == [r])
        assert waiting
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async def main_trio(waiter: Any) -> None:
        with trio.move_on_after(0.05):
            await adrive(flow(), waiter)
        assert waiting

    try:
        run_under(lib, main_asyncio if lib == "asyncio" else main_trio)
        assert registered(r) == []
        assert r not in fds._watchers
    finally:
        fds.close_all((r, w))


@pytest.mark.parametrize("lib", LIBS)
def test_forget_wakes_the_flows_waiting_on_an_fd(lib: str) -> None:
    """Two flows wait on one fd; ``forget`` (stdin about to be closed) ends
    both waits, each reporting the fd."""
    r, w = fds.pipe()

    def flow(got: list[set[int]]) -> Generator[Any, Any, None]:
        got.append(set((yield ((r,), (), None))))

    async def main_asyncio(waiter: Any) -> list[set[int]]:
        got: list[set[int]] = []
        tasks = [asyncio.ensure_future(adrive(flow(got), waiter)) for _ in range(2)]
        await await_until(lambda: len(_drivers._registered.get(r, {})) == 2)
        waiter.forget(r)
        await asyncio.gather(*tasks)
        return got

    async def main_trio(waiter: Any) -> list[set[int]]:
        got: list[set[int]] = []
        async with trio.open_nursery() as nursery:
            for _ in range(2):
                nursery.start_soon(adrive, flow(got), waiter)
            await trio.testing.wait_all_tasks_blocked()
            assert len(_drivers._registered.get(r, {})) == 2
            waiter.forget(r)
        return got

    try:
        assert run_under(lib, main_asyncio if lib == "asyncio" else main_trio) == [{r}, {r}]
        assert registered(r) == []
    finally:
        fds.close_all((r, w))


@pytest.mark.parametrize("lib", LIBS)
def test_readiness_the_flow_has_handled_does_not_end_its_next_wait(lib: str) -> None:
    """The first wait ends with the pipe readable; the flow reads it empty
    and waits on it again. That wait must run to its deadline and report
    nothing: under asyncio the loop may see the old readiness once more."""
    r, w = fds.pipe()

    def flow() -> Generator[Any, Any, tuple[set[int], set[int], float]]:
        os.write(w, b"x")
        first = set((yield ((r,), (), None)))
        os.read(r, 10)
        start = time.monotonic()
        second = set((yield ((r,), (), start + 0.05)))
        return first, second, time.monotonic() - start

    async def main(waiter: Any) -> tuple[set[int], set[int], float]:
        return await adrive(flow(), waiter)  # type: ignore[no-any-return]

    try:
        for _ in range(20):
            first, second, waited = run_under(lib, main)
            assert first == {r}
            assert second == set()
            assert waited >= 0.045
    finally:
        fds.close_all((r, w))


def test_a_forked_child_starts_with_nothing_registered() -> None:
    """A fork while a flow waits: the child has no wait of the parent's,
    so none of their registrations, and an fd it registers is watched."""
    r, w = fds.pipe()

    def flow() -> Generator[Any, Any, None]:
        yield ((r,), (), None)

    async def main() -> int:
        task = asyncio.ensure_future(adrive(flow(), AsyncWaiter()))
        await await_until(lambda: registered(r) == [r])
        pid = os.fork()
        if pid == 0:  # the child: report, and leave at once
            code = 0
            try:
                if _drivers._registered or fds._watchers:
                    code = 1
            finally:
                os._exit(code)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return pid

    try:
        pid = asyncio.run(asyncio.wait_for(main(), 20))
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "registrations of the parent's waits left in the child"
        assert registered(r) == []
    finally:
        fds.close_all((r, w))
