"""SPEC sections 5 and 8: expect-style dialogues on a pseudo-terminal.

A real ``python -i -q`` REPL is driven with ``write`` + ``read_until`` /
``readline`` (the terminal echoes what is typed and ends output lines with
"\\r\\n"); ``close_stdin()`` sends the terminal's EOF character — after a
newline when the line being typed is not empty, since in canonical mode EOF
only ends an empty line."""

from __future__ import annotations

import ast
import re

import pytest
from helpers_aio import arun
from pty_helpers import PY, aread_to_eof, read_to_eof, repl_env

import netrunner
import netrunner.aio

PROMPT = b">>> "
REPL = [PY, "-i", "-q"]
#: Reads its terminal to EOF, then prints what it read (after all the echo).
READER = [
    PY, "-c", "import sys; print('reading', flush=True); data = sys.stdin.buffer.read(); print('READ', repr(data))"
]


def start_repl(**options: object) -> netrunner.Process:
    proc = netrunner.start(REPL, pty=True, env=repl_env(), **options)
    try:
        first = proc.read_until(PROMPT if not options.get("text") else ">>> ", timeout=15)
    except BaseException:
        proc.close()
        raise
    assert first.endswith(">>> " if options.get("text") else PROMPT), f"no first prompt: {first!r}"
    return proc


# --------------------------------------------------------------- the REPL


def test_repl_computes() -> None:
    with start_repl() as proc:
        proc.write(b"6 * 7\n")
        out = proc.read_until(PROMPT, timeout=10)
        assert out == b"6 * 7\r\n42\r\n>>> ", f"REPL answer (echo, result, prompt): {out!r}"
        proc.write("sum(range(101))\n")
        out = proc.read_until(re.compile(rb">>> "), timeout=10)
        assert out == b"sum(range(101))\r\n5050\r\n>>> ", f"REPL answer: {out!r}"
        proc.close_stdin()  # EOF at the prompt: the REPL ends
        assert proc.wait(timeout=10) == 0


def test_repl_state_persists_across_prompts() -> None:
    with start_repl() as proc:
        for line, expected in ((b"x = 20", None), (b"x += 1", None), (b"x * 2", b"42")):
            proc.write(line + b"\n")
            out = proc.read_until(PROMPT, timeout=10)
            assert out.startswith(line + b"\r\n"), f"the terminal did not echo {line!r}: {out!r}"
            if expected is not None:
                assert out == line + b"\r\n" + expected + b"\r\n" + PROMPT, f"after {line!r}: {out!r}"
        proc.close_stdin()
        assert proc.wait(timeout=10) == 0


def test_repl_read_until_regex_returns_the_match_end_and_keeps_the_rest() -> None:
    with start_repl() as proc:
        proc.write(b"print('alpha'); print('beta')\n")
        head = proc.read_until(re.compile(rb"al\w+\r\n"), timeout=10)
        assert head.endswith(b"alpha\r\n"), f"up to the first match: {head!r}"
        rest = proc.read_until(PROMPT, timeout=10)
        assert rest == b"beta\r\n>>> ", f"what followed the match must stay buffered: {rest!r}"
        proc.close_stdin()
        assert proc.wait(timeout=10) == 0


def test_repl_readline() -> None:
    with start_repl() as proc:
        proc.write(b"print('a'); print('b')\n")
        lines = [proc.readline(timeout=10) for _ in range(3)]
        assert lines == [b"print('a'); print('b')\r\n", b"a\r\n", b"b\r\n"], f"readline on a terminal: {lines!r}"
        assert proc.read_until(PROMPT, timeout=10) == PROMPT
        proc.close_stdin()
        assert proc.wait(timeout=10) == 0


def test_repl_text_mode() -> None:
    with start_repl(text=True) as proc:
        proc.write("'é' * 3\n")
        out = proc.read_until(">>> ", timeout=10)
        assert isinstance(out, str), f"text=True must give str, got {type(out).__name__}"
        assert out == "'é' * 3\r\n'ééé'\r\n>>> ", f"REPL answer in text mode: {out!r}"
        proc.write("print('ü')\n")
        assert proc.readline(timeout=10) == "print('ü')\r\n"
        assert proc.readline(timeout=10) == "ü\r\n"
        # EOF only at the prompt: typed ahead while the REPL still runs the
        # line, it would reach readline in the mode it had before it set up
        # its own, as on any terminal
        assert proc.read_until(">>> ", timeout=10) == ">>> "
        proc.close_stdin()
        assert proc.wait(timeout=10) == 0


def test_repl_read_until_timeout_keeps_the_output() -> None:
    with start_repl() as proc:
        proc.write(b"print('partial')\n")
        with pytest.raises(netrunner.Timeout) as info:
            proc.read_until(b"never printed", timeout=0.5)
        assert b"partial" in (info.value.stdout or b""), f"the Timeout must carry what was read: {info.value.stdout!r}"
        out = proc.read_until(PROMPT, timeout=10)
        assert out == b"print('partial')\r\npartial\r\n>>> ", f"what the timed-out read_until read was lost: {out!r}"
        proc.close_stdin()
        assert proc.wait(timeout=10) == 0


def test_repl_exception_output_is_on_the_terminal() -> None:
    # stderr (the traceback) is merged into the terminal output
    with start_repl() as proc:
        proc.write(b"1/0\n")
        out = proc.read_until(PROMPT, timeout=10)
        assert b"ZeroDivisionError" in out, f"the traceback (stderr) is missing from the terminal output: {out!r}"
        proc.close_stdin()
        assert proc.wait(timeout=10) == 0


def test_aio_repl() -> None:
    async def main() -> None:
        async with await netrunner.aio.start(REPL, pty=True, env=repl_env()) as proc:
            assert await proc.read_until(PROMPT, timeout=15) == PROMPT
            await proc.write(b"6 * 7\n")
            out = await proc.read_until(re.compile(rb">>> "), timeout=10)
            assert out == b"6 * 7\r\n42\r\n>>> ", f"REPL answer: {out!r}"
            await proc.write(b"print('a'); print('b')\n")
            assert await proc.readline(timeout=10) == b"print('a'); print('b')\r\n"
            assert await proc.readline(timeout=10) == b"a\r\n"
            assert await proc.readline(timeout=10) == b"b\r\n"
            assert await proc.read_until(PROMPT, timeout=10) == PROMPT
            assert proc.close_stdin() is None
            assert await proc.wait(timeout=10) == 0

    arun(main())


def test_aio_repl_text_mode() -> None:
    async def main() -> None:
        async with await netrunner.aio.start(REPL, pty=True, env=repl_env(), text=True) as proc:
            assert await proc.read_until(">>> ", timeout=15) == ">>> "
            await proc.write("'ß' + 'é'\n")
            out = await proc.read_until(">>> ", timeout=10)
            assert out == "'ß' + 'é'\r\n'ßé'\r\n>>> ", f"REPL answer in text mode: {out!r}"
            proc.close_stdin()
            assert await proc.wait(timeout=10) == 0

    arun(main())


# --------------------------------------------------------------- close_stdin: the terminal's EOF


def test_cat_sees_eof_after_close_stdin() -> None:
    with netrunner.start(["cat"], pty=True) as proc:
        proc.write(b"hello\n")
        assert proc.read_until(b"hello\r\nhello\r\n", timeout=10) == b"hello\r\nhello\r\n", "echo, then cat's copy"
        proc.close_stdin()
        assert proc.wait(timeout=10) == 0, "cat did not see EOF"
        assert read_to_eof(proc) == b"", "nothing follows cat's copy"


def test_close_stdin_on_an_empty_line() -> None:
    with netrunner.start(["cat"], pty=True) as proc:
        proc.close_stdin()
        assert proc.wait(timeout=10) == 0, "cat did not see EOF on an empty line"
        out = read_to_eof(proc)
    assert out == b"", f"EOF on an empty line must add nothing (no newline, no echo): {out!r}"


def reader_got(proc: netrunner.Process) -> bytes:
    """What the READER child read from its terminal before EOF."""
    assert proc.wait(timeout=10) == 0, "the reader did not see EOF"
    out = read_to_eof(proc)
    match = re.search(rb"READ (b.*)\r\n", out)
    assert match, f"the reader printed no READ line: {out!r}"
    return ast.literal_eval(match.group(1).decode())  # type: ignore[no-any-return]


def start_reader() -> netrunner.Process:
    proc = netrunner.start(READER, pty=True)
    proc.read_until(b"reading\r\n", timeout=15)
    return proc


def test_close_stdin_after_a_complete_line_adds_no_empty_line() -> None:
    with start_reader() as proc:
        proc.write(b"one\n")
        proc.write(b"two\n")
        proc.close_stdin()
        got = reader_got(proc)
    assert got == b"one\ntwo\n", f"the command read {got!r}"


def test_close_stdin_after_a_partial_line() -> None:
    # "abc" is still being typed: close_stdin ends the line first, so cat
    # gets "abc\n" and then EOF on an empty line (a lone EOF would only push
    # "abc" through, and cat would go on waiting)
    with netrunner.start(["cat"], pty=True) as proc:
        proc.write(b"abc")
        proc.close_stdin()
        assert proc.wait(timeout=10) == 0, "cat did not see EOF after a partial line"
        out = read_to_eof(proc)
    assert out == b"abc\r\nabc\r\n", f"echoed line, then cat's copy: {out!r}"
    with start_reader() as proc:
        proc.write(b"abc")
        proc.close_stdin()
        got = reader_got(proc)
    assert got == b"abc\n", f"the command read {got!r}"


def test_close_stdin_after_a_line_split_over_writes() -> None:
    with start_reader() as proc:
        proc.write(b"ab\nc")
        proc.write(b"d")
        proc.close_stdin()
        got = reader_got(proc)
    assert got == b"ab\ncd\n", f"the command read {got!r}"


def test_close_stdin_after_a_carriage_return() -> None:
    # Enter on a terminal sends "\r", which the terminal (ICRNL) turns into
    # "\n": the line is complete, so close_stdin must not add an empty line.
    with start_reader() as proc:
        proc.write(b"abc\r")
        proc.close_stdin()
        got = reader_got(proc)
    assert got == b"abc\n", f"a line ended by '\\r' got an extra empty line from close_stdin: the command read {got!r}"


def test_close_stdin_uses_the_terminals_eof_character() -> None:
    # the command changes VEOF to ^B: close_stdin must send ^B, not ^D
    with netrunner.start(["sh", "-c", "stty eof ^B && echo ready && exec cat"], pty=True) as proc:
        proc.read_until(b"ready\r\n", timeout=10)
        proc.write(b"xyz")
        proc.close_stdin()
        assert proc.wait(timeout=10) == 0, "cat did not see EOF: close_stdin did not send the terminal's VEOF"
        out = read_to_eof(proc)
    assert out == b"xyz\r\nxyz\r\n", f"terminal output: {out!r}"


def test_close_stdin_is_idempotent_and_write_after_it_fails() -> None:
    with netrunner.start(["cat"], pty=True) as proc:
        proc.close_stdin()
        proc.close_stdin()
        with pytest.raises(netrunner.StdinClosed):
            proc.write(b"late\n")
        assert proc.wait(timeout=10) == 0
        assert read_to_eof(proc) == b""


def test_close_stdin_after_exit_does_not_raise() -> None:
    with netrunner.start(["true"], pty=True) as proc:
        assert proc.wait(timeout=10) == 0
        proc.close_stdin()
        assert read_to_eof(proc) == b""


def test_run_input_on_a_terminal() -> None:
    for given, expected in (
        (b"abc\n", b"abc\r\nabc\r\n"),
        (b"abc", b"abc\r\nabc\r\n"),
        (None, b""),
    ):
        result = netrunner.run(["cat"], pty=True, input=given, timeout=15)
        assert result.returncode == 0, f"cat with input={given!r}: {result!r}"
        assert result.stdout == expected, f"input={given!r}: terminal output {result.stdout!r}"
    # an iterable, consumed lazily: what the command read, whatever the echo's interleaving
    result = netrunner.run(READER, pty=True, input=[b"ab", "c\n", b"d"], timeout=15)
    assert result.returncode == 0, result
    assert result.stdout.endswith(b"READ b'abc\\nd\\n'\r\n"), f"terminal output: {result.stdout!r}"


def test_aio_close_stdin_partial_and_empty_line() -> None:
    async def main() -> None:
        async with await netrunner.aio.start(["cat"], pty=True) as proc:
            await proc.write(b"abc")
            proc.close_stdin()
            assert await proc.wait(timeout=10) == 0
            out = await aread_to_eof(proc)
            assert out == b"abc\r\nabc\r\n", f"terminal output: {out!r}"
        async with await netrunner.aio.start(["cat"], pty=True) as proc:
            proc.close_stdin()
            assert await proc.wait(timeout=10) == 0
            assert await aread_to_eof(proc) == b""
        result = await netrunner.aio.run(["cat"], pty=True, input=b"in\n", timeout=15)
        assert result.stdout == b"in\r\nin\r\n", result

    arun(main())


def test_communicate_on_a_terminal() -> None:
    # input, then the terminal's EOF (after a newline: "abc" ends no line)
    with netrunner.start(["cat"], pty=True) as proc:
        out, err = proc.communicate(b"abc", timeout=10)
        assert out == b"abc\r\nabc\r\n", f"communicate() stdout on a terminal: {out!r}"
        assert err == b"", f"communicate() stderr with pty (merged into stdout): {err!r}"
        assert proc.returncode == 0


def test_aio_communicate_on_a_terminal() -> None:
    async def main() -> None:
        async with await netrunner.aio.start(["cat"], pty=True, text=True) as proc:
            out, err = await proc.communicate("línea\n", timeout=10)
            assert (out, err) == ("línea\r\nlínea\r\n", ""), f"communicate() on a terminal, text=True: {(out, err)!r}"
            assert proc.returncode == 0

    arun(main())
