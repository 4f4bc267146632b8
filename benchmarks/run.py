"""netrunner against subprocess and asyncio, side by side in one run.

    python benchmarks/run.py            # the full set (a few minutes)
    python benchmarks/run.py --quick    # smaller sizes and fewer rounds
    python benchmarks/run.py --cgroup   # only the cost a cgroup adds to a spawn
    python benchmarks/run.py --pty      # only pty=True against pexpect and ptyprocess
    python benchmarks/run.py --trio     # only stream throughput under trio, against trio's own
    python benchmarks/run.py --output   # only capture memory, lines and text (--quick: smaller)
    python benchmarks/run.py --spawn N  # only the spawn latency, N rounds

Contenders are interleaved round by round, in an order shuffled each round,
so a noisy neighbour hits all of them alike and none always follows another;
each figure is a median, and each line ends with the ratio the target is
stated in.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import netrunner
from netrunner import aio


def interleave(contenders: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """Run each contender once per round, in an order shuffled each round
    (a fixed order favours whichever runs after a given other: 1.14x against
    1.16-1.17x for ``run(["true"])``); return the median of each."""
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    order = list(contenders.items())
    rnd = random.Random(0)
    for _ in range(rounds):
        rnd.shuffle(order)
        for name, fn in order:
            samples[name].append(fn())
    return {name: statistics.median(values) for name, values in samples.items()}


def interleave_cpu(
    contenders: dict[str, Callable[[], float]], rounds: int
) -> tuple[dict[str, float], dict[str, float]]:
    """:func:`interleave`, and the median CPU time this interpreter spent in
    each contender (steadier than wall time on a busy machine; the command's
    own CPU time is not in it)."""
    cpu: dict[str, list[float]] = {name: [] for name in contenders}

    def measured(name: str, fn: Callable[[], float]) -> Callable[[], float]:
        def run() -> float:
            c0 = time.process_time()
            value = fn()
            cpu[name].append(time.process_time() - c0)
            return value

        return run

    med = interleave({name: measured(name, fn) for name, fn in contenders.items()}, rounds)
    return med, {name: statistics.median(values) for name, values in cpu.items()}


def timed(fn: Callable[[], object]) -> Callable[[], float]:
    def run() -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    return run


def bench_latency(rounds: int) -> None:
    """``run(["true"])`` against ``subprocess.run``, and ``aio.run`` against
    asyncio's ``create_subprocess_exec`` + ``wait``, on one event loop that
    stays open (both asyncio contenders pay the same ``run_until_complete``)."""
    loop = asyncio.new_event_loop()

    async def aio_true() -> None:
        await aio.run(["true"])

    async def asyncio_true() -> None:
        p = await asyncio.create_subprocess_exec("true")
        await p.wait()

    async def asyncio_true_captured() -> None:
        pipe = asyncio.subprocess.PIPE
        p = await asyncio.create_subprocess_exec("true", stdout=pipe, stderr=pipe)
        await p.communicate()

    for _ in range(20):  # warm up: zygote started, caches hot
        netrunner.run(["true"])
        subprocess.run(["true"])
        loop.run_until_complete(aio_true())
        loop.run_until_complete(asyncio_true())
        loop.run_until_complete(asyncio_true_captured())
    med = interleave(
        {
            "subprocess.run(['true'])": timed(lambda: subprocess.run(["true"])),
            "netrunner.run(['true'])": timed(lambda: netrunner.run(["true"])),
            "subprocess.run(['true'], capture_output=True)": timed(
                lambda: subprocess.run(["true"], capture_output=True)
            ),
            "asyncio create_subprocess_exec + wait": timed(lambda: loop.run_until_complete(asyncio_true())),
            "asyncio, stdout and stderr PIPE + communicate": timed(
                lambda: loop.run_until_complete(asyncio_true_captured())
            ),
            "netrunner.aio.run(['true'])": timed(lambda: loop.run_until_complete(aio_true())),
        },
        rounds,
    )
    loop.close()
    base = med["subprocess.run(['true'])"]
    print(f"\n## spawn latency (median of {rounds})")
    for name, value in med.items():
        print(f"  {name:<48} {value * 1e3:7.3f} ms   {value / base:5.2f}x")
    ratio = med["netrunner.run(['true'])"] / base
    aio_ratio = med["netrunner.aio.run(['true'])"] / med["asyncio create_subprocess_exec + wait"]
    print(f"  target: netrunner.run(['true']) <= 1.1x subprocess.run(['true']): {ratio:.2f}x")
    # netrunner.run captures stdout and stderr by default; subprocess.run only when asked.
    like = med["netrunner.run(['true'])"] / med["subprocess.run(['true'], capture_output=True)"]
    print(f"  like for like, both capturing: netrunner.run(['true']) / subprocess.run(capture_output=True): "
          f"{like:.2f}x")
    print(f"  target: netrunner.aio.run(['true']) <= 1.1x asyncio create_subprocess_exec + wait: {aio_ratio:.2f}x")
    aio_like = med["netrunner.aio.run(['true'])"] / med["asyncio, stdout and stderr PIPE + communicate"]
    print(f"  like for like, both capturing: netrunner.aio.run(['true']) / asyncio with PIPEs + communicate: "
          f"{aio_like:.2f}x")


def _producer(size: int) -> list[str]:
    return ["dd", "if=/dev/zero", "bs=1M", f"count={size >> 20}", "status=none"]


def _raw_read(size: int) -> float:
    p = subprocess.Popen(_producer(size), stdout=subprocess.PIPE)
    assert p.stdout is not None
    fd = p.stdout.fileno()
    total = 0
    t0 = time.perf_counter()
    while True:
        data = os.read(fd, 65536)
        if not data:
            break
        total += len(data)
    elapsed = time.perf_counter() - t0
    p.wait()
    assert total == size, total
    return size / elapsed


def _nr_stream(size: int) -> float:
    total = 0
    t0 = time.perf_counter()
    with netrunner.stream(_producer(size)) as s:
        for chunk in s:
            total += len(chunk)
    elapsed = time.perf_counter() - t0
    assert total == size, total
    return size / elapsed


def _aio_stream(size: int) -> float:
    async def main() -> float:
        total = 0
        t0 = time.perf_counter()
        async with aio.stream(_producer(size)) as s:
            async for chunk in s:
                total += len(chunk)
        elapsed = time.perf_counter() - t0
        assert total == size, total
        return size / elapsed

    return asyncio.run(main())


def _asyncio_streamreader(size: int) -> float:
    async def main() -> float:
        p = await asyncio.create_subprocess_exec(*_producer(size), stdout=asyncio.subprocess.PIPE)
        assert p.stdout is not None
        total = 0
        t0 = time.perf_counter()
        while True:
            data = await p.stdout.read(65536)
            if not data:
                break
            total += len(data)
        elapsed = time.perf_counter() - t0
        await p.wait()
        assert total == size, total
        return size / elapsed

    return asyncio.run(main())


def bench_throughput(size: int, rounds: int) -> None:
    # In a fresh interpreter pinned to one CPU before anything starts: every
    # child (the zygote and the shepherds included) inherits the affinity, so
    # reader and producer share that CPU in all contenders.
    subprocess.run([sys.executable, __file__, "--throughput", str(size), str(rounds)], check=True)


def _throughput_pinned(size: int, rounds: int) -> None:
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    med = interleave(
        {
            "raw os.read loop on a subprocess pipe": lambda: _raw_read(size),
            "netrunner.stream": lambda: _nr_stream(size),
            "netrunner.aio.stream": lambda: _aio_stream(size),
            "asyncio StreamReader": lambda: _asyncio_streamreader(size),
        },
        rounds,
    )
    base = med["raw os.read loop on a subprocess pipe"]
    print(f"\n## stream throughput, {size >> 20} MiB, pinned to one CPU (median of {rounds})")
    for name, value in med.items():
        print(f"  {name:<48} {value / 2**20:8.0f} MiB/s   {value / base:5.2f}x")
    print("  targets: netrunner.stream >= 0.9x, netrunner.aio.stream >= 0.8x of the raw loop", flush=True)


def _trio_aio_stream(size: int) -> float:
    import trio

    async def main() -> float:
        total = 0
        t0 = time.perf_counter()
        async with aio.stream(_producer(size)) as s:
            async for chunk in s:
                total += len(chunk)
        elapsed = time.perf_counter() - t0
        assert total == size, total
        return size / elapsed

    return trio.run(main)


def _trio_receive_some(size: int) -> float:
    import trio

    async def main() -> float:
        p = await trio.lowlevel.open_process(_producer(size), stdout=subprocess.PIPE)
        assert p.stdout is not None
        total = 0
        t0 = time.perf_counter()
        while True:
            data = await p.stdout.receive_some(65536)
            if not data:
                break
            total += len(data)
        elapsed = time.perf_counter() - t0
        await p.wait()
        await p.stdout.aclose()
        assert total == size, total
        return size / elapsed

    return trio.run(main)


def bench_trio_throughput(size: int, rounds: int) -> None:
    # Pinned to one CPU in a fresh interpreter, as bench_throughput.
    subprocess.run([sys.executable, __file__, "--trio-throughput", str(size), str(rounds)], check=True)


def _trio_throughput_pinned(size: int, rounds: int) -> None:
    try:
        import trio  # noqa: F401
    except ImportError:
        print("\n## stream throughput under trio: skipped, trio is not installed (pip install trio)")
        return
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    med = interleave(
        {
            "trio.lowlevel.open_process + receive_some": lambda: _trio_receive_some(size),
            "netrunner.aio.stream under trio": lambda: _trio_aio_stream(size),
        },
        rounds,
    )
    base = med["trio.lowlevel.open_process + receive_some"]
    print(f"\n## stream throughput under trio, {size >> 20} MiB, pinned to one CPU (median of {rounds})")
    for name, value in med.items():
        print(f"  {name:<48} {value / 2**20:8.0f} MiB/s   {value / base:5.2f}x")
    print("  both make every read a trio checkpoint (a pass through trio's scheduler per chunk, some 3.5 us)",
          flush=True)


def bench_slow_consumer(size: int) -> None:
    code = f"""
import os, time, netrunner
def hwm():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            return int(line.split()[1]) * 1024
netrunner.run(['true'])
base = hwm()
n = 0
with netrunner.stream(['dd', 'if=/dev/zero', 'bs=1M', 'count={size >> 20}', 'status=none']) as s:
    for chunk in s:
        n += len(chunk)
        if n % (8 << 20) < len(chunk):
            time.sleep(0.001)
assert n == {size}
print((hwm() - base) / 2**20)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    growth = float(out.stdout.strip())
    print(f"\n## slow consumer of {size >> 20} MiB through netrunner.stream")
    print(f"  peak RSS growth {growth:.1f} MiB   (target < 32 MiB)")


_CAPTURE_CHILD = """
import resource, sys, time
which, text, size = sys.argv[1], sys.argv[2] == "text", int(sys.argv[3])
cmd = ["head", "-c", str(size), "/dev/zero"]
if which == "netrunner":
    import netrunner
    netrunner.run(["true"])
    capture = lambda: netrunner.run(cmd, text=text)
else:
    import subprocess
    subprocess.run(["true"], capture_output=True)
    capture = lambda: subprocess.run(cmd, capture_output=True, text=text)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
out = capture().stdout
elapsed = time.perf_counter() - t0
assert len(out) == size
print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, elapsed)
"""


def bench_capture(size: int, rounds: int) -> None:
    """Peak memory and time of one capture of ``size`` bytes, each in a fresh
    interpreter (ru_maxrss is a high-water mark: one capture per process)."""

    def child(which: str, mode: str) -> Callable[[], float]:
        def run() -> float:
            out = subprocess.run([sys.executable, "-c", _CAPTURE_CHILD, which, mode, str(size)],
                                 capture_output=True, text=True, check=True).stdout.split()
            before, peak, elapsed = int(out[0]) << 10, int(out[1]) << 10, float(out[2])
            run.samples.append((peak, peak - before, elapsed))  # type: ignore[attr-defined]
            return elapsed

        run.samples = []  # type: ignore[attr-defined]
        return run

    for mode in ("bytes", "text"):
        contenders = {"subprocess.run(capture_output=True)": child("subprocess", mode),
                      "netrunner.run": child("netrunner", mode)}
        interleave(contenders, rounds)
        med = {name: [statistics.median(col) for col in zip(*fn.samples, strict=True)]  # type: ignore[attr-defined]
               for name, fn in contenders.items()}
        base = med["subprocess.run(capture_output=True)"]
        flag = ", text=True" if mode == "text" else ""
        print(f"\n## capture of {size >> 20} MiB{flag}: peak RSS of a fresh interpreter (median of {rounds})")
        for name, (peak, growth, elapsed) in med.items():
            print(f"  {name:<40} peak {peak / 2**20:6.0f} MiB {peak / base[0]:5.2f}x   "
                  f"growth {growth / 2**20:6.0f} MiB {growth / base[1]:5.2f}x   "
                  f"{elapsed:6.3f} s {elapsed / base[2]:5.2f}x")
        nr = med["netrunner.run"]
        print(f"  target: peak RSS <= 1.1x subprocess's: {nr[0] / base[0]:.2f}x", flush=True)


def _line_producer(n: int) -> list[str]:
    return ["sh", "-c", f"yes 0123456789 | head -n {n}"]


def _popen_lines(n: int, **text: object) -> Callable[[], float]:
    def run() -> float:
        t0 = time.perf_counter()
        p = subprocess.Popen(_line_producer(n), stdout=subprocess.PIPE, **text)  # type: ignore[call-overload]
        count = 0
        for _ in p.stdout:
            count += 1
        p.wait()
        p.stdout.close()
        assert count == n, count
        return time.perf_counter() - t0

    return run


def _textio_lines(n: int) -> Callable[[], float]:
    def run() -> float:
        t0 = time.perf_counter()
        p = subprocess.Popen(_line_producer(n), stdout=subprocess.PIPE)
        assert p.stdout is not None
        count = 0
        with io.TextIOWrapper(p.stdout, encoding="utf-8", newline="\n") as f:
            for _ in f:
                count += 1
        p.wait()
        assert count == n, count
        return time.perf_counter() - t0

    return run


def _nr_lines(n: int, text: bool) -> Callable[[], float]:
    def run() -> float:
        t0 = time.perf_counter()
        count = 0
        with netrunner.stream(_line_producer(n), text=text) as s:
            for _ in s.lines():
                count += 1
        assert count == n, count
        return time.perf_counter() - t0

    return run


def _aio_lines(n: int, text: bool) -> Callable[[], float]:
    async def main() -> int:
        count = 0
        async with aio.stream(_line_producer(n), text=text) as s:
            async for _ in s.lines():
                count += 1
        return count

    def run() -> float:
        t0 = time.perf_counter()
        count = asyncio.run(main())
        assert count == n, count
        return time.perf_counter() - t0

    return run


def _asyncio_lines(n: int) -> Callable[[], float]:
    async def main() -> int:
        p = await asyncio.create_subprocess_exec(*_line_producer(n), stdout=asyncio.subprocess.PIPE)
        assert p.stdout is not None
        count = 0
        async for _ in p.stdout:
            count += 1
        await p.wait()
        return count

    def run() -> float:
        t0 = time.perf_counter()
        count = asyncio.run(main())
        assert count == n, count
        return time.perf_counter() - t0

    return run


def _report_lines(title: str, n: int, rounds: int, med: tuple[dict[str, float], dict[str, float]],
                  base_name: str) -> None:
    wall, cpu = med
    print(f"\n## {title}: {n / 1e6:g} M lines of 11 bytes (median of {rounds}; speed relative to {base_name})")
    for name, value in wall.items():
        print(f"  {name:<52} {value:7.3f} s {n / value / 1e6:6.1f} M lines/s {wall[base_name] / value:5.2f}x"
              f"   CPU {cpu[name]:6.3f} s {cpu[base_name] / cpu[name]:5.2f}x")


def bench_lines(n: int, rounds: int) -> None:
    """Iterating lines of a command's stdout, as ``for line in Popen(...).stdout``
    does. netrunner never translates newlines and ends lines at \\n only: in
    text mode the like-for-like comparison is a TextIOWrapper with newline="\\n";
    Popen(text=True), which also translates \\r\\n, is shown too."""
    popen, nr = "for line in Popen(...).stdout", "netrunner.stream(...).lines()"
    wall, cpu = med = interleave_cpu({popen: _popen_lines(n), nr: _nr_lines(n, False)}, rounds)
    _report_lines("lines, bytes", n, rounds, med, popen)
    print(f"  target: {nr} >= 1.0x the speed of Popen iteration: {wall[popen] / wall[nr]:.2f}x "
          f"(CPU {cpu[popen] / cpu[nr]:.2f}x)")

    popen_text = "for line in Popen(..., text=True).stdout"
    wrapper = "for line in TextIOWrapper(Popen.stdout, newline='\\n')"
    nr_text = "netrunner.stream(..., text=True).lines()"
    wall, cpu = med = interleave_cpu({popen_text: _popen_lines(n, text=True), wrapper: _textio_lines(n),
                                      nr_text: _nr_lines(n, True)}, rounds)
    _report_lines("lines, text (UTF-8)", n, rounds, med, popen_text)
    print(f"  target: >= 1.0x the speed of Popen(text=True) iteration: {wall[popen_text] / wall[nr_text]:.2f}x "
          f"(CPU {cpu[popen_text] / cpu[nr_text]:.2f}x; of the like-for-like TextIOWrapper: "
          f"{wall[wrapper] / wall[nr_text]:.2f}x, CPU {cpu[wrapper] / cpu[nr_text]:.2f}x)")

    small = max(1, n // 10)  # asyncio's StreamReader is an order of magnitude slower
    reader, aio_nr = "async for line in asyncio StreamReader", "async for line in aio.stream(...).lines()"
    wall, cpu = med = interleave_cpu({reader: _asyncio_lines(small), aio_nr: _aio_lines(small, False),
                                      "... aio.stream(..., text=True).lines()": _aio_lines(small, True),
                                      popen: _popen_lines(small)}, rounds)
    _report_lines("lines, asyncio", small, rounds, med, reader)
    print(f"  {aio_nr}: {wall[popen] / wall[aio_nr]:.2f}x the speed of sync Popen iteration "
          f"(an async for step costs more than a for step)", flush=True)


def bench_text_chunks(size: int, rounds: int) -> None:
    """Text-mode chunks (incremental UTF-8 decoding) against reading
    Popen(text=True).stdout 64 KiB at a time."""
    producer = ["sh", "-c", f"yes 'é€😀 ✓ text' | head -c {size}"]

    def popen_read() -> float:
        t0 = time.perf_counter()
        p = subprocess.Popen(producer, stdout=subprocess.PIPE, text=True, encoding="utf-8")
        assert p.stdout is not None
        total = 0
        while chunk := p.stdout.read(65536):
            total += len(chunk)
        p.wait()
        p.stdout.close()
        assert total > 0
        return time.perf_counter() - t0

    def nr(text: bool) -> Callable[[], float]:
        def run() -> float:
            t0 = time.perf_counter()
            total = 0
            with netrunner.stream(producer, text=text) as s:
                for chunk in s:
                    total += len(chunk)
            assert total > 0
            return time.perf_counter() - t0

        return run

    popen, nr_text = "Popen(text=True).stdout.read(65536) loop", "netrunner.stream(..., text=True)"
    wall, cpu = interleave_cpu({popen: popen_read, nr_text: nr(True), "netrunner.stream(...) (bytes)": nr(False)},
                               rounds)
    print(f"\n## text chunks, {size >> 20} MiB of UTF-8 (median of {rounds}; speed relative to {popen})")
    for name, value in wall.items():
        print(f"  {name:<52} {size / value / 2**20:7.0f} MiB/s {wall[popen] / value:5.2f}x"
              f"   CPU {cpu[name]:6.3f} s {cpu[popen] / cpu[name]:5.2f}x")
    print(f"  target: {nr_text} >= 1.0x: {wall[popen] / wall[nr_text]:.2f}x (CPU {cpu[popen] / cpu[nr_text]:.2f}x)",
          flush=True)


def bench_concurrency(n: int, rounds: int) -> None:
    def threads_during(coro_factory: Callable[[], object]) -> Callable[[], float]:
        def run() -> float:
            peak = [threading.active_count()]

            async def watch(task: asyncio.Future[object]) -> None:
                while not task.done():
                    peak[0] = max(peak[0], threading.active_count())
                    await asyncio.sleep(0.01)

            async def main() -> float:
                t0 = time.perf_counter()
                task = asyncio.ensure_future(coro_factory())  # type: ignore[arg-type]
                await asyncio.gather(task, watch(task))
                return time.perf_counter() - t0

            elapsed = asyncio.run(main())
            run.peak = max(getattr(run, "peak", 0), peak[0])  # type: ignore[attr-defined]
            return elapsed

        return run

    async def nr() -> None:
        await asyncio.gather(*(aio.run(["sleep", "0.5"]) for _ in range(n)))

    async def native() -> None:
        async def one() -> None:
            p = await asyncio.create_subprocess_exec("sleep", "0.5")
            await p.wait()

        await asyncio.gather(*(one() for _ in range(n)))

    nr_run, native_run = threads_during(nr), threads_during(native)
    med = interleave({"asyncio subprocesses": native_run, "netrunner.aio.run": nr_run}, rounds)
    base = med["asyncio subprocesses"]
    print(f"\n## {n} concurrent sleep 0.5 (median of {rounds})")
    print(f"  asyncio subprocesses    {base:6.3f} s   peak threads {native_run.peak}")  # type: ignore[attr-defined]
    print(f"  netrunner.aio.run       {med['netrunner.aio.run']:6.3f} s   peak threads {nr_run.peak}   "  # type: ignore[attr-defined]
          f"{med['netrunner.aio.run'] / base:5.2f}x   (target <= 1.2x, <= 2 threads)")


def bench_cgroup(rounds: int) -> None:
    """What a cgroup adds to a spawn: making its directories, joining them
    before exec, killing and measuring at the end, removing them."""
    try:
        netrunner.run(["true"], cgroup=netrunner.Cgroup())
    except netrunner.CgroupUnavailable as exc:
        print(f"\n## cgroup spawn: not measured ({exc})")
        return
    for _ in range(20):
        netrunner.run(["true"], cgroup=netrunner.Cgroup())
    med = interleave(
        {
            "netrunner.run(['true'])": timed(lambda: netrunner.run(["true"])),
            "netrunner.run(['true'], cgroup=Cgroup())": timed(
                lambda: netrunner.run(["true"], cgroup=netrunner.Cgroup())
            ),
            "... cgroup=Cgroup(memory_max='1G', pids_max=100)": timed(
                lambda: netrunner.run(["true"], cgroup=netrunner.Cgroup(memory_max="1G", pids_max=100))
            ),
        },
        rounds,
    )
    base = med["netrunner.run(['true'])"]
    print(f"\n## cgroup spawn cost (median of {rounds})")
    for name, value in med.items():
        print(f"  {name:<48} {value * 1e3:7.3f} ms   {value / base:5.2f}x   (+{(value - base) * 1e3:.3f} ms)")


def bench_pty(size: int, rounds: int, concurrent: int) -> None:
    """pty=True against pexpect and ptyprocess (installed separately: they
    are not netrunner's dependencies): spawn, throughput, many at once."""
    try:
        import pexpect
        from ptyprocess import PtyProcess
    except ImportError:
        print("\n## pty: not measured (pip install pexpect ptyprocess)")
        return

    # Both sleep delayafterclose (0.1 s) in close(), which their __del__
    # calls too: set to 0 here so the spawn itself is what is measured.
    def pexpect_true() -> None:
        child = pexpect.spawn("true")
        child.delayafterclose = child.ptyproc.delayafterclose = 0
        child.expect(pexpect.EOF)
        child.close()

    def ptyprocess_true() -> None:
        proc = PtyProcess.spawn(["true"])
        proc.delayafterclose = 0
        try:
            while proc.read(65536):
                pass
        except EOFError:
            pass
        proc.wait()
        proc.close()

    for _ in range(10):
        netrunner.run(["true"], pty=True)
        pexpect_true()
    med = interleave(
        {
            "subprocess.run(['true'])": timed(lambda: subprocess.run(["true"])),
            "netrunner.run(['true'], pty=True)": timed(lambda: netrunner.run(["true"], pty=True)),
            "pexpect.spawn('true') to EOF, closed": timed(pexpect_true),
            "ptyprocess.PtyProcess.spawn(['true']) to EOF": timed(ptyprocess_true),
        },
        rounds * 10,
    )
    base = med["subprocess.run(['true'])"]
    print(f"\n## pty spawn (median of {rounds * 10})")
    for name, value in med.items():
        print(f"  {name:<48} {value * 1e3:7.3f} ms   {value / base:5.2f}x")
    ratio = med["netrunner.run(['true'], pty=True)"] / base
    print(f"  target: pty=True <= 1.5x subprocess.run(['true']): {ratio:.2f}x")

    producer = ["head", "-c", str(size), "/dev/zero"]

    def nr_stream() -> float:
        t0 = time.perf_counter()
        total = 0
        with netrunner.stream(producer, pty=True) as s:
            for chunk in s:
                total += len(chunk)
        assert total == size, total
        return time.perf_counter() - t0

    def pexpect_read() -> float:
        t0 = time.perf_counter()
        child = pexpect.spawn(producer[0], producer[1:], maxread=65536)
        child.delayafterclose = child.ptyproc.delayafterclose = 0
        total = 0
        try:
            while True:
                total += len(child.read_nonblocking(65536, timeout=30))
        except pexpect.EOF:
            pass
        child.close()
        assert total == size, total
        return time.perf_counter() - t0

    def pexpect_expect_eof() -> float:
        t0 = time.perf_counter()
        child = pexpect.spawn(producer[0], producer[1:])
        child.delayafterclose = child.ptyproc.delayafterclose = 0
        child.expect(pexpect.EOF, timeout=None)  # the usual way to collect a command's output
        total = len(child.before)
        child.close()
        assert total == size, total
        return time.perf_counter() - t0

    def raw_loop() -> float:
        t0 = time.perf_counter()
        master, slave = os.openpty()
        proc = subprocess.Popen(producer, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
        os.close(slave)
        total = 0
        try:
            while data := os.read(master, 65536):
                total += len(data)
        except OSError:  # EIO: the end
            pass
        proc.wait()
        os.close(master)
        assert total == size, total
        return time.perf_counter() - t0

    def ptyprocess_read() -> float:
        t0 = time.perf_counter()
        proc = PtyProcess.spawn(producer)
        proc.delayafterclose = 0
        total = 0
        try:
            while True:
                total += len(proc.read(65536))
        except EOFError:
            pass
        proc.wait()
        proc.close()
        assert total == size, total
        return time.perf_counter() - t0

    tput = interleave({"raw os.read loop on a PTY master": raw_loop, "netrunner.stream(pty=True)": nr_stream,
                       "pexpect expect(EOF)": pexpect_expect_eof,
                       "pexpect read_nonblocking(64 KiB) loop": pexpect_read,
                       "ptyprocess read(64 KiB) loop": ptyprocess_read}, rounds)
    print(f"\n## pty throughput, {size >> 20} MiB (median of {rounds})")
    for name, value in tput.items():
        print(f"  {name:<48} {size / value / 2**20:8.1f} MiB/s")
    nr = tput["netrunner.stream(pty=True)"]
    print(f"  target: >= 5x pexpect's throughput: {tput['pexpect expect(EOF)'] / nr:.2f}x its expect(EOF), "
          f"{tput['pexpect read_nonblocking(64 KiB) loop'] / nr:.2f}x its best read loop; "
          f"{tput['raw os.read loop on a PTY master'] / nr:.2f}x the raw loop's (the kernel's tty layer is the limit)")

    async def nr_many() -> None:
        await asyncio.gather(*(aio.run(["sleep", "0.5"], pty=True) for _ in range(concurrent)))

    def pexpect_many() -> None:
        children = [pexpect.spawn("sleep", ["0.5"]) for _ in range(concurrent)]
        for child in children:
            child.delayafterclose = child.ptyproc.delayafterclose = 0
            child.expect(pexpect.EOF, timeout=60)
            child.close()

    wall = interleave({"aio.run(pty=True) x gather": timed(lambda: asyncio.run(nr_many())),
                       "pexpect.spawn, then expect(EOF) each": timed(pexpect_many)}, max(1, rounds // 2))
    print(f"\n## {concurrent} concurrent ['sleep', '0.5'] on PTYs (median)")
    for name, value in wall.items():
        print(f"  {name:<48} {value:7.3f} s")


def bench_output(quick: bool) -> None:
    """The everyday output paths: capture, lines, text."""
    bench_capture((128 if quick else 512) << 20, 3 if quick else 5)
    bench_lines(3_000_000 if quick else 30_000_000, 3 if quick else 5)
    bench_text_chunks((128 if quick else 512) << 20, 3 if quick else 5)


def bench_shepherd_rss() -> None:
    with netrunner.start(["sleep", "30"]) as p:
        shepherd = p._h.shepherd_pid
        rss = 0
        with open(f"/proc/{shepherd}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
        p.kill()
    print(f"\n## shepherd resident memory: {rss} KiB   (target <= 1024 KiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer rounds")
    parser.add_argument("--cgroup", action="store_true", help="only the cgroup spawn cost")
    parser.add_argument("--pty", action="store_true", help="only pty=True against pexpect and ptyprocess")
    parser.add_argument("--trio", action="store_true", help="only stream throughput under trio")
    parser.add_argument("--output", action="store_true", help="only capture memory, lines and text decoding")
    parser.add_argument("--spawn", type=int, metavar="ROUNDS", help="only the spawn latency, ROUNDS rounds")
    parser.add_argument("--throughput", nargs=2, type=int, metavar=("BYTES", "ROUNDS"), help=argparse.SUPPRESS)
    parser.add_argument("--trio-throughput", nargs=2, type=int, metavar=("BYTES", "ROUNDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.throughput:
        _throughput_pinned(*args.throughput)
        return
    if args.trio_throughput:
        _trio_throughput_pinned(*args.trio_throughput)
        return
    if args.trio:
        bench_trio_throughput(1024 << 20, 7)
    if args.spawn:
        bench_latency(args.spawn)
        return
    if args.cgroup:
        bench_cgroup(200)
        return
    if args.pty:
        bench_pty(256 << 20, 3, 200)
        return
    quick = args.quick
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    if args.output:
        bench_output(quick)
        return
    bench_latency(200 if quick else 1000)
    bench_throughput((256 if quick else 2048) << 20, 3 if quick else 5)
    bench_trio_throughput((256 if quick else 2048) << 20, 3 if quick else 5)
    bench_slow_consumer((256 if quick else 1024) << 20)
    bench_output(quick)
    bench_concurrency(200, 2 if quick else 5)
    bench_shepherd_rss()
    bench_cgroup(100 if quick else 500)
    bench_pty((256 if quick else 2048) << 20, 3 if quick else 5, 200)


if __name__ == "__main__":
    main()
