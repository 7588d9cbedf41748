"""tools/check_structure.py finds what it is for: an import cycle (also through an import inside a
function), another module's private name (imported, or reached through the module), a long function."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.paths import PROJECT

TOOL = PROJECT / "tools" / "check_structure.py"


def check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(TOOL), "--root", str(root)], capture_output=True, text=True, timeout=60)


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / "airflow_provider_maxwell" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_a_clean_package_passes(tmp_path: Path):
    write(tmp_path, {"__init__.py": "", "a.py": "X = 1\n", "b.py": "from airflow_provider_maxwell.a import X\n"})
    done = check(tmp_path)
    assert done.returncode == 0, done.stdout
    assert "0 breach(es)" in done.stdout


def test_cycles_private_names_and_long_functions_are_each_named(tmp_path: Path):
    long_body = "".join(f"    x{i} = {i}\n" for i in range(61))
    write(
        tmp_path,
        {
            "__init__.py": "",
            "sub/__init__.py": "",
            "a.py": "from airflow_provider_maxwell.sub import b\n_hidden = 1\n",
            "sub/b.py": "def f():\n    from airflow_provider_maxwell import a  # lazy: still a cycle\n    return a\n",
            "c.py": "from .a import _hidden\nfrom . import a as mod\nprint(mod._hidden)\n",
            "d.py": f"def long():\n{long_body}\n\n# long: a table, one line an entry\ndef table():\n{long_body}",
        },
    )
    done = check(tmp_path)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert "import cycle: airflow_provider_maxwell.a <-> airflow_provider_maxwell.sub.b" in lines
    assert any(line.endswith("c.py:1: imports airflow_provider_maxwell.a's private name _hidden") for line in lines)
    assert any(line.endswith("c.py:3: uses airflow_provider_maxwell.a's private name _hidden") for line in lines)
    assert any("d.py:1: long is 62 lines, more than 60" in line for line in lines)
    assert not any(" table is " in line for line in lines)  # said why beside its def
    assert "4 breach(es)" in lines[-1]
