"""Captures, tails, decoding, line splitting and input sources."""

from __future__ import annotations

import io
import random

import pytest

from netrunner._core.output import (
    Backlog,
    Capture,
    Decoder,
    InputSource,
    Lines,
    Tail,
    cut_head,
    encode_text,
    encoded_size,
    text_prefix,
)


def test_capture_keeps_exactly_the_limit() -> None:
    c = Capture(limit=5)
    assert c.add(b"abc") is False
    assert c.add(b"defg") is True  # the chunk that crosses the limit
    assert c.add(b"more") is False  # reported once
    assert c.value() == b"abcde"
    assert c.exceeded


def test_capture_without_limit() -> None:
    c = Capture()
    for _ in range(1000):
        c.add(b"x" * 100)
    assert len(c.value()) == 100_000
    assert not c.exceeded


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
    assert b"".join(chunks) == b"x" * 100_000
    assert len(chunks) == 2
    assert InputSource(io.StringIO("text"), None).next_chunk() == b"text"


def test_input_iterable_is_lazy_and_skips_empty_items() -> None:
    pulled = []

    def gen():  # type: ignore[no-untyped-def]
        for i in range(3):
            pulled.append(i)
            yield "" if i == 0 else f"{i}"

    src = InputSource(gen(), None)
    assert pulled == []
    assert src.next_chunk() == b"1"
    assert pulled == [0, 1]
    assert src.next_chunk() == b"2"
    assert src.next_chunk() is None


def test_input_rejects_wrong_items() -> None:
    with pytest.raises(TypeError, match="bytes or str"):
        InputSource([1], None).next_chunk()


def test_backlog_serves_oldest_first_and_counts_what_it_drops() -> None:
    b = Backlog(limit=8)
    b.add(b"abcd")
    b.add(b"efgh")
    assert len(b) == 8
    assert b.dropped == 0
    b.add(b"ijk")  # 3 over the limit: the 3 oldest go
    assert b.dropped == 3
    assert len(b) == 8
    assert b.take(2) == b"de"
    assert b.take(100) == b"fghijk"
    assert b.take(5) == b""
    assert len(b) == 0


def test_backlog_with_one_chunk_larger_than_the_limit() -> None:
    b = Backlog(limit=4)
    b.add(b"0123456789")
    assert b.take(10) == b"6789"
    assert b.dropped == 6


def test_tail_and_backlog_say_what_they_dropped() -> None:
    t = Tail(4)
    t.add(b"ab")
    assert (t.total, t.dropped) == (2, 0)
    t.add(b"cdefghijk")
    assert (t.value(), t.total, t.dropped) == (b"hijk", 11, 7)
    b = Backlog(limit=4)
    b.add(b"abcd")
    assert not b.cut
    b.add(b"ef")
    assert b.cut and b.head(2) == b"cd"
    b.drop(1)
    assert (b.dropped, b.take(9), b.cut) == (3, b"def", False)


@pytest.mark.parametrize(
    ("encoding", "text"),
    [("utf-8", "a€😀é"), ("utf-16-le", "a😀é"), ("utf-16-be", "a😀é"), ("utf-16", "a😀é"),
     ("utf-32", "a😀é"), ("shift_jis", "aあい"), ("latin-1", "aéb"), ("gb18030", "a中😀")],
)
def test_cut_head_starts_decoding_on_a_character(encoding: str, text: str) -> None:
    # every cut of the stream decodes strictly, to a suffix of the text, once the
    # partial character's bytes (at most 3) are dropped
    data = (text * 3).encode(encoding)
    for offset in range(len(data)):
        tail = data[offset:]
        cut = cut_head(tail, encoding, offset)
        assert 0 <= cut <= 3
        decoded = tail[cut:].decode(encoding)
        if not encoding.startswith(("shift_jis", "gb")):  # there a cut may come out as another character
            assert (text * 3).endswith(decoded), (offset, decoded)


def test_cut_head_drops_nothing_of_a_whole_character() -> None:
    assert cut_head("€x".encode(), "utf-8", 5) == 0
    assert cut_head("€x".encode()[1:], "utf-8", 5) == 2
    assert cut_head(b"\xff\xfe", "utf-8", 5) == 0  # not a continuation: invalid, left to the decoder
    assert cut_head(b"abc", "latin-1", 1) == 0
    assert cut_head(b"", "utf-16-le", 1) == 0


def test_text_sizes_count_bytes() -> None:
    assert encoded_size("aé€😀", "utf-8") == 10
    assert encoded_size("ab", "utf-16") == 4  # no BOM
    assert encode_text("ab", "utf-16") == "ab".encode("utf-16")[2:]
    assert encode_text("a\udcff", "utf-8") == b"a\xff"  # what surrogateescape made
    assert [text_prefix("éé€", n, "utf-8") for n in range(1, 9)] == [1, 1, 1, 2, 2, 2, 3, 3]
    assert text_prefix("abc", 10, "utf-8") == 3


def test_decoder_holds_and_forgets_a_character_under_way() -> None:
    d = Decoder("utf-8", "strict")
    assert d("a\u20ac".encode()[:3]) == "a"
    assert d.held() == "€".encode()[:2]
    assert d.reset() == 2
    assert d.held() == b""
    assert d(b"b", final=True) == "b"


def test_capture_value_is_not_changed_by_later_adds() -> None:
    # value() shares the capture's buffer; adding afterwards must copy it first
    c = Capture()
    c.add(b"abc")
    first = c.value()
    c.add(b"def")
    assert first == b"abc"
    assert c.value() == b"abcdef"
    assert len(c) == 6


def test_capture_limit_crossed_inside_a_large_chunk() -> None:
    data = bytes(range(256)) * 1024
    c = Capture(limit=100_000)
    assert c.add(data[:60_000]) is False
    assert c.add(data[60_000:]) is True
    assert c.value() == data[:100_000]
    assert len(c) == 100_000


def _reference_lines(data: bytes) -> list[bytes]:
    """Lines ended by b"\\n" only, newline kept, the last one as it is."""
    out, start = [], 0
    while (end := data.find(b"\n", start)) != -1:
        out.append(data[start : end + 1])
        start = end + 1
    return [*out, data[start:]] if start < len(data) else out


@pytest.mark.parametrize("seed", range(20))
def test_lines_match_a_plain_split_whatever_the_chunks(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = b"ab\n\r\x0b\x0c\x1c\x1d\x1e\x85"
    data = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 400)))
    if seed % 4 == 0:
        data += b"x" * 5000  # a long last line without a newline
    cuts = sorted(rng.sample(range(len(data) + 1), min(len(data) + 1, rng.randrange(0, 60))))
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    s = Lines(text=False)
    got = [line for chunk in chunks for line in s.feed(chunk)] + s.finish()
    assert got == _reference_lines(data)
    assert b"".join(got) == data
    lazy = Lines(text=False)
    assert [line for chunk in chunks for line in lazy.split(chunk)] + lazy.finish() == got


@pytest.mark.parametrize("seed", range(20))
def test_text_lines_end_at_newline_only(seed: int) -> None:
    # str.splitlines() would also end lines at \r, \v, \f, \x1c-\x1e, \x85, \u2028, \u2029
    rng = random.Random(seed)
    alphabet = "ab\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029é😀"
    text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 400)))
    cuts = sorted(rng.sample(range(len(text) + 1), min(len(text) + 1, rng.randrange(0, 60))))
    chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    s = Lines(text=True)
    got = [line for chunk in chunks for line in s.feed(chunk)] + s.finish()
    expected = [line.decode("utf-8") for line in _reference_lines(text.encode("utf-8"))]
    assert got == expected
    lazy = Lines(text=True)
    assert [line for chunk in chunks for line in lazy.split(chunk)] + lazy.finish() == expected


def test_lines_other_breaks_stay_inside_a_line() -> None:
    s = Lines(text=True)
    assert s.feed("a\rb\r\nc\u2028d\x0be\n") == ["a\rb\r\n", "c\u2028d\x0be\n"]
    assert s.feed("plain\nascii\n") == ["plain\n", "ascii\n"]
    b = Lines(text=False)
    assert b.feed(b"a\rb\r\nc\x0bd\n") == [b"a\rb\r\n", b"c\x0bd\n"]


def test_lines_long_line_in_many_pieces_is_joined_once() -> None:
    s = Lines(text=False)
    pieces = [bytes([65 + i % 26]) * 1000 for i in range(2000)]
    for piece in pieces:
        assert s.feed(piece) == []
    assert s.feed(b"\nnext") == [b"".join(pieces) + b"\n"]
    assert s.finish() == [b"next"]
