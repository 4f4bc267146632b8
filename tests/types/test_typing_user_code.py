"""What ``mypy --strict`` makes of a user's code (SPEC section 15).

One script, written to a temporary directory and checked once by the mypy of
this interpreter -- with no ``MYPYPATH`` and no configuration, so it finds
netrunner exactly as a user's mypy does (the editable install included).
Each line that must be flagged ends with ``# E: <error code>`` (or codes
``a|b``: which of them mypy reports for an overload depends on how many of
its variants come close); each
``reveal_type`` with ``# R: <type>``; every other line must be clean. Calls
with every option of every entry point are generated from
``ENTRY_OPTIONS``, once with valid values (clean) and once per option with a
value of the wrong type (flagged).
"""

from __future__ import annotations

import os
import re
import sys
import textwrap
from pathlib import Path

import pytest

import netrunner
from netrunner._options import ALL_OPTIONS, ENTRY_OPTIONS

HAND_WRITTEN = '''
import os
import re
import subprocess
from pathlib import Path

import netrunner
from netrunner import aio

flag = bool(os.environ.get("FLAG"))
argv: list[str] = ["ls", "-l"]

# Flagged: unknown options, a shell line, wrong types, bytes taken for str.
netrunner.run(["ls"], timeot=5)  # E: call-overload
netrunner.run("ls -l")  # E: call-overload
netrunner.run(b"ls -l")  # E: call-overload
netrunner.stream("ls -l")  # E: call-overload
netrunner.start("ls -l")  # E: call-overload
netrunner.Daemon("sleep 10")  # E: call-overload
netrunner.run(["ls"], timeout="5")  # E: call-overload
netrunner.run(["ls"], capture_output=True)  # E: call-overload
netrunner.run(["ls"], shell=True)  # E: call-overload
netrunner.start(["ls"], timeout=5)  # E: call-overload
netrunner.run(["ls"], chunk_size=1024)  # E: call-overload
netrunner.Daemon(["ls"], input=b"x")  # E: call-overload
netrunner.Command("ls", shell=True)  # E: call-overload
netrunner.Command("ls").with_options(universal_newlines=True)  # E: call-overload
netrunner.run([1, 2])  # E: list-item
bad_out: str = netrunner.run(["ls"]).stdout  # E: assignment
bad_text: bytes = netrunner.run(["ls"], text=True).stdout  # E: assignment
bad_read: str = netrunner.start(["cat"]).read()  # E: assignment
netrunner.start(["cat"]).read_until(">>> ")  # E: arg-type
netrunner.start(["cat"], text=True).read_until(b">>> ")  # E: arg-type


def on_text(chunk: str) -> None: ...


def on_text_exit(result: netrunner.Result[str]) -> None: ...


netrunner.Daemon(["x"], on_output=on_text)  # E: arg-type|call-overload
netrunner.Daemon(["x"], on_exit=on_text_exit)  # E: arg-type|call-overload

# Clean: argv of every kind, and what comes back.
netrunner.run(argv)
netrunner.run(("ls", b"-l", Path("/"), os.fsencode("x")))
netrunner.run(["ls"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
netrunner.run(["ls"], env=os.environ, cwd=Path("/"), cgroup=netrunner.Cgroup(memory_max="64M"))
chunks: list[bytes | str] = [b"a", "b"]
netrunner.run(["cat"], input=iter(chunks))
netrunner.run(["cat"], input=[b"a", "b"])
netrunner.run(["cat"], input=(line.encode() for line in ["a", "b"]))
netrunner.run(["cat"], input=open("/dev/null", "rb"))
netrunner.Daemon(["x"], text=True, on_output=on_text, on_exit=on_text_exit)
netrunner.Daemon(["x"], on_output=lambda chunk: None, on_exit=lambda result: None)
netrunner.Daemon(["x"], on_output="log")
reveal_type(netrunner.run(["ls"]))  # R: netrunner._results.Result[bytes]
reveal_type(netrunner.run(argv).stdout)  # R: bytes
reveal_type(netrunner.run(["ls"]).stderr)  # R: bytes
reveal_type(netrunner.run(["ls"], text=False).stdout)  # R: bytes
reveal_type(netrunner.run(["ls"], text=True).stdout)  # R: str
reveal_type(netrunner.run(["ls"], text=True).stderr)  # R: str
reveal_type(netrunner.run(["ls"], encoding="latin-1").stdout)  # R: str
reveal_type(netrunner.run(["ls"], errors="replace").stdout)  # R: str
reveal_type(netrunner.run(["ls"], text=flag))  # R: netrunner._results.Result[bytes] | netrunner._results.Result[str]
reveal_type(netrunner.run(["ls"]).check())  # R: netrunner._results.Result[bytes]
reveal_type(netrunner.run(["ls"]).args)  # R: tuple[str | bytes | os.PathLike[str] | os.PathLike[bytes], ...]
reveal_type(netrunner.run(["ls"]).signal)  # R: signal.Signals | int | None
reveal_type(netrunner.run(["ls"]).stats.max_rss)  # R: int | None

with netrunner.stream(["seq", "3"]) as s:
    reveal_type(s)  # R: netrunner._sync.Stream[bytes]
    for chunk in s:
        reveal_type(chunk)  # R: bytes
    for line in s.lines():
        reveal_type(line)  # R: bytes
    reveal_type(s.result)  # R: netrunner._results.Result[bytes] | None
with netrunner.stream(["seq", "3"], text=True) as ts:
    for tchunk in ts:
        reveal_type(tchunk)  # R: str
    for tline in ts.lines():
        reveal_type(tline)  # R: str
    reveal_type(ts.result)  # R: netrunner._results.Result[str] | None

with netrunner.start(["cat"]) as p:
    reveal_type(p)  # R: netrunner._sync.Process[bytes]
    reveal_type(p.read())  # R: bytes
    reveal_type(p.read_stderr(10, timeout=1))  # R: bytes
    reveal_type(p.readline(timeout=1))  # R: bytes
    reveal_type(p.read_until(b"$ "))  # R: bytes
    reveal_type(p.read_until(re.compile(rb"\\$ ")))  # R: bytes
    reveal_type(p.communicate(b"x", timeout=5))  # R: tuple[bytes, bytes]
    reveal_type(p.wait())  # R: int
    reveal_type(p.poll())  # R: int | None
    reveal_type(p.returncode)  # R: int | None
    reveal_type(p.args)  # R: tuple[str | bytes | os.PathLike[str] | os.PathLike[bytes], ...]
with netrunner.start(["cat"], text=True) as tp:
    reveal_type(tp.read())  # R: str
    reveal_type(tp.readline())  # R: str
    reveal_type(tp.read_until(re.compile(r">+ ")))  # R: str
    reveal_type(tp.communicate("x"))  # R: tuple[str, str]

template = netrunner.Command("git", ["status"], text=True)
reveal_type(template)  # R: netrunner._command.Command[str]
reveal_type(template("--short"))  # R: netrunner._command.Command[str]
reveal_type(netrunner.run(template("--short")).stdout)  # R: str
reveal_type(netrunner.run(template, text=True).stdout)  # R: str
reveal_type(netrunner.run(template, text=False))  # R: netrunner._results.Result[bytes] | netrunner._results.Result[str]
reveal_type(netrunner.Command("ls"))  # R: netrunner._command.Command[bytes]
reveal_type(netrunner.run(netrunner.Command("ls")).stdout)  # R: bytes
reveal_type(netrunner.stream(netrunner.Command("ls", encoding="utf-8")))  # R: netrunner._sync.Stream[str]
reveal_type(netrunner.Command("ls").with_options(cwd="/"))  # R: netrunner._command.Command[bytes]

pl = netrunner.pipe(["ls"], ["sort"], netrunner.Command("head"))
reveal_type(pl)  # R: netrunner._pipeline.Pipeline[bytes]
reveal_type(netrunner.run(pl).stdout)  # R: bytes
reveal_type(netrunner.run(pl).pipestatus)  # R: tuple[int, ...]
reveal_type(netrunner.run(pl, text=True).stdout)  # R: str
reveal_type(netrunner.run(netrunner.pipe(["ls"], ["sort"], text=True)).stdout)  # R: str
reveal_type(netrunner.stream(netrunner.pipe(["ls"], ["sort"], encoding="utf-8")))  # R: netrunner._sync.Stream[str]
reveal_type(netrunner.Command("ls") | netrunner.Command("sort"))  # R: netrunner._pipeline.Pipeline[bytes]
reveal_type(["ls"] | netrunner.Command("sort") | ["head"])  # R: netrunner._pipeline.Pipeline[bytes]
with netrunner.start(pl) as pp:
    reveal_type(pp.pipestatus)  # R: tuple[int, ...] | None
netrunner.pipe("ls", ["sort"])  # E: call-overload
netrunner.pipe(["ls"], ["sort"], timeot=5)  # E: call-overload
netrunner.pipe(["ls"], ["sort"], pty=True)  # E: call-overload
netrunner.Daemon(netrunner.pipe(["ls"], ["sort"]))  # E: call-overload
reveal_type(template.with_options(cwd="/"))  # R: netrunner._command.Command[str]
reveal_type(netrunner.Command("ls").with_options(errors="replace"))  # R: netrunner._command.Command[str]
either = netrunner.Command("ls").with_options(text=flag)
reveal_type(either)  # R: netrunner._command.Command[bytes] | netrunner._command.Command[str]
reveal_type(netrunner.Command("ls").argv)  # R: tuple[str | bytes | os.PathLike[str] | os.PathLike[bytes], ...]


def takes_plain(result: netrunner.Result, process: netrunner.Process, stream: netrunner.Stream) -> None:
    reveal_type(result)  # R: netrunner._results.Result[bytes]
    reveal_type(process.read())  # R: bytes
    reveal_type(next(stream))  # R: bytes


async def main() -> None:
    reveal_type(await aio.run(["ls"]))  # R: netrunner._results.Result[bytes]
    reveal_type((await aio.run(["ls"], text=True)).stdout)  # R: str
    reveal_type((await aio.run(["ls"], input=aio.stream(["ls"]))).stdout)  # R: bytes
    await aio.run("ls -l")  # E: call-overload
    await aio.run(["ls"], timeot=1)  # E: call-overload
    aio.stream(["ls"], kill_timeout="1")  # E: call-overload
    async with aio.stream(["ls"]) as s:
        reveal_type(s)  # R: netrunner._async.Stream[bytes]
        async for chunk in s:
            reveal_type(chunk)  # R: bytes
        async for line in s.lines():
            reveal_type(line)  # R: bytes
    async with aio.stream(["ls"], encoding="utf-8") as ts:
        async for tchunk in ts:
            reveal_type(tchunk)  # R: str
        async for tline in ts.lines():
            reveal_type(tline)  # R: str
    async with await aio.start(["cat"]) as p:
        reveal_type(p)  # R: netrunner._async.Process[bytes]
        reveal_type(await p.read())  # R: bytes
        reveal_type(await p.read_stderr())  # R: bytes
        reveal_type(await p.read_until(b"$"))  # R: bytes
        reveal_type(await p.communicate())  # R: tuple[bytes, bytes]
    async with await aio.start(["cat"], text=True) as tp:
        reveal_type(await tp.readline())  # R: str
        reveal_type(await tp.communicate("x"))  # R: tuple[str, str]
    async with aio.Daemon(["x"], text=True, on_output=on_text) as d:
        reveal_type(d)  # R: netrunner._async.Daemon
    aio.Daemon(["x"], restart="sometimes")  # E: call-overload
'''

#: A value each option accepts, and one of a type it does not.
GOOD = {
    "input": 'b"data"', "stdin": '"discard"', "stdout": "subprocess.PIPE", "stderr": '"redirect"',
    "text": "True", "encoding": '"utf-8"', "errors": '"replace"', "leftovers": '"detach"',
    "pty": "(24, 80)", "kill_timeout": "1", "timeout": "2.5", "max_output_size": "10",
    "chunk_size": "1024", "cgroup": '"jobs/1"', "cwd": 'Path("/")', "env": '{"A": "b"}', "check": "True",
    "on_output": "print", "restart": '"always"', "max_restarts": "3", "restart_window": "10.0",
    "backoff": "(0.5, 5.0)", "on_exit": "print", "name": '"web"',
}
BAD = {
    "input": "5", "stdin": '"capture"', "stdout": '"redirect"', "stderr": '"pipe"', "text": '"yes"',
    "encoding": "8", "errors": "8", "leftovers": '"keep"', "pty": '"yes"', "kill_timeout": '"5"',
    "timeout": '"5"', "max_output_size": "1.5", "chunk_size": '"1"', "cgroup": "5", "cwd": "5",
    "env": '["A=b"]', "check": '"yes"', "on_output": '"print"', "restart": '"sometimes"',
    "max_restarts": '"5"', "restart_window": '"60"', "backoff": "1.0", "on_exit": "5", "name": "5",
}
DAEMON_OWN = ("on_output", "restart", "max_restarts", "restart_window", "backoff", "on_exit", "name")

#: (how a call starts, its entry in ENTRY_OPTIONS, a prefix to run it, inside ``async def``).
CALLS = [
    ('netrunner.run(["ls"]', "run", "", False),
    ('netrunner.stream(["ls"]', "stream", "", False),
    ('netrunner.start(["ls"]', "start", "", False),
    ('netrunner.Daemon(["ls"]', "Daemon", "", False),
    ('netrunner.Command("ls"', "Command", "", False),
    ('netrunner.Command("ls").with_options(', "Command", "", False),
    ('aio.run(["ls"]', "run", "await ", True),
    ('aio.stream(["ls"]', "stream", "", True),
    ('aio.start(["ls"]', "start", "await ", True),
    ('aio.Daemon(["ls"]', "Daemon", "", True),
]


def _options(entry: str) -> list[str]:
    names = sorted(ALL_OPTIONS if entry == "Command" else ENTRY_OPTIONS[entry])
    return [*DAEMON_OWN, *names] if entry == "Daemon" else names


def _call(head: str, options: dict[str, str]) -> str:
    args = ", ".join(f"{k}={v}" for k, v in options.items())
    if head.endswith("("):
        return f"{head}{args})"
    return f"{head}, {args})" if args else f"{head})"


def generated() -> str:
    """Each call with all its options (clean), then with each one wrong (flagged)."""
    sync, in_async = [], []
    for head, entry, prefix, is_async in CALLS:
        names = _options(entry)
        lines = [prefix + _call(head, {n: GOOD[n] for n in names})]
        lines += [f"{prefix}{_call(head, {n: BAD[n]})}  # E: call-overload" for n in names]
        (in_async if is_async else sync).extend(lines)
    body = "\n".join("    " + line for line in in_async)
    return "\n".join(sync) + "\n\n\nasync def every_option() -> None:\n" + body + "\n"


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], list[str]]:
    """(the script's lines, mypy's output lines)."""
    where = tmp_path_factory.mktemp("user_code")
    script = textwrap.dedent(HAND_WRITTEN).lstrip() + "\n\n" + generated()
    (where / "user_code.py").write_text(script)
    (where / "mypy.ini").write_text("[mypy]\n")
    result = netrunner.run(
        [sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--strict", "--no-incremental",
         "--cache-dir", "/dev/null", "--show-error-codes", "--no-error-summary", "--no-pretty",
         "--hide-error-context", "user_code.py"],
        cwd=where, env={k: v for k, v in os.environ.items() if k != "MYPYPATH"},
        timeout=300, text=True,
    )
    assert result.returncode in (0, 1), result.stderr + result.stdout
    return script.splitlines(), result.stdout.splitlines()


LINE = re.compile(r"^user_code\.py:(\d+): (error|note): (.*?)(?:  \[([a-z-]+)\])?$")


def _parsed(output: list[str]) -> tuple[dict[int, set[str]], dict[int, str], list[str]]:
    errors: dict[int, set[str]] = {}
    reveals: dict[int, str] = {}
    other = []
    for line in output:
        m = LINE.match(line)
        if m is None:
            other.append(line)
        elif m[2] == "error":
            errors.setdefault(int(m[1]), set()).add(m[4] or "")
        elif m[3].startswith("Revealed type is "):
            # Whether builtins are spelt with their module varies: compare without it.
            reveals[int(m[1])] = m[3][len("Revealed type is "):].strip('"').replace("builtins.", "")
    return errors, reveals, other


def test_netrunner_is_found_without_configuration(checked: tuple[list[str], list[str]]) -> None:
    _, output = checked
    assert not [line for line in output if "import-not-found" in line or "import-untyped" in line], output


def test_flagged_lines_are_exactly_the_expected_ones(checked: tuple[list[str], list[str]]) -> None:
    script, output = checked
    errors, _, other = _parsed(output)
    assert not other, other
    expected = {
        n: set(line.rsplit("# E: ", 1)[1].strip().split("|")) for n, line in enumerate(script, 1) if "# E: " in line
    }
    unexpected = {n: (codes, script[n - 1]) for n, codes in errors.items() if n not in expected}
    missed = {n: script[n - 1] for n in expected if n not in errors}
    wrong = {n: (errors[n], script[n - 1]) for n in expected if n in errors and not errors[n] <= expected[n]}
    assert not unexpected, unexpected
    assert not missed, missed
    assert not wrong, wrong


def test_revealed_types(checked: tuple[list[str], list[str]]) -> None:
    script, output = checked
    _, reveals, _ = _parsed(output)
    expected = {
        n: line.rsplit("# R: ", 1)[1].strip().replace("", "")
        for n, line in enumerate(script, 1) if "# R: " in line
    }
    assert len(expected) > 60
    got = {n: reveals.get(n) for n in expected}
    assert got == expected


def test_no_any_in_the_public_signatures(checked: tuple[list[str], list[str]]) -> None:
    _, reveals, _ = _parsed(checked[1])
    assert not [t for t in reveals.values() if "Any" in t]


def test_every_entry_point_and_option_is_exercised() -> None:
    for entry in ENTRY_OPTIONS:
        assert entry in {e for _, e, _, _ in CALLS}
    assert set(GOOD) == set(BAD) == set(ALL_OPTIONS) | set(DAEMON_OWN)


ROOT = Path(__file__).resolve().parents[2]


def test_the_python_examples_of_readme_and_pty_docs_type_check(tmp_path: Path) -> None:
    """The README's examples, and the PTY page's, pass ``mypy --strict``."""
    files = []
    for doc in ("README.md", "docs/pty.md"):
        blocks = re.findall(r"```python\n(.*?)```", (ROOT / doc).read_text(), re.S)
        assert blocks, doc
        for i, block in enumerate(blocks):
            name = f"{Path(doc).stem.lower()}_{i}.py"
            (tmp_path / name).write_text(block)
            files.append(name)
    (tmp_path / "mypy.ini").write_text("[mypy]\n")
    result = netrunner.run(
        [sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--strict", "--no-incremental",
         "--cache-dir", "/dev/null", "--show-error-codes", "--no-error-summary", *files],
        cwd=tmp_path, timeout=300, text=True,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_the_script_parses(tmp_path: Path) -> None:
    compile(textwrap.dedent(HAND_WRITTEN) + generated(), "user_code.py", "exec")
