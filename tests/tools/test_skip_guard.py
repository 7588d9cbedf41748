"""In CI (MAXWELL_NO_SKIPS=1) a skipped test fails the run unless ALLOWED_SKIPS names it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.paths import PROJECT


@pytest.mark.parametrize(("enforced", "expected_rc"), [("1", 1), ("0", 0)])
def test_a_skip_fails_the_run_only_where_skips_are_not_allowed(tmp_path, enforced, expected_rc):
    probe = tmp_path / "test_probe.py"
    probe.write_text("import pytest\n\ndef test_ran():\n    pass\n\ndef test_skipped():\n    pytest.skip('no data')\n")
    env = {**os.environ, "MAXWELL_NO_SKIPS": enforced}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.skip_guard", "-p", "no:cacheprovider", "-q", str(probe)],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == expected_rc, done.stdout + done.stderr
    assert ("test_probe.py::test_skipped: Skipped: no data" in done.stdout) is (enforced == "1")
