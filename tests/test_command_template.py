"""SPEC section 7: Command, a frozen reusable template."""

from __future__ import annotations

import asyncio
import pathlib

import pytest

import netrunner
from netrunner import Command, aio


def test_argv_and_appending() -> None:
    git = Command("git", ["-C", "/tmp"])
    assert git.argv == ("git", "-C", "/tmp")
    status = git("status", "--short")
    assert status.argv == ("git", "-C", "/tmp", "status", "--short")
    assert git.argv == ("git", "-C", "/tmp")  # the template is unchanged
    assert isinstance(status, Command)


def test_path_like_and_bytes_arguments(tmp_path: pathlib.Path) -> None:
    cmd = Command(pathlib.Path("/bin/echo"), [b"bytes", tmp_path])
    assert netrunner.run(cmd).stdout == f"bytes {tmp_path}\n".encode()


def test_options_merge_and_call_site_overrides() -> None:
    base = Command("sh", ["-c", "echo out; echo err >&2; exit 3"], stderr="redirect")
    assert base.options == {"stderr": "redirect"}
    checked = base.with_options(check=True, text=True)
    assert checked.options == {"stderr": "redirect", "check": True, "text": True}
    with pytest.raises(netrunner.ProcessError):
        netrunner.run(checked)
    r = netrunner.run(checked, check=False)  # the call site wins
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\nerr\n", "")


def test_equal_templates_compare_and_hash_alike() -> None:
    a = Command("ls", ["-l"], env={"A": "1"}, timeout=5)
    b = Command("ls", ("-l",), env={"A": "1"}, timeout=5)
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
    assert a != Command("ls", ["-l"], env={"A": "2"}, timeout=5)
    assert a != a("-a")
    assert a != a.with_options(timeout=6)


def test_frozen() -> None:
    cmd = Command("true")
    with pytest.raises(AttributeError):
        cmd._argv = ("false",)  # type: ignore[misc]
    with pytest.raises(AttributeError):
        cmd.argv = ("false",)  # type: ignore[misc]


def test_validated_at_construction() -> None:
    with pytest.raises(netrunner.InvalidCommand):
        Command("")
    with pytest.raises(netrunner.InvalidCommand):
        Command("echo", ["a\0b"])
    with pytest.raises(netrunner.InvalidCommand):
        Command("echo")(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        Command("sleep", ["1"], timeout=-1)
    with pytest.raises(TypeError, match="nonsense"):
        Command("true", nonsense=1)
    with pytest.raises(ValueError, match="kill_timeout"):
        Command("true").with_options(kill_timeout=0)


def test_options_that_do_not_apply_to_the_entry_point() -> None:
    cmd = Command("sleep", ["100"], timeout=1)
    with pytest.raises(TypeError, match="timeout"):
        netrunner.start(cmd)  # nothing is started
    with pytest.raises(TypeError, match="chunk_size"):
        netrunner.run(Command("true", chunk_size=10))


def test_every_entry_point_accepts_it() -> None:
    echo = Command("echo", ["hi"])
    assert netrunner.run(echo).stdout == b"hi\n"
    with netrunner.stream(echo) as s:
        assert b"".join(s) == b"hi\n"
    with netrunner.start(Command("cat")) as p:
        p.write(b"x")
        p.close_stdin()
        assert p.read(timeout=10) == b"x"
        assert p.wait(timeout=10) == 0

    async def main() -> None:
        assert (await aio.run(echo)).stdout == b"hi\n"
        async with aio.stream(echo) as s:
            assert [c async for c in s] == [b"hi\n"]
        async with await aio.start(echo) as p:
            assert await p.read(timeout=10) == b"hi\n"
            assert await p.wait(timeout=10) == 0

    asyncio.run(main())


def test_result_args_are_the_full_argv() -> None:
    r = netrunner.run(Command("echo", ["a"])("b"))
    assert r.args == ("echo", "a", "b")


def test_repr_names_argv_and_options() -> None:
    assert repr(Command("ls", ["-l"], timeout=5)) == "Command(['ls', '-l'], timeout=5)"
