"""Pytest hooks that turn an unexpected skip into a failed run where MAXWELL_NO_SKIPS=1 (CI sets it).

A green CI must mean every test ran: a missing release, recording or tool is a failure there, not a
quiet skip. A skip that is right even in CI is listed in ALLOWED_SKIPS with the reason.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

# Test id prefix -> why skipping it is right even in CI.
ALLOWED_SKIPS: dict[str, str] = {
    "tests/cluster/test_site_full.py": "minutes of runs on the local site: `make site-test`; CI runs test_site.py",
}
_skipped: list[tuple[str, str]] = []

__all__ = ["pytest_runtest_logreport", "pytest_sessionfinish", "pytest_terminal_summary"]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skipped.append((report.nodeid, reason))


def unexpected_skips() -> list[tuple[str, str]]:
    """Skipped tests that no entry of ALLOWED_SKIPS covers."""
    return [(nodeid, why) for nodeid, why in _skipped if not any(nodeid.startswith(a) for a in ALLOWED_SKIPS)]


def _enforced() -> bool:
    return os.environ.get("MAXWELL_NO_SKIPS") == "1"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _enforced() and unexpected_skips():
        terminalreporter.section("skips not allowed here (MAXWELL_NO_SKIPS=1)")
        for nodeid, why in unexpected_skips():
            terminalreporter.line(f"{nodeid}: {why}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _enforced() and unexpected_skips() and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
