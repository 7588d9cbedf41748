"""How Slurm writes a number and a duration: the {set, infinite, number} struct its REST API wraps
numbers in (v0.0.39 on; v0.0.38 writes them plain), and H:MM:SS as sacct and squeue print times."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def unwrapped(value: Any) -> Any:
    """The number inside a {set, infinite, number} struct, or `value` itself when it is no struct; None
    when the struct says unset or infinite. The number is as the server wrote it: callers check its type."""
    if not isinstance(value, Mapping):
        return value
    if not value.get("set", True) or value.get("infinite", False):
        return None
    return value.get("number")


def duration_text(seconds: float) -> str:
    """Whole seconds as H:MM:SS, as Slurm prints elapsed times and limits (hours beyond 24 kept)."""
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
