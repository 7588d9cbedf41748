"""What a worker hands the triggerer: a dataclass's state as trigger kwargs, which Airflow stores as JSON."""

from __future__ import annotations

import dataclasses
from typing import Any


def as_kwargs(instance: Any) -> dict[str, Any]:
    """A dataclass's public fields as plain values: nested dataclasses as dicts, tuples as lists (JSON has
    no tuples); fields named with '_' are the instance's own working state and stay behind."""
    return {
        f.name: _plain(getattr(instance, f.name)) for f in dataclasses.fields(instance) if not f.name.startswith("_")
    }


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return as_kwargs(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value
