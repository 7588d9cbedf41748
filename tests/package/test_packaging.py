"""What a user installing from PyPI gets: an sdist and a wheel that pass `twine check`, hold the
package and its licence and nothing of the test cluster, and install into a fresh virtual
environment with only their declared dependencies, where Airflow finds the provider.

Slow (a fresh venv with Airflow): marked `package`; `make test` runs it, `make unit` does not.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from airflow_provider_maxwell import __version__
from tests.paths import PROJECT

pytestmark = pytest.mark.package
FORBIDDEN = ("devcluster", ".devcluster", "connections.env", ".key", ".pem", "tests/", "example_dags", "users.json")


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--wheel", "-o", str(out), str(PROJECT)], check=True)
    return out


def test_sdist_and_wheel_pass_twine_check_and_carry_version_and_licence(dist: Path):
    wheel = dist / f"airflow_provider_maxwell-{__version__}-py3-none-any.whl"
    sdist = dist / f"airflow_provider_maxwell-{__version__}.tar.gz"
    assert wheel.exists() and sdist.exists(), sorted(p.name for p in dist.iterdir())
    subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)], check=True)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(f"airflow_provider_maxwell-{__version__}.dist-info/METADATA").decode()
    assert "License-Expression: Apache-2.0" in metadata
    assert "Classifier: Framework :: Apache Airflow :: Provider" in metadata
    assert "Project-URL: Source" in metadata
    assert f"airflow_provider_maxwell-{__version__}.dist-info/licenses/LICENSE" in names
    assert "airflow_provider_maxwell/py.typed" in names
    assert {n.split("/")[0] for n in names} == {
        "airflow_provider_maxwell",
        f"airflow_provider_maxwell-{__version__}.dist-info",
    }
    with tarfile.open(sdist) as archive:
        members = archive.getnames()
    assert any(m.endswith("/CHANGELOG.md") for m in members)
    for name in names + members:
        assert not any(bad in name for bad in FORBIDDEN), f"{name} must not be shipped"


def test_wheel_installs_with_declared_dependencies_and_airflow_finds_the_provider(dist: Path, tmp_path: Path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    wheel = dist / f"airflow_provider_maxwell-{__version__}-py3-none-any.whl"
    # Only the wheel and its own requirements (Airflow pinned to this suite's, to keep the run short).
    import airflow

    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(wheel), f"apache-airflow=={airflow.__version__}"], check=True
    )
    probe = """
import json
from airflow.providers_manager import ProvidersManager
import airflow_provider_maxwell.operators.job
import airflow_provider_maxwell.sensors.job
import airflow_provider_maxwell.triggers.job
manager = ProvidersManager()
info = manager.providers["airflow-provider-maxwell"]
print(json.dumps({"version": info.version, "conn_types": sorted(manager.hooks)}))
"""
    done = subprocess.run(
        [str(python), "-c", probe],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "AIRFLOW_HOME": str(tmp_path / "airflow")},
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["version"] == __version__ and "maxwell" in found["conn_types"]
    helped = subprocess.run([str(venv / "bin" / "maxwell-connection"), "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "--user" in helped.stdout
