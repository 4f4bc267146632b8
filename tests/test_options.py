"""SPEC section 2: shared options — call-time validation, stderr modes, input,
text decoding, leftovers, cwd, env, check (sync API)."""

from __future__ import annotations

import errno
import io
import os
import pathlib
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest
from conftest import MARKER_VAR
from helpers import PY, gone, pid_alive, py, stray_children

import netrunner
import netrunner.aio

ENTRIES = ["run", "stream", "start"]


def launch(entry: str, cmd, **options):  # type: ignore[no-untyped-def]
    obj = getattr(netrunner, entry)(cmd, **options)
    if entry in ("stream", "start"):
        obj.close()
    return obj


def collect_stream(cmd, **options) -> tuple[object, list]:  # type: ignore[no-untyped-def]
    with netrunner.stream(cmd, **options) as s:
        chunks = list(s)
    return s, chunks


# --- validation -------------------------------------------------------------------

# (option, value, exception, applies to)
BAD_VALUES = [
    ("timeout", "1", TypeError, ["run", "stream"]),
    ("timeout", [1], TypeError, ["run", "stream"]),
    ("timeout", 0, ValueError, ["run", "stream"]),
    ("timeout", -1, ValueError, ["run", "stream"]),
    ("timeout", -0.5, ValueError, ["run", "stream"]),
    ("timeout", float("nan"), ValueError, ["run", "stream"]),
    ("kill_timeout", "5", TypeError, ENTRIES),
    ("kill_timeout", 0, ValueError, ENTRIES),
    ("kill_timeout", -1.0, ValueError, ENTRIES),
    ("kill_timeout", 3600.5, ValueError, ENTRIES),
    ("kill_timeout", 10_000, ValueError, ENTRIES),
    ("kill_timeout", float("inf"), ValueError, ENTRIES),
    ("max_output_size", 0, ValueError, ["run", "stream"]),
    ("max_output_size", -10, ValueError, ["run", "stream"]),
    ("max_output_size", 1.5, TypeError, ["run", "stream"]),
    ("max_output_size", "100", TypeError, ["run", "stream"]),
    ("chunk_size", 0, ValueError, ["stream"]),
    ("chunk_size", -1, ValueError, ["stream"]),
    ("chunk_size", "10", TypeError, ["stream"]),
    ("text", "yes", TypeError, ENTRIES),
    ("encoding", 8, TypeError, ENTRIES),
    ("errors", 8, TypeError, ENTRIES),
    ("leftovers", "maybe", ValueError, ENTRIES),
    ("cwd", 42, TypeError, ENTRIES),
    ("env", ["A=B"], TypeError, ENTRIES),
    ("env", "A=B", TypeError, ENTRIES),
    ("env", {"A": 5}, TypeError, ENTRIES),
    ("env", {5: "A"}, TypeError, ENTRIES),
    ("input", 5, TypeError, ["run", "stream"]),
    ("input", 1.5, TypeError, ["run", "stream"]),
    ("check", "yes", TypeError, ["run", "stream"]),
]


def _cases():  # type: ignore[no-untyped-def]
    for name, value, exc, entries in BAD_VALUES:
        for entry in entries:
            yield pytest.param(entry, name, value, exc, id=f"{entry}-{name}-{value!r}")


def _names_option(message: str, name: str) -> bool:
    import re

    return re.search(rf"(?<![a-z_]){name}(?![a-z_])", message) is not None


@pytest.mark.parametrize(("entry", "name", "value", "exc"), list(_cases()))
def test_bad_option_value(entry: str, name: str, value, exc: type[Exception], tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    flag = tmp_path / "spawned"
    before = stray_children(set())
    with pytest.raises(exc) as ei:
        launch(entry, py(f"open({str(flag)!r}, 'w').close()"), **{name: value})
    assert _names_option(str(ei.value), name), str(ei.value)
    assert not flag.exists(), "the command was started despite an invalid option"
    assert stray_children(before) == set()


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("value", ["bogus", "PIPE", 3.5, -5, b"capture"])
def test_unknown_stderr_mode(entry: str, value) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises((ValueError, TypeError)) as ei:
        launch(entry, ["true"], stderr=value)
    assert _names_option(str(ei.value), "stderr"), str(ei.value)


@pytest.mark.parametrize("entry", ENTRIES)
def test_unknown_encoding(entry: str) -> None:
    with pytest.raises((ValueError, LookupError)) as ei:
        launch(entry, ["true"], encoding="no-such-codec-xyz")
    assert "encoding" in str(ei.value)


@pytest.mark.parametrize("entry", ENTRIES)
def test_unknown_option_is_type_error(entry: str) -> None:
    with pytest.raises(TypeError) as ei:
        launch(entry, ["true"], bogus_option=1)
    assert "bogus_option" in str(ei.value)


@pytest.mark.parametrize(
    ("name", "value"), [("input", b"x"), ("timeout", 1.0), ("check", True), ("max_output_size", 10)]
)
def test_options_not_for_start(name: str, value, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    flag = tmp_path / "spawned"
    with pytest.raises(TypeError) as ei:
        netrunner.start(py(f"open({str(flag)!r}, 'w').close()"), **{name: value})
    assert _names_option(str(ei.value), name), str(ei.value)
    assert not flag.exists()


def test_chunk_size_not_for_run() -> None:
    with pytest.raises(TypeError) as ei:
        netrunner.run(["true"], chunk_size=10)
    assert "chunk_size" in str(ei.value)


@pytest.mark.parametrize(
    ("entry", "targets"),
    [
        ("run", {"stdout": "inherit", "stderr": "discard"}),
        ("run", {"stdout": subprocess.DEVNULL, "stderr": subprocess.STDOUT}),
        ("run", {"stdout": "discard", "stderr": "inherit"}),
        ("stream", {"stderr": "discard"}),
        ("stream", {"stderr": "redirect"}),
        ("stream", {"pty": True}),
    ],
)
def test_max_output_size_with_nothing_it_caps_captured(
    entry: str, targets: dict[str, object], tmp_path: pathlib.Path
) -> None:
    """A cap on captured output where nothing it caps is captured would limit
    nothing, silently: refused before anything is spawned, the Command's
    options merged with the call's."""
    flag = tmp_path / "spawned"
    cmd = py(f"open({str(flag)!r}, 'w').close()")
    for call in (
        lambda: launch(entry, cmd, max_output_size=10, **targets),
        lambda: launch(entry, netrunner.Command(cmd[0], cmd[1:], max_output_size=10), **targets),
        lambda: launch(entry, netrunner.Command(cmd[0], cmd[1:], **targets), max_output_size=10),
    ):
        with pytest.raises(TypeError) as ei:
            call()
        assert _names_option(str(ei.value), "max_output_size"), str(ei.value)
        assert "leave it out" in str(ei.value)
    assert not flag.exists()


@pytest.mark.parametrize("targets", [{"stdout": "discard"}, {"stderr": "discard"}, {"stdout": "inherit"}])
def test_max_output_size_with_one_stream_captured(targets: dict[str, object]) -> None:
    """One captured stream is enough for run's cap to apply: it stops the
    tree there."""
    write = py("import os\nos.write(1, b'x' * 100)\nos.write(2, b'y' * 100)")
    with pytest.raises(netrunner.OutputLimitExceeded) as ei:
        netrunner.run(write, max_output_size=10, **targets)
    assert ei.value.limit == 10
    assert ei.value.stream == ("stderr" if targets.get("stderr") is None else "stdout")


def test_max_output_size_sizes_a_streams_stderr() -> None:
    write = py("import os\nos.write(2, b'y' * 90 + b'0123456789')\nos.write(1, b'x' * 100)")
    with netrunner.stream(write, max_output_size=10) as s:
        assert b"".join(s) == b"x" * 100
    assert s.result is not None
    assert s.result.stderr == b"0123456789"


def test_kill_timeout_upper_bound_is_inclusive() -> None:
    assert netrunner.run(["true"], kill_timeout=3600).returncode == 0
    assert netrunner.run(["true"], kill_timeout=0.001).returncode == 0


def test_none_means_default_for_optional_options() -> None:
    result = netrunner.run(["true"], timeout=None, max_output_size=None, input=None, cwd=None, env=None)
    assert result.returncode == 0


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize(("value", "error"), [("yes", TypeError), (1, TypeError), ((24,), TypeError),
                                              ((0, 80), ValueError), ((24, 70000), ValueError),
                                              ((24.0, 80), TypeError)])
def test_pty_validated(entry: str, value: object, error: type[Exception]) -> None:
    with pytest.raises(error) as ei:
        launch(entry, ["true"], pty=value)
    assert "'pty'" in str(ei.value)


@pytest.mark.parametrize("entry", ENTRIES)
def test_pty_excludes_stdio_options(entry: str) -> None:
    with pytest.raises(TypeError) as ei:
        launch(entry, ["true"], pty=True, stdout="discard")
    assert "'stdout'" in str(ei.value)
    assert "'pty'" in str(ei.value)


# --- stderr modes -----------------------------------------------------------------

WRITE_BOTH = py(
    "import os, sys\n"
    "os.write(1, b'out1;'); os.write(2, b'err;'); os.write(1, b'out2')\n"
    "sys.stdout.write(os.readlink('/proc/self/fd/2') + '|')\n"
    "st = os.fstat(2); sys.stdout.write('%d:%d' % (st.st_dev, st.st_ino))\n"
)


def _fd2_identity() -> str:
    st = os.fstat(2)
    return f"{st.st_dev}:{st.st_ino}"


@pytest.mark.parametrize("mode", ["capture", subprocess.PIPE])
def test_stderr_capture(mode) -> None:  # type: ignore[no-untyped-def]
    result = netrunner.run(WRITE_BOTH, stderr=mode)
    assert result.stdout.startswith(b"out1;out2")
    assert result.stderr == b"err;"


def test_stderr_capture_is_the_default() -> None:
    result = netrunner.run(WRITE_BOTH)
    assert result.stderr == b"err;"


@pytest.mark.parametrize("mode", ["redirect", subprocess.STDOUT])
def test_stderr_redirect(mode) -> None:  # type: ignore[no-untyped-def]
    result = netrunner.run(WRITE_BOTH, stderr=mode)
    assert result.stdout.startswith(b"out1;err;out2")
    assert result.stderr == b""


@pytest.mark.parametrize("mode", ["discard", subprocess.DEVNULL])
def test_stderr_discard(mode) -> None:  # type: ignore[no-untyped-def]
    result = netrunner.run(WRITE_BOTH, stderr=mode)
    assert result.stdout.startswith(b"out1;out2/dev/null|")
    assert result.stderr == b""


@pytest.mark.parametrize("mode", ["inherit", None])
def test_stderr_inherit(mode) -> None:  # type: ignore[no-untyped-def]
    result = netrunner.run(WRITE_BOTH, stderr=mode)
    assert result.stderr == b""
    assert result.stdout.startswith(b"out1;out2")
    assert result.stdout.endswith(_fd2_identity().encode())


def test_stderr_redirect_in_stream_and_start() -> None:
    _, chunks = collect_stream(["sh", "-c", "echo a; echo b >&2; echo c"], stderr="redirect")
    assert b"".join(chunks) == b"a\nb\nc\n"
    with netrunner.start(["sh", "-c", "echo a; echo b >&2; echo c"], stderr="redirect") as proc:
        out, err = proc.communicate(timeout=10)
    assert out == b"a\nb\nc\n"
    assert not err


def test_stderr_discard_in_start() -> None:
    with netrunner.start(["sh", "-c", "head -c 1000000 /dev/zero >&2; echo done"], stderr="discard") as proc:
        out, _ = proc.communicate(timeout=20)
    assert out == b"done\n"


def test_run_drains_large_stderr_concurrently() -> None:
    code = (
        "import sys; sys.stderr.buffer.write(b'e' * 3_000_000); sys.stderr.flush(); "
        "sys.stdout.buffer.write(b'o' * 3_000_000)"
    )
    result = netrunner.run(py(code), timeout=30)
    assert result.stdout == b"o" * 3_000_000
    assert result.stderr == b"e" * 3_000_000


# --- input ------------------------------------------------------------------------


def test_input_bytes() -> None:
    assert netrunner.run(["cat"], input=b"abc\x00\xff").stdout == b"abc\x00\xff"


def test_input_bytearray_and_memoryview() -> None:
    assert netrunner.run(["cat"], input=bytearray(b"ba")).stdout == b"ba"
    assert netrunner.run(["cat"], input=memoryview(b"mv")).stdout == b"mv"


def test_input_str_defaults_to_utf8() -> None:
    assert netrunner.run(["cat"], input="héllo €").stdout == "héllo €".encode()


def test_input_str_with_encoding() -> None:
    # the encoding applies to the output too: the child answers in the same encoding
    for encoding in ("latin-1", "utf-16-le"):
        hexdump = py(f"import sys; sys.stdout.buffer.write(sys.stdin.buffer.read().hex().encode({encoding!r}))")
        result = netrunner.run(hexdump, input="hé", encoding=encoding)
        assert result.stdout == "hé".encode(encoding).hex()


def test_input_large_bytes() -> None:
    data = os.urandom(5_000_000)
    assert netrunner.run(["cat"], input=data, timeout=30).stdout == data


def test_input_iterable_of_bytes_and_str() -> None:
    assert netrunner.run(["cat"], input=[b"a", "é", b"", "c"]).stdout == "aéc".encode()
    assert netrunner.run(["cat"], input=iter([b"x"] * 1000)).stdout == b"x" * 1000


def test_input_generator_is_consumed_lazily() -> None:
    state = {"produced": 0, "exhausted": False}

    def gen() -> Iterator[bytes]:
        for _ in range(10_000):
            state["produced"] += 1
            yield b"y" * 1023 + b"\n"
        state["exhausted"] = True

    child = py("import sys; sys.stdin.buffer.readline(); print('got one', flush=True)")
    start = time.monotonic()
    result = netrunner.run(child, input=gen(), timeout=30)
    assert result.returncode == 0
    assert result.stdout == b"got one\n"
    assert time.monotonic() - start < 10
    assert not state["exhausted"]
    # a pipe buffer (64 KiB, or up to 1 MiB) plus what the child read cannot hold 10 MB
    assert state["produced"] < 5_000, state


def test_input_generator_not_drained_when_child_never_reads() -> None:
    """Nothing pulls the generator ahead of the child: a command that never reads
    takes at most what fits in the pipe, and the rest is never produced."""
    state = {"produced": 0}

    def gen() -> Iterator[bytes]:
        for _ in range(100_000):
            state["produced"] += 1
            yield b"z" * 1024

    result = netrunner.run(["true"], input=gen(), timeout=30)
    assert result.returncode == 0
    assert state["produced"] < 5_000, state


def test_input_binary_file_object(tmp_path: pathlib.Path) -> None:
    data = os.urandom(300_000)
    path = tmp_path / "in.bin"
    path.write_bytes(data)
    with path.open("rb") as f:
        assert netrunner.run(["cat"], input=f).stdout == data
    assert netrunner.run(["cat"], input=io.BytesIO(data)).stdout == data


def test_input_none_gives_eof_at_once() -> None:
    start = time.monotonic()
    result = netrunner.run(["cat"], timeout=20)
    assert result.stdout == b""
    assert result.returncode == 0
    assert time.monotonic() - start < 3


def test_input_none_eof_in_stream() -> None:
    start = time.monotonic()
    _, chunks = collect_stream(["cat"], timeout=20)
    assert b"".join(chunks) == b""
    assert time.monotonic() - start < 3


def test_input_in_stream() -> None:
    _, chunks = collect_stream(["cat"], input=[b"a", "b", b"c"])
    assert b"".join(chunks) == b"abc"


@pytest.mark.parametrize(
    "make_input",
    [
        lambda: b"x" * 5_000_000,
        lambda: "x" * 5_000_000,
        lambda: (b"x" * 65536 for _ in range(100)),
        lambda: io.BytesIO(b"x" * 5_000_000),
    ],
    ids=["bytes", "str", "generator", "file"],
)
def test_child_exits_without_reading_input(make_input) -> None:  # type: ignore[no-untyped-def]
    result = netrunner.run(["true"], input=make_input(), timeout=30)
    assert result.returncode == 0
    result = netrunner.run(py("import os; os.close(0); print('closed', flush=True)"), input=make_input(), timeout=30)
    assert result.stdout == b"closed\n"


def test_child_exits_without_reading_input_in_stream() -> None:
    _, chunks = collect_stream(["sh", "-c", "echo hi"], input=b"x" * 5_000_000, timeout=30)
    assert b"".join(chunks) == b"hi\n"


# --- text, encoding, errors -------------------------------------------------------

SPLIT_E_ACUTE = py(
    "import os, time\n"
    "os.write(1, b'caf\\xc3')\n"
    "time.sleep(0.2)\n"
    "os.write(1, b'\\xa9!\\n\\xe2\\x82')\n"
    "time.sleep(0.2)\n"
    "os.write(1, b'\\xac\\n')\n"
)


def test_text_run_returns_str() -> None:
    result = netrunner.run(["sh", "-c", "printf 'é\\n'; printf 'ü' >&2"], text=True)
    assert result.stdout == "é\n"
    assert result.stderr == "ü"


def test_encoding_implies_text() -> None:
    result = netrunner.run(["sh", "-c", "printf '\\377'"], encoding="latin-1")
    assert result.stdout == "ÿ"


def test_text_split_multibyte_run() -> None:
    assert netrunner.run(SPLIT_E_ACUTE, text=True).stdout == "café!\n€\n"


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 65536])
def test_text_split_multibyte_stream(chunk_size: int) -> None:
    _, chunks = collect_stream(SPLIT_E_ACUTE, text=True, chunk_size=chunk_size)
    assert all(isinstance(c, str) for c in chunks)
    assert "".join(chunks) == "café!\n€\n"


def test_text_split_multibyte_stream_lines() -> None:
    with netrunner.stream(SPLIT_E_ACUTE, text=True, chunk_size=1) as s:
        lines = list(s.lines())
    assert lines == ["café!\n", "€\n"]


def test_text_split_multibyte_process_read() -> None:
    with netrunner.start(SPLIT_E_ACUTE, text=True) as proc:
        pieces = []
        while True:
            piece = proc.read(1, timeout=10)
            assert isinstance(piece, str)
            if piece == "":
                break
            pieces.append(piece)
        assert proc.wait(timeout=10) == 0
    assert "".join(pieces) == "café!\n€\n"


def test_errors_strict_is_default() -> None:
    with pytest.raises(UnicodeDecodeError):
        netrunner.run(["sh", "-c", "printf 'ok\\377\\n'"], text=True)


def test_errors_strict_in_stream() -> None:
    with pytest.raises(UnicodeDecodeError):
        collect_stream(["sh", "-c", "printf 'ok\\377\\n'"], text=True)


def test_errors_replace() -> None:
    result = netrunner.run(["sh", "-c", "printf 'ok\\377\\n'"], text=True, errors="replace")
    assert result.stdout == "ok\ufffd\n"


def test_errors_backslashreplace_implies_text() -> None:
    result = netrunner.run(["sh", "-c", "printf 'ok\\377'"], errors="backslashreplace")
    assert result.stdout == "ok\\xff"


def test_incomplete_sequence_at_eof() -> None:
    assert netrunner.run(["sh", "-c", "printf 'a\\303'"], text=True, errors="replace").stdout == "a\ufffd"
    with pytest.raises(UnicodeDecodeError):
        netrunner.run(["sh", "-c", "printf 'a\\303'"], text=True)


def test_no_newline_translation() -> None:
    assert netrunner.run(["sh", "-c", "printf 'a\\r\\nb\\rc\\n'"], text=True).stdout == "a\r\nb\rc\n"


# --- leftovers --------------------------------------------------------------------


def test_leftovers_kill_is_default() -> None:
    result = netrunner.run(["sh", "-c", "sleep 100 & echo $!"], timeout=30)
    assert gone(int(result.stdout))


def test_leftovers_kill_stops_setsid_escapees() -> None:
    result = netrunner.run(["sh", "-c", "setsid sleep 100 >/dev/null 2>&1 & echo $!"], leftovers="kill", timeout=30)
    assert gone(int(result.stdout))


def test_leftovers_detach_leaves_descendants_running() -> None:
    start = time.monotonic()
    result = netrunner.run(["sh", "-c", "sleep 100 & echo $!"], leftovers="detach", timeout=30)
    assert time.monotonic() - start < 5  # stops reading once the command has exited
    pid = int(result.stdout.split()[0])
    try:
        assert pid_alive(pid)
    finally:
        os.kill(pid, signal.SIGKILL)
    assert gone(pid)


# --- cwd, env, check --------------------------------------------------------------


@pytest.mark.parametrize("kind", [str, pathlib.Path, os.fsencode])
def test_cwd(kind, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    result = netrunner.run(py("import os; print(os.getcwd())"), cwd=kind(str(tmp_path)))
    assert result.stdout.decode().strip() == str(tmp_path)


def test_cwd_applies_to_start_and_stream(tmp_path: pathlib.Path) -> None:
    with netrunner.start(["pwd"], cwd=tmp_path) as proc:
        out, _ = proc.communicate(timeout=10)
    assert out == f"{tmp_path}\n".encode()
    _, chunks = collect_stream(["pwd"], cwd=tmp_path)
    assert b"".join(chunks) == f"{tmp_path}\n".encode()


def test_env_replaces_the_environment(marker_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NETRUNNER_SHOULD_NOT_LEAK", "1")
    env = {**marker_env, "FOO": "bar baz", "EMPTY": ""}
    raw = netrunner.run(["cat", "/proc/self/environ"], env=env).stdout
    got = dict(item.split(b"=", 1) for item in raw.split(b"\0") if item)
    assert got == {k.encode(): v.encode() for k, v in env.items()}


def test_env_bytes_keys_and_values(marker_env: dict[str, str]) -> None:
    env: dict = {**marker_env, b"BYTES": b"v\xff"}
    raw = netrunner.run(["cat", "/proc/self/environ"], env=env).stdout
    assert b"BYTES=v\xff" in raw.split(b"\0")


def test_env_none_inherits(monkeypatch: pytest.MonkeyPatch, marker: str) -> None:
    monkeypatch.setenv("NETRUNNER_INHERITED", "yes")
    raw = netrunner.run(["cat", "/proc/self/environ"]).stdout.split(b"\0")
    assert b"NETRUNNER_INHERITED=yes" in raw
    assert f"{MARKER_VAR}={marker}".encode() in raw


def test_env_in_start_and_stream(marker_env: dict[str, str]) -> None:
    env = {**marker_env, "ONLY": "this"}
    with netrunner.start(py("import os; print(os.environ['ONLY'])"), env=env) as proc:
        out, _ = proc.communicate(timeout=10)
    assert out == b"this\n"
    _, chunks = collect_stream(py("import os; print(os.environ['ONLY'])"), env=env)
    assert b"".join(chunks) == b"this\n"


def test_check_false_is_default_for_run() -> None:
    result = netrunner.run(["false"])
    assert result.returncode == 1
    assert not result.ok


def test_check_true_raises_process_error() -> None:
    with pytest.raises(netrunner.ProcessError) as ei:
        netrunner.run(["sh", "-c", "echo out; echo err >&2; exit 4"], check=True)
    assert ei.value.returncode == 4
    assert ei.value.stdout == b"out\n"
    assert ei.value.stderr == b"err\n"
    assert netrunner.run(["true"], check=True).returncode == 0


def test_python_child_sanity() -> None:
    assert netrunner.run([PY, "-c", "print(1 + 1)"]).stdout == b"2\n"


def test_stderr_inherit_in_stream_and_start() -> None:
    probe = py("import os; st = os.fstat(2); print('%d:%d' % (st.st_dev, st.st_ino))")
    with netrunner.stream(probe, stderr="inherit") as s:
        assert b"".join(s).decode().strip() == _fd2_identity()
    assert s.result.stderr == b""
    with netrunner.start(probe, stderr="inherit") as proc:
        out, _ = proc.communicate(timeout=10)
    assert out.decode().strip() == _fd2_identity()


def test_leftovers_detach_in_stream() -> None:
    start = time.monotonic()
    with netrunner.stream(["sh", "-c", "sleep 100 & echo $!"], leftovers="detach", timeout=30) as s:
        out = b"".join(s)
    assert time.monotonic() - start < 5  # stops reading once the command has exited
    pid = int(out.split()[0])
    try:
        assert pid_alive(pid)
    finally:
        os.kill(pid, signal.SIGKILL)
    assert gone(pid)


def test_write_str_uses_encoding() -> None:
    hexdump = py("import sys; sys.stdout.write(sys.stdin.buffer.read().hex())")
    with netrunner.start(hexdump, encoding="latin-1") as proc:
        proc.write("é")
        out, _ = proc.communicate(timeout=10)
    assert out == "e9"
    with netrunner.start(hexdump) as proc:
        proc.write("é")
        out, _ = proc.communicate(timeout=10)
    assert out == b"c3a9"


def test_input_iterable_of_str_uses_encoding() -> None:
    hexdump = py("import sys; sys.stdout.write(sys.stdin.buffer.read().hex())")
    assert netrunner.run(hexdump, input=["é", b"\xff"], encoding="latin-1").stdout == "e9ff"
    assert netrunner.run(hexdump, input=iter(["é"])).stdout == b"c3a9"


# --- stdin and stdout targets ---------------------------------------------------


@pytest.mark.parametrize("mode", ["discard", subprocess.DEVNULL])
def test_stdin_discard_gives_eof_in_start(mode) -> None:  # type: ignore[no-untyped-def]
    with netrunner.start(["cat"], stdin=mode) as proc:
        assert proc.read(timeout=10) == b""
        assert proc.wait(timeout=10) == 0
    with pytest.raises(BrokenPipeError):
        proc.write(b"x")


def test_stdin_from_an_fd_and_a_file_object(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "in.txt"
    path.write_bytes(b"from a file\n")
    with open(path, "rb") as f:
        assert netrunner.run(["cat"], stdin=f).stdout == b"from a file\n"
    r, w = os.pipe()
    os.write(w, b"from a pipe")
    os.close(w)
    try:
        assert netrunner.run(["cat"], stdin=r).stdout == b"from a pipe"
    finally:
        os.close(r)



@pytest.mark.parametrize("name", ["stdin", "stdout", "stderr"])
def test_a_closed_fd_target_is_named_at_the_call(name: str, marker: str) -> None:
    r, w = os.pipe()
    os.close(r)
    os.close(w)  # both numbers are free now
    for entry in ("run", "start"):
        with pytest.raises(OSError, match=f"^\\[Errno 9\\] {name}={w} is not an open file descriptor$") as ei:
            launch(entry, ["sh", "-c", "sleep 30"], **{name: w})
        assert ei.value.errno == errno.EBADF
        assert not isinstance(ei.value, netrunner.ShepherdError)


@pytest.mark.parametrize(
    ("entry", "name"),
    # (a stream's stdout takes "capture" only: that is refused first, tested below)
    [(e, n) for e in ENTRIES for n in ("stdin", "stdout", "stderr") if (e, n) != ("stream", "stdout")],
)
@pytest.mark.parametrize("make", [io.StringIO, io.BytesIO])
def test_an_in_memory_file_target_says_what_to_do_instead(
    entry: str, name: str, make: type, tmp_path: pathlib.Path
) -> None:
    """``subprocess`` fails on ``fileno()`` of a ``StringIO``; netrunner
    names the option and the way: capture it, or give stdin as input."""
    flag = tmp_path / "spawned"
    with pytest.raises(TypeError) as ei:
        launch(entry, py(f"open({str(flag)!r}, 'w').close()"), **{name: make()})
    message = str(ei.value)
    assert f"option {name!r} must be a file with a file descriptor" in message
    assert f"a {make.__name__} has none" in message
    if name != "stdin":
        assert f"{name}='capture'" in message
    elif entry == "start":
        assert "write()" in message
    else:
        assert "input=" in message
    assert not flag.exists()


@pytest.mark.parametrize("value", [2**31, 2**40])
def test_an_fd_past_a_c_int_is_refused_by_name(value: int) -> None:
    for name in ("stdin", "stdout", "stderr"):
        with pytest.raises(ValueError, match=f"option '{name}'"):
            netrunner.run(["true"], **{name: value})

def test_stdout_to_a_file_and_discarded(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "out.txt"
    with open(path, "wb") as f:
        result = netrunner.run(["echo", "hi"], stdout=f)
    assert result.stdout == b""
    assert path.read_bytes() == b"hi\n"
    assert result.stats.bytes_out is None  # handed to the command: not observed
    result = netrunner.run(["echo", "hi"], stdout="discard")
    assert result.stdout == b""
    assert result.stats.bytes_out is None
    with netrunner.start(["echo", "hi"], stdout=subprocess.DEVNULL) as proc:
        assert proc.read(timeout=10) == b""
        assert proc.wait(timeout=10) == 0


def test_stdout_inherit_is_the_interpreters_fd_1() -> None:
    code = "import os; st = os.fstat(1); os.write(2, b'%d:%d' % (st.st_dev, st.st_ino))"
    result = netrunner.run(py(code), stdout="inherit")
    st = os.fstat(1)
    assert result.stderr == f"{st.st_dev}:{st.st_ino}".encode()


@pytest.mark.parametrize("entry", ["run", "stream"])
def test_stdin_and_input_together_are_refused(entry: str) -> None:
    with pytest.raises(TypeError, match="stdin"):
        launch(entry, ["cat"], stdin="discard", input=b"x")


@pytest.mark.parametrize("value", ["inherit", "discard", 1])
def test_stream_needs_a_captured_stdout(value) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises((ValueError, TypeError), match="stdout"):
        netrunner.stream(["true"], stdout=value)


@pytest.mark.parametrize(
    ("name", "value"), [("stdin", "capture"), ("stdout", "redirect"), ("stdin", -7), ("stdout", 2.5)]
)
def test_bad_stdio_targets_name_the_option(name: str, value) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises((ValueError, TypeError)) as ei:
        netrunner.run(["true"], **{name: value})
    assert _names_option(str(ei.value), name), str(ei.value)


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("capture_output", "captured by default"),
        ("universal_newlines", "text=True"),
        ("shell", "['sh', '-c', line]"),
        ("executable", "first in the argv"),
        ("close_fds", "fds 0-2 only"),
        ("pass_fds", "fds 0-2 only"),
        ("start_new_session", "process group of its own"),
        ("process_group", "process group of its own"),
        ("preexec_fn", "between fork and exec"),
        ("restore_signals", "reset to their defaults"),
        ("bufsize", "unbuffered"),
        ("user", "setpriv"),
        ("group", "setpriv"),
        ("extra_groups", "setpriv"),
        ("umask", "umask 077"),
        ("pipesize", "sizes its pipes"),
        ("startupinfo", "Windows"),
        ("creationflags", "Windows"),
    ],
)
@pytest.mark.parametrize("entry", ENTRIES)
def test_subprocess_options_say_the_netrunner_way(entry: str, name: str, says: str) -> None:
    with pytest.raises(TypeError) as ei:
        launch(entry, ["true"], **{name: True})
    message = str(ei.value)
    assert repr(name) in message and says in message, message


@pytest.mark.parametrize("name", ["capture_output", "shell"])
def test_subprocess_options_are_refused_by_command_and_daemon(name: str) -> None:
    with pytest.raises(TypeError, match=name):
        netrunner.Command("true", **{name: True})
    with pytest.raises(TypeError, match=name):
        netrunner.Daemon(["true"], **{name: True})
    with pytest.raises(TypeError, match=name):
        netrunner.aio.Daemon(["true"], **{name: True})
