"""SPEC section 8: ``pty=True`` gives the command a controlling terminal.

fds 0-2 are the slave side of a fresh pseudo-terminal, the command leads a new
session whose controlling terminal it is (``/dev/tty`` opens, the terminal's
foreground group is the command's), the size given at start (default 24x80) is
what the command sees, ``set_window_size`` resizes it and the command gets
SIGWINCH. Bad values are refused at call time, before anything is spawned."""

from __future__ import annotations

import inspect
import json
import os
import re
import signal

import pytest
from helpers import own_children, stray_children
from helpers_aio import arun
from pty_helpers import PY, py, read_to_eof

import netrunner
import netrunner.aio

#: Prints, as one JSON line, what the command sees of its terminal.
PROBE = r"""
import json, os, sys
info = {
    "isatty": [os.isatty(fd) for fd in (0, 1, 2)],
    "ttyname": os.ttyname(0),
    "same_tty": [os.ttyname(fd) == os.ttyname(0) for fd in (1, 2)],
    "pid": os.getpid(), "sid": os.getsid(0), "pgrp": os.getpgrp(),
    "fg": os.tcgetpgrp(0),
    "size": list(os.get_terminal_size(0)),
    "tty_nr": int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[4]),
}
try:
    fd = os.open("/dev/tty", os.O_RDWR)
except OSError as exc:
    info["dev_tty"] = repr(exc)
else:
    os.write(fd, b"written-to-dev-tty\n")
    os.close(fd)
    info["dev_tty"] = "opened"
print("PROBE " + json.dumps(info), flush=True)
"""

WINCH_CHILD = r"""
import os, signal
def on_winch(signum, frame):
    size = os.get_terminal_size(0)
    os.write(1, f"winch {size.lines} {size.columns}\n".encode())  # print() is not reentrant
signal.signal(signal.SIGWINCH, on_winch)
print("ready", flush=True)
while True:
    signal.pause()
"""


def probe_of(output: bytes) -> dict:  # type: ignore[type-arg]
    match = re.search(rb"PROBE (\{.*\})", output)
    assert match, f"the probe printed no PROBE line; terminal output: {output!r}"
    return json.loads(match.group(1))  # type: ignore[no-any-return]


# --------------------------------------------------------------- the terminal


def test_fds_0_to_2_are_one_pty_and_the_controlling_terminal() -> None:
    result = netrunner.run(py(PROBE), pty=True, timeout=30)
    assert result.returncode == 0, f"probe failed: {result!r}"
    info = probe_of(result.stdout)
    assert info["isatty"] == [True, True, True], f"fds 0-2 are not all terminals: {info}"
    assert re.fullmatch(r"/dev/pts/\d+", info["ttyname"]), f"fd 0 is not a /dev/pts terminal: {info['ttyname']!r}"
    assert info["same_tty"] == [True, True], f"fds 1 and 2 are not the terminal of fd 0: {info}"
    assert info["tty_nr"] != 0, f"/proc/self/stat shows no controlling terminal: {info}"
    assert info["dev_tty"] == "opened", f"/dev/tty did not open, so there is no controlling terminal: {info['dev_tty']}"
    assert b"written-to-dev-tty\r\n" in result.stdout, (
        f"what the command wrote to /dev/tty is not in the terminal output: {result.stdout!r}"
    )


def test_command_leads_a_new_session_in_the_foreground() -> None:
    result = netrunner.run(py(PROBE), pty=True, timeout=30)
    info = probe_of(result.stdout)
    assert info["sid"] == info["pid"], f"the command is not a session leader (sid {info['sid']}, pid {info['pid']})"
    assert info["pgrp"] == info["pid"], f"the command does not lead its process group: {info}"
    assert info["fg"] == info["pgrp"], (
        f"the terminal's foreground group {info['fg']} is not the command's group {info['pgrp']}"
    )
    assert info["sid"] != os.getsid(0), "the command shares the test's session"


def test_start_pid_is_the_session_leader() -> None:
    with netrunner.start(py(PROBE), pty=True) as proc:
        info = probe_of(read_to_eof(proc))
        assert proc.wait(timeout=10) == 0
    assert info["pid"] == proc.pid == info["sid"], f"Process.pid {proc.pid} is not the probe's session leader: {info}"


def test_stderr_is_merged_into_the_terminal_output() -> None:
    code = "import sys; print('to-out', flush=True); print('to-err', file=sys.stderr, flush=True)"
    result = netrunner.run(py(code), pty=True, timeout=30)
    assert result.stdout == b"to-out\r\nto-err\r\n", f"terminal output: {result.stdout!r}"
    assert result.stderr == b"", f"Result.stderr is not empty with pty: {result.stderr!r}"


def test_read_stderr_is_a_value_error_with_pty() -> None:
    with netrunner.start(["cat"], pty=True) as proc:
        with pytest.raises(ValueError, match="pty"):
            proc.read_stderr(timeout=1)
        proc.close_stdin()
        assert proc.wait(timeout=10) == 0


def test_each_command_gets_its_own_terminal() -> None:
    with netrunner.start(["sh", "-c", "tty; read line"], pty=True) as a, \
            netrunner.start(["sh", "-c", "tty; read line"], pty=True) as b:
        names = [proc.read_until(b"\r\n", timeout=10).strip() for proc in (a, b)]
        assert all(re.fullmatch(rb"/dev/pts/\d+", n) for n in names), f"tty printed {names}"
        assert names[0] != names[1], f"two running commands share the terminal {names[0]!r}"
        for proc in (a, b):
            proc.write(b"\n")
            assert proc.wait(timeout=10) == 0


def test_pty_false_means_pipes() -> None:
    result = netrunner.run(py("import os; print([os.isatty(fd) for fd in (0, 1, 2)])"), pty=False, timeout=30)
    assert result.stdout == b"[False, False, False]\n", result


# --------------------------------------------------------------- window size


def test_default_size_is_24x80() -> None:
    result = netrunner.run(["stty", "size"], pty=True, timeout=30)
    assert result.stdout == b"24 80\r\n", f"stty size on a default pty: {result!r}"
    info = probe_of(netrunner.run(py(PROBE), pty=True, timeout=30).stdout)
    assert info["size"] == [80, 24], f"os.get_terminal_size() (columns, lines) on a default pty: {info['size']}"


def test_size_given_at_start() -> None:
    result = netrunner.run(["stty", "size"], pty=(30, 100), timeout=30)
    assert result.stdout == b"30 100\r\n", f"stty size with pty=(30, 100): {result!r}"
    info = probe_of(netrunner.run(py(PROBE), pty=(30, 100), timeout=30).stdout)
    assert info["size"] == [100, 30], f"os.get_terminal_size() (columns, lines) with pty=(30, 100): {info['size']}"


def test_extreme_sizes_given_at_start() -> None:
    assert netrunner.run(["stty", "size"], pty=(1, 1), timeout=30).stdout == b"1 1\r\n"
    assert netrunner.run(["stty", "size"], pty=(65535, 65535), timeout=30).stdout == b"65535 65535\r\n"


def test_size_given_in_a_command_template() -> None:
    cmd = netrunner.Command("stty", ["size"], pty=(40, 132))
    assert netrunner.run(cmd, timeout=30).stdout == b"40 132\r\n"
    assert netrunner.run(cmd, pty=(12, 34), timeout=30).stdout == b"12 34\r\n", "the call site's pty did not win"


def test_set_window_size_is_seen_by_stty() -> None:
    script = "stty size; read line; stty size; read line; stty size"
    with netrunner.start(["sh", "-c", script], pty=(30, 100)) as proc:
        first = proc.read_until(b"\r\n", timeout=10)
        assert first == b"30 100\r\n", f"first stty size: {first!r}"
        assert proc.set_window_size(50, 132) is None
        proc.write(b"\n")
        second = proc.read_until(re.compile(rb"\d+ \d+\r\n"), timeout=10)
        assert second.endswith(b"50 132\r\n"), f"stty size after set_window_size(50, 132): {second!r}"
        proc.set_window_size(7, 9)
        proc.write(b"\n")
        third = proc.read_until(re.compile(rb"\d+ \d+\r\n"), timeout=10)
        assert third.endswith(b"7 9\r\n"), f"stty size after set_window_size(7, 9): {third!r}"
        assert proc.wait(timeout=10) == 0


def test_sigwinch_arrives_with_the_new_size() -> None:
    with netrunner.start(py(WINCH_CHILD), pty=True) as proc:
        assert proc.read_until(b"ready\r\n", timeout=10).endswith(b"ready\r\n")
        for rows, cols in ((40, 120), (10, 20), (24, 80)):
            proc.set_window_size(rows, cols)
            line = proc.read_until(re.compile(rb"winch \d+ \d+\r\n"), timeout=10)
            assert line.endswith(f"winch {rows} {cols}\r\n".encode()), (
                f"after set_window_size({rows}, {cols}) the child reported {line!r}"
            )
        assert proc.stop(kill_timeout=5) == -signal.SIGTERM


def test_sigwinch_reaches_the_foreground_group_not_only_the_leader() -> None:
    # sh (the session leader) runs a python in the foreground of its group
    # (without job control, so in the same group): it gets SIGWINCH too.
    script = f"{PY} -c '{WINCH_CHILD}'; exit 0"
    with netrunner.start(["sh", "-c", script], pty=True) as proc:
        proc.read_until(b"ready\r\n", timeout=10)
        proc.set_window_size(33, 99)
        line = proc.read_until(re.compile(rb"winch \d+ \d+\r\n"), timeout=10)
        assert line.endswith(b"winch 33 99\r\n"), f"the grandchild reported {line!r}"
        proc.stop(kill_timeout=5)


def test_aio_size_and_sigwinch() -> None:
    async def main() -> None:
        async with await netrunner.aio.start(py(WINCH_CHILD), pty=(30, 100)) as proc:
            await proc.read_until(b"ready\r\n", timeout=10)
            returned = proc.set_window_size(45, 145)
            assert returned is None and not inspect.isawaitable(returned), (
                f"aio set_window_size must be a plain method returning None, got {returned!r}"
            )
            line = await proc.read_until(re.compile(rb"winch \d+ \d+\r\n"), timeout=10)
            assert line.endswith(b"winch 45 145\r\n"), f"the child reported {line!r}"
            assert await proc.stop(kill_timeout=5) == -signal.SIGTERM
        result = await netrunner.aio.run(["stty", "size"], pty=(30, 100), timeout=30)
        assert result.stdout == b"30 100\r\n", result

    arun(main())


# --------------------------------------------------------------- errors


def test_set_window_size_without_pty_is_a_value_error() -> None:
    with netrunner.start(["cat"]) as proc:
        with pytest.raises(ValueError, match="pty"):
            proc.set_window_size(24, 80)
        proc.close_stdin()
        assert proc.wait(timeout=10) == 0


def test_aio_set_window_size_without_pty_is_a_value_error() -> None:
    async def main() -> None:
        async with await netrunner.aio.start(["cat"]) as proc:
            with pytest.raises(ValueError, match="pty"):
                proc.set_window_size(24, 80)
            proc.close_stdin()
            assert await proc.wait(timeout=10) == 0

    arun(main())


BAD_SIZES = [
    ("24", 80, TypeError),
    (24, "80", TypeError),
    (24.0, 80, TypeError),
    (24, 80.5, TypeError),
    (None, 80, TypeError),
    (True, 80, TypeError),
    (24, False, TypeError),
    (0, 80, ValueError),
    (24, 0, ValueError),
    (-1, 80, ValueError),
    (24, -80, ValueError),
    (65536, 80, ValueError),
    (24, 1 << 20, ValueError),
]


@pytest.mark.parametrize(("rows", "cols", "exc"), BAD_SIZES)
def test_set_window_size_bad_values(rows, cols, exc) -> None:  # type: ignore[no-untyped-def]
    with netrunner.start(["stty", "size"], pty=(30, 100)) as proc:
        with pytest.raises(exc):
            proc.set_window_size(rows, cols)
        # nothing changed: the size is still the one given at start
        out = read_to_eof(proc)
        assert out == b"30 100\r\n", f"a refused set_window_size({rows!r}, {cols!r}) changed the size: {out!r}"
        assert proc.wait(timeout=10) == 0


@pytest.mark.parametrize(("rows", "cols", "exc"), BAD_SIZES[:4] + BAD_SIZES[7:9])
def test_aio_set_window_size_bad_values(rows, cols, exc) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        async with await netrunner.aio.start(["cat"], pty=True) as proc:
            with pytest.raises(exc):
                proc.set_window_size(rows, cols)
            proc.close_stdin()
            assert await proc.wait(timeout=10) == 0

    arun(main())


BAD_PTY = [
    ("yes", TypeError),
    (1, TypeError),
    (24.0, TypeError),
    ((24,), TypeError),
    ((24, 80, 1), TypeError),
    (("24", "80"), TypeError),
    ((24.0, 80.0), TypeError),
    ((0, 80), ValueError),
    ((24, 0), ValueError),
    ((-24, 80), ValueError),
    ((24, 65536), ValueError),
]

CONFLICTS = [
    {"stdin": "discard"},
    {"stdin": "inherit"},
    {"stdout": "capture"},
    {"stdout": "discard"},
    {"stderr": "capture"},
    {"stderr": "redirect"},
    {"stderr": "discard"},
]


def call_sync(entry: str, **options: object) -> None:
    obj = getattr(netrunner, entry)(["true"], **options)
    if entry != "run":  # not reached when the options are refused
        obj.close()


def call_aio(entry: str, **options: object) -> None:
    async def main() -> None:
        if entry == "stream":
            netrunner.aio.stream(["true"], **options)  # validates at the call, without awaiting
            return
        await getattr(netrunner.aio, entry)(["true"], **options)

    arun(main())


@pytest.mark.parametrize("entry", ["run", "stream", "start"])
@pytest.mark.parametrize(("value", "exc"), BAD_PTY)
def test_bad_pty_option_is_refused_before_spawning(entry: str, value: object, exc: type) -> None:
    kids = own_children()
    for call in (call_sync, call_aio):
        with pytest.raises(exc, match="pty") as info:
            call(entry, pty=value)
        assert not isinstance(info.value, NotImplementedError), info.value
    assert stray_children(kids) == set(), f"pty={value!r} spawned something: {stray_children(kids)}"


@pytest.mark.parametrize(("value", "exc"), BAD_PTY)
def test_bad_pty_option_in_a_command_template(value: object, exc: type) -> None:
    with pytest.raises(exc, match="pty"):
        netrunner.Command("true", pty=value)


@pytest.mark.parametrize("entry", ["run", "stream", "start"])
@pytest.mark.parametrize("conflict", CONFLICTS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_pty_with_stdio_options_is_a_type_error(entry: str, conflict: dict) -> None:  # type: ignore[type-arg]
    kids = own_children()
    for call in (call_sync, call_aio):
        with pytest.raises(TypeError) as info:
            call(entry, pty=True, **conflict)
        (name,) = conflict
        assert name in str(info.value) and "pty" in str(info.value), (
            f"the TypeError does not name {name!r} and 'pty': {info.value}"
        )
    assert stray_children(kids) == set(), f"pty with {conflict} spawned something: {stray_children(kids)}"


def test_pty_with_stdio_options_in_a_command_template() -> None:
    with pytest.raises(TypeError, match="pty"):
        netrunner.Command("true", pty=True, stdout="discard")


def test_aio_stream_with_pty_validates_at_the_call() -> None:
    async def main() -> None:
        with pytest.raises(TypeError, match="pty"):
            netrunner.aio.stream(["true"], pty="yes")
        with pytest.raises(ValueError, match="pty"):
            netrunner.aio.stream(["true"], pty=(24, 0))

    arun(main())


def test_valid_pty_values_are_accepted_everywhere() -> None:
    async def main() -> None:
        for value in (True, (24, 80), (1, 1), (65535, 65535)):
            assert (await netrunner.aio.run(["true"], pty=value, timeout=30)).returncode == 0
        async with netrunner.aio.stream(["echo", "x"], pty=(5, 6)) as s:
            assert b"".join([c async for c in s]) == b"x\r\n"

    for value in (True, (24, 80), (1, 1), (65535, 65535)):
        assert netrunner.run(["true"], pty=value, timeout=30).returncode == 0, value
    arun(main())
