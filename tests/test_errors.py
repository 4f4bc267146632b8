"""SPEC section 13: the error hierarchy, fields and pickling."""

from __future__ import annotations

import errno
import os
import pickle
import signal
import subprocess

import pytest

import netrunner
from netrunner import signals

HIERARCHY = {
    "InvalidCommand": (ValueError, TypeError),
    "Timeout": (subprocess.TimeoutExpired, TimeoutError),
    "OutputLimitExceeded": (),
    "ProcessError": (subprocess.CalledProcessError,),
    "AbnormalExit": ("ProcessError", subprocess.CalledProcessError),
    "StdinClosed": (BrokenPipeError, OSError),
    "UnknownSignal": (ValueError,),
    "InvalidCgroup": (ValueError,),
    "CgroupUnavailable": (OSError,),
    "ShepherdError": (OSError,),
}


@pytest.mark.parametrize("name", sorted(HIERARCHY))
def test_hierarchy(name: str) -> None:
    cls = getattr(netrunner, name)
    assert issubclass(cls, netrunner.NetRunnerError)
    assert issubclass(cls, Exception)
    for base in HIERARCHY[name]:
        base_cls = getattr(netrunner, base) if isinstance(base, str) else base
        assert issubclass(cls, base_cls), (cls, base_cls)


def test_base_is_an_exception() -> None:
    assert issubclass(netrunner.NetRunnerError, Exception)


# --- real errors, from real operations --------------------------------------------


def _process_error() -> netrunner.ProcessError:
    with pytest.raises(netrunner.ProcessError) as ei:
        netrunner.run(["sh", "-c", "echo out; echo err >&2; exit 3"], check=True)
    return ei.value


def _signal_process_error() -> netrunner.ProcessError:
    with pytest.raises(netrunner.ProcessError) as ei:
        netrunner.run(["sh", "-c", "echo out; kill -TERM $$"], check=True)
    return ei.value


def _timeout() -> netrunner.Timeout:
    with pytest.raises(netrunner.Timeout) as ei:
        netrunner.run(["sh", "-c", "echo out; echo err >&2; exec sleep 100"], timeout=0.3)
    return ei.value


def _output_limit() -> netrunner.OutputLimitExceeded:
    with pytest.raises(netrunner.OutputLimitExceeded) as ei:
        netrunner.run(["sh", "-c", "echo err >&2; head -c 100000 /dev/zero; exec sleep 100"], max_output_size=10)
    return ei.value


def _abnormal_exit() -> netrunner.AbnormalExit:
    with pytest.raises(netrunner.AbnormalExit) as ei:
        with netrunner.stream(["sh", "-c", "echo out; echo err >&2; exit 2"]) as s:
            list(s)
    return ei.value


def _stdin_closed() -> netrunner.StdinClosed:
    with netrunner.start(["cat"]) as proc:
        proc.close_stdin()
        with pytest.raises(netrunner.StdinClosed) as ei:
            proc.write(b"x")
        proc.wait(timeout=10)
    return ei.value


def _invalid_command() -> netrunner.InvalidCommand:
    with pytest.raises(netrunner.InvalidCommand) as ei:
        netrunner.run("ls -l")
    return ei.value


def _unknown_signal() -> netrunner.UnknownSignal:
    with pytest.raises(netrunner.UnknownSignal) as ei:
        signals.resolve("SIGNOPE")
    return ei.value


def test_process_error_fields() -> None:
    err = _process_error()
    assert list(err.cmd) == ["sh", "-c", "echo out; echo err >&2; exit 3"]
    assert err.returncode == 3
    assert err.exit_status == 3
    assert err.signal is None
    assert err.output == err.stdout == b"out\n"
    assert err.stderr == b"err\n"
    assert "3" in str(err)


def test_process_error_signal_fields() -> None:
    err = _signal_process_error()
    assert err.returncode == -15
    assert err.exit_status == 143
    assert err.signal == signal.SIGTERM
    assert err.stdout == b"out\n"


def test_timeout_fields() -> None:
    err = _timeout()
    assert list(err.cmd) == ["sh", "-c", "echo out; echo err >&2; exec sleep 100"]
    assert err.timeout == 0.3
    assert err.output == err.stdout == b"out\n"
    assert err.stderr == b"err\n"
    assert isinstance(err.stats, netrunner.Stats)


def test_output_limit_fields() -> None:
    err = _output_limit()
    assert err.limit == 10
    assert err.stream == "stdout"
    assert err.stdout == b"\0" * 10
    assert err.stderr in (b"", b"err\n")
    assert isinstance(err.stats, netrunner.Stats)
    assert "10" in str(err)


def test_abnormal_exit_fields() -> None:
    err = _abnormal_exit()
    assert err.returncode == 2
    assert err.exit_status == 2
    assert list(err.cmd) == ["sh", "-c", "echo out; echo err >&2; exit 2"]
    assert err.stderr == b"err\n"


def test_stdin_closed_is_broken_pipe() -> None:
    err = _stdin_closed()
    assert isinstance(err, BrokenPipeError)
    assert str(err)


def test_exec_errors_are_plain_builtins() -> None:
    with pytest.raises(FileNotFoundError) as ei:
        netrunner.run(["/nonexistent/x"])
    assert ei.value.errno == errno.ENOENT
    assert ei.value.filename == "/nonexistent/x"
    assert ei.value.strerror == os.strerror(errno.ENOENT)


MAKERS = {
    "ProcessError": _process_error,
    "ProcessError-signal": _signal_process_error,
    "Timeout": _timeout,
    "OutputLimitExceeded": _output_limit,
    "AbnormalExit": _abnormal_exit,
    "StdinClosed": _stdin_closed,
    "InvalidCommand": _invalid_command,
    "UnknownSignal": _unknown_signal,
}

FIELD_NAMES = [
    "cmd", "returncode", "output", "stdout", "stderr", "timeout", "exit_status", "signal", "limit", "stream", "stats",
    "errno", "strerror", "filename",
]


def _fields(err: BaseException) -> dict[str, object]:
    out = {}
    for name in FIELD_NAMES:
        try:
            out[name] = getattr(err, name)
        except AttributeError:
            continue
    return out


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_pickle_round_trip_of_real_errors(name: str) -> None:
    err = MAKERS[name]()
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is type(err)
    assert _fields(copy) == _fields(err)
    assert str(copy) == str(err)
    assert copy.args == err.args


@pytest.mark.parametrize(
    "make",
    [
        lambda: netrunner.InvalidCgroup("cgroup path must be relative: '/abs'"),
        lambda: netrunner.CgroupUnavailable("enable the memory controller"),
        lambda: netrunner.CgroupUnavailable(errno.EACCES, "cannot write cgroup.procs", "/sys/fs/cgroup/x"),
        lambda: netrunner.ShepherdError("the shepherd died"),
        lambda: netrunner.ShepherdError(errno.ECONNRESET, "control socket closed"),
        lambda: netrunner.NetRunnerError("base"),
    ],
    ids=[
        "InvalidCgroup", "CgroupUnavailable", "CgroupUnavailable-errno", "ShepherdError", "ShepherdError-errno", "base",
    ],
)
def test_pickle_round_trip_of_constructed_errors(make) -> None:  # type: ignore[no-untyped-def]
    err = make()
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is type(err)
    assert str(copy) == str(err)
    assert copy.args == err.args
    assert _fields(copy) == _fields(err)


def test_oserror_subclasses_keep_errno() -> None:
    err = netrunner.CgroupUnavailable(errno.EACCES, "cannot write", "/sys/fs/cgroup/x")
    assert err.errno == errno.EACCES
    assert err.filename == "/sys/fs/cgroup/x"
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.errno, copy.strerror, copy.filename) == (errno.EACCES, "cannot write", "/sys/fs/cgroup/x")


def test_errors_caught_as_their_builtins() -> None:
    with pytest.raises(subprocess.CalledProcessError):
        netrunner.run(["false"], check=True)
    with pytest.raises(subprocess.TimeoutExpired):
        netrunner.run(["sleep", "100"], timeout=0.2)
    with pytest.raises(TimeoutError):
        netrunner.run(["sleep", "100"], timeout=0.2)
    with pytest.raises(ValueError, match="cmd is empty"):
        netrunner.run([])
    with pytest.raises(TypeError):
        netrunner.run(["echo", 3])


def test_errors_cross_a_process_pool() -> None:
    """Errors survive a real pickling boundary (concurrent.futures uses pickle)."""
    err = _timeout()
    data = pickle.dumps(err, protocol=pickle.HIGHEST_PROTOCOL)
    copy = pickle.loads(data)
    assert isinstance(copy, TimeoutError)
    assert copy.stats == err.stats
    assert copy.stdout == b"out\n"
