"""netrunner.aio on asyncio, two checkouts side by side in one run.

    python benchmarks/ab_aio.py OLD_SRC OLD_SHEPHERD [NEW_SRC NEW_SHEPHERD] [--rounds N]

Each checkout runs in a worker interpreter of its own (``python -S`` with
``PYTHONPATH`` at its ``src`` and ``NETRUNNER_SHEPHERD`` at its binary),
which keeps one asyncio loop and, when told to, times a scenario on it; both
workers, and everything they start, are pinned to one CPU (``--no-pin`` to
leave them free), which steadies the figures on a busy machine. The driver
alternates between the two workers (which goes first changes every
round), so a noisy neighbour hits both alike, and prints the median of each
scenario and the ratio new/old:

* ``aio.run(['true'])``: one awaited run after another (spawn latency);
* ``aio.start + write/readline``: a dialogue with ``cat``, 200 round trips;
* ``gather 100 aio.run``: 100 concurrent runs of ``true`` (wall time);
* ``aio.stream 256 MiB``: throughput, reported as seconds per stream.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WORKER = r"""
import asyncio, os, sys, time
if os.environ.get("AB_AIO_CPU"):  # before netrunner starts its zygote: every child inherits it
    os.sched_setaffinity(0, {int(os.environ["AB_AIO_CPU"])})
from netrunner import aio

loop = asyncio.new_event_loop()
clock = time.perf_counter

async def runs(n):
    times = []
    for _ in range(n):
        t0 = clock()
        await aio.run(["true"])
        times.append(clock() - t0)
    return times

async def dialogue(n):
    async with await aio.start(["cat"]) as p:
        t0 = clock()
        for _ in range(n):
            await p.write(b"ping\n")
            await p.readline()
        return [clock() - t0]

async def gather(n):
    t0 = clock()
    await asyncio.gather(*(aio.run(["true"]) for _ in range(n)))
    return [clock() - t0]

async def stream(size):
    t0 = clock()
    total = 0
    async with aio.stream(["head", "-c", str(size), "/dev/zero"]) as s:
        async for chunk in s:
            total += len(chunk)
    assert total == size
    return [clock() - t0]

SCENARIOS = {"run": runs, "dialogue": dialogue, "gather": gather, "stream": stream}
loop.run_until_complete(runs(30))  # warm up: zygote started, caches hot
for line in sys.stdin:
    what, arg = line.split()
    times = loop.run_until_complete(SCENARIOS[what](int(arg)))
    sys.stdout.write(" ".join(map(str, times)) + "\n")
    sys.stdout.flush()
"""

SCENARIOS = [
    ("aio.run(['true'])", "run 5", 1e3, "ms"),
    ("aio.start + 200 write/readline", "dialogue 200", 1e3, "ms"),
    ("gather 100 aio.run(['true'])", "gather 100", 1e3, "ms"),
    ("aio.stream 256 MiB", f"stream {256 << 20}", 1e3, "ms"),
]


class Worker:
    def __init__(self, src: str, shepherd: str, cpu: int | None) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NETRUNNER_SHEPHERD")}
        env.update(PYTHONPATH=src, NETRUNNER_SHEPHERD=shepherd)
        if cpu is not None:
            env["AB_AIO_CPU"] = str(cpu)
        self.proc = subprocess.Popen(
            [sys.executable, "-S", "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True
        )

    def ask(self, line: str) -> str:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old_src")
    parser.add_argument("old_shepherd")
    parser.add_argument("new_src", nargs="?", default=str(ROOT / "src"))
    parser.add_argument("new_shepherd", nargs="?", default=str(ROOT / "build" / "cp311" / "netrunner-shepherd"))
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--only", default="", help="only the scenarios whose name contains this")
    parser.add_argument("--no-pin", action="store_true", help="do not pin both workers (and their children) to one CPU")
    args = parser.parse_args()
    scenarios = [s for s in SCENARIOS if args.only in s[0]]
    print(f"old: {args.old_src} {args.old_shepherd}\nnew: {args.new_src} {args.new_shepherd}")
    cpu = None if args.no_pin else min(os.sched_getaffinity(0))
    print(f"both workers and their commands pinned to CPU {cpu}" if cpu is not None else "not pinned")
    workers = {
        "old": Worker(args.old_src, args.old_shepherd, cpu),
        "new": Worker(args.new_src, args.new_shepherd, cpu),
    }
    try:
        samples: dict[tuple[str, str], list[float]] = {(name, key): [] for name, *_ in scenarios for key in workers}
        for i in range(args.rounds):
            order = ("old", "new") if i % 2 == 0 else ("new", "old")
            for name, request, _, _ in scenarios:
                for key in order:
                    samples[name, key].extend(map(float, workers[key].ask(request).split()))
    finally:
        for w in workers.values():
            w.close()
    print(f"{'scenario (median)':34} {'old':>10} {'new':>10} {'new/old':>8}")
    for name, _, scale, unit in scenarios:
        old, new = (statistics.median(samples[name, k]) * scale for k in ("old", "new"))
        print(f"{name:34} {old:8.3f}{unit} {new:8.3f}{unit} {new / old:8.3f}")


if __name__ == "__main__":
    main()
