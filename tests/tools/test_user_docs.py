"""What users read stays written for users: README.md is a front page (under 250 lines) that keeps the
two commands a developer starts with, and README, CHANGELOG and every page of docs/ cite no issue
numbers or commit hashes, which a reader on PyPI or the documentation site cannot look up."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.paths import PROJECT

README = PROJECT / "README.md"
USER_DOCS = sorted([README, PROJECT / "CHANGELOG.md", *(PROJECT / "docs").rglob("*.md")])
MAX_README_LINES = 250

# Internal history a user cannot look up: an issue number ("issue 14", "issues 5 and 13", "#14 "), a
# commit hash (40 hex digits, or a short one named as a commit), and the notebook phrases around them.
# A reference into another project ("apache/airflow#73298") names where to look and is allowed.
HISTORY = {
    "an issue number": re.compile(r"\bissues? #?\d+", re.IGNORECASE),
    "a bare #number reference": re.compile(r"(?<![\w/&])#\d+\b"),
    "a commit hash": re.compile(r"\b[0-9a-f]{40}\b"),
    "a short commit hash": re.compile(r"\bcommits? `?[0-9a-f]{7,12}\b|`[0-9a-f]{7,12}`", re.IGNORECASE),
    "a release-notes aside": re.compile(r"fixed in this release", re.IGNORECASE),
}


def history_in(text: str) -> list[str]:
    """Each line that cites internal history, with what it cites."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for what, pattern in HISTORY.items():
            if match := pattern.search(line):
                found.append(f"line {number}: {what} ({match.group(0)!r}): {line.strip()}")
    return found


@pytest.mark.parametrize("page", USER_DOCS, ids=lambda p: str(p.relative_to(PROJECT)))
def test_user_docs_cite_no_issue_numbers_or_commit_hashes(page: Path):
    found = history_in(page.read_text())
    assert not found, f"{page.relative_to(PROJECT)} cites internal history:\n" + "\n".join(found)


def test_the_rules_catch_what_they_are_for():
    assert history_in("the round before issue 14 listed") and history_in("Targets (Issue 5) at N = 1000")
    assert history_in("see #12 for why") and history_in("merged in `2b8e124`")
    assert history_in("on commit f0a848b, measured") and history_in("x " + "ab12" * 10)
    assert history_in("Fixed in this release: the form")
    assert not history_in("fixed upstream, apache/airflow#73298") and not history_in("[x](page.md#a-heading)")
    assert not history_in("job 2600104 ran 0:00:12") and not history_in("&#123;")


def test_readme_is_a_front_page_under_250_lines():
    lines = README.read_text().splitlines()
    assert len(lines) < MAX_README_LINES, f"README.md has {len(lines)} lines; move details to docs/"


def test_readme_keeps_the_two_commands_and_ci_runs_the_test_one():
    readme = README.read_text()
    commands = re.findall(r"```bash\n(.*?)```", readme, re.DOTALL)
    assert "make demo\n" in commands and "make test\n" in commands, commands
    ci = (PROJECT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.MULTILINE), "the test command README names is what .ci/run runs"
