"""Airflow discovers the provider and its connection type from the installed package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from airflow_provider_maxwell.provider_info import AUTH_METHODS, get_provider_info
from tests.paths import PROJECT


def test_airflow_lists_the_provider_and_the_maxwell_connection_type(tmp_path):
    code = (
        "from airflow.providers_manager import ProvidersManager as P; p = P();"
        "print('RESULT', 'airflow-provider-maxwell' in p.providers);"
        "w = p.connection_form_widgets; print('RESULT', sorted(k for k in w if k.startswith('extra__maxwell__')));"
        "print('RESULT', p.field_behaviours.get('maxwell', {}).get('hidden_fields'));"
        "print('RESULT', p.hooks['maxwell'].hook_class_name if 'maxwell' in p.hooks else None)"
    )
    out, printed = run_in_fresh_airflow(code, tmp_path)
    assert "Exception when importing" not in printed
    assert out[0] == "True"
    assert out[3] == "airflow_provider_maxwell.hooks.maxwell.MaxwellHook"
    if form_fields_expected():
        assert "extra__maxwell__auth_method" in out[1] and "extra__maxwell__signing_secret" in out[1]
        assert "extra" in out[2]
    else:  # Airflow 3.1 without the FAB provider shows no provider's extra form fields
        assert out[1] == "[]"


def run_in_fresh_airflow(code: str, home: Path) -> tuple[list[str], str]:
    """Run `code` in a new interpreter with an empty AIRFLOW_HOME, from the project root: the lines it
    printed after 'RESULT ', and everything it printed."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"AIRFLOW_HOME": str(home), "PATH": "/usr/bin:/bin", "AIRFLOW__CORE__LOAD_EXAMPLES": "false"},
        cwd=PROJECT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line.removeprefix("RESULT ") for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    return lines, result.stdout + result.stderr


def form_fields_expected() -> bool:
    """Airflow 3.2 on reads `conn-fields`; 3.1 calls the hook's WTForms method, which needs FAB."""
    import importlib.util

    import airflow
    from packaging.version import Version

    return Version(airflow.__version__) >= Version("3.2") or importlib.util.find_spec("wtforms") is not None


def test_airflow_31_gets_the_same_fields_from_the_hook():
    from airflow_provider_maxwell.hooks.maxwell import MaxwellHook

    behaviour = MaxwellHook.get_ui_field_behaviour()
    assert behaviour["hidden_fields"] == ["schema", "port", "extra"]
    assert behaviour["relabeling"]["password"] == "Secret"


def test_secrets_in_connection_extras_are_marked_sensitive():
    fields = get_provider_info()["connection-types"][0]["conn-fields"]
    assert fields["signing_secret"]["schema"]["format"] == "password"
    assert fields["keycloak_client_secret"]["schema"]["format"] == "password"
    assert fields["auth_method"]["schema"]["enum"] == list(AUTH_METHODS)


def test_every_module_and_example_dag_loads_on_this_airflow(tmp_path):
    # Run on the newest and on the oldest supported Airflow (make unit-lowest): names that moved
    # between releases (airflow_provider_maxwell/compat.py) surface here, not in a user's DAG.
    code = (
        "import importlib, pkgutil, airflow_provider_maxwell as p\n"
        "names = [m.name for m in pkgutil.walk_packages(p.__path__, 'airflow_provider_maxwell.')]\n"
        "for name in names: importlib.import_module(name)\n"
        "from airflow.models.dagbag import DagBag\n"
        "bag = DagBag(dag_folder='example_dags')\n"
        "print('RESULT', len(names), sorted(bag.dag_ids), bag.import_errors)\n"
    )
    out, _ = run_in_fresh_airflow(code, tmp_path)
    assert out, "nothing printed"
    dag_ids = ["beamtime_job_ended", "beamtime_processing", "beamtime_python", "gated_analysis", "nightly_reduction"]
    assert out[0].endswith(f"{dag_ids} {{}}"), out[0]
