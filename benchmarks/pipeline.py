"""Pipeline throughput: netrunner against bash, plumbum and hand-wired
``subprocess.Popen`` stages, side by side in one run.

    python benchmarks/pipeline.py            # 256 MiB, 5 rounds
    python benchmarks/pipeline.py --quick    # 64 MiB, 3 rounds

The same three-stage pipeline, ``cat FILE | gzip -1 | wc -c``, is run by each
contender in turn, round by round (a noisy neighbour hits all alike); each
figure is a median, each line ends with its ratio to bash. plumbum is
optional (``pip install plumbum``); without it its line says so.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable

import netrunner
from netrunner import pipe


def make_input(size: int, directory: str) -> str:
    """A file of ``size`` bytes that gzip compresses about 3:1 (text-like)."""
    path = os.path.join(directory, "input")
    block = b"".join(b"%08d netrunner pipeline benchmark line %s\n" % (i, os.urandom(6).hex().encode())
                     for i in range(16384))
    with open(path, "wb") as f:
        written = 0
        while written < size:
            f.write(block[: size - written])
            written += min(len(block), size - written)
    return path


def contenders(path: str) -> dict[str, Callable[[], bytes]]:
    line = f"cat {path} | gzip -1 | wc -c"
    out: dict[str, Callable[[], bytes]] = {
        "bash -c 'cat | gzip -1 | wc -c'": lambda: subprocess.run(
            ["bash", "-c", line], stdout=subprocess.PIPE, check=True
        ).stdout,
        "netrunner.run(pipe(cat, gzip, wc))": lambda: netrunner.run(
            pipe(["cat", path], ["gzip", "-1"], ["wc", "-c"]), check=True
        ).stdout,
        "subprocess.Popen x3, wired by hand": lambda: _popen_chain(path),
    }
    try:
        from plumbum import local  # type: ignore[import-not-found, import-untyped]
    except ImportError:
        return out
    chain = local["cat"][path] | local["gzip"]["-1"] | local["wc"]["-c"]
    out["plumbum (cat | gzip | wc)()"] = lambda: chain().encode()
    return out


def _popen_chain(path: str) -> bytes:
    cat = subprocess.Popen(["cat", path], stdout=subprocess.PIPE)
    gz = subprocess.Popen(["gzip", "-1"], stdin=cat.stdout, stdout=subprocess.PIPE)
    assert cat.stdout is not None
    assert gz.stdout is not None
    cat.stdout.close()
    wc = subprocess.Popen(["wc", "-c"], stdin=gz.stdout, stdout=subprocess.PIPE)
    gz.stdout.close()
    out, _ = wc.communicate()
    cat.wait()
    gz.wait()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="64 MiB, 3 rounds")
    args = parser.parse_args()
    size, rounds = (64 << 20, 3) if args.quick else (256 << 20, 5)
    with tempfile.TemporaryDirectory() as tmp:
        path = make_input(size, tmp)
        runs = contenders(path)
        expected = {fn() for fn in runs.values()}  # warm the page cache; every contender agrees
        assert len({int(x) for x in expected}) == 1, expected
        samples: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(rounds):
            for name, fn in runs.items():
                t0 = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(v) for name, v in samples.items()}
    base = med["bash -c 'cat | gzip -1 | wc -c'"]
    print(f"== pipeline throughput: cat {size >> 20} MiB | gzip -1 | wc -c, median of {rounds} ==")
    for name, seconds in med.items():
        print(f"  {name:40s} {seconds:7.3f} s  {size / seconds / 2**20:7.1f} MiB/s  {seconds / base:5.2f}x bash")
    try:
        import plumbum  # type: ignore[import-not-found, import-untyped]  # noqa: F401
    except ImportError:
        print("  plumbum                                  not installed (pip install plumbum)")


if __name__ == "__main__":
    main()
