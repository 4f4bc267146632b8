"""Thousands of random and truncated records thrown at shepherds: each one
stays sane (answers with an error or ignores, never hangs or crashes), ends
when its owner hangs up, and leaves nothing behind; the zygote keeps serving."""

from __future__ import annotations

import random
import select
import socket

from _raw import close_all, idle_shepherd, reap, recv_record, rights, started, std_fds
from conftest import pids_with_marker, wait_until

import netrunner
from netrunner._core import codec, wire
from netrunner._core.attrs import Changes

CODES = [m.code for m in wire.MESSAGES] + [0x00, 0x7F, 0xFF]


def random_record(rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.3:  # pure noise
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64)))
    if kind < 0.6:  # a known type with a random size
        return bytes([rng.choice(CODES)]) + bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40)))
    if kind < 0.8:  # a valid request, truncated or extended
        valid = rng.choice([
            codec.encode_signal(rng.choice([0, 15, 28, 64, 65, 2**32 - 1])),
            codec.encode_stop(rng.choice([None, 0.001, 3.0])),
            codec.encode_winsize(24, 80),
            codec.encode_attrs(Changes(umask=0o022, nice=1, affinity=frozenset({0}), rlimits=((4, 0, -1),))),
        ])
        cut = rng.randint(0, len(valid) + 3)
        return (valid + b"\0\0\0")[:cut] or b"\x13"
    # a spawn header with random counts and a random tail (sent without fds)
    head = wire.BY_NAME["C_SPAWN"].struct.pack(
        0x10, rng.getrandbits(32), rng.getrandbits(16),
        rng.choice([0, 1, 2, 2**32 - 1]), rng.choice([0, 1, 2**31]), rng.choice([0, 1, 5])
    )
    tail = bytes(rng.choice(b"ab/\0") for _ in range(rng.randint(0, 30)))
    return head + tail


def drain_until_eof(sock: socket.socket, timeout: float = 10.0) -> list[codec.Event]:
    got = []
    while select.select([sock], [], [], timeout)[0]:
        try:
            record, fds = recv_record(sock)
        except ConnectionResetError:  # it hung up with our records unread
            return got
        close_all(fds)
        if not record:
            return got
        got.append(codec.decode(record))  # whatever it says must be well-formed
    raise AssertionError(f"shepherd neither answered nor hung up: {got}")


def send_until_refused(sock: socket.socket, records: list[bytes]) -> None:
    """Send ``records`` in order until the shepherd refuses one.

    A shepherd gives up at the first bad record, so how many of the rest it
    takes before it hangs up depends on timing; the assertions are about what
    it answers and how it exits, never about that count. The first record is
    always taken: the shepherd is alive and reading when the fuzz starts.
    """
    sock.send(records[0])
    for record in records[1:]:
        try:
            sock.send(record)
        except OSError:
            return  # it gave up on an earlier record and hung up


def expected_exit(events: list[codec.Event]) -> int:
    """A shepherd that answered a bad frame exits with EXIT_PROTOCOL."""
    faults = [e for e in events if isinstance(e, codec.ShepherdFault)]
    if any(f.code == wire.ERR_SYSTEM for f in faults):
        return wire.EXIT_SYSTEM
    return wire.EXIT_PROTOCOL if faults else wire.EXIT_OK


def test_random_records_to_idle_shepherds() -> None:
    rng = random.Random(1234)
    for _ in range(300):
        pid, sock = idle_shepherd()
        # Drawn before sending, so the records do not depend on when the
        # shepherd gives up (it stops reading at the first bad one).
        records = [random_record(rng) for _ in range(rng.randint(1, 30))]
        try:
            send_until_refused(sock, records)
            sock.shutdown(socket.SHUT_WR)
            events = drain_until_eof(sock)
            assert all(isinstance(e, (codec.ShepherdFault, codec.Started, codec.ExecFailed, codec.Exited))
                       for e in events)
        finally:
            sock.close()
        reap(pid, expect=expected_exit(events))
    assert netrunner.run(["echo", "still fine"]).stdout == b"still fine\n"


def test_random_records_to_running_shepherds(marker: str) -> None:
    rng = random.Random(99)
    for _ in range(60):
        pid, sock = idle_shepherd()
        theirs, ours = std_fds()
        env = [f"NETRUNNER_TEST_MARKER={marker}".encode()]
        records = codec.encode_spawn([b"/bin/sleep", b"100"], env, [b"/bin/sleep"], None,
                                     detach=False, kill_timeout=0.5)
        sock.sendmsg([records[-1]], rights(theirs))
        close_all(theirs)
        try:
            started(sock)
            records = [random_record(rng) for _ in range(rng.randint(1, 40))]
            # keep the fuzz about framing, not signals
            records = [b"\x12" + b"\0" * (len(r) - 1) if r[:1] == b"\x12" else r for r in records]
            send_until_refused(sock, records)
            sock.shutdown(socket.SHUT_WR)
            got = drain_until_eof(sock)
        finally:
            sock.close()
            close_all(ours)
        reap(pid, expect=expected_exit(got))
    assert wait_until(lambda: not pids_with_marker(marker))


def test_truncated_spawn_parts_are_bounded() -> None:
    # SPAWN_PART records that together exceed the limit are refused
    pid, sock = idle_shepherd()
    part = b"\x11" + b"x" * (wire.MAX_RECORD - 1)
    refused = False
    try:
        for _ in range(wire.MAX_SPAWN_BYTES // (wire.MAX_RECORD - 1) + 2):
            sock.send(part)
    except OSError:
        refused = True
    events = drain_until_eof(sock, timeout=30)
    sock.close()
    reap(pid, expect=wire.EXIT_PROTOCOL)
    assert events == [codec.ShepherdFault(wire.ERR_TOO_LARGE, 0)]
    del refused


def test_oversized_record_is_malformed() -> None:
    pid, sock = idle_shepherd()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * wire.MAX_RECORD)
    sock.send(b"\x11" + bytes(wire.MAX_RECORD + 10))
    assert drain_until_eof(sock) == [codec.ShepherdFault(wire.ERR_MALFORMED, 0)]
    sock.close()
    reap(pid, expect=wire.EXIT_PROTOCOL)


def test_thousands_of_harmless_records_to_a_running_shepherd(marker: str) -> None:
    # valid frames that change nothing (no pty, not a signal) keep it running
    rng = random.Random(7)
    pid, sock = idle_shepherd()
    theirs, ours = std_fds()
    env = [f"NETRUNNER_TEST_MARKER={marker}".encode()]
    [record] = codec.encode_spawn([b"/bin/sleep", b"100"], env, [b"/bin/sleep"], None,
                                  detach=False, kill_timeout=0.5)
    sock.sendmsg([record], rights(theirs))
    close_all(theirs)
    try:
        started(sock)
        for _ in range(3000):
            sock.send(rng.choice([
                codec.encode_winsize(rng.getrandbits(16), rng.getrandbits(16)),
                codec.encode_signal(0),
                codec.encode_signal(rng.choice([65, 1000, 2**31, 2**32 - 1])),
            ]))
        sock.send(codec.encode_signal(9))
        events = drain_until_eof(sock)
        assert len(events) == 1 and isinstance(events[0], codec.Exited) and events[0].status == 9, events
    finally:
        sock.close()
        close_all(ours)
    reap(pid)
    assert wait_until(lambda: not pids_with_marker(marker))
