"""``help()`` of every entry point lists every option with its default and a
line of meaning, and the typed entry points still validate at run time
(SPEC sections 2 and 15)."""

from __future__ import annotations

import asyncio
import inspect
import pickle
import pydoc
import re
import subprocess
from typing import Any

import pytest

import netrunner
from netrunner import aio
from netrunner._options import ALL_OPTIONS, ENTRY_OPTIONS, SUBPROCESS_WAY

#: SPEC section 2 (and 12 for a Daemon's own options): every default.
SPEC_DEFAULTS: dict[str, object] = {
    "input": None, "stdin": None, "stdout": "capture", "stderr": "capture", "text": False,
    "encoding": None, "errors": None, "leftovers": "kill", "pty": False, "kill_timeout": 5.0,
    "timeout": None, "max_output_size": None, "chunk_size": 65536, "cgroup": None, "cwd": None,
    "env": None, "check": False,
}
DAEMON_DEFAULTS: dict[str, object] = {
    "on_output": "discard", "restart": "on-failure", "max_restarts": 5, "restart_window": 60.0,
    "backoff": (0.1, 30.0), "on_exit": None, "name": None,
}

#: (the object help() is asked about, its entry in ENTRY_OPTIONS).
ENTRY_POINTS: list[tuple[Any, str]] = [
    (netrunner.run, "run"),
    (netrunner.stream, "stream"),
    (netrunner.start, "start"),
    (netrunner.Daemon, "Daemon"),
    (aio.run, "run"),
    (aio.stream, "stream"),
    (aio.start, "start"),
    (aio.Daemon, "Daemon"),
    (netrunner.Command, "Command"),
    (netrunner.Command.with_options, "Command"),
]
IDS = [f"{getattr(obj, '__module__', '')}.{obj.__qualname__}" for obj, _ in ENTRY_POINTS]


def _options(entry: str) -> set[str]:
    names = set(ALL_OPTIONS if entry == "Command" else ENTRY_OPTIONS[entry])
    return names | set(DAEMON_DEFAULTS) if entry == "Daemon" else names


def _default(entry: str, name: str) -> object:
    if name in DAEMON_DEFAULTS:
        return DAEMON_DEFAULTS[name]
    if (entry, name) == ("stream", "check"):
        return True  # a stream checks by default
    if (entry, name) == ("Daemon", "stderr"):
        return "redirect"  # a daemon's stderr joins its output by default
    return SPEC_DEFAULTS[name]


@pytest.mark.parametrize(("obj", "entry"), ENTRY_POINTS, ids=IDS)
def test_the_signature_has_every_option_keyword_only_with_its_default(obj: Any, entry: str) -> None:
    params = inspect.signature(obj).parameters
    options = {name: p for name, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert set(options) == _options(entry)
    assert not [p for p in params.values() if p.kind is inspect.Parameter.VAR_KEYWORD]
    for name, p in options.items():
        assert p.default == _default(entry, name), name


@pytest.mark.parametrize(("obj", "entry"), ENTRY_POINTS, ids=IDS)
def test_help_lists_every_option_with_its_default_and_meaning(obj: Any, entry: str) -> None:
    text = pydoc.render_doc(obj, renderer=pydoc.plaintext)  # type: ignore[attr-defined]
    text = re.sub(r"^ *\| ?", "", text, flags=re.M)  # a class's help is drawn with a margin
    lines = text.splitlines()
    for name in _options(entry):
        default = _default(entry, name)
        assert f"{name}={default!r}" in text, name  # in the signature
        at = [i for i, line in enumerate(lines) if re.match(rf"\s*{name} += {re.escape(repr(default))}: \S", line)]
        assert at, (name, text)  # twice for Command: its own and with_options'
        for i in at:
            meaning = lines[i + 1].strip()
            assert len(meaning.split()) >= 4, (name, meaning)


def test_help_of_the_package_points_at_the_options() -> None:
    text = pydoc.render_doc(netrunner.run, renderer=pydoc.plaintext)  # type: ignore[attr-defined]
    assert "Options (keyword-only" in text
    assert "Run ``cmd`` to completion" in text  # the docstring itself is kept


@pytest.mark.parametrize(
    "call",
    [
        lambda **kw: netrunner.run(["true"], **kw),
        lambda **kw: netrunner.stream(["true"], **kw),
        lambda **kw: netrunner.start(["true"], **kw),
        lambda **kw: netrunner.Daemon(["true"], **kw),
        lambda **kw: netrunner.Command("true", **kw),
        lambda **kw: netrunner.Command("true").with_options(**kw),
        lambda **kw: aio.stream(["true"], **kw),
        lambda **kw: aio.Daemon(["true"], **kw),
    ],
    ids=["run", "stream", "start", "Daemon", "Command", "with_options", "aio.stream", "aio.Daemon"],
)
@pytest.mark.parametrize("name", ["capture_output", "shell", "preexec_fn"])
def test_subprocess_spellings_still_get_the_netrunner_way_at_run_time(call: Any, name: str) -> None:
    with pytest.raises(TypeError, match=re.escape(f"has no option {name!r}: {SUBPROCESS_WAY[name]}")):
        call(**{name: True})


@pytest.mark.parametrize("entry", [aio.run, aio.start])
def test_the_awaited_twins_validate_at_the_call_too(entry: Any) -> None:
    with pytest.raises(TypeError, match="has no option 'universal_newlines': use text=True"):
        asyncio.run(entry(["true"], universal_newlines=True))
    with pytest.raises(TypeError, match="got an unexpected option 'timeot'"):
        asyncio.run(entry(["true"], timeot=5))


def test_a_shell_line_still_raises_invalid_command() -> None:
    with pytest.raises(netrunner.InvalidCommand, match=r"pass e\.g\. \['ls', '-l'\]"):
        netrunner.run("ls -l")  # type: ignore[call-overload]


def test_result_is_generic_and_still_pickles_and_compares() -> None:
    text = netrunner.run(["echo", "hi"], text=True)
    raw = netrunner.run(["echo", "hi"])
    assert (text.stdout, raw.stdout) == ("hi\n", b"hi\n")
    for result in (text, raw):
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            back = pickle.loads(pickle.dumps(result, protocol))
            assert back == result
            assert type(back) is netrunner.Result
    assert netrunner.Result[str] is not netrunner.Result  # subscriptable at run time
    assert isinstance(text, netrunner.Result)
    completed = subprocess.CompletedProcess(text.args, text.returncode, text.stdout, text.stderr)
    assert (completed.args, completed.stdout) == (text.args, text.stdout)
    with pytest.raises(AttributeError):
        text.stdout = "x"  # type: ignore[misc]
