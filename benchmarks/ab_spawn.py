"""Spawn latency of two netrunner checkouts, side by side in one run.

    python benchmarks/ab_spawn.py OLD_SRC OLD_SHEPHERD [NEW_SRC NEW_SHEPHERD] [--rounds N]

Each checkout runs in a worker interpreter of its own (``python -S`` with
``PYTHONPATH`` at its ``src`` and ``NETRUNNER_SHEPHERD`` at its binary), which
times ``--batch`` ``netrunner.run(["true"])`` in a row (one by default)
when told to. The driver alternates between the two workers (which goes
first changes every round),
so a noisy neighbour hits both alike, and prints medians for each scenario:
nothing changed since the zygote started (the common path), and attributes
changed after it started (what needs a C_ATTRS record from protocol 5 on).
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
import os, resource, sys, time
import netrunner
for _ in range(30):  # warm up: zygote started, caches hot
    netrunner.run(["true"])
run, clock = netrunner.run, time.perf_counter
for line in sys.stdin:
    what = line.split()
    if what[0] == "run":
        times = []
        for _ in range(int(what[1])):
            t0 = clock()
            run(["true"])
            times.append(clock() - t0)
        sys.stdout.write(" ".join(map(str, times)) + "\n")
    elif what[0] == "umask":
        os.umask(int(what[1], 8))
        sys.stdout.write("ok\n")
    elif what[0] == "nofile":
        resource.setrlimit(resource.RLIMIT_NOFILE, (int(what[1]), resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        sys.stdout.write("ok\n")
    elif what[0] == "affinity":
        os.sched_setaffinity(0, {int(c) for c in what[1].split(",")})
        sys.stdout.write("ok\n")
    sys.stdout.flush()
"""

SCENARIOS: dict[str, list[str]] = {
    "nothing changed": [],
    "umask changed": ["umask 077"],
    "umask, RLIMIT_NOFILE, affinity changed": ["umask 077", "nofile 1000", f"affinity {min(os.sched_getaffinity(0))}"],
}


class Worker:
    def __init__(self, src: str, shepherd: str) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NETRUNNER_SHEPHERD")}
        env.update(PYTHONPATH=src, NETRUNNER_SHEPHERD=shepherd)
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
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--batch", type=int, default=1, help="runs in a row per worker and round (default 1)")
    args = parser.parse_args()
    print(f"old: {args.old_src} {args.old_shepherd}\nnew: {args.new_src} {args.new_shepherd}")
    print(f"{'scenario':42} {'old ms':>8} {'new ms':>8} {'new/old':>8}")
    for name, setup in SCENARIOS.items():
        workers = {"old": Worker(args.old_src, args.old_shepherd), "new": Worker(args.new_src, args.new_shepherd)}
        try:
            for w in workers.values():
                for line in setup:  # after the warm-up: the zygote has the old values
                    assert w.ask(line) == "ok"
            samples: dict[str, list[float]] = {"old": [], "new": []}
            for i in range(args.rounds):
                order = ("old", "new") if i % 2 == 0 else ("new", "old")
                for key in order:
                    samples[key].extend(map(float, workers[key].ask(f"run {args.batch}").split()))
        finally:
            for w in workers.values():
                w.close()
        old, new = (statistics.median(samples[k]) * 1000 for k in ("old", "new"))
        print(f"{name:42} {old:8.3f} {new:8.3f} {new / old:8.3f}")


if __name__ == "__main__":
    main()
