"""The zygote's start through ``netrunner-spawn.so`` (ADR 6) races nothing.

The starter clones the zygote sharing this process's memory and
``fs_struct`` while other threads go on: it must hold whatever they do. A
loop starts the zygote again and again while one thread sends signals with
a Python handler to the very thread that starts it, another forks and reaps
children, and a third flips the umask. Every start must work, every zygote
must share the umask, and every command gets one of the two umasks the
flipper sets, never another. ``NETRUNNER_STRESS=1`` makes the loop 5x
longer."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable

from _stress import iterations

import netrunner
from netrunner._core.attrs import SHARED_UMASK
from netrunner._io import zygote


def _in_loop(stop: threading.Event, body: Callable[[], None]) -> threading.Thread:
    def loop() -> None:
        while not stop.is_set():
            body()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def test_zygote_starts_race_signals_forks_and_umask_changes() -> None:
    # Counted, not listed: a list of every signal and every fork grows by
    # millions in a stress run, and each fork then copies more memory.
    hits: Counter[int] = Counter()
    forked: Counter[int] = Counter()
    starter = threading.get_ident()

    def on_signal(signum: int, frame: object) -> None:
        hits[signum] += 1

    previous = signal.signal(signal.SIGUSR1, on_signal)
    umask = os.umask(0o022)
    stop = threading.Event()

    def fork_and_reap() -> None:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child only exits
            os._exit(7)
        forked[os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])] += 1

    def flip_umask() -> None:
        os.umask(0o077)
        os.umask(0o022)

    # The three loops hold the GIL in turns; the starting thread would get
    # it back only every switch interval (5 ms) after each system call. A
    # shorter interval lets each start finish sooner and interleaves the
    # threads more finely, not less.
    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.0002)
    threads = [
        _in_loop(stop, lambda: signal.pthread_kill(starter, signal.SIGUSR1)),  # a live thread: pinned
        _in_loop(stop, fork_and_reap),
        _in_loop(stop, flip_umask),
    ]
    seen: set[bytes] = set()
    try:
        for _ in range(iterations(150)):
            zygote.shutdown()
            out = netrunner.run(["sh", "-c", "umask"], timeout=30, check=True).stdout
            seen.add(out)
            assert out in (b"0022\n", b"0077\n"), out
            z = zygote._zygote
            assert z is not None
            assert z.baseline.umask == SHARED_UMASK
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        signal.signal(signal.SIGUSR1, previous)
        sys.setswitchinterval(switch)
        os.umask(umask)
        zygote.shutdown()
    assert hits, "no signal reached the starting thread"
    assert forked, "no child was forked meanwhile"
    assert set(forked) == {7}
