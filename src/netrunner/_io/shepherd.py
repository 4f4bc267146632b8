"""Finding the shepherd binary."""

from __future__ import annotations

import os
from pathlib import Path

from .._errors import ShepherdError

BINARY = "netrunner-shepherd"
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
        here = Path(__file__).resolve().parent.parent
        candidates = [here / BINARY]
        try:  # an editable install keeps the binary in the build tree
            from importlib.resources import files

            candidates.append(Path(str(files("netrunner") / BINARY)))
        except Exception:  # pragma: no cover - resources unavailable
            pass
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
