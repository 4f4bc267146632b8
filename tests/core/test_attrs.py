"""The attributes a command inherits, sans-IO: what differs from a shepherd's
baseline (nothing, in the common case), and the C_ATTRS record, byte by byte."""

from __future__ import annotations

import struct

import pytest

from netrunner._core import codec, wire
from netrunner._core.attrs import SHARED_UMASK, Attrs, Changes, affinity_mask, changes, describe, fits_mask

RES = (0, 4, 7)  # RLIMIT_CPU, RLIMIT_CORE, RLIMIT_NOFILE
LIMITS = ((-1, -1), (0, -1), (1024, 4096))
BASE = Attrs(0o022, 0, frozenset({0, 1}), RES, LIMITS)
HEAD = wire.BY_NAME["C_ATTRS"].struct
INF = wire.RLIM_INFINITY


def at(**kw: object) -> Attrs:
    fields = {"umask": BASE.umask, "nice": BASE.nice, "affinity": BASE.affinity,
              "resources": BASE.resources, "rlimits": BASE.rlimits, **kw}
    return Attrs(**fields)  # type: ignore[arg-type]


def test_nothing_changed_sends_nothing() -> None:
    assert changes(BASE, at()) is None
    # equal values in new objects (as every read gives) are still "nothing"
    again = Attrs(0o022, 0, frozenset([1, 0]), tuple(RES), tuple(tuple(x) for x in LIMITS))  # type: ignore[misc]
    assert changes(BASE, again) is None


@pytest.mark.parametrize(("now", "want"), [
    (at(umask=0o077), Changes(umask=0o077)),
    (at(nice=5), Changes(nice=5)),
    (at(nice=-3), Changes(nice=-3)),
    (at(affinity=frozenset({1})), Changes(affinity=frozenset({1}))),
    (at(rlimits=((-1, -1), (0, -1), (256, 4096))), Changes(rlimits=((7, 256, 4096),))),
    (at(rlimits=((-1, -1), (-1, -1), (1024, 2048))), Changes(rlimits=((4, -1, -1), (7, 1024, 2048)))),
    (at(umask=0, nice=19, affinity=frozenset({0}), rlimits=((10, -1), (0, -1), (1024, 4096))),
     Changes(0, 19, frozenset({0}), ((0, 10, -1),))),
])
def test_only_what_differs_is_sent(now: Attrs, want: Changes) -> None:
    assert changes(BASE, now) == want


def test_changed_back_sends_nothing() -> None:
    changed = at(umask=0o077, nice=3)
    assert changes(BASE, changed) is not None
    assert changes(BASE, at(umask=0o022, nice=0)) is None


def test_what_the_baseline_does_not_know_is_always_sent() -> None:
    unknown = Attrs(None, None, None, RES, (None, LIMITS[1], None))
    assert changes(unknown, BASE) == Changes(0o022, 0, frozenset({0, 1}), ((0, -1, -1), (7, 1024, 4096)))


def test_what_could_not_be_read_is_never_sent() -> None:
    unread = Attrs(None, None, None, RES, (None, None, None))
    assert changes(BASE, unread) is None
    assert changes(BASE, Attrs(0o077, None, None, RES, (None, None, (1, 1)))) == Changes(
        umask=0o077, rlimits=((7, 1, 1),))


def test_a_shared_umask_is_never_sent() -> None:
    shared = at(umask=SHARED_UMASK)
    assert changes(shared, shared) is None
    assert changes(shared, at(umask=SHARED_UMASK, nice=4)) == Changes(nice=4)
    # a snapshot and a baseline that disagree (one shares, one does not) still send no umask
    assert changes(shared, at(umask=0o077)) is None
    assert changes(BASE, shared) is None
    assert changes(Attrs(None, 0, frozenset({0, 1}), RES, LIMITS), shared) is None


def test_resources_the_baseline_lacks_are_sent() -> None:
    fewer = Attrs(0o022, 0, frozenset({0, 1}), RES[:2], LIMITS[:2])
    assert changes(fewer, BASE) == Changes(rlimits=((7, 1024, 4096),))


def test_an_empty_record() -> None:
    assert codec.encode_attrs(Changes()) == HEAD.pack(0x16, 0, 0, 0, 0)


def test_umask_and_nice_fields() -> None:
    assert codec.encode_attrs(Changes(umask=0o077)) == HEAD.pack(0x16, wire.ATTR_UMASK, 0o077, 0, 0)
    assert codec.encode_attrs(Changes(umask=0)) == HEAD.pack(0x16, wire.ATTR_UMASK, 0, 0, 0)
    assert codec.encode_attrs(Changes(nice=-20)) == HEAD.pack(0x16, wire.ATTR_NICE, 0, -20, 0)
    assert codec.encode_attrs(Changes(umask=0o002, nice=19)) == HEAD.pack(
        0x16, wire.ATTR_UMASK | wire.ATTR_NICE, 0o002, 19, 0)


def test_rlimits_then_the_mask_in_the_tail() -> None:
    record = codec.encode_attrs(Changes(nice=1, affinity=frozenset({0, 9}), rlimits=((7, 256, -1), (4, 0, 2**63))))
    assert record[: HEAD.size] == HEAD.pack(0x16, wire.ATTR_NICE | wire.ATTR_AFFINITY, 0, 1, 2)
    tail = record[HEAD.size :]
    assert struct.unpack("<IQQIQQ", tail[:40]) == (7, 256, INF, 4, 0, 2**63)
    assert tail[40:] == bytes([0x01, 0x02, 0, 0, 0, 0, 0, 0])


def test_affinity_mask_layout() -> None:
    assert affinity_mask({0}) == b"\x01" + bytes(7)
    assert affinity_mask({7, 8}) == b"\x80\x01" + bytes(6)
    assert affinity_mask({63}) == bytes(7) + b"\x80"
    assert affinity_mask({64}) == bytes(8) + b"\x01" + bytes(7)  # whole 64-bit words
    last = wire.AFFINITY_MAX_BYTES * 8 - 1
    assert affinity_mask({last}) == bytes(wire.AFFINITY_MAX_BYTES - 1) + b"\x80"
    assert fits_mask(frozenset({0, last}))
    assert not fits_mask(frozenset({last + 1}))
    assert not fits_mask(frozenset())
    for bad in (set(), {last + 1}, {-1}):
        with pytest.raises(ValueError):  # noqa: PT011
            affinity_mask(bad)


@pytest.mark.parametrize("bad", [
    Changes(umask=0o1000), Changes(umask=-1), Changes(nice=20), Changes(nice=-21),
    Changes(rlimits=((7, -2, 0),)), Changes(rlimits=((7, 0, 2**64),)),
    Changes(rlimits=tuple((7, 0, 0) for _ in range(wire.MAX_RLIMITS + 1))),
    Changes(affinity=frozenset()),
])
def test_values_a_record_cannot_carry_are_refused(bad: Changes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        codec.encode_attrs(bad)


def test_the_most_rlimits_fit() -> None:
    record = codec.encode_attrs(Changes(rlimits=tuple((i, i, -1) for i in range(wire.MAX_RLIMITS))))
    assert len(record) == HEAD.size + wire.MAX_RLIMITS * wire.ATTRS_RLIMIT_SIZE
    assert len(record) <= wire.MAX_RECORD


def test_describe_names_what_was_sent() -> None:
    text = describe(Changes(0o077, 5, frozenset({1}), ((7, 64, -1),)), {7: "RLIMIT_NOFILE"})
    assert text == "umask 0077, nice 5, CPU affinity [1], RLIMIT_NOFILE (64, unlimited)"
    assert describe(Changes(rlimits=((99, 1, 2),))) == "resource limit 99 (1, 2)"
