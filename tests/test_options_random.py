"""Options drawn at random, seeded (SPEC 2): every call of ``run``,
``stream`` or ``start`` either completes or raises an error of the
contract. A ``TypeError`` or ``ValueError`` about the call names an option
it was given (or the command); the others are the outcomes a command can
have (a timeout, an output limit, a non-zero exit with ``check``, a
program not found). Nothing the calls start survives them (the ``marker``
fixture)."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path
from typing import Any

import pytest
from _stress import iterations

import netrunner

CALLS = iterations(300)

#: Commands that do not read stdin, for an inherited stdin (the test
#: runner's may be a terminal).
NOT_READING = [
    ["echo", "hi"],
    ["sh", "-c", "echo out; echo err >&2; exit 3"],
    ["sh", "-c", "sleep 0.02; echo late"],
    ["/nonexistent/netrunner-test-program"],
]
COMMANDS = [*NOT_READING, ["cat"]]

#: Outcomes a command can have whatever the options: not the call's fault.
OUTCOMES = (netrunner.Timeout, netrunner.OutputLimitExceeded, netrunner.ProcessError, FileNotFoundError)


def _choices(target: Any) -> dict[str, list[Any]]:
    return {
        "stdin": [None, "inherit", "discard", subprocess.DEVNULL, subprocess.PIPE, target, 0, "capture", "bogus"],
        "stdout": ["capture", "inherit", "discard", subprocess.PIPE, subprocess.DEVNULL, None, target, 1, "redirect"],
        "stderr": ["capture", "redirect", "discard", "inherit", subprocess.STDOUT, subprocess.PIPE,
                   subprocess.DEVNULL, None, target, 2],
        "input": [None, b"abc\n", "abc\n", b""],
        "text": [False, True],
        "encoding": [None, "utf-8"],
        "timeout": [None, 5, 0.001, 0],
        "max_output_size": [None, 1, 10**6],
        "check": [False, True],
        "leftovers": ["kill", "detach"],
        "pty": [False, True, (10, 40)],
    }


def _call(fn: str, cmd: list[str], options: dict[str, Any]) -> None:
    if fn == "run":
        netrunner.run(cmd, **options)
    elif fn == "stream":
        options.pop("check", None)
        with netrunner.stream(cmd, **options) as s:
            for _ in s:
                pass
    else:
        options.pop("check", None)
        options.pop("timeout", None)
        with netrunner.start(cmd, **options) as p:
            p.communicate(timeout=10)


@pytest.mark.parametrize("seed", [1, 2])
def test_random_options_run_or_raise_an_error_that_names_one(seed: int, tmp_path: Path) -> None:
    rnd = random.Random(seed)
    seen: dict[str, int] = {}
    unnamed: list[str] = []
    with open(tmp_path / "target", "w+b") as target:
        choices = _choices(target)
        for i in range(CALLS):
            options = {name: rnd.choice(values) for name, values in choices.items() if rnd.random() < 0.5}
            reads_stdin = options.get("stdin") not in ("inherit", 0)
            cmd = rnd.choice(COMMANDS if reads_stdin else NOT_READING)
            fn = rnd.choice(["run", "stream", "start"])
            given = dict(options)
            try:
                _call(fn, cmd, options)
                outcome = "completed"
            except (TypeError, ValueError) as exc:
                message = str(exc)
                if not any(name in message for name in given) and "cmd" not in message and "command" not in message:
                    unnamed.append(f"call {i}: {fn}({cmd}, **{given}) raised {type(exc).__name__}: {message}")
                outcome = type(exc).__name__
            except OUTCOMES as exc:
                outcome = type(exc).__name__
            seen[outcome] = seen.get(outcome, 0) + 1
    assert not unnamed, "errors that name no option given:\n" + "\n".join(unnamed[:5])
    # the draw reaches both sides of the contract
    assert seen.get("completed", 0) > CALLS // 10, seen
    assert seen.get("TypeError", 0) + seen.get("ValueError", 0) > CALLS // 10, seen
