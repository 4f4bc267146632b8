"""SPEC section 1: commands — argv forms, PATH lookup, invalid commands, exec
failures, and the clean start of every command (sync API)."""

from __future__ import annotations

import errno
import os
import pathlib
import signal
import threading

import pytest
from helpers import PY, LineReader, py, settled_strays, stray_children

import netrunner

ENTRIES = ["run", "stream", "start"]


def launch(entry: str, cmd, **options):  # type: ignore[no-untyped-def]
    """Call an entry point and clean up whatever it returns."""
    obj = getattr(netrunner, entry)(cmd, **options)
    if entry == "stream":
        obj.close()
    elif entry == "start":
        obj.close()
    return obj


class FsPath:
    """A minimal os.PathLike that is not a pathlib.Path."""

    def __init__(self, p: str | bytes) -> None:
        self.p = p

    def __fspath__(self) -> str | bytes:
        return self.p


# --- argv forms -------------------------------------------------------------------

ECHO_ARGV = "import os, sys; sys.stdout.buffer.write(b'\\0'.join(os.fsencode(a) for a in sys.argv[1:]))"


def test_argv_of_str_bytes_and_pathlike() -> None:
    cmd = [FsPath(PY), b"-c", ECHO_ARGV, "plain", b"raw\xff", pathlib.Path("/a/b"), FsPath(b"/c\xfe"), "é"]
    result = netrunner.run(cmd)
    assert result.returncode == 0
    assert result.stdout.split(b"\0") == [b"plain", b"raw\xff", b"/a/b", b"/c\xfe", "é".encode()]
    assert result.args == tuple(cmd)


def test_program_as_bytes_and_path() -> None:
    assert netrunner.run([os.fsencode(PY), "-c", "print('x')"]).stdout == b"x\n"
    assert netrunner.run([pathlib.Path(PY), "-c", "print('y')"]).stdout == b"y\n"


def test_argv_passed_verbatim_no_shell() -> None:
    tricky = ["$HOME", "a b", "'q'", '"dq"', "*", ";", "|", "`x`", "", "\n"]
    result = netrunner.run([PY, "-c", ECHO_ARGV, *tricky])
    assert result.stdout.split(b"\0") == [os.fsencode(a) for a in tricky]


def test_tuple_is_accepted() -> None:
    assert netrunner.run(("sh", "-c", "echo tuple")).stdout == b"tuple\n"


# --- PATH lookup ------------------------------------------------------------------


def _script(path: pathlib.Path, body: str, mode: int = 0o755) -> pathlib.Path:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(mode)
    return path


def test_path_lookup_uses_env_path(tmp_path: pathlib.Path, marker_env: dict[str, str]) -> None:
    _script(tmp_path / "nr-tool", 'echo "found $1"')
    env = {**marker_env, "PATH": str(tmp_path)}
    assert netrunner.run(["nr-tool", "arg"], env=env).stdout == b"found arg\n"
    # the parent's PATH does not have it
    with pytest.raises(FileNotFoundError) as ei:
        netrunner.run(["nr-tool", "arg"])
    assert ei.value.filename == "nr-tool"


def test_path_lookup_does_not_use_parent_path_when_env_has_path(
    tmp_path: pathlib.Path, marker_env: dict[str, str]
) -> None:
    env = {**marker_env, "PATH": str(tmp_path)}  # an empty directory
    with pytest.raises(FileNotFoundError) as ei:
        netrunner.run(["true"], env=env)
    assert ei.value.filename == "true"


def test_path_lookup_defpath_when_env_has_no_path(marker_env: dict[str, str]) -> None:
    env = {k: v for k, v in marker_env.items() if k != "PATH"}
    # os.defpath is "/bin:/usr/bin" on Linux
    assert any(os.access(os.path.join(d, "true"), os.X_OK) for d in os.defpath.split(":") if d)
    assert netrunner.run(["true"], env=env).returncode == 0


def test_path_lookup_follows_os_environ_path(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _script(tmp_path / "nr-tool2", "echo from-os-environ")
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    assert netrunner.run(["nr-tool2"]).stdout == b"from-os-environ\n"


def test_path_lookup_skips_non_executable_entries(tmp_path: pathlib.Path, marker_env: dict[str, str]) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    _script(first / "nr-tool", "echo first", mode=0o644)  # not executable
    _script(second / "nr-tool", "echo second")
    env = {**marker_env, "PATH": f"{first}:{second}"}
    assert netrunner.run(["nr-tool"], env=env).stdout == b"second\n"


def test_path_lookup_only_without_slash(tmp_path: pathlib.Path, marker_env: dict[str, str]) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    _script(sub / "nr-tool", "echo direct")
    env = {**marker_env, "PATH": "/nonexistent-dir"}
    assert netrunner.run([str(sub / "nr-tool")], env=env).stdout == b"direct\n"
    assert netrunner.run(["sub/nr-tool"], env=env, cwd=tmp_path).stdout == b"direct\n"


# --- invalid commands -------------------------------------------------------------

BAD_COMMANDS = {
    "empty list": [],
    "empty tuple": (),
    "empty argv0 str": [""],
    "empty argv0 bytes": [b"", "x"],
    "empty argv0 pathlike": [FsPath("")],
    "nul in argv0": ["tr\0ue"],
    "nul in arg str": ["echo", "a\0b"],
    "nul in arg bytes": ["echo", b"a\0b"],
    "nul in pathlike": ["echo", pathlib.Path("a\0b")],
    "int element": ["echo", 1],
    "float element": ["echo", 1.5],
    "None element": ["echo", None],
    "list element": ["echo", ["nested"]],
    "int argv0": [3],
}


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("cmd", list(BAD_COMMANDS.values()), ids=list(BAD_COMMANDS))
def test_invalid_command(entry: str, cmd) -> None:  # type: ignore[no-untyped-def]
    before = stray_children(set())
    with pytest.raises(netrunner.InvalidCommand) as ei:
        launch(entry, cmd)
    assert isinstance(ei.value, ValueError)
    assert isinstance(ei.value, TypeError)
    assert isinstance(ei.value, netrunner.NetRunnerError)
    assert stray_children(before) == set()


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("cmd", ["ls -l", b"ls -l", "true", b"true"], ids=["str", "bytes", "str1", "bytes1"])
def test_bare_string_is_rejected_with_a_hint(entry: str, cmd) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(netrunner.InvalidCommand) as ei:
        launch(entry, cmd)
    message = str(ei.value).lower()
    assert "list" in message, message


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("cmd", [None, 42, {"a": 1}], ids=["None", "int", "dict"])
def test_non_sequence_command_is_a_type_error(entry: str, cmd) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError):
        launch(entry, cmd)


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("bad", ["x\0y", 7, None], ids=["nul", "int", "None"])
def test_invalid_command_spawns_nothing(entry: str, bad, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    flag = tmp_path / "spawned"
    cmd = [PY, "-c", f"open({str(flag)!r}, 'w').close()", bad]
    before = stray_children(set())
    with pytest.raises(netrunner.InvalidCommand):
        launch(entry, cmd)
    assert not flag.exists()
    assert stray_children(before) == set()


# --- exec failures ----------------------------------------------------------------


@pytest.mark.parametrize("entry", ENTRIES)
def test_missing_program_with_slash(entry: str, tmp_path: pathlib.Path) -> None:
    missing = str(tmp_path / "no-such-program")
    with pytest.raises(FileNotFoundError) as ei:
        launch(entry, [missing, "arg"])
    assert ei.value.filename == missing
    assert ei.value.errno == errno.ENOENT


@pytest.mark.parametrize("entry", ENTRIES)
def test_missing_program_not_on_path(entry: str) -> None:
    with pytest.raises(FileNotFoundError) as ei:
        launch(entry, ["netrunner-no-such-program-xyz", "arg"])
    assert ei.value.filename == "netrunner-no-such-program-xyz"


@pytest.mark.parametrize("entry", ENTRIES)
def test_not_executable_is_permission_error(entry: str, tmp_path: pathlib.Path) -> None:
    prog = _script(tmp_path / "noexec", "echo should-not-run", mode=0o644)
    with pytest.raises(PermissionError) as ei:
        launch(entry, [str(prog)])
    assert ei.value.filename == str(prog)
    assert ei.value.errno == errno.EACCES


@pytest.mark.parametrize("entry", ENTRIES)
def test_directory_is_permission_error(entry: str, tmp_path: pathlib.Path) -> None:
    with pytest.raises(PermissionError) as ei:
        launch(entry, [str(tmp_path)])
    assert ei.value.filename == str(tmp_path)


@pytest.mark.parametrize("entry", ENTRIES)
def test_garbage_file_is_enoexec(entry: str, tmp_path: pathlib.Path) -> None:
    prog = tmp_path / "garbage"
    prog.write_bytes(b"\x00\x01\x02garbage\xff\xfe\n" * 10)
    prog.chmod(0o755)
    with pytest.raises(OSError, match="Exec format error") as ei:
        launch(entry, [str(prog)])
    assert ei.value.errno == errno.ENOEXEC
    assert ei.value.filename == str(prog)
    assert not isinstance(ei.value, (FileNotFoundError, PermissionError))


@pytest.mark.parametrize("via_path", [False, True], ids=["slash", "PATH"])
def test_no_shell_fallback_for_script_without_shebang(
    via_path: bool, tmp_path: pathlib.Path, marker_env: dict[str, str]
) -> None:
    flag = tmp_path / "ran-under-sh"
    prog = tmp_path / "noshebang"
    prog.write_text(f"touch {flag}\n")
    prog.chmod(0o755)
    if via_path:
        cmd, env = ["noshebang"], {**marker_env, "PATH": str(tmp_path)}
    else:
        cmd, env = [str(prog)], None
    with pytest.raises(OSError, match="Exec format error") as ei:
        netrunner.run(cmd, env=env)
    assert ei.value.errno == errno.ENOEXEC
    assert ei.value.filename == cmd[0]
    assert not flag.exists()


@pytest.mark.parametrize("entry", ENTRIES)
def test_missing_cwd(entry: str, tmp_path: pathlib.Path) -> None:
    missing = str(tmp_path / "no-such-dir")
    with pytest.raises(FileNotFoundError) as ei:
        launch(entry, ["true"], cwd=missing)
    assert ei.value.filename == missing


def test_missing_cwd_pathlike_keeps_the_given_value(tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "no-such-dir"
    with pytest.raises(FileNotFoundError) as ei:
        netrunner.run(["true"], cwd=missing)
    assert os.fspath(ei.value.filename) == str(missing)


def test_exec_failure_leaves_nothing_behind(tmp_path: pathlib.Path) -> None:
    netrunner.run(["true"])  # warm up any helper
    before = stray_children(set())
    for _ in range(20):
        with pytest.raises(FileNotFoundError):
            netrunner.run([str(tmp_path / "missing")])
    assert settled_strays(before) == set()


# --- clean start ------------------------------------------------------------------

FSTAT_PROBE = """
import os, resource
soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
limit = min(soft if soft != resource.RLIM_INFINITY else 65536, 65536)
found = []
for fd in range(limit):
    try:
        os.fstat(fd)
    except OSError:
        pass
    else:
        found.append(fd)
print(found)
"""


@pytest.mark.parametrize("stderr", ["capture", "redirect", "discard", "inherit"])
def test_only_std_fds_are_open(stderr: str) -> None:
    leak_r, leak_w = os.pipe()  # an inheritable fd of ours the command must not get
    os.set_inheritable(leak_r, True)
    try:
        result = netrunner.run(py(FSTAT_PROBE), stderr=stderr)
    finally:
        os.close(leak_r)
        os.close(leak_w)
    assert result.stdout == b"[0, 1, 2]\n"


def test_only_std_fds_seen_from_outside() -> None:
    with netrunner.start(py("import sys; print('ready', flush=True); sys.stdin.read()")) as proc:
        assert LineReader(proc).readline() == b"ready\n"
        fds = sorted(int(fd) for fd in os.listdir(f"/proc/{proc.pid}/fd"))
        assert fds == [0, 1, 2]
        proc.close_stdin()
        assert proc.wait(timeout=10) == 0


def _sig_masks(stdout: bytes) -> dict[str, int]:
    fields = {}
    for line in stdout.decode().splitlines():
        key, _, value = line.partition(":")
        if key in ("SigIgn", "SigBlk", "SigCgt", "SigPnd", "ShdPnd"):
            fields[key] = int(value.strip(), 16)
    return fields


def test_signal_dispositions_and_mask_are_clean() -> None:
    # Python itself ignores SIGPIPE (and SIGXFSZ); the command must not inherit that.
    assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN
    fields = _sig_masks(netrunner.run(["cat", "/proc/self/status"]).stdout)
    assert fields["SigIgn"] == 0, hex(fields["SigIgn"])
    assert fields["SigBlk"] == 0, hex(fields["SigBlk"])


def test_clean_signals_despite_caller_ignoring_and_blocking() -> None:
    old_usr2 = signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    old_hup = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGTERM})
    try:
        fields = _sig_masks(netrunner.run(["cat", "/proc/self/status"]).stdout)
        with netrunner.start(["cat", "/proc/self/status"]) as proc:
            out, _ = proc.communicate(timeout=10)
        fields2 = _sig_masks(out)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        signal.signal(signal.SIGUSR2, old_usr2)
        signal.signal(signal.SIGHUP, old_hup)
    for f in (fields, fields2):
        assert f["SigIgn"] == 0, hex(f["SigIgn"])
        assert f["SigBlk"] == 0, hex(f["SigBlk"])


def test_clean_signals_from_a_thread_with_a_blocked_signal() -> None:
    out: dict[str, object] = {}

    def body() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGINT, signal.SIGCHLD})
        try:
            out["stdout"] = netrunner.run(["cat", "/proc/self/status"]).stdout
        except BaseException as exc:
            out["error"] = exc

    t = threading.Thread(target=body)
    t.start()
    t.join(30)
    assert not t.is_alive()
    assert "error" not in out, out.get("error")
    fields = _sig_masks(out["stdout"])  # type: ignore[arg-type]
    assert fields["SigIgn"] == 0 and fields["SigBlk"] == 0, fields


def test_sigpipe_is_default_in_the_command() -> None:
    # With SIGPIPE at its default, `yes` is killed by it (status 128+13) once its
    # reader exits; with SIGPIPE ignored it would print an EPIPE error and exit 1.
    result = netrunner.run(["sh", "-c", '{ yes; echo "rc=$?" >&2; } | head -c 1 >/dev/null'])
    assert b"rc=141" in result.stderr, result.stderr


def test_command_runs_in_its_own_process_group() -> None:
    with netrunner.start(py("import os, sys; print(os.getpgid(0), os.getpid(), flush=True); sys.stdin.read()")) as proc:
        pgid, pid = map(int, LineReader(proc).readline().split())
        assert pgid == pid == proc.pid
        assert pgid != os.getpgid(0)
        proc.close_stdin()
        proc.wait(timeout=10)


def test_stdout_and_stderr_are_pipes() -> None:
    code = "import os, stat; print([stat.S_ISFIFO(os.fstat(i).st_mode) for i in (1, 2)])"
    assert netrunner.run(py(code)).stdout == b"[True, True]\n"


def test_path_lookup_only_non_executable_match_is_permission_error(
    tmp_path: pathlib.Path, marker_env: dict[str, str]
) -> None:
    _script(tmp_path / "nr-tool", "echo no", mode=0o644)
    env = {**marker_env, "PATH": f"{tmp_path / 'missing'}:{tmp_path}"}
    with pytest.raises(PermissionError) as ei:
        netrunner.run(["nr-tool"], env=env)
    assert ei.value.filename == "nr-tool"


def test_relative_program_with_slash_resolves_against_cwd(tmp_path: pathlib.Path) -> None:
    _script(tmp_path / "local-tool", "echo local")
    assert netrunner.run(["./local-tool"], cwd=tmp_path).stdout == b"local\n"


def test_exec_failures_leak_no_file_descriptors(tmp_path: pathlib.Path) -> None:
    netrunner.run(["true"])  # any long-lived helper exists from here on
    before = len(os.listdir("/proc/self/fd"))
    for entry in ENTRIES:
        for _ in range(10):
            with pytest.raises(FileNotFoundError):
                launch(entry, [str(tmp_path / "missing")])
            with pytest.raises(FileNotFoundError):
                launch(entry, ["true"], cwd=tmp_path / "missing-dir")
            with pytest.raises(netrunner.InvalidCommand):
                launch(entry, [])
    assert len(os.listdir("/proc/self/fd")) == before
