"""Shared fixtures: every test runs under a unique marker and proves nothing it
started survives it.

The marker is an environment variable set for the duration of each test; every
command the test starts inherits it (``env=None``), so survivors are found by
scanning ``/proc/*/environ`` — never by parent pid, since PID 1 here may not
reap orphans.  Tests that pass their own ``env`` must include ``marker_env``.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator

import pytest

MARKER_VAR = "NETRUNNER_TEST_MARKER"


def pytest_configure(config: pytest.Config) -> None:
    """Python's own SIGINT handler, however the suite was started.

    A job a shell starts in the background without job control (``cmd &`` in
    a script) has SIGINT ignored; an ignored disposition survives ``execve``,
    and a Python that starts with SIGINT ignored keeps it so, where
    ``KeyboardInterrupt`` is expected. The owner processes the tests start
    inherit this process's disposition: with the handler back here, they get
    the default disposition, and so their own handler, as in a terminal."""
    del config
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pids_with_marker(marker: str) -> list[int]:
    """Live (non-zombie) processes whose environment carries ``marker``."""
    return pids_with_env(MARKER_VAR, marker)


def pids_with_env(var: str, value: str) -> list[int]:
    """Live (non-zombie) processes whose environment has ``var=value``."""
    needle = f"{var}={value}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        environ = _environ(int(name))
        if environ is not None and needle in environ.split(b"\0"):
            found.append(int(name))
    return found


#: ``PF_KTHREAD`` in the flags of ``/proc/<pid>/stat``.
_KERNEL_THREAD = 0x00200000


def _environ(pid: int, patience: float = 1.0) -> bytes | None:
    """The environment of ``pid``, or None when it is gone, a zombie or a kernel
    thread.

    A process inside ``execve`` shows an empty environment until the kernel
    has laid out the new image's (microseconds to milliseconds on a busy
    machine): a process that had the marker a moment ago would vanish from
    one scan and reappear in the next. An empty read means the new image is
    in place; whether its environment is laid out yet is the end of the
    environment area in ``/proc/<pid>/stat``, 0 until then: look again
    until it is set (an environment that is really empty has it set too)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = f.read()
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            if fields[0] == b"Z" or int(fields[6]) & _KERNEL_THREAD:
                return None
            if environ:
                return environ
            if len(fields) <= 48 or int(fields[48]) != 0:  # laid out by now: read it again
                with open(f"/proc/{pid}/environ", "rb") as f:
                    return f.read()
        except OSError:
            return None
        if time.monotonic() >= deadline:
            return environ
        time.sleep(0.001)


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.01):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns a truthy value or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def own_children() -> set[int]:
    """Direct children of this process (every thread's), zombies included."""
    kids: set[int] = set()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                kids.update(int(p) for p in f.read().split())
        except OSError:
            pass
    return kids


def helper_pids() -> set[int]:
    """Long-lived helper processes netrunner keeps (the zygote and one idle
    spare shepherd), not per-command.

    Also reaps shepherds whose owner object was dropped (their reaping is
    deferred to the next spawn or to interpreter exit by design)."""
    try:
        from netrunner import _lifetime
        from netrunner._io import zygote
    except ImportError:
        return set()
    _lifetime.reap_detached()
    return zygote.helper_pids()


@pytest.fixture(autouse=True)
def marker(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[str]:
    """A unique marker in the environment; after the test, assert no survivors,
    no shepherd or command left as a child of this process, and no fd of
    netrunner's closed by anyone else, nor one not its own closed by it
    (``fd_guard``)."""
    import fd_guard

    fd_guard.install()
    fd_guard.take()  # what a test before found is that test's
    value = uuid.uuid4().hex
    before = own_children()
    monkeypatch.setenv(MARKER_VAR, value)
    # Python children print a line as one write (print() with flush=True);
    # PYTHONUNBUFFERED, set on some machines, would split it into two.
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)
    yield value
    survivors = wait_until(lambda: not pids_with_marker(value), timeout=15.0)
    left = pids_with_marker(value)
    for pid in left:  # clean up only what this test started, then fail
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    assert not left, f"processes survived the test: {left}"
    del survivors
    extra = wait_until(lambda: not (own_children() - before - helper_pids()), timeout=10.0)
    del extra
    stray = own_children() - before - helper_pids()
    assert not stray, f"child processes (shepherds?) left unreaped: {sorted(stray)}"
    fd_findings = fd_guard.take() + fd_guard.changed_since_registered()
    if request.node.get_closest_marker("breaks_netrunner_fds") is None:
        assert not fd_findings, "netrunner's fds were mishandled:\n" + "\n".join(fd_findings)


@pytest.fixture
def marker_env(marker: str) -> dict[str, str]:
    """A minimal explicit environment that still carries the marker."""
    return {"PATH": os.environ.get("PATH", os.defpath), MARKER_VAR: marker}
