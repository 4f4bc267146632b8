"""Where the wake-ups of a spawn land: ``netrunner.run(["true"])`` against
``subprocess.run(["true"])``, read from the kernel scheduler's trace.

    python benchmarks/wakeups.py [--rounds N]      # as root

Each round runs both calls once, in a shuffled order, between marks
written to the trace. For every wake-up inside a call the trace gives the
CPU that woke the process, the CPU the kernel put it on, and when it ran.
On hosts whose idle CPUs wake slowly (a virtual machine whose halted vCPUs
the host must schedule again), a wake-up that crosses to an idle CPU costs
far more than one on the waker's own CPU. ``subprocess.run`` has almost
none: its child runs on the parent's CPU while the parent waits in
``vfork``. ``netrunner.run`` has two on its critical path: the shepherd
woken by the request, and Python woken by ``S_EXITED``. See ADR 9, "Later:
a virtual machine whose idle CPUs wake slowly".

Needs root and tracefs (mounted at /sys/kernel/tracing if it is not
mounted yet). The trace is switched off and its events disabled at the end.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import statistics
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import netrunner

EVENTS = ("sched_switch", "sched_waking", "sched_process_fork", "sched_process_exit")
_LINE = re.compile(
    r"^\s*(?P<comm>.+?)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+\S+\s+(?P<ts>[\d.]+): (?P<event>\w+): (?P<rest>.*)$"
)
_FIELD = re.compile(r"(\w+)=(\S+)")


def tracefs_mount(mountinfo: str) -> str | None:
    """The mount point of tracefs in a /proc/self/mountinfo text, if any."""
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if sep and right.split(" ", 1)[0] == "tracefs":
            return left.split(" ")[4]
    return None


def tracefs() -> str:
    with open("/proc/self/mountinfo") as f:
        found = tracefs_mount(f.read())
    if found is not None:
        return found
    path = "/sys/kernel/tracing"
    if subprocess.run(["mount", "-t", "tracefs", "nodev", path], check=False).returncode != 0:
        sys.exit(f"wakeups.py: tracefs is not mounted and mounting it at {path} failed (run as root)")
    return path


@dataclass
class Call:
    """One call between its marks, with the trace's events inside it."""

    kind: str
    start: float
    end: float = 0.0
    #: (µs, cpu, pid, comm, event, its fields), in the order of the trace
    events: list[tuple[float, int, int, str, str, dict[str, str]]] = field(default_factory=list)


def parse(text: str) -> Iterator[Call]:
    """The calls in a trace: events between ``B <kind>`` and ``E <kind>``
    marks, time stamps in µs."""
    call: Call | None = None
    for line in text.splitlines():
        m = _LINE.match(line)
        if m is None:
            continue
        ts = float(m["ts"]) * 1e6
        if m["event"] == "tracing_mark_write":
            edge, kind = m["rest"].split()[:2]
            if edge == "B":
                call = Call(kind, ts)
            elif call is not None:
                call.end = ts
                yield call
                call = None
        elif call is not None:
            fields = dict(_FIELD.findall(m["rest"]))
            call.events.append((ts, int(m["cpu"]), int(m["pid"]), m["comm"], m["event"], fields))


@dataclass
class Wakeup:
    pid: int  # the woken process
    comm: str  # its command name
    crossed: bool  # put on another CPU than the waker's
    latency: float  # µs from sched_waking to its first sched_switch in
    after_exit: bool  # the command had exited


def wakeups(call: Call, me: int) -> list[Wakeup]:
    """The wake-ups inside ``call`` of the processes it involves: this one,
    those it wakes (the shepherd), and the children of either (the
    command); other processes on the machine are left out."""
    found: list[Wakeup] = []
    ours = {me}
    waking: dict[int, tuple[float, int, bool]] = {}
    exited = False
    for ts, cpu, pid, comm, event, f in call.events:
        if event == "sched_process_fork" and pid in ours:
            ours.add(int(f["child_pid"]))
        elif event == "sched_process_exit" and pid in ours and comm == "true":
            exited = True
        elif event == "sched_waking":
            woken = int(f["pid"])
            if pid == me:
                ours.add(woken)
            if woken in ours:
                waking[woken] = (ts, cpu, exited)
        elif event == "sched_switch" and int(f["next_pid"]) in waking:
            t0, waker_cpu, after = waking.pop(int(f["next_pid"]))
            found.append(Wakeup(int(f["next_pid"]), f["next_comm"], cpu != waker_cpu, ts - t0, after))
    return found


def record(rounds: int) -> str:
    root = tracefs()

    def write(name: str, value: str) -> None:
        with open(os.path.join(root, name), "w") as f:
            f.write(value)

    calls = {"netrunner": lambda: netrunner.run(["true"]), "subprocess": lambda: subprocess.run(["true"], check=False)}
    for _ in range(30):  # warm: the zygote started, an idle shepherd kept
        for fn in calls.values():
            fn()
    write("tracing_on", "0")
    write("trace", "")
    write("buffer_size_kb", str(max(4096, rounds * 40)))
    for event in EVENTS:
        write(f"events/sched/{event}/enable", "1")
    order = list(calls.items())
    rnd = random.Random(0)
    try:
        with open(os.path.join(root, "trace_marker"), "w", buffering=1) as mark:
            write("tracing_on", "1")
            for _ in range(rounds):
                rnd.shuffle(order)
                for kind, fn in order:
                    mark.write(f"B {kind}\n")
                    fn()
                    mark.write(f"E {kind}\n")
            write("tracing_on", "0")
        with open(os.path.join(root, "trace")) as f:
            return f.read()
    finally:
        write("tracing_on", "0")
        for event in EVENTS:
            write(f"events/sched/{event}/enable", "0")


def report(text: str) -> None:
    me = os.getpid()
    calls = [(call, wakeups(call, me)) for call in parse(text)]
    med = statistics.median
    print(f"## wake-ups in run(['true']) and subprocess.run(['true']), {len(calls) // 2} rounds, medians in µs")
    for kind in ("subprocess", "netrunner"):
        mine = [(c, ws) for c, ws in calls if c.kind == kind]
        crossed = statistics.mean(sum(w.crossed for w in ws) for _, ws in mine)
        took = med(c.end - c.start for c, _ in mine)
        print(f"  {kind + '.run':<16} the call {took:6.0f}   wake-ups onto another CPU per call {crossed:.2f}")
    # netrunner's two on the critical path: the first of the shepherd's
    # (the request), and the first of ours after the command's exit.
    request: list[Wakeup] = []
    exited: list[Wakeup] = []
    for call, ws in calls:
        if call.kind != "netrunner":
            continue
        request += [w for w in ws if w.comm.startswith("netrunner-sh")][:1]
        exited += [w for w in ws if w.after_exit and w.pid == me][:1]
    for name, ws in (("the shepherd, by the request", request), ("Python, by S_EXITED", exited)):
        across = [w.latency for w in ws if w.crossed] or [math.nan]
        same = [w.latency for w in ws if not w.crossed] or [math.nan]
        share = 100 * sum(w.crossed for w in ws) / max(1, len(ws))
        print(
            f"  {name:<30} onto another CPU in {share:3.0f}% of calls; "
            f"waking -> running: other CPU {med(across):4.0f}, same CPU {med(same):4.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("wakeups.py: the scheduler's trace needs root")
    report(record(args.rounds))


if __name__ == "__main__":
    main()
