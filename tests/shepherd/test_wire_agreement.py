"""The C and Python sides agree on the protocol: the header is generated from
wire.py and fresh, and the built binary announces the same version and digest."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from netrunner._core import codec, wire
from netrunner._io.shepherd import find_shepherd

ROOT = Path(__file__).resolve().parents[2]


def test_header_is_fresh() -> None:
    subprocess.run([sys.executable, str(ROOT / "tools" / "gen_protocol.py"), "--check"], check=True)


def test_version_flag_reports_the_table() -> None:
    out = subprocess.run([find_shepherd(), "--version"], capture_output=True, text=True, check=True).stdout
    assert out == f"netrunner-shepherd protocol {wire.PROTOCOL_VERSION} digest 0x{wire.PROTOCOL_DIGEST:08x}\n"


def test_zygote_hello_matches() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    fd = os.dup(theirs.fileno())  # never 3, so dup2 clears close-on-exec
    pid = os.posix_spawn(find_shepherd(), [find_shepherd(), "--zygote", "3"], {},
                         file_actions=[(os.POSIX_SPAWN_DUP2, fd, 3)])
    os.close(fd)
    theirs.close()
    try:
        ours.settimeout(10)
        hello = codec.decode(ours.recv(wire.MAX_RECORD))
        assert hello == codec.Hello(wire.PROTOCOL_VERSION, wire.PROTOCOL_DIGEST, pid)
    finally:
        ours.close()
        os.waitpid(pid, 0)  # the zygote exits when its socket closes


def test_bad_invocations() -> None:
    for args in ([], ["--zygote"], ["--zygote", "x"], ["--nope"]):
        r = subprocess.run([find_shepherd(), *args], capture_output=True, text=True)
        assert r.returncode == wire.EXIT_USAGE
        assert "usage" in r.stderr
