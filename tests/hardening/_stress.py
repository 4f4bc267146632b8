"""Iteration counts for the race loops: ``NETRUNNER_STRESS=1`` multiplies them by 10."""

from __future__ import annotations

import os


def iterations(n: int) -> int:
    """``n``, or ``10 * n`` when the environment asks for a stress run."""
    return n * (10 if os.environ.get("NETRUNNER_STRESS") == "1" else 1)
