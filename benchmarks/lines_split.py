"""Ways to split a chunk of output into lines, in this interpreter alone
(no process: the chunks are made here). The evidence behind ``Lines``
(docs/decisions/0008-output-paths.md).

    python benchmarks/lines_split.py            # 3 M lines of 11 bytes, 64 KiB chunks
    python benchmarks/lines_split.py --quick

Each way takes every chunk and iterates every line once; they run in turn,
round after round, and each figure is the median CPU time per line.
"""

from __future__ import annotations

import argparse
import codecs
import io
import itertools
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from netrunner._core.output import Lines

CHUNK = 65536


def python_loop(chunks: list[bytes]) -> Iterator[bytes]:
    """A find loop in Python with a carried-over buffer (netrunner before ADR 8)."""
    buf, searched = b"", 0
    for chunk in chunks:
        buf = buf + chunk if buf else chunk
        start = 0
        pos = buf.find(b"\n", searched)
        out = []
        while pos != -1:
            out.append(buf[start : pos + 1])
            start = pos + 1
            pos = buf.find(b"\n", start)
        buf = buf[start:]
        searched = len(buf)
        yield from out
    if buf:
        yield buf


def lines_feed(chunks: list[Any]) -> Iterator[Any]:
    """``Lines.feed``: a list per chunk, consumed by a generator."""
    splitter = Lines(isinstance(chunks[0], str))
    for chunk in chunks:
        yield from splitter.feed(chunk)
    yield from splitter.finish()


def lines_split_chain(chunks: list[Any]) -> Iterable[Any]:
    """``Lines.split`` under ``chain.from_iterable``: what ``Stream.lines()`` does."""
    splitter = Lines(isinstance(chunks[0], str))

    def batches() -> Iterator[Iterable[Any]]:
        for chunk in chunks:
            yield splitter.split(chunk)
        yield splitter.finish()

    return itertools.chain.from_iterable(batches())


def readlines_lists(chunks: list[bytes]) -> Iterable[bytes]:
    """A ``BytesIO(chunk).readlines()`` list per chunk (partial lines ignored)."""
    return itertools.chain.from_iterable(io.BytesIO(c).readlines() for c in chunks)


def splitlines_lists(chunks: list[str]) -> Iterable[str]:
    """``str.splitlines(True)`` per chunk (wrong on \\r and friends: the fast path)."""
    return itertools.chain.from_iterable(c.splitlines(True) for c in chunks)


def stringio_lists(chunks: list[str]) -> Iterable[str]:
    """``StringIO(chunk, newline="\\n").readlines()`` per chunk (the exact path)."""
    return itertools.chain.from_iterable(io.StringIO(c, newline="\n").readlines() for c in chunks)


def bufferedreader(data: bytes) -> Callable[[], Iterable[bytes]]:
    """What ``for line in Popen(...).stdout`` does, over memory."""
    return lambda: io.BufferedReader(io.BytesIO(data))  # type: ignore[arg-type]


def textiowrapper(data: bytes) -> Callable[[], Iterable[str]]:
    """What ``for line in Popen(..., text=True).stdout`` does, over memory."""
    return lambda: io.TextIOWrapper(io.BufferedReader(io.BytesIO(data)), encoding="utf-8")  # type: ignore[arg-type]


def per_line(make: Callable[[], Iterable[Any]], lines: int, pieces: int = 0) -> Callable[[], float]:
    """Time one pass; ``pieces``: how many partial lines a way that ignores
    chunk boundaries may count as lines of their own."""

    def run() -> float:
        it = make()
        c0 = time.process_time()
        count = 0
        for _ in it:
            count += 1
        elapsed = time.process_time() - c0
        assert lines <= count <= lines + pieces, count
        return elapsed / lines

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer lines and rounds")
    args = parser.parse_args()
    n, rounds = (300_000, 3) if args.quick else (3_000_000, 7)
    data = b"0123456789\n" * n
    chunks = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
    decoder = codecs.getincrementaldecoder("utf-8")()
    text_chunks = [decoder.decode(c) for c in chunks]

    def compare(title: str, contenders: dict[str, Callable[[], float]], base: str) -> None:
        samples: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(rounds):
            for name, fn in contenders.items():
                samples[name].append(fn())
        med = {name: statistics.median(values) for name, values in samples.items()}
        print(f"\n## {title}: {n / 1e6:g} M lines of 11 bytes in 64 KiB chunks (median of {rounds}, CPU per line)")
        for name, value in med.items():
            print(f"  {name:<58} {value * 1e9:6.1f} ns   {med[base] / value:5.2f}x the speed of {base.split()[0]}")

    compare("bytes", {
        "BufferedReader iteration (Popen.stdout)": per_line(bufferedreader(data), n),
        "Python find loop (before)": per_line(lambda: python_loop(chunks), n),
        "Lines.feed lists in a generator": per_line(lambda: lines_feed(chunks), n),
        "BytesIO.readlines lists under chain": per_line(lambda: readlines_lists(chunks), n, len(chunks)),
        "Lines.split under chain (Stream.lines)": per_line(lambda: lines_split_chain(chunks), n),
    }, "BufferedReader iteration (Popen.stdout)")
    compare("text", {
        "TextIOWrapper iteration (Popen(text=True).stdout)": per_line(textiowrapper(data), n),
        "StringIO(newline='\\n').readlines lists under chain":
            per_line(lambda: stringio_lists(text_chunks), n, len(chunks)),
        "str.splitlines lists under chain": per_line(lambda: splitlines_lists(text_chunks), n, len(chunks)),
        "Lines.split under chain (Stream.lines)": per_line(lambda: lines_split_chain(text_chunks), n),
    }, "TextIOWrapper iteration (Popen(text=True).stdout)")


if __name__ == "__main__":
    main()
