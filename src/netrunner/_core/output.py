"""Output and input accounting (sans-IO): capped captures, tails, incremental
text decoding, line splitting, and lazy input sources.

Invariants:

* :class:`Capture` never holds more than ``limit`` bytes and reports the
  first chunk that crosses it; its value is exactly the first ``limit`` bytes.
* :class:`Tail` holds the last ``keep`` bytes of everything fed to it.
* :class:`Lines` is linear in the bytes fed: a line split across chunks is
  joined once.
* :class:`InputSource` pulls from the user's iterable or file only when asked.
"""

from __future__ import annotations

import codecs
import io
import itertools
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any


class Capture:
    """All the bytes of one stream, up to an optional limit.

    The bytes go into one ``io.BytesIO``, which grows its single buffer in
    place (``realloc``: for a large buffer the kernel moves pages, it does
    not copy them) and hands that very buffer out as the ``bytes`` of
    :meth:`value`, without a copy. So a capture of N bytes peaks at about N
    bytes, where a list of chunks joined at the end peaks at 2N."""

    __slots__ = ("_buf", "_size", "limit", "exceeded")

    def __init__(self, limit: int | None = None) -> None:
        self._buf = io.BytesIO()
        self._size = 0
        self.limit = limit
        self.exceeded = False

    def __len__(self) -> int:
        return self._size

    def add(self, data: bytes) -> bool:
        """Append ``data``; return True the first time the limit is crossed."""
        if self.exceeded:
            return False
        size = self._size + len(data)
        if self.limit is not None and size > self.limit:
            self._buf.write(memoryview(data)[: self.limit - self._size])
            self._size = self.limit
            self.exceeded = True
            return True
        self._buf.write(data)
        self._size = size
        return False

    def value(self) -> bytes:
        """Everything captured, as ``bytes`` sharing the capture's buffer (a
        later :meth:`add` copies the buffer first: the value never changes)."""
        return self._buf.getvalue()


class Tail:
    """The last ``keep`` bytes of a stream; ``total`` counts all it was fed."""

    __slots__ = ("_buf", "keep", "total")

    def __init__(self, keep: int) -> None:
        self._buf = bytearray()
        self.keep = keep
        self.total = 0

    def add(self, data: bytes) -> bool:
        self._buf += data
        self.total += len(data)
        if len(self._buf) > 2 * self.keep:  # trim rarely: amortised O(1) per byte
            del self._buf[: -self.keep]
        return False

    @property
    def dropped(self) -> int:
        """How many of the oldest bytes are gone (``total`` minus what is kept)."""
        return max(0, self.total - self.keep)

    def value(self) -> bytes:
        return bytes(self._buf[-self.keep :])


class Backlog:
    """Bytes read ahead for a later reader, at most ``limit`` of them: past
    it the oldest are dropped, and counted in ``dropped``."""

    __slots__ = ("_buf", "limit", "dropped", "cut")

    def __init__(self, limit: int) -> None:
        self._buf = bytearray()
        self.limit = limit
        self.dropped = 0
        #: Bytes were dropped since the reader last took some: the head may
        #: start inside a character (see :meth:`drop`).
        self.cut = False

    def __len__(self) -> int:
        return len(self._buf)

    def add(self, data: bytes) -> None:
        self._buf += data
        excess = len(self._buf) - self.limit
        if excess > 0:
            del self._buf[:excess]  # O(excess): bytearray keeps an offset for its head
            self.dropped += excess
            self.cut = True

    def head(self, size: int) -> bytes:
        """The ``size`` oldest bytes, left in place."""
        return bytes(self._buf[:size])

    def drop(self, size: int) -> None:
        """Drop the ``size`` oldest bytes and count them (a text reader
        drops the rest of a character whose start was dropped)."""
        del self._buf[:size]
        self.dropped += size

    def take(self, size: int) -> bytes:
        """Up to ``size`` of the oldest bytes, removed."""
        data = bytes(self._buf[:size])
        del self._buf[:size]
        self.cut = False
        return data


class Decoder:
    """Bytes -> str across chunk boundaries (a split character is never broken)."""

    __slots__ = ("_dec",)

    def __init__(self, encoding: str, errors: str) -> None:
        self._dec = codecs.getincrementaldecoder(encoding)(errors)

    def __call__(self, data: bytes, final: bool = False) -> str:
        return self._dec.decode(data, final)

    def held(self) -> bytes:
        """The bytes of a character begun but not finished yet."""
        return bytes(self._dec.getstate()[0])

    def reset(self) -> int:
        """Forget the character under way (its rest was dropped); how many
        bytes of it are forgotten."""
        lost = len(self.held())
        self._dec.reset()
        return lost


def decode_all(data: bytes, encoding: str | None, errors: str) -> bytes | str:
    return data if encoding is None else data.decode(encoding, errors)


def cut_head(data: bytes, encoding: str, offset: int) -> int:
    """How many leading bytes of ``data`` to drop so that decoding it starts
    on a character: ``data`` is what is left of a stream in ``encoding``
    from byte ``offset`` on, the bytes before it dropped (a tail, a backlog),
    so it may begin in the middle of a character. Only the head is looked
    at (16 bytes at most).

    * UTF-8: the continuation bytes (``10xxxxxx``, at most 3) a character
      that began before ``offset`` left: recognisable, so this is exact.
    * UTF-16 and UTF-32: up to the next code unit, counted from the start
      of the stream (a BOM is a unit too), and in UTF-16 a low surrogate
      whose high half was dropped.
    * Any other encoding: no byte sequence tells the middle of a character
      from a start in general (in Shift-JIS, Big5 or GB18030 a trailing byte
      may also be a leading one; in a single-byte encoding every byte is a
      character). The fewest bytes (at most 3) after which a strict decoder
      takes the next 8 bytes without an error (none, in a single-byte
      encoding), or if no skip does (bad bytes further on, not the cut's
      doing), after which it does not fail at the very first byte. The first
      character may still come out wrong, as a different character, but
      decoding does not fail because of the cut.
    """
    name = codecs.lookup(encoding).name
    if name in ("utf-8", "utf-8-sig"):
        n = 0
        while n < 3 and n < len(data) and 0x80 <= data[n] <= 0xBF:
            n += 1
        return n
    if name.startswith(("utf-16", "utf-32")):
        unit = 2 if name.startswith("utf-16") else 4
        n = (-offset) % unit
        if unit == 2 and len(data) >= n + 2:
            big = name == "utf-16-be" or (name == "utf-16" and sys.byteorder == "big")
            high_byte = data[n] if big else data[n + 1]
            if 0xDC <= high_byte <= 0xDF:  # a low surrogate: its pair's first half is gone
                n += 2
        return min(n, len(data))
    failures: list[int] = []  # for each skip tried, where decoding failed
    for n in range(min(4, len(data))):
        try:
            window = data[n : n + 8]  # at the end of ``data``: the end of what there is
            codecs.getincrementaldecoder(encoding)("strict").decode(window, n + 8 >= len(data))
        except UnicodeDecodeError as exc:
            failures.append(exc.start)
            continue
        return n
    # No skip decodes cleanly: bad bytes further on, not the cut's doing; the
    # fewest bytes after which the first character at least decodes.
    return next((n for n, at in enumerate(failures) if at > 0), 0)


def encoded_size(text: str, encoding: str) -> int:
    """How many bytes ``text`` stands for in ``encoding``: its length once
    encoded again (exact for what a strict or ``surrogateescape`` decoder
    made; a U+FFFD put in by ``replace`` counts as its own encoding; a BOM
    that encoding puts first does not count)."""
    if text.isascii() and codecs.lookup(encoding).name in ("utf-8", "utf-8-sig"):
        return len(text)
    return len(encode_text(text, encoding))


def encode_text(text: str, encoding: str) -> bytes:
    """``text`` decoded from ``encoding`` as bytes again, for partial output
    that must stay bytes (see :func:`encoded_size` for how exact), without
    the BOM some encodings put first."""
    if not text:
        return b""
    try:
        data = text.encode(encoding, "surrogateescape")
    except UnicodeEncodeError:
        data = text.encode(encoding, "replace")
    return data[len("".encode(encoding)) :]


def text_prefix(text: str, size: int, encoding: str) -> int:
    """How many characters of ``text`` to hand out for a read of at most
    ``size`` bytes: the most whose encoding (see :func:`encoded_size`) fits
    in ``size``, and at least one (as a read that must complete a character
    returns it whole)."""
    if encoded_size(text[:size], encoding) <= size:  # a character is at least a byte
        return min(size, len(text))
    low, high = 1, min(size, len(text))  # encoded_size(text[:low]) fits, or low is the one character
    while low < high:
        mid = (low + high + 1) // 2
        if encoded_size(text[:mid], encoding) <= size:
            low = mid
        else:
            high = mid - 1
    return low


def finder(pattern: Any, text: bool) -> Callable[[Any, int], tuple[int, int]]:
    """For ``read_until``: a function ``(buffer, searched) -> (end, searched)``
    giving the end of the first match (-1 if none yet) and how far the next
    search may start, so a literal is never searched twice over the same bytes."""
    kind = str if text else bytes
    if isinstance(pattern, re.Pattern):
        if not isinstance(pattern.pattern, kind):
            raise TypeError(f"read_until(): in {'text' if text else 'binary'} mode the pattern must be "
                            f"a {kind.__name__} regex, got {pattern!r}")

        def regex(buf: Any, searched: int) -> tuple[int, int]:
            m = pattern.search(buf)  # a match may need context from anywhere before
            return (m.end() if m else -1), 0

        return regex
    if isinstance(pattern, (bytearray, memoryview)) and not text:
        pattern = bytes(pattern)
    if not isinstance(pattern, kind) or not pattern:
        raise TypeError(f"read_until(): the pattern must be a non-empty {kind.__name__} or a compiled "
                        f"{kind.__name__} regex in {'text' if text else 'binary'} mode, got {pattern!r}")
    overlap = len(pattern) - 1

    def literal(buf: Any, searched: int) -> tuple[int, int]:
        at = buf.find(pattern, max(0, searched - overlap))
        return (at + len(pattern) if at >= 0 else -1), len(buf)

    return literal


class Lines:
    """Split a stream of chunks (bytes or str) into lines, newline kept.

    Each chunk is split by C code: bytes by iterating a ``BytesIO`` over it
    (lines end at ``\\n`` only, and are made one at a time, as they are
    consumed), text by ``str.splitlines`` once a few scans have ruled out
    the other characters it ends lines at (else ``StringIO`` with
    ``newline="\\n"``). The line under way across chunks is kept as a list
    of pieces and joined once, when its newline comes: linear in its length.
    """

    __slots__ = ("_pieces", "_text", "_nl", "_empty")

    def __init__(self, text: bool) -> None:
        self._pieces: list[Any] = []  # the line under way, not yet ended by a newline
        self._text = text
        self._nl: Any = "\n" if text else b"\n"
        self._empty: Any = "" if text else b""

    def feed(self, chunk: Any) -> list[Any]:
        """Add ``chunk``; return the lines it completed."""
        lines = self.split(chunk)
        return lines if isinstance(lines, list) else list(lines)

    def split(self, chunk: Any) -> Iterable[Any]:
        """Add ``chunk``; the lines it completed, as an iterable to consume
        before the next call (for bytes, an iterator that makes each line
        only when it is asked for)."""
        pieces = self._pieces
        nl = self._nl
        first = chunk.find(nl)
        if first < 0:  # no line ends here (also an empty chunk)
            if chunk:
                pieces.append(chunk)
            return ()
        last = chunk.rfind(nl) + 1
        head = None
        if pieces:  # the first newline ends the line under way
            pieces.append(chunk[: first + 1])
            head = self._empty.join(pieces)
            pieces.clear()
            first += 1
        else:
            first = 0
        if last < len(chunk):
            pieces.append(chunk[last:])
        body = chunk[first:last]  # whole lines only (the chunk itself when it is all of them)
        if self._text:
            lines = _split_text(body) if body else []
            if head is not None:
                lines.insert(0, head)
            return lines
        if head is None:
            return io.BytesIO(body)
        return itertools.chain((head,), io.BytesIO(body)) if body else (head,)

    def finish(self) -> list[Any]:
        """The last line, if the stream did not end with a newline."""
        rest = self._empty.join(self._pieces)
        self._pieces.clear()
        return [rest] if rest else []


#: What ``str.splitlines`` ends lines at besides a newline; the last three are not ASCII.
_OTHER_BREAKS = ("\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")


def _split_text(chunk: str) -> list[str]:
    """``chunk`` split after each ``\\n``: by ``splitlines`` (the fastest)
    unless the chunk holds another character it would end a line at, which
    a few C-speed scans rule out; else by ``StringIO``."""
    breaks = _OTHER_BREAKS[:6] if chunk.isascii() else _OTHER_BREAKS
    for ch in breaks:
        if ch in chunk:
            return io.StringIO(chunk, newline="\n").readlines()
    return chunk.splitlines(True)


class InputSource:
    """The ``input`` option as a lazy sequence of byte chunks."""

    __slots__ = ("_iter", "_encoding")

    CHUNK = 65536

    def __init__(self, value: Any, encoding: str | None) -> None:
        self._encoding = encoding or "utf-8"
        if isinstance(value, str):
            value = value.encode(self._encoding)
        if isinstance(value, (bytes, bytearray, memoryview)):
            self._iter: Iterator[Any] = iter((bytes(value),))
        elif hasattr(value, "read"):
            self._iter = _read_file(value, self.CHUNK)
        else:
            self._iter = iter(value)

    def next_chunk(self) -> bytes | None:
        """The next non-empty chunk, or None when the input is exhausted."""
        for item in self._iter:
            chunk = input_chunk(item, self._encoding)
            if chunk:
                return chunk
        return None


def input_chunk(item: Any, encoding: str) -> bytes:
    """One item of an ``input`` iterable as bytes (a str encoded); ``TypeError``
    for anything else."""
    if isinstance(item, str):
        return item.encode(encoding)
    if not isinstance(item, (bytes, bytearray, memoryview)):
        raise TypeError(f"input must yield bytes or str, got {type(item).__name__}: {item!r:.60}")
    return bytes(item)


def _read_file(f: Any, size: int) -> Iterator[Any]:
    while True:
        data = f.read(size)
        if not data:
            return
        yield data
