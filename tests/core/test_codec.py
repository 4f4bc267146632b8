"""The Python codec, byte by byte: every frame type, wrong sizes, trailing bytes."""

from __future__ import annotations

import struct

import pytest

from netrunner._core import codec, wire


def test_decode_each_event_type() -> None:
    assert codec.decode(struct.pack("<BIIi", 0x01, 1, 0xDEADBEEF, 42)) == codec.Hello(1, 0xDEADBEEF, 42)
    assert codec.decode(struct.pack("<Bii", 0x03, 77, 0)) == codec.Forked(77, 0)
    assert codec.decode(struct.pack("<Bi", 0x20, 1234)) == codec.Started(1234)
    assert codec.decode(struct.pack("<BiI", 0x21, 2, 3)) == codec.ExecFailed(2, 3)
    record = struct.pack("<BiQQQIQ", 0x22, 256, 10, 20, 30, 3, 4096)
    assert codec.decode(record) == codec.Exited(256, 10, 20, 30, 3, 4096)
    assert codec.decode(struct.pack("<BIi", 0x23, 1, 0)) == codec.ShepherdFault(1, 0)


@pytest.mark.parametrize("message", [m for m in wire.MESSAGES if m.direction.startswith("from")])
def test_wrong_sizes_are_rejected(message: wire.Message) -> None:
    good = bytes([message.code]) + bytes(message.size - 1)
    codec.decode(good)
    with pytest.raises(codec.ProtocolError):
        codec.decode(good + b"\0")  # a trailing byte
    with pytest.raises(codec.ProtocolError):
        codec.decode(good[:-1])  # truncated


def test_unknown_and_empty_records() -> None:
    with pytest.raises(codec.ProtocolError, match="unknown"):
        codec.decode(b"\x7f")
    with pytest.raises(codec.ProtocolError, match="empty"):
        codec.decode(b"")
    with pytest.raises(codec.ProtocolError):  # a request code is not an event
        codec.decode(bytes([0x10]) + bytes(20))


def test_spawn_fits_one_record() -> None:
    [record] = codec.encode_spawn([b"ls", b"-l"], [b"A=1"], [b"/bin/ls"], b"/tmp", detach=True, kill_timeout=2.5)
    head = wire.BY_NAME["C_SPAWN"].struct
    code, flags, ms, argc, envc, npaths = head.unpack(record[: head.size])
    assert (code, ms, argc, envc, npaths) == (0x10, 2500, 2, 1, 1)
    assert flags == wire.FLAG_DETACH | wire.FLAG_CWD
    assert record[head.size :] == b"ls\0-l\0A=1\0/bin/ls\0/tmp\0"


def test_spawn_splits_into_parts_that_reassemble() -> None:
    env = [b"V%d=" % i + b"x" * 1000 for i in range(300)]
    records = codec.encode_spawn([b"true"], env, [b"/bin/true"], None, detach=False, kill_timeout=5)
    assert len(records) > 1
    assert all(len(r) <= wire.MAX_RECORD for r in records)
    assert all(r[0] == 0x11 for r in records[:-1])
    assert records[-1][0] == 0x10
    head = wire.BY_NAME["C_SPAWN"].struct
    tail = b"".join(r[1:] for r in records[:-1]) + records[-1][head.size :]
    assert tail == b"\0".join([b"true", *env, b"/bin/true"]) + b"\0"


def test_small_requests() -> None:
    assert codec.encode_signal(15) == struct.pack("<BI", 0x12, 15)
    assert codec.encode_stop(None) == struct.pack("<BI", 0x13, 0)
    assert codec.encode_stop(0.0001) == struct.pack("<BI", 0x13, 1)  # never "use the default" by rounding
    assert codec.encode_winsize(24, 80) == struct.pack("<BHH", 0x14, 24, 80)
    assert codec.encode_fork() == b"\x02"


def test_digest_covers_the_table() -> None:
    assert wire.PROTOCOL_DIGEST == int.from_bytes(
        __import__("hashlib").sha256(wire.canonical_table().encode()).digest()[:4], "little"
    )
    assert len({m.code for m in wire.MESSAGES}) == len(wire.MESSAGES)
