"""C_ATTRS, driven with raw records: the record's checks (S_ERROR and an exit
with nothing started), at most one before the spawn, none after it, and the
attributes reaching the command -- or, when the kernel refuses one, the
start failing with STAGE_ATTRS."""

from __future__ import annotations

import errno
import os
import resource
import struct
import time

import pytest
from _raw import close_all, events, idle_shepherd, reap, rights, send_spawn, started, std_fds
from conftest import pids_with_marker, wait_until

from netrunner._core import codec, wire
from netrunner._core.attrs import Changes

SH = b"/bin/sh"
HEAD = wire.BY_NAME["C_ATTRS"].struct
UMASK, NICE, AFFINITY = wire.ATTR_UMASK, wire.ATTR_NICE, wire.ATTR_AFFINITY
NOFILE, CORE = resource.RLIMIT_NOFILE, resource.RLIMIT_CORE
#: What the command reports: umask, nice, allowed CPUs, soft/hard open files, soft core size (blocks).
PROBE = (b"umask; cut -d' ' -f19 /proc/self/stat; sed -n 's/^Cpus_allowed_list:\t//p' /proc/self/status; "
         b"ulimit -Sn; ulimit -Hn; ulimit -Sc")


def attrs_record(flags: int = 0, umask: int = 0, nice: int = 0, nrlimits: int = 0, tail: bytes = b"") -> bytes:
    return HEAD.pack(wire.BY_NAME["C_ATTRS"].code, flags, umask, nice, nrlimits) + tail


def limit(res: int, soft: int, hard: int) -> bytes:
    return struct.pack("<IQQ", res, soft, hard)


ONE_LIMIT = limit(CORE, 0, 0)
MASK = b"\x01" + bytes(7)

MALFORMED = {
    "header too short": attrs_record()[:-1],
    "unknown flag 0x8": attrs_record(0x8),
    "unknown flag 2**31": attrs_record(UMASK | 2**31),
    "umask above 0777": attrs_record(UMASK, umask=0o1000),
    "umask without its flag": attrs_record(0, umask=0o022),
    "nice 20": attrs_record(NICE, nice=20),
    "nice -21": attrs_record(NICE, nice=-21),
    "nice without its flag": attrs_record(0, nice=5),
    "too many rlimits": attrs_record(0, nrlimits=wire.MAX_RLIMITS + 1, tail=ONE_LIMIT * (wire.MAX_RLIMITS + 1)),
    "nrlimits 2**32-1": attrs_record(0, nrlimits=2**32 - 1, tail=ONE_LIMIT),
    "a short rlimit": attrs_record(0, nrlimits=1, tail=ONE_LIMIT[:-1]),
    "a byte after the rlimits": attrs_record(0, nrlimits=1, tail=ONE_LIMIT + b"\0"),
    "fewer rlimits than announced": attrs_record(0, nrlimits=2, tail=ONE_LIMIT),
    "a mask without its flag": attrs_record(0, tail=MASK),
    "the flag without a mask": attrs_record(AFFINITY, nrlimits=1, tail=ONE_LIMIT),
    "a mask too long": attrs_record(AFFINITY, tail=bytes(wire.AFFINITY_MAX_BYTES + 1)),
}


def read_all(fd: int, timeout: float = 10.0) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    os.set_blocking(fd, False)
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            time.sleep(0.005)
            continue
        if not chunk:
            return out
        out += chunk
    raise TimeoutError(f"no end of file: {out!r}")


def run_with(records: list[bytes], argv: list[bytes]) -> tuple[list[object], bytes]:
    """Send these records, then the spawn of argv; return the events and stdout."""
    pid, sock = idle_shepherd()
    try:
        for record in records:
            sock.send(record)
        ours = send_spawn(sock, argv)
        try:
            got = events(sock)
            out = read_all(ours[1])
        finally:
            close_all(ours)
    finally:
        sock.close()
    reap(pid)
    return got, out


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_records(case: str, marker: str) -> None:
    pid, sock = idle_shepherd()
    try:
        sock.send(MALFORMED[case])
        assert events(sock) == [codec.ShepherdFault(wire.ERR_MALFORMED, 0), None]
    finally:
        sock.close()
    reap(pid, expect=wire.EXIT_PROTOCOL)
    assert not pids_with_marker(marker)


def test_a_second_record_is_unexpected(marker: str) -> None:
    pid, sock = idle_shepherd()
    try:
        sock.send(codec.encode_attrs(Changes(umask=0o077)))
        sock.send(codec.encode_attrs(Changes(nice=1)))
        assert events(sock) == [codec.ShepherdFault(wire.ERR_UNEXPECTED, 0), None]
    finally:
        sock.close()
    reap(pid, expect=wire.EXIT_PROTOCOL)
    assert not pids_with_marker(marker)


def test_a_record_after_the_spawn_is_unexpected(marker: str) -> None:
    pid, sock = idle_shepherd()
    ours = send_spawn(sock, [b"/bin/sleep", b"100"])
    try:
        started(sock)
        sock.send(codec.encode_attrs(Changes(umask=0o077)))
        assert events(sock) == [codec.ShepherdFault(wire.ERR_UNEXPECTED, 0), None]
    finally:
        sock.close()
        close_all(ours)
    reap(pid, expect=wire.EXIT_PROTOCOL)  # after stopping the tree
    assert wait_until(lambda: not pids_with_marker(marker))


def probe(records: list[bytes]) -> list[str]:
    got, out = run_with(records, [SH, b"-c", PROBE])
    assert isinstance(got[0], codec.Started) and isinstance(got[1], codec.Exited), got
    assert got[1].status == 0 and got[2:] == [None], got
    return out.decode().split("\n")[:-1]


def test_without_a_record_the_command_has_the_shepherds() -> None:
    umask, nice, _cpus, soft, _hard, _core = probe([])
    assert umask == "0022"
    assert nice == str(os.getpriority(os.PRIO_PROCESS, 0))
    assert soft == str(resource.getrlimit(NOFILE)[0])


def test_the_attributes_reach_the_command() -> None:
    hard = resource.getrlimit(NOFILE)[1]
    last_cpu = max(os.sched_getaffinity(0))
    sent = Changes(umask=0o027, nice=7, affinity=frozenset({last_cpu}),
                   rlimits=((NOFILE, 100, hard), (CORE, 4096, -1)))
    umask, nice, cpus, soft, hard_seen, core = probe([codec.encode_attrs(sent)])
    assert (umask, nice, cpus) == ("0027", "7", str(last_cpu))
    assert (soft, hard_seen, core) == ("100", str(hard), "8")  # ulimit -c counts 512-byte blocks


def test_the_record_may_come_between_spawn_parts() -> None:
    env = [k + b"=" + v for k, v in os.environb.items()] + [b"BIG=" + b"x" * 100_000]
    records = codec.encode_spawn([SH, b"-c", b"umask"], env, [SH], None, detach=False, kill_timeout=5)
    assert len(records) > 1
    theirs, ours = std_fds()
    pid, sock = idle_shepherd()
    try:
        sock.send(records[0])
        sock.send(codec.encode_attrs(Changes(umask=0o007)))
        for record in records[1:-1]:
            sock.send(record)
        sock.sendmsg([records[-1]], rights(theirs))
        close_all(theirs)
        got = events(sock)
        out = read_all(ours[1])
    finally:
        sock.close()
        close_all(ours)
    reap(pid)
    assert out == b"0007\n" and isinstance(got[1], codec.Exited) and got[1].status == 0, (got, out)


def test_the_largest_record_is_accepted() -> None:
    most = (*((CORE, 0, -1) for _ in range(wire.MAX_RLIMITS - 1)), (CORE, 1024, -1))
    record = codec.encode_attrs(Changes(rlimits=most))
    widest = record[:1] + struct.pack("<I", AFFINITY) + record[5:] + b"\xff" * wire.AFFINITY_MAX_BYTES
    *_, core = probe([widest])
    assert core == "2"


def test_a_low_open_files_limit_does_not_break_the_start() -> None:
    hard = resource.getrlimit(NOFILE)[1]
    got, out = run_with([codec.encode_attrs(Changes(rlimits=((NOFILE, 4, hard),)))], [SH, b"-c", b"ulimit -n"])
    assert out == b"4\n" and isinstance(got[1], codec.Exited) and got[1].status == 0, (got, out)


def test_cpus_the_command_cannot_have_are_ignored() -> None:
    # no such CPU here (the mask's last one): EINVAL, and the command keeps the shepherd's CPUs
    last = wire.AFFINITY_MAX_BYTES * 8 - 1
    assert last not in os.sched_getaffinity(0)
    _, _, cpus, *_ = probe([codec.encode_attrs(Changes(affinity=frozenset({last})))])
    with open("/proc/self/status") as f:
        ours = next(line.split(":\t")[1].strip() for line in f if line.startswith("Cpus_allowed_list:"))
    assert cpus == ours


@pytest.mark.parametrize("bad", [
    pytest.param(limit(1000, 1, 1), id="unknown resource"),
    pytest.param(limit(CORE, 2, 1), id="soft above hard"),
])
def test_a_limit_the_kernel_refuses_fails_the_start(bad: bytes, marker: str) -> None:
    got, out = run_with([attrs_record(0, nrlimits=1, tail=bad)], [b"/bin/true"])
    assert got == [codec.ExecFailed(errno.EINVAL, wire.STAGE_ATTRS), None]
    assert out == b""
    assert not pids_with_marker(marker)
