"""A daemon's command for the Daemon tests: each run logs itself, then follows
the step of a plan chosen by its run number.

    python -S plan_child.py LOG PLAN

``LOG`` gets one line per event, appended in a single ``write`` (O_APPEND):
``start N PID T`` when run N (0-based: the number of earlier ``start`` lines)
begins and ``end N PID T`` just before it exits, ``T`` being
``time.monotonic()`` (CLOCK_MONOTONIC, the same clock in every process of the
machine, so the test compares it with its own). ``PLAN`` is a comma-separated
list of steps; run N follows step N, the last step repeating:

``exit:C``        exit with status C at once
``sleep:S:C``     sleep S seconds, then exit with status C
``hang``          sleep (almost) forever
``kill``          SIGKILL itself
``go:C``          wait until the file ``LOG.goN`` exists, then exit with status C
``read:C``        read one line of stdin, log ``got N <line>``, exit with status C
``echo``          log ``got N <line>`` for every line of stdin until EOF, then exit 0

Runs that overlap in time would number themselves wrongly: the overlap test
does not use this script.
"""

from __future__ import annotations

import os
import signal
import sys
import time


def log(path: str, *words: object) -> None:
    line = " ".join(str(w) for w in words) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def main() -> None:
    path, plan = sys.argv[1], sys.argv[2].split(",")
    try:
        with open(path) as f:
            n = sum(1 for line in f if line.startswith("start "))
    except FileNotFoundError:
        n = 0
    pid = os.getpid()
    log(path, "start", n, pid, repr(time.monotonic()))
    step = plan[min(n, len(plan) - 1)].split(":")
    kind = step[0]

    def end(code: int) -> None:
        log(path, "end", n, pid, repr(time.monotonic()))
        os._exit(code)

    if kind == "exit":
        end(int(step[1]))
    elif kind == "sleep":
        time.sleep(float(step[1]))
        end(int(step[2]))
    elif kind == "hang":
        time.sleep(1000)
    elif kind == "kill":
        log(path, "end", n, pid, repr(time.monotonic()))
        os.kill(pid, signal.SIGKILL)
    elif kind == "go":
        go = f"{path}.go{n}"
        while not os.path.exists(go):
            time.sleep(0.01)
        end(int(step[1]))
    elif kind == "read":
        line = sys.stdin.buffer.readline()
        log(path, "got", n, line.decode().rstrip("\n"))
        end(int(step[1]))
    elif kind == "echo":
        for raw in sys.stdin.buffer:
            log(path, "got", n, raw.decode().rstrip("\n"))
        end(0)
    else:
        raise SystemExit(f"unknown step {kind!r}")


if __name__ == "__main__":
    main()
