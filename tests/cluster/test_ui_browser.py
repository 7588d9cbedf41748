"""Airflow's UI in a real browser: a Maxwell connection made through the form with its defaults is
saved as typed and works, the form will not save one without its REST root and says why, its help
names the command that tests a connection, the signing key is masked wherever the UI and the REST API
show the extra, Test names the user's connection, and a finished task shows its "Slurm job" link.

Debian's chromium (`make browser` installs it) driven by Playwright, against `airflow api-server`
on 127.0.0.1 with its own AIRFLOW_HOME; screenshots for people go to .artefacts/ui/ (git-ignored).
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests

from ..conftest import PROJECT
from .airflow_cli import AIRFLOW, dags_test, make_airflow_env
from .conftest import stop_pid

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTEFACTS = PROJECT / ".artefacts" / "ui"
MAXWELL_CONNECTION = str(Path(AIRFLOW).with_name("maxwell-connection"))
JOB_PAGE = "https://slurm-web.example/job/{job_id}"


class ApiServer:
    """A running `airflow api-server` and a REST session with an admin's token."""

    def __init__(self, url: str, env: dict[str, str]) -> None:
        self.url = url
        self.env = env
        token = requests.get(f"{url}/auth/token", timeout=30).json()["access_token"]
        self.rest = requests.Session()
        self.rest.headers["Authorization"] = f"Bearer {token}"

    def connection(self, conn_id: str) -> dict[str, Any]:
        """The connection as `GET /api/v2/connections/{id}` returns it, its extra parsed."""
        answer = self.rest.get(f"{self.url}/api/v2/connections/{conn_id}", timeout=30)
        answer.raise_for_status()
        shown = answer.json()
        return {**shown, "extra": json.loads(shown["extra"] or "{}"), "raw": answer.text}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def api_server(cluster: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    home = tmp_path_factory.mktemp("airflow-ui-home")
    env = {
        **make_airflow_env(cluster, home),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",  # no login page
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        "AIRFLOW__API__HOST": "127.0.0.1",
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (home / "api-server.log").open("w")
    server = subprocess.Popen(
        [AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, (home / "api-server.log").read_text()[-3000:]
            try:
                if requests.get(f"{url}/api/v2/version", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "api-server did not answer within 180 s"
            time.sleep(1)
        yield ApiServer(url, env)
    finally:
        if server.poll() is None and not stop_pid(server.pid, timeout=30):
            server.kill()
        server.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed: run `make browser` (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    page = browser.new_page(viewport={"width": 1280, "height": 1500})
    page.set_default_timeout(30_000)
    yield page
    page.close()


@pytest.fixture(scope="module")
def portal_token(users: list[dict[str, Any]], emulator: Any) -> str:
    return emulator.portal_token(users[0])  # the emulator's controls are session-wide


def open_maxwell_form(page: Any, url: str, conn_id: str) -> Any:
    """The Add Connection dialog with its id typed and the type "DESY Maxwell" chosen."""
    page.goto(f"{url}/connections", wait_until="networkidle")
    page.get_by_role("button", name="Add Connection").click()
    dialog = page.get_by_role("dialog")
    dialog.locator("input[name=connection_id]").fill(conn_id)
    dialog.get_by_role("combobox").first.click(force=True)
    page.keyboard.type("DESY Maxwell")
    page.keyboard.press("Enter")
    return dialog


def add_connection(page: Any, url: str, conn_id: str, standard: dict[str, str], extra: dict[str, str]) -> Any:
    """Fill the Add Connection form as a user would (type "DESY Maxwell"), leaving every other field at
    its default; returns the dialog, not yet saved."""
    dialog = open_maxwell_form(page, url, conn_id)
    for name, value in standard.items():
        dialog.locator(f"input[name={name}]").fill(value)
    dialog.get_by_text("Extra Fields", exact=True).click()
    for name, value in extra.items():
        if name == "auth_method":
            choose_auth_method(page, dialog, value)
        else:
            dialog.locator(f"input[name=element_{name}]").fill(value)
    return dialog


def choose_auth_method(page: Any, dialog: Any, method: str) -> None:
    field = dialog.locator("input[name=element_auth_method]").locator("xpath=..")
    combobox = field.get_by_role("combobox")
    combobox.wait_for(state="visible")
    # Focus, not a click: a click can land while the section still slides open (and misses).
    combobox.focus()
    page.keyboard.type(method)  # the dropdown opens and filters as one types
    try:
        page.get_by_role("option", name=method, exact=True).wait_for()
    finally:
        page.screenshot(path=ARTEFACTS / "connection-auth-method.png", full_page=True)
    page.keyboard.press("Enter")
    assert dialog.locator("input[name=element_auth_method]").input_value() == method


def save(page: Any, dialog: Any) -> None:
    dialog.get_by_role("button", name="Save").click()
    page.get_by_text("Connection has been successfully created").wait_for()


@pytest.fixture(scope="module")
def form_connection(
    api_server: ApiServer, browser: Any, cluster: dict[str, Any], users: list[dict[str, Any]], portal_token: str
) -> str:
    """A portal connection made in the form with its defaults: only the REST root, user and secret
    typed, plus the local CA (Maxwell's is public) and the job page template for the link."""
    page = browser.new_page(viewport={"width": 1280, "height": 2600})  # the whole form in one picture
    try:
        dialog = add_connection(
            page,
            api_server.url,
            "maxwell_ui",
            {"login": users[0]["name"], "password": portal_token},
            {
                "rest_root": f"{cluster['front_door']}/sapi",
                "ca_bundle": cluster["ca_bundle"],
                "job_url_template": JOB_PAGE,
            },
        )
        page.wait_for_timeout(1000)  # for the picture only: the section's opening animation ends
        dialog.screenshot(path=ARTEFACTS / "connection-form.png")
        save(page, dialog)
        page.screenshot(path=ARTEFACTS / "connection-saved.png")
    finally:
        page.close()
    return "maxwell_ui"


def test_the_form_saves_its_defaults_as_typed_and_the_connection_works(api_server, form_connection, users, page):
    first = api_server.connection(form_connection)
    # Saved again from the edit form (where the old `token_lifespan` showed "***" and was saved as that).
    page.goto(f"{api_server.url}/connections", wait_until="networkidle")
    page.get_by_role("row").filter(has_text=form_connection).get_by_role("button", name="Edit Connection").click()
    edit = page.get_by_role("dialog")
    edit.locator("textarea[name=description]").fill("saved twice")
    edit.get_by_role("button", name="Save").click()
    page.get_by_text("Connection has been successfully updated").wait_for()
    saved = api_server.connection(form_connection)
    assert saved["description"] == "saved twice"
    assert saved["extra"] == first["extra"]
    extra = saved["extra"]
    assert {k: extra.get(k) for k in ("auth_method", "api_version", "verify", "timeout", "submit_timeout")} == {
        "auth_method": "portal",
        "api_version": None,  # "auto" applies unsaved: a short value saved draws Airflow's masker's warning
        "verify": True,
        "timeout": 30,
        "submit_timeout": 180,
    }
    # No lifespan the user did not choose: the method's own applies (a day for portal, an hour for signing keys).
    assert extra.get("jwt_lifespan") is None
    assert "***" not in json.dumps(extra)  # nothing of a portal connection's extra is secret
    assert all(extra.get(k) is None for k in ("keycloak_url", "keycloak_realm", "keycloak_client_id"))
    assert saved["password"] == "***"
    works = subprocess.run(
        [MAXWELL_CONNECTION, "test", form_connection], env=api_server.env, capture_output=True, text=True, timeout=120
    )
    assert works.returncode == 0, works.stderr[-2000:]
    assert "too short" not in works.stdout + works.stderr  # no masker warning about a value the form saved
    verdict = works.stdout.strip().splitlines()[-1]
    assert verdict.startswith(f"maxwell-connection: {form_connection}: Connected to Slurm ")
    assert f"as {users[0]['name']} via REST API" in verdict and "(auth_method=portal)" in verdict


def test_the_form_will_not_save_a_connection_without_its_rest_root_and_says_why(api_server, page, users):
    dialog = open_maxwell_form(page, api_server.url, "maxwell_ui_no_root")
    dialog.locator("input[name=login]").fill(users[0]["name"])
    dialog.locator("input[name=password]").fill("a-portal-token")
    save_button = dialog.get_by_role("button", name="Save")
    try:
        # Nothing typed as the REST root: the form will not save, and the section holding the field says why.
        assert save_button.is_disabled()
        dialog.get_by_text("Extra Fields", exact=True).click()
        field = dialog.locator("input[name=element_rest_root]")
        row = field.locator("xpath=ancestor::div[contains(@class, 'field__root')][1]")
        row.get_by_text("This field is required").wait_for()
        assert "REST root URL" in row.inner_text()
    finally:
        page.screenshot(path=ARTEFACTS / "connection-no-rest-root.png", full_page=True)
    field.fill("https://max-slurm-rest.example/sapi")
    field.blur()
    assert save_button.is_enabled()
    field.fill("")
    field.blur()
    assert save_button.is_disabled()  # cleared again: refused again
    assert api_server.rest.get(f"{api_server.url}/api/v2/connections/maxwell_ui_no_root", timeout=30).status_code == 404


def test_the_forms_help_names_the_command_that_tests_a_connection(api_server, page):
    dialog = open_maxwell_form(page, api_server.url, "maxwell_ui_help")
    dialog.get_by_text("Extra Fields", exact=True).click()
    help_text = dialog.get_by_text("maxwell-connection test <connection id>", exact=False)
    help_text.wait_for()
    assert help_text.is_visible()
    assert 'the Test button answers "Bad Request" for it on Airflow 3.3.2' in help_text.inner_text()


def test_the_signing_key_is_masked_in_the_form_its_json_and_the_rest_api(
    api_server, page, cluster, users, signing_key_b64
):
    dialog = add_connection(
        page,
        api_server.url,
        "maxwell_ui_service",
        {"login": users[0]["name"]},
        {
            "rest_root": f"{cluster['front_door']}/sapi",
            "auth_method": "signing_key",
            "signing_secret": signing_key_b64,
            "ca_bundle": cluster["ca_bundle"],
        },
    )
    assert dialog.locator("input[name=element_signing_secret]").get_attribute("type") == "password"
    save(page, dialog)
    shown = api_server.connection("maxwell_ui_service")
    assert shown["extra"]["signing_secret"] == "***"
    assert signing_key_b64 not in shown["raw"]
    assert shown["extra"].get("jwt_lifespan") is None  # unset: signing-key tokens live an hour

    page.get_by_role("row").filter(has_text="maxwell_ui_service").get_by_role("button", name="Edit Connection").click()
    edit = page.get_by_role("dialog")
    edit.get_by_text("Extra Fields JSON", exact=True).click()
    edit.get_by_text('"signing_secret"').wait_for()
    json_view = edit.inner_text().replace("\xa0", " ")  # the JSON editor spaces with no-break spaces
    page.screenshot(path=ARTEFACTS / "connection-edit-masked.png", full_page=True)
    assert '"signing_secret": "***"' in json_view and '"jwt_lifespan": 86400' not in json_view
    assert signing_key_b64 not in page.content()

    # The key still works: the masked value was not saved over it.
    works = subprocess.run(
        [MAXWELL_CONNECTION, "test", "maxwell_ui_service"],
        env=api_server.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert works.returncode == 0, works.stderr[-2000:]
    assert "(auth_method=signing_key)" in works.stdout


def test_test_says_what_went_wrong_without_airflows_temporary_id(api_server, form_connection, portal_token, users):
    # What the UI's Test button posts, without the port 0 that Airflow 3.3.2's UI adds (apache/airflow#73298).
    saved = api_server.connection(form_connection)
    body = {
        "connection_id": form_connection,
        "conn_type": "maxwell",
        "host": saved["host"],
        "login": saved["login"],
        "extra": json.dumps(saved["extra"]),
    }
    good = api_server.rest.post(
        f"{api_server.url}/api/v2/connections/test", json={**body, "password": portal_token}, timeout=120
    ).json()
    assert good["status"] is True, good
    assert good["message"].startswith("Connected to Slurm ") and f"as {users[0]['name']}" in good["message"]
    bad = api_server.rest.post(
        f"{api_server.url}/api/v2/connections/test", json={**body, "password": "not-a-portal-token"}, timeout=120
    ).json()
    assert bad["status"] is False
    # Airflow tests under a random temporary id and keeps the form's id to itself: the message names neither.
    assert "for this connection" in bad["message"] and "401" in bad["message"], bad["message"]
    assert "'" + form_connection + "'" not in bad["message"], bad["message"]


LINK_DAG = """
from airflow.sdk import DAG
from airflow_provider_maxwell.sensors.job import MaxwellJobSensor

with DAG("maxwell_ui_link", schedule=None, catchup=False):
    MaxwellJobSensor(
        task_id="wait", job_id="{{ dag_run.conf['job_id'] }}", maxwell_conn_id="maxwell_ui", poke_interval=5
    )
"""


def finished_job(cluster: dict[str, Any], user: str, mint_slurm_token: Any, make_connection: Any, key: str) -> int:
    """A COMPLETED job of `user` in accounting, behind the front door the form's connection uses: an
    existing one (nothing submitted), else a one-second job submitted now."""
    answer = requests.get(
        f"{cluster['front_door']}/sapi/slurmdb/v0.0.45/jobs",
        params={"users": user},  # filtered below: slurmdbd's `state` filter wants its own codes
        headers={"X-SLURM-USER-NAME": user, "X-SLURM-USER-TOKEN": mint_slurm_token(user)},
        verify=cluster["ca_bundle"],
        timeout=60,
    )
    answer.raise_for_status()
    done = [int(j["job_id"]) for j in answer.json()["jobs"] if j["state"]["current"] == ["COMPLETED"]]
    if done:
        return done[-1]
    from airflow_provider_maxwell.hooks.maxwell import MaxwellHook
    from airflow_provider_maxwell.watch import WatchSpec

    front = f"{cluster['front_door']}/sapi"
    hook = MaxwellHook(
        make_connection(front, user, auth_method="signing_key", signing_secret=key, ca_bundle=cluster["ca_bundle"])
    )
    job_id = hook.submit_job(
        "#!/bin/bash\ntrue\n", name="maxwell_ui_link", current_working_directory=cluster["jobs_dir"]
    )
    hook.wait_for_job(WatchSpec(job_id=job_id, user=user, submitted_after=time.time() - 60, poll_interval=2))
    return job_id


def test_a_finished_task_shows_its_slurm_job_link(
    api_server, form_connection, page, cluster, users, mint_slurm_token, make_connection, signing_key_b64, tmp_path
):
    job_id = finished_job(cluster, users[0]["name"], mint_slurm_token, make_connection, signing_key_b64)
    (tmp_path / "maxwell_ui_link.py").write_text(LINK_DAG)
    code, out = dags_test(api_server.env, tmp_path, "maxwell_ui_link", conf={"job_id": job_id})
    assert code == 0, out[-3000:]
    runs = api_server.rest.get(f"{api_server.url}/api/v2/dags/maxwell_ui_link/dagRuns", timeout=30).json()["dag_runs"]
    run_id = runs[-1]["dag_run_id"]
    task = f"{api_server.url}/api/v2/dags/maxwell_ui_link/dagRuns/{run_id}/taskInstances/wait"
    links = api_server.rest.get(f"{task}/links", timeout=30).json()
    assert links["extra_links"] == {"Slurm job": JOB_PAGE.format(job_id=job_id)}

    # The Details tab of the task instance lists its extra links.
    page.goto(f"{api_server.url}/dags/maxwell_ui_link/runs/{quote(run_id, safe='')}/tasks/wait/details")
    link = page.get_by_role("link", name="Slurm job")
    try:
        link.wait_for(timeout=90_000)
    finally:
        page.screenshot(path=ARTEFACTS / "task-slurm-job-link.png", full_page=True)
    assert link.get_attribute("href") == JOB_PAGE.format(job_id=job_id)
