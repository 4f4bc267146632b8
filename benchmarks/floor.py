"""How fast can ``run(["true"])`` be over netrunner's shepherd protocol?

    python benchmarks/floor.py [--rounds N]

``lean_run`` does, in one function, what ``netrunner.run`` does for a
command with no options that exits at once: the same pipes, fds, attribute
read, records and system calls, the same ``Result`` and ``Stats``, and none
of the engine's generality (no flows, no driver, no failure paths, no
lifetime registration). It is a measurement, not an alternative: it is not
safe to use. Variants leave out the attribute read, the ``Result`` and its
``Stats``, the start's time stamp, or all three.

Every contender runs once per round, in an order shuffled each round, as in
``run.py`` (whose ``interleave`` this uses); medians, and the ratio to
``subprocess.run(["true"])``. See ADR 9, "Later: the floor in a
shuffled order".
"""

from __future__ import annotations

import argparse
import array
import os
import select
import socket
import subprocess
import time
from datetime import datetime, timezone

from run import interleave, timed  # benchmarks/run.py, beside this file

import netrunner
from netrunner._core import attrs, codec, wire
from netrunner._core.output import Capture
from netrunner._engine import _ANCILLARY, _CMSG_CLOEXEC, _RECORD_ROOM, _fds_of, _spawn_records, send_on
from netrunner._io import attrs as read_attrs
from netrunner._io import fds, zygote
from netrunner._options import argv_of, validate
from netrunner._results import Result, Stats, decode_status

_OPTIONS = validate("run", {})


def lean_run(cmd: list[str], *, read: bool = True, result: bool = True, stamp: bool = True) -> Result[bytes] | None:
    """``run(cmd)`` for a command that exits at once, in one function."""
    args, argv = argv_of(cmd)
    records = _spawn_records(argv, _OPTIONS, True)
    started_at = datetime.now(timezone.utc) if stamp else datetime.min
    t0 = time.monotonic()
    out_r, out_w = fds.pipe()
    err_r, err_w = fds.pipe()
    os.set_blocking(out_r, False)
    os.set_blocking(err_r, False)
    here = fds.open_fd(".", os.O_PATH | os.O_DIRECTORY, "the current directory")
    pid, sock, baseline = zygote.take_shepherd()
    sent = None
    if read:
        sent = attrs.changes(baseline, read_attrs.current(umask_shared=baseline.umask == attrs.SHARED_UMASK))
    if sent is not None:
        send_on(sock, codec.encode_attrs(sent))
    for record in records[:-1]:
        send_on(sock, record)
    passed = array.array("i", [fds.devnull(os.O_RDONLY), out_w, err_w, here]).tobytes()
    send_on(sock, records[-1], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, passed)])
    ctl = sock.fileno()
    poller = select.poll()
    for fd in (ctl, out_r, err_r):
        poller.register(fd, select.POLLIN)
    out, err = Capture(), Capture()
    pidfd: int | None = None
    exited: codec.Exited | None = None
    t1 = t0
    while exited is None:
        ready = dict(poller.poll())
        while ctl in ready and exited is None:
            try:
                if pidfd is None:  # STARTED brings the command's pidfd
                    with fds.lock:
                        record, ancillary, _, _ = sock.recvmsg(_RECORD_ROOM, _ANCILLARY, _CMSG_CLOEXEC)
                        pidfd = fds.adopt(_fds_of(ancillary)[0])
                    fds.close(here)
                else:
                    record = sock.recv(_RECORD_ROOM)
            except BlockingIOError:
                break
            event = codec.decode(record)
            if type(event) is codec.Exited:
                exited, t1 = event, time.monotonic()
        for fd, capture in ((out_r, out), (err_r, err)):
            if fd in ready:
                try:
                    capture.add(os.read(fd, 65536))
                except BlockingIOError:
                    pass
    fds.close_all((out_w, err_w))
    for fd, capture in ((out_r, out), (err_r, err)):
        while data := os.read(fd, 65536):
            capture.add(data)
    fds.close_all((out_r, err_r, pidfd))
    if not exited.flags & wire.EXITED_REUSABLE or not zygote.take_back(pid, sock, baseline):
        raise RuntimeError("a measurement only: the shepherd did not come back")
    if not result:
        return None
    rc, exit_status, sig = decode_status(exited.status)
    stats = Stats(
        0, 0, 0, 0, 0, started_at, t1 - t0, rc, exit_status,
        exited.utime_us / 1e6, exited.stime_us / 1e6, exited.maxrss_kb * 1024, None, None, 0,
    )
    return Result(tuple(args), out.value(), err.value(), rc, exit_status, sig, stats, (rc,), (stats,))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3000)
    rounds = parser.parse_args().rounds
    check = lean_run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert check is not None
    assert (check.stdout, check.stderr, check.returncode) == (b"out\n", b"err\n", 3), check
    contenders = {
        "subprocess.run(['true'])": timed(lambda: subprocess.run(["true"])),
        "netrunner.run(['true'])": timed(lambda: netrunner.run(["true"])),
        "lean_run": timed(lambda: lean_run(["true"])),
        "lean_run, no attribute read": timed(lambda: lean_run(["true"], read=False)),
        "lean_run, no Result": timed(lambda: lean_run(["true"], result=False)),
        "lean_run, no time stamp": timed(lambda: lean_run(["true"], stamp=False)),
        "lean_run, none of the three": timed(lambda: lean_run(["true"], read=False, result=False, stamp=False)),
    }
    for _ in range(30):  # warm up: zygote started, caches hot
        for fn in contenders.values():
            fn()
    med = interleave(contenders, rounds)
    base = med["subprocess.run(['true'])"]
    print(f"## run(['true']) and its floor (median of {rounds}, shuffled rounds)")
    for name, value in med.items():
        print(f"  {name:<32} {value * 1e3:7.3f} ms   {value / base:5.3f}x")


if __name__ == "__main__":
    main()
