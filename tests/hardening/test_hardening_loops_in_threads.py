"""Event loops in several threads share one process's fd numbers. Every
close in one thread frees a number that the next pipe or socket of another
thread may take, while the flows of the loops register and unregister
numbers in their epoll instances (``_drivers._EpollWaiter``): a number must
never stay registered for a file that is gone, nor a wait be woken by
another thread's file. Loops; ``NETRUNNER_STRESS=1`` makes them 5x longer."""

from __future__ import annotations

import os
import subprocess
import threading
from typing import Any

import anyio
from _stress import iterations
from helpers import switching_often

import netrunner
import netrunner.aio as aio
from netrunner import _drivers

ROUNDS = iterations(100)


async def _round(tag: str) -> list[str]:
    """Three flows at once on this loop, each with its own command: a run
    capturing both streams, a stream read by lines, and a dialogue. What
    each got that it should not have, as messages (none when all is well)."""
    wrong: list[str] = []

    async def one_run() -> None:
        r = await aio.run(["sh", "-c", f"echo out-{tag}; echo err-{tag} >&2"], timeout=30)
        if (r.stdout, r.stderr, r.returncode) != (f"out-{tag}\n".encode(), f"err-{tag}\n".encode(), 0):
            wrong.append(f"{tag}: run gave {r.stdout!r} {r.stderr!r} {r.returncode}")

    async def one_stream() -> None:
        async with aio.stream(["printf", f"1-{tag}\\n2-{tag}\\n3-{tag}"], timeout=30) as s:
            lines = [line async for line in s.lines()]
        if lines != [f"1-{tag}\n".encode(), f"2-{tag}\n".encode(), f"3-{tag}".encode()]:
            wrong.append(f"{tag}: stream gave {lines!r}")

    async def one_dialogue() -> None:
        async with await aio.start(["cat"], kill_timeout=5) as p:
            await p.write(f"ping-{tag}\n")
            line = await p.readline(timeout=30)
            p.close_stdin()
            rest = await p.read(timeout=30)
            code = await p.wait(timeout=30)
        if (line, rest, code) != (f"ping-{tag}\n".encode(), b"", 0):
            wrong.append(f"{tag}: dialogue gave {line!r} {rest!r} {code}")

    async with anyio.create_task_group() as tg:
        tg.start_soon(one_run)
        tg.start_soon(one_stream)
        tg.start_soon(one_dialogue)
    return wrong


def _loop_thread(backend: str, wrong: list[str], errors: list[BaseException]) -> None:
    async def main() -> None:
        for i in range(ROUNDS):
            wrong.extend(await _round(f"{backend}{i}"))

    try:
        anyio.run(main, backend=backend)
    except BaseException as exc:  # reported by the test's thread
        errors.append(exc)


def test_loops_in_three_threads_reuse_each_others_fd_numbers() -> None:
    """An asyncio loop and a trio loop, each in a thread of its own, run
    rounds of three concurrent flows while the main thread runs commands
    churns pipes and forks. With threads switching every microsecond, every flow
    gets exactly its own command's output, none hangs, and when all is done
    no fd stays registered in any epoll instance."""
    wrong: list[str] = []
    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=_loop_thread, args=(backend, wrong, errors), daemon=True)
        for backend in ("asyncio", "trio")
    ]
    with switching_often():
        for t in threads:
            t.start()
        i = 0
        while any(t.is_alive() for t in threads):
            r = netrunner.run(["echo", f"sync{i}"], timeout=30)
            assert r.stdout == f"sync{i}\n".encode(), f"sync {i}: {r.stdout!r}"
            rd, wr = os.pipe()  # a number taken and freed between the loops' own
            os.close(rd)
            os.close(wr)
            # a fork: for a moment the child holds a copy of every fd of the
            # loops', so a close there does not end the file's registrations
            subprocess.run(["true"], check=True)
            i += 1
            if i > 100_000:
                break
        for t in threads:
            t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a loop's thread still runs 120 s after the main thread stopped"
    assert not errors, repr(errors)
    assert not wrong, "\n".join(wrong[:10])
    left: dict[int, Any] = dict(_drivers._registered)
    assert not left, f"fds still registered in epoll instances: {sorted(left)}"
    assert len(_drivers._idle_epolls) <= _drivers._IDLE_EPOLLS
