"""Hardening item 7: in text mode an output limit or a timeout that splits a
multi-byte character raises the netrunner error with the partial output as
bytes, never UnicodeDecodeError (SPEC section 2)."""

from __future__ import annotations

import pytest
from helpers import py

import netrunner

EACUTE = "é".encode()  # 2 bytes


@pytest.mark.parametrize("limit", [1, 5, 99])
def test_output_limit_splitting_a_character(limit: int) -> None:
    data = EACUTE * 100
    with pytest.raises(netrunner.OutputLimitExceeded) as info:
        netrunner.run(
            py("import sys; sys.stdout.buffer.write('é'.encode() * 100); sys.stdout.flush()"),
            text=True, max_output_size=limit, kill_timeout=1,
        )
    exc = info.value
    assert isinstance(exc.stdout, bytes), f"partial stdout is {type(exc.stdout).__name__}, not bytes"
    assert exc.stdout == data[:limit]
    assert exc.stats is not None


def test_timeout_with_a_split_character() -> None:
    code = "import sys, time; sys.stdout.buffer.write(b'ab\\xc3'); sys.stdout.flush(); time.sleep(30)"
    with pytest.raises(netrunner.Timeout) as info:
        netrunner.run(py(code), text=True, timeout=2, kill_timeout=1)
    exc = info.value
    assert isinstance(exc.stdout, bytes), f"partial stdout is {type(exc.stdout).__name__}, not bytes"
    assert exc.stdout == b"ab\xc3"
    assert exc.stats is not None


def test_output_limit_on_stderr_splitting_a_character() -> None:
    code = "import sys; sys.stderr.buffer.write('é'.encode() * 100); sys.stderr.flush()"
    with pytest.raises(netrunner.OutputLimitExceeded) as info:
        netrunner.run(py(code), text=True, max_output_size=7, kill_timeout=1)
    exc = info.value
    assert exc.stream == "stderr"
    assert isinstance(exc.stderr, bytes), f"partial stderr is {type(exc.stderr).__name__}, not bytes"
    assert exc.stderr == (EACUTE * 100)[:7]
