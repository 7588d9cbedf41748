"""Where the tests find the project and its recorded data, from any folder under tests/."""

from __future__ import annotations

from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
DATA = PROJECT / "tests" / "data"  # each release's OpenAPI document and job answers (`make record`)
