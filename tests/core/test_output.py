"""Captures, tails, decoding, line splitting and input sources."""

from __future__ import annotations

import io

import pytest

from netrunner._core.output import Backlog, Capture, Decoder, InputSource, Lines, Tail


def test_capture_keeps_exactly_the_limit() -> None:
    c = Capture(limit=5)
    assert c.add(b"abc") is False
    assert c.add(b"defg") is True  # the chunk that crosses the limit
    assert c.add(b"more") is False  # reported once
    assert c.value() == b"abcde" and c.exceeded


def test_capture_without_limit() -> None:
    c = Capture()
    for _ in range(1000):
        c.add(b"x" * 100)
    assert len(c.value()) == 100_000 and not c.exceeded


def test_tail_keeps_the_last_bytes() -> None:
    t = Tail(keep=4)
    for chunk in (b"012", b"3456", b"78", b"9"):
        t.add(chunk)
    assert t.value() == b"6789"


def test_decoder_across_chunks() -> None:
    d = Decoder("utf-8", "strict")
    assert d(b"caf\xc3") == "caf"
    assert d(b"\xa9!") == "\u00e9!"
    with pytest.raises(UnicodeDecodeError):
        Decoder("utf-8", "strict")(b"\xff", final=True)
    assert Decoder("utf-8", "replace")(b"\xff", final=True) == "\ufffd"


def test_lines_across_chunks_and_last_line() -> None:
    s = Lines(text=False)
    assert s.feed(b"a\nb") == [b"a\n"]
    assert s.feed(b"c") == []
    assert s.feed(b"\n\nd") == [b"bc\n", b"\n"]
    assert s.finish() == [b"d"]
    assert s.finish() == []


def test_lines_text_and_long_line() -> None:
    s = Lines(text=True)
    big = "x" * 1_000_000
    out = []
    for i in range(0, len(big), 4096):
        out += s.feed(big[i : i + 4096])
    out += s.feed("\n")
    assert out == [big + "\n"]


def test_input_sources() -> None:
    assert InputSource("é", None).next_chunk() == "é".encode()
    assert InputSource("é", "latin-1").next_chunk() == b"\xe9"
    src = InputSource(io.BytesIO(b"x" * 100_000), None)
    chunks = []
    while (c := src.next_chunk()) is not None:
        chunks.append(c)
    assert b"".join(chunks) == b"x" * 100_000 and len(chunks) == 2
    assert InputSource(io.StringIO("text"), None).next_chunk() == b"text"


def test_input_iterable_is_lazy_and_skips_empty_items() -> None:
    pulled = []

    def gen():  # type: ignore[no-untyped-def]
        for i in range(3):
            pulled.append(i)
            yield "" if i == 0 else f"{i}"

    src = InputSource(gen(), None)
    assert pulled == []
    assert src.next_chunk() == b"1" and pulled == [0, 1]
    assert src.next_chunk() == b"2"
    assert src.next_chunk() is None


def test_input_rejects_wrong_items() -> None:
    with pytest.raises(TypeError, match="bytes or str"):
        InputSource([1], None).next_chunk()


def test_backlog_serves_oldest_first_and_counts_what_it_drops() -> None:
    b = Backlog(limit=8)
    b.add(b"abcd")
    b.add(b"efgh")
    assert len(b) == 8 and b.dropped == 0
    b.add(b"ijk")  # 3 over the limit: the 3 oldest go
    assert b.dropped == 3 and len(b) == 8
    assert b.take(2) == b"de"
    assert b.take(100) == b"fghijk"
    assert b.take(5) == b"" and len(b) == 0


def test_backlog_with_one_chunk_larger_than_the_limit() -> None:
    b = Backlog(limit=4)
    b.add(b"0123456789")
    assert b.take(10) == b"6789" and b.dropped == 6
