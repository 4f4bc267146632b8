"""Output and input accounting (sans-IO): capped captures, tails, incremental
text decoding, line splitting, and lazy input sources.

Invariants:

* :class:`Capture` never holds more than ``limit`` bytes and reports the
  first chunk that crosses it; its value is exactly the first ``limit`` bytes.
* :class:`Tail` holds the last ``keep`` bytes of everything fed to it.
* :class:`Lines` is linear in the bytes fed: it remembers how far it searched.
* :class:`InputSource` pulls from the user's iterable or file only when asked.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterator
from typing import Any


class Capture:
    """All the bytes of one stream, up to an optional limit."""

    __slots__ = ("_buf", "limit", "exceeded")

    def __init__(self, limit: int | None = None) -> None:
        self._buf = bytearray()
        self.limit = limit
        self.exceeded = False

    def add(self, data: bytes) -> bool:
        """Append ``data``; return True the first time the limit is crossed."""
        if self.exceeded:
            return False
        self._buf += data
        if self.limit is not None and len(self._buf) > self.limit:
            del self._buf[self.limit :]
            self.exceeded = True
            return True
        return False

    def value(self) -> bytes:
        return bytes(self._buf)

    def take(self) -> bytes:
        """Return everything captured so far and start empty."""
        data = bytes(self._buf)
        self._buf.clear()
        return data


class Tail:
    """The last ``keep`` bytes of a stream."""

    __slots__ = ("_buf", "keep")

    def __init__(self, keep: int) -> None:
        self._buf = bytearray()
        self.keep = keep

    def add(self, data: bytes) -> bool:
        self._buf += data
        if len(self._buf) > 2 * self.keep:  # trim rarely: amortised O(1) per byte
            del self._buf[: -self.keep]
        return False

    def value(self) -> bytes:
        return bytes(self._buf[-self.keep :])


class Backlog:
    """Bytes read ahead for a later reader, at most ``limit`` of them: past
    it the oldest are dropped, and counted in ``dropped``."""

    __slots__ = ("_buf", "limit", "dropped")

    def __init__(self, limit: int) -> None:
        self._buf = bytearray()
        self.limit = limit
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._buf)

    def add(self, data: bytes) -> None:
        self._buf += data
        excess = len(self._buf) - self.limit
        if excess > 0:
            del self._buf[:excess]  # O(excess): bytearray keeps an offset for its head
            self.dropped += excess

    def take(self, size: int) -> bytes:
        """Up to ``size`` of the oldest bytes, removed."""
        data = bytes(self._buf[:size])
        del self._buf[:size]
        return data


class Decoder:
    """Bytes -> str across chunk boundaries (a split character is never broken)."""

    __slots__ = ("_dec",)

    def __init__(self, encoding: str, errors: str) -> None:
        self._dec = codecs.getincrementaldecoder(encoding)(errors)

    def __call__(self, data: bytes, final: bool = False) -> str:
        return self._dec.decode(data, final)


def decode_all(data: bytes, encoding: str | None, errors: str) -> bytes | str:
    return data if encoding is None else data.decode(encoding, errors)


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
    """Split a stream of chunks (bytes or str) into lines, newline kept."""

    __slots__ = ("_buf", "_searched", "_nl")

    def __init__(self, text: bool) -> None:
        self._buf: Any = "" if text else b""
        self._searched = 0
        self._nl: Any = "\n" if text else b"\n"

    def feed(self, chunk: Any) -> list[Any]:
        """Add ``chunk``; return the lines it completed."""
        buf = self._buf + chunk if self._buf else chunk
        out = []
        start = 0
        pos = buf.find(self._nl, self._searched)
        while pos != -1:
            out.append(buf[start : pos + 1])
            start = pos + 1
            pos = buf.find(self._nl, start)
        self._buf = buf[start:]
        self._searched = len(self._buf)
        return out

    def finish(self) -> list[Any]:
        """The last line, if the stream did not end with a newline."""
        rest, self._buf, self._searched = self._buf, self._buf[:0], 0
        return [rest] if rest else []


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
