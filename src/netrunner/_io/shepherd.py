"""Finding the shepherd binary."""

from __future__ import annotations

import os
from pathlib import Path

from .._errors import ShepherdError

BINARY = "netrunner-shepherd"
#: The zygote's starter, loaded with ctypes (``zygote._spawn_sharing_fs``).
SPAWN_LIBRARY = "netrunner-spawn.so"
_cached: str | None = None


def find_shepherd() -> str:
    """Path of the shepherd binary: ``$NETRUNNER_SHEPHERD`` or the one installed
    inside the package; a clear :class:`ShepherdError` when it is missing."""
    global _cached
    override = os.environ.get("NETRUNNER_SHEPHERD")
    if override:
        candidates = [Path(override)]
    else:
        if _cached is not None:
            return _cached
        candidates = _installed(BINARY)
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            if not override:
                _cached = str(path)
            return str(path)
    where = ", ".join(str(p) for p in candidates)
    raise ShepherdError(
        f"the netrunner shepherd binary is missing or not executable (looked at {where}); "
        "reinstall with `pip install --force-reinstall pynetrunner` (or `pip install -e .` in a "
        "checkout), or point NETRUNNER_SHEPHERD at a built netrunner-shepherd"
    )


def find_spawn_library() -> str | None:
    """Path of ``netrunner-spawn.so`` installed beside the shepherd, or None:
    without it the zygote gets copies of the interpreter's cwd and umask
    instead of sharing them, and the umask is read at every spawn."""
    return next((str(p) for p in _installed(SPAWN_LIBRARY) if p.is_file()), None)


def _installed(name: str) -> list[Path]:
    """Where a file installed in the package may be: beside the modules, or,
    for an editable install, in the build tree (through its resources)."""
    candidates = [Path(__file__).resolve().parent.parent / name]
    try:
        from importlib.resources import files

        candidates.append(Path(str(files("netrunner") / name)))
    except Exception:  # pragma: no cover - resources unavailable
        pass
    return candidates
