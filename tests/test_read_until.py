"""SPEC 5: ``readline`` and ``read_until`` (sync and asyncio), across chunk
boundaries, with regexes, timeouts carrying partial output, and the rest kept
for the next read."""

from __future__ import annotations

import asyncio
import re

import pytest
from helpers import py

import netrunner
from netrunner import aio

# Writes its argument in pieces, pausing between them, so patterns straddle reads.
PIECES = py(
    "import os, sys, time\n"
    "for part in sys.argv[1].split('|'):\n"
    "    os.write(1, part.encode()); time.sleep(0.02)\n",
)


def test_read_until_across_chunk_boundaries_keeps_the_rest() -> None:
    with netrunner.start([*PIECES, "hello wo|rld|; and more"]) as p:
        assert p.read_until(b"world", timeout=10) == b"hello world"
        assert p.read_until(b"more", timeout=10) == b"; and more"
        assert p.read(timeout=10) == b""


def test_read_until_regex_and_read_serves_the_buffer_first() -> None:
    with netrunner.start([*PIECES, "id=4|2 ok\nrest"]) as p:
        got = p.read_until(re.compile(rb"id=(\d+) "), timeout=10)
        assert got == b"id=42 "
        assert p.read_until(b"rest", timeout=10) == b"ok\nrest"


def test_readline_text_mode_and_last_line_without_newline() -> None:
    with netrunner.start(["printf", "é1\nline2\nend"], text=True) as p:
        assert [p.readline(timeout=10) for _ in range(4)] == ["é1\n", "line2\n", "end", ""]


def test_readline_has_no_length_limit() -> None:
    with netrunner.start(py("import sys; sys.stdout.write('x' * 3_000_000 + '\\nnext\\n')")) as p:
        assert p.readline(timeout=20) == b"x" * 3_000_000 + b"\n"
        assert p.readline(timeout=20) == b"next\n"


def test_read_until_timeout_carries_the_partial_output_and_keeps_it() -> None:
    with netrunner.start(["sh", "-c", "printf 'prompt? '; exec sleep 30"]) as p:
        with pytest.raises(netrunner.Timeout) as ei:
            p.read_until(b"never", timeout=0.3)
        assert isinstance(ei.value, TimeoutError)
        assert ei.value.stdout == b"prompt? "
        assert p.read_until(b"? ", timeout=5) == b"prompt? "
    # in text mode, what was read is text, as the reads return it
    with netrunner.start(["sh", "-c", "printf 'é? '; exec sleep 30"], text=True) as p:
        with pytest.raises(netrunner.Timeout) as ei:
            p.read_until("never", timeout=0.3)
        assert ei.value.stdout == "é? "
        assert p.read_until("? ", timeout=5) == "é? "


def test_read_until_max_bytes_and_end_of_output() -> None:
    with netrunner.start(["printf", "0123456789"]) as p:
        with pytest.raises(netrunner.OutputLimitExceeded) as ei:
            p.read_until(b"x", max_bytes=4, timeout=10)
        assert ei.value.stdout[:4] == b"0123"
        # named for the option the caller gave, not for max_output_size
        assert (ei.value.option, ei.value.limit, ei.value.stream) == ("max_bytes", 4, "stdout")
        assert "max_bytes=4" in str(ei.value) and "max_output_size" not in str(ei.value), str(ei.value)
        with pytest.raises(EOFError) as eof:
            p.read_until(b"x", timeout=10)
        assert eof.value.partial == b"0123456789"  # type: ignore[attr-defined]
        assert p.read(timeout=10) == b"0123456789"


def test_text_mode_max_bytes_counts_bytes() -> None:
    # four 2-byte characters: 8 bytes read, past max_bytes=5 (though only 4 characters)
    with netrunner.start(["sh", "-c", "printf 'éééé'; exec sleep 30"], text=True) as p:
        with pytest.raises(netrunner.OutputLimitExceeded) as ei:
            p.read_until("X", max_bytes=5, timeout=5)
        assert ei.value.stdout == "éééé"
        assert p.returncode is None  # the command runs on: no limit of its output was passed


def test_text_mode_read_from_what_was_read_ahead_counts_bytes() -> None:
    # read(2) gets one 2-byte character whether it comes from the pipe or from
    # what read_until read ahead; a character larger than max_bytes comes whole
    with netrunner.start(["printf", "ééé€x"], text=True) as p:
        assert p.read(2, timeout=10) == "é"
        assert p.read_until("x", timeout=10) == "éé€x"
    with netrunner.start(["printf", "ééé€é|"], text=True) as p:
        with pytest.raises(EOFError):
            p.read_until("X", timeout=10)
        assert [p.read(2, timeout=10) for _ in range(3)] == ["é", "é", "é"]
        assert p.read(2, timeout=10) == "€"
        assert p.read(5, timeout=10) == "é|"
        assert p.read(timeout=10) == ""


def test_aio_text_mode_max_bytes_and_read_ahead_count_bytes() -> None:
    async def main() -> None:
        async with await aio.start(["sh", "-c", "printf 'éééé'; exec sleep 30"], text=True) as p:
            with pytest.raises(netrunner.OutputLimitExceeded):
                await p.read_until("X", max_bytes=5, timeout=5)
            assert await p.read(3, timeout=10) == "é"
            assert await p.read(4, timeout=10) == "éé"

    asyncio.run(main())


@pytest.mark.parametrize("pattern", [b"", "text in binary mode", re.compile("str regex"), 5])
def test_read_until_bad_patterns(pattern) -> None:  # type: ignore[no-untyped-def]
    with netrunner.start(["true"]) as p:
        with pytest.raises(TypeError, match="pattern"):
            p.read_until(pattern, timeout=1)


def test_aio_readline_and_read_until() -> None:
    async def main() -> None:
        cmd = [*PIECES[:-1], PIECES[-1] + "time.sleep(30)\n", "a|b\nc>|>> tail"]
        async with await aio.start(cmd) as p:
            assert await p.readline(timeout=10) == b"ab\n"
            assert await p.read_until(re.compile(rb">>> "), timeout=10) == b"c>>> "
            with pytest.raises(netrunner.Timeout):
                await p.read_until(b"never", timeout=0.2)
            assert await p.read_until(b"tail", timeout=10) == b"tail"

    asyncio.run(main())
