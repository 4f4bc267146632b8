"""``netrunner run --pty`` (SPEC 8 and 14): the command runs on a terminal of
its own while the CLI relays between it and the CLI's stdio, with the CLI's
terminal in raw mode meanwhile (restored on every exit path) and its size
followed. The CLI's terminal here is a PTY the test owns."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator

import pytest

PY = sys.executable


class Terminal:
    """A PTY the test holds the master of; the CLI runs on its slave."""

    def __init__(self, rows: int = 0, cols: int = 0) -> None:
        self.master, self.slave = os.openpty()
        if rows:
            self.resize(rows, cols)
        self.mode = termios.tcgetattr(self.slave)
        self.out = b""
        self.proc: subprocess.Popen[bytes] | None = None

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def run(self, *cli: str, stdin: int | None = None) -> subprocess.Popen[bytes]:
        # Its own session, with this PTY as controlling terminal: as in a shell.
        self.proc = subprocess.Popen(
            [PY, "-m", "netrunner", "run", *cli],
            stdin=self.slave if stdin is None else stdin, stdout=self.slave, stderr=self.slave,
            start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0 if stdin is None else 1, termios.TIOCSCTTY, 0),
        )
        return self.proc

    def until(self, needle: bytes, timeout: float = 15.0) -> bool:
        end = time.monotonic() + timeout
        while needle not in self.out and time.monotonic() < end:
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                try:
                    self.out += os.read(self.master, 65536)
                except OSError:
                    break
        return needle in self.out

    def finish(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        end = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < end:
            self.until(b"\0never\0", timeout=0.05)
        code = self.proc.wait(timeout=1)
        self.until(b"\0never\0", timeout=0.1)  # what is left
        return code

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def term() -> Iterator[Terminal]:
    t = Terminal(30, 100)
    yield t
    t.close()


def test_the_command_sees_a_terminal_and_ours_is_restored(term: Terminal) -> None:
    code = "import sys, os; print(sys.stdout.isatty(), os.isatty(0), os.get_terminal_size())"
    term.run("--pty", "--", PY, "-c", code)
    assert term.finish() == 0, term.out
    assert b"True True os.terminal_size(columns=100, lines=30)" in term.out, term.out
    assert termios.tcgetattr(term.slave) == term.mode, "the CLI left its terminal in another mode"


def test_keys_typed_reach_the_command(term: Terminal) -> None:
    term.run("--pty", "--", PY, "-c", "print('got', input('name? '))")
    assert term.until(b"name? "), term.out
    # Raw mode: while the command runs, our terminal passes keys as they are.
    assert not termios.tcgetattr(term.slave)[3] & termios.ICANON, "the CLI's terminal is not in raw mode"
    os.write(term.master, b"bob\r")
    assert term.finish() == 0, term.out
    assert b"got bob" in term.out, term.out
    assert termios.tcgetattr(term.slave) == term.mode


def test_ctrl_c_typed_interrupts_the_command(term: Terminal) -> None:
    # "ready" comes from the process the SIGINT must end, once it is where it
    # waits: with `sh -c "echo ready; sleep 30"` a ^C between the echo and the
    # fork reached only sh, which (as shells do) waited for sleep to finish.
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGINT, signal.SIG_DFL)\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )
    term.run("--pty", "--", PY, "-c", code)
    assert term.until(b"ready"), term.out
    os.write(term.master, b"\x03")  # the command's terminal turns it into SIGINT
    assert term.finish() == 128 + signal.SIGINT, term.out
    assert termios.tcgetattr(term.slave) == term.mode


def test_window_size_is_followed(term: Terminal) -> None:
    # SIGWINCH is blocked and taken with sigwait: a handler could run inside
    # print() (the signal may come as soon as "ready" is written) and print
    # re-entrantly; a resize to another size (the CLI's first) is waited past.
    code = (
        "import os, signal\n"
        "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGWINCH})\n"
        "print('ready', flush=True)\n"
        "while os.get_terminal_size() != (120, 40):\n"
        "    signal.sigwait({signal.SIGWINCH})\n"
        "print('size', os.get_terminal_size())\n"
    )
    term.run("--pty", "--", PY, "-c", code)
    assert term.until(b"ready"), term.out
    term.resize(40, 120)
    os.killpg(os.getpgid(term.proc.pid), signal.SIGWINCH)  # what the kernel does for a resize by a terminal emulator
    assert term.finish() == 0, term.out
    assert b"size os.terminal_size(columns=120, lines=40)" in term.out, term.out


def test_end_of_stdin_is_the_terminals_end_of_file(term: Terminal) -> None:
    r, w = os.pipe()
    os.write(w, b"one\ntwo")  # the last line without a newline
    os.close(w)
    try:
        term.run("--pty", "--", "cat", stdin=r)
    finally:
        os.close(r)
    assert term.finish() == 0, term.out
    assert term.out.count(b"one") == 2 and term.out.count(b"two") == 2, term.out  # echoed, then cat's copy


def test_terminal_restored_when_the_cli_is_terminated(term: Terminal) -> None:
    term.run("--pty", "--kill-timeout", "1", "--", "sh", "-c", "echo ready; sleep 30")
    assert term.until(b"ready"), term.out
    assert term.proc is not None
    term.proc.send_signal(signal.SIGTERM)  # forwarded to the command; the CLI exits with its status
    assert term.finish() == 128 + signal.SIGTERM, term.out
    assert termios.tcgetattr(term.slave) == term.mode


def test_pty_with_max_output(term: Terminal) -> None:
    term.run("--pty", "--max-output", "1000", "--", "sh", "-c", "yes | head -c 100000; sleep 30")
    assert term.finish() == 125, term.out
    assert term.out.count(b"y") <= 1000 + 10, len(term.out)
    assert b"--max-output" in term.out, term.out[-300:]
    assert termios.tcgetattr(term.slave) == term.mode
