"""Iteration counts for the race loops: ``NETRUNNER_STRESS=1`` multiplies them by 5
(CI's slow pass: five times the loops of the suite keeps the whole run
well inside CI's time on a slow host)."""

from __future__ import annotations

import os


def iterations(n: int) -> int:
    """``n``, or ``5 * n`` when the environment asks for a stress run."""
    return n * (5 if os.environ.get("NETRUNNER_STRESS") == "1" else 1)
