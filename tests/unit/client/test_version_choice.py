"""Which Slurm REST API version a connection speaks and what the task log says about it: the newest
version both sides speak or the one asked for, and for a server newer than this provider the exact
upgrade to make; the note naming release, version and why; the OpenAPI document as the last resort and
its errors; the host's kept choice and its lock."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_maxwell import __version__
from airflow_provider_maxwell.client import discovery
from airflow_provider_maxwell.config import MaxwellConnectionConfig
from airflow_provider_maxwell.effects import HttpResult, Send, Sleep, TransportFailure
from airflow_provider_maxwell.exceptions import MaxwellConfigError, SlurmApiError
from airflow_provider_maxwell.host_files import LOCK_POLL
from airflow_provider_maxwell.slurm.dialects import DIALECTS, SUPPORTED_VERSIONS, negotiate
from tests.unit.client.test_discovery import NOT_HERE, paths_sent, pings
from tests.unit.client.test_protocol_steps import HOST, META, Script, ok, ops_for, state_with

NEWEST_FIRST = ", ".join(SUPPORTED_VERSIONS)


def document(*versions: str, **info: Any) -> dict[str, Any]:
    """An OpenAPI document serving `versions` for /slurm and /slurmdb."""
    paths = {f"/{s}/{v}/jobs": {} for s in ("slurm", "slurmdb") for v in versions}
    return {"paths": paths, "info": info}


# ---------------------------------------------------------------- the note in the task log


def test_a_pinned_version_is_noted_as_set_in_the_connection():
    script = Script({})
    script.run(ops_for(state_with(dialect=None, api_version="v0.0.41")).dialect())
    assert script.notes == [
        "Maxwell connection steps: Slurm (release unknown), REST API v0.0.41 (set in the connection)"
    ]


def test_a_probed_version_is_noted_with_the_release_and_the_versions_tried():
    script = pings({"v0.0.43", "v0.0.44"})
    script.run(ops_for(state_with(dialect=None)).dialect())
    assert script.notes == [
        f"Maxwell connection steps: Slurm 26.05.5, REST API v0.0.44 (the newest of {NEWEST_FIRST} it answers)"
    ]
    again = Script({})
    again.run(ops_for(state_with(dialect=None)).dialect())
    assert again.notes == [
        "Maxwell connection steps: Slurm 26.05.5, REST API v0.0.44 (chosen by this host within the hour)"
    ]


def test_a_version_chosen_from_the_document_is_noted_with_what_the_server_offers_and_its_release():
    # No ping answers as Slurm (a 404 body names no release): the document's info.x-slurm.release does.
    script = pings(
        set(), **{"/openapi/v3": [ok(document("v0.0.42", "v0.0.41", **{"x-slurm": {"release": "24.11.3"}}))]}
    )
    state = state_with(dialect=None)
    assert script.run(ops_for(state).dialect()) == DIALECTS["v0.0.42"]
    assert state.release == "24.11.3"
    assert script.notes == [
        "Maxwell connection steps: Slurm 24.11.3, REST API v0.0.42 (server offers v0.0.41, v0.0.42)"
    ]


def test_the_release_from_a_slurm_answer_is_kept_over_the_documents():
    script = Script(
        {
            "/slurm/v0.0.45/ping": [ok(META, status=400)],  # Slurm's answer (release 26.05.5), but no pong
            "/openapi/v3": [ok(document("v0.0.45", **{"x-slurm": {"release": "an older build"}}))],
        }
    )
    state = state_with(dialect=None)
    script.run(ops_for(state).dialect())
    assert state.release == "26.05.5" and "Slurm 26.05.5, REST API v0.0.45" in script.notes[-1]


@pytest.mark.parametrize(
    "openapi",
    [
        {"info": {"x-slurm": {"release": ""}}},
        {"info": {"x-slurm": {"release": 2411}}},
        {"info": {"x-slurm": "24.11"}},
        {"info": "Slurm 24.11"},
        {},
    ],
    ids=["empty", "number", "x-slurm not an object", "info not an object", "no info"],
)
def test_a_document_naming_no_sensible_release_names_none(openapi: dict[str, Any]):
    assert discovery.openapi_release(openapi) is None
    assert discovery.openapi_release({"info": {"x-slurm": {"release": "24.11.3"}}}) == "24.11.3"


# ---------------------------------------------------------------- the OpenAPI document as last resort


def test_a_document_that_cannot_be_read_is_an_error_naming_the_status_and_url():
    script = pings(set(), **{"/openapi/v3": [HttpResult(400, b"bad request", {})]})
    with pytest.raises(SlurmApiError) as failure:
        script.run(ops_for(state_with(dialect=None)).dialect())
    assert str(failure.value) == f"Could not read the server's API versions: HTTP 400 from {HOST}/openapi/v3"
    assert (failure.value.status, failure.value.url) == (400, f"{HOST}/openapi/v3")


def test_a_document_path_answered_404_in_json_is_passed_over_for_the_next():
    # An older slurmrestd answers an unknown path with a JSON error document: that is no version list.
    missing = ok({**META, "errors": [{"error_number": 9002, "description": "Unable to find path"}]}, status=404)
    script = pings(set(), **{"/openapi/v3": [missing], "/openapi.json": [ok(document("v0.0.41"))]})
    assert script.run(ops_for(state_with(dialect=None)).dialect()) == DIALECTS["v0.0.41"]
    assert paths_sent(script)[-2:] == ["/openapi/v3", "/openapi.json"]


def test_a_server_without_any_document_is_told_to_set_the_version():
    script = pings(set(), **{path: [NOT_HERE] for path in ("/openapi/v3", "/openapi.json", "/openapi")})
    with pytest.raises(MaxwellConfigError, match=r"offers Slurm REST API versions none .* set api_version"):
        script.run(ops_for(state_with(dialect=None)).dialect())
    assert paths_sent(script)[-3:] == ["/openapi/v3", "/openapi.json", "/openapi"]


# ---------------------------------------------------------------- the host's kept choice


def test_a_kept_choice_is_used_for_the_hour_after_it_was_made_and_not_before(shared_folder: Path):
    state = state_with(dialect=None)
    discovery.remember(state.config, DIALECTS["v0.0.42"], "24.11.5")
    (kept_file,) = shared_folder.glob("api-*.json")
    checked = json.loads(kept_file.read_text())["checked_at"]
    kept = (DIALECTS["v0.0.42"], "24.11.5")
    assert discovery.recall(state.config, now=checked) == kept
    assert discovery.recall(state.config, now=checked + discovery.VERSION_FILE_TTL - 0.001) == kept
    assert discovery.recall(state.config, now=checked + discovery.VERSION_FILE_TTL) is None
    assert discovery.recall(state.config, now=checked - 1) is None  # made "in the future": the clock went back


def test_a_kept_release_that_is_no_text_is_not_shown(shared_folder: Path):
    state = state_with(dialect=None)
    discovery.remember(state.config, DIALECTS["v0.0.42"], None)
    assert discovery.recall(state.config) == (DIALECTS["v0.0.42"], None)
    (kept,) = shared_folder.glob("api-*.json")
    content = json.loads(kept.read_text())
    kept.write_text(json.dumps({**content, "release": 2411}))
    assert discovery.recall(state.config) == (DIALECTS["v0.0.42"], None)


def test_two_servers_choices_are_kept_apart():
    one = state_with(dialect=None).config
    other = MaxwellConnectionConfig.from_connection(
        "steps", host="https://other.example", login="alice", password="portal-token", extra={}
    )
    discovery.remember(one, DIALECTS["v0.0.42"], "24.11.5")
    discovery.remember(other, DIALECTS["v0.0.44"], "25.11.1")
    assert discovery.recall(one) == (DIALECTS["v0.0.42"], "24.11.5")
    assert discovery.recall(other) == (DIALECTS["v0.0.44"], "25.11.1")


def test_a_process_waiting_on_a_hung_probe_probes_itself_after_probe_lock_wait(monkeypatch: pytest.MonkeyPatch):
    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    script = pings({"v0.0.45"})
    hung = ops_for(state_with(dialect=None)).dialect()
    effect = hung.send(None)
    while not isinstance(effect, Send):  # the first process holds the lock and sends its ping: no answer comes
        effect = hung.send(script.answer(effect))
    later = ops_for(state_with(dialect=None)).dialect()
    assert later.send(None) == Sleep(LOCK_POLL)
    clock[0] = 100.0 + discovery.PROBE_LOCK_WAIT - 0.001
    assert later.send(None) == Sleep(LOCK_POLL)  # still waiting for the other's choice
    clock[0] = 100.0 + discovery.PROBE_LOCK_WAIT
    effect = later.send(None)
    assert not isinstance(effect, Sleep)  # given up waiting: it probes for itself
    with pytest.raises(StopIteration) as probed:
        while True:
            effect = later.send(script.answer(effect))
    assert probed.value.value.version == "v0.0.45"
    assert paths_sent(script) == ["/slurm/v0.0.45/ping"]  # its own ping, answered


def test_a_process_that_waited_says_another_process_chose():
    script = pings({"v0.0.44"})
    first = ops_for(state_with(dialect=None)).dialect()
    effect = first.send(None)
    while not isinstance(effect, Send):
        effect = first.send(script.answer(effect))
    later_script = Script({})
    later = ops_for(state_with(dialect=None)).dialect()
    assert isinstance(later.send(None), Sleep)
    with pytest.raises(StopIteration):
        while True:
            effect = first.send(script.answer(effect))
    assert later_script.run(later).version == "v0.0.44"
    assert later_script.notes == [
        "Maxwell connection steps: Slurm 26.05.5, REST API v0.0.44 (chosen by another process of this host just now)"
    ]


@pytest.mark.parametrize(
    "content",
    [b"[]", b'"v0.0.42"', b'{"host": "https://rest.example", "version": "v0.0.42"}', b"\xff\xfe"],
    ids=["a list", "a string", "no time", "not text"],
)
def test_a_kept_choice_of_another_shape_is_probed_anew(shared_folder: Path, content: bytes):
    state = state_with(dialect=None)
    discovery.remember(state.config, DIALECTS["v0.0.42"], None)
    (kept,) = shared_folder.glob("api-*.json")
    kept.write_bytes(content)
    assert discovery.recall(state.config) is None
    script = pings({"v0.0.45"})
    assert script.run(ops_for(state).dialect()).version == "v0.0.45"
    assert discovery.recall(state.config) == (DIALECTS["v0.0.45"], "26.05.5")  # the file replaced


def test_a_ping_without_answer_is_retried_under_the_connections_policy():
    script = pings({"v0.0.45"})
    script.replies["/slurm/v0.0.45/ping"].insert(0, TransportFailure("connection refused", before_send=True))
    assert script.run(ops_for(state_with(dialect=None), limit=3).dialect()).version == "v0.0.45"
    assert paths_sent(script) == ["/slurm/v0.0.45/ping"] * 2 and len(script.sleeps) == 1
    assert "retry 1 of 2" in script.notes[0]


def test_a_choice_saved_while_this_process_waited_for_the_lock_is_used(monkeypatch: pytest.MonkeyPatch):
    # This process looked (nothing kept), then another saved its choice and let go of the lock just
    # before this one took it: it looks again under the lock instead of probing a second time.
    state = state_with(dialect=None)
    discovery.remember(state.config, DIALECTS["v0.0.44"], "25.11.1")
    real_recall, looks = discovery.recall, []

    def looked_too_early(config: MaxwellConnectionConfig, now: float | None = None) -> Any:
        looks.append(config)
        return None if len(looks) == 1 else real_recall(config, now)

    monkeypatch.setattr(discovery, "recall", looked_too_early)
    script = Script({})  # any request would fail
    assert script.run(ops_for(state).dialect()) == DIALECTS["v0.0.44"] and script.sent == []
    assert state.release == "25.11.1"
    assert script.notes == [
        "Maxwell connection steps: Slurm 25.11.1, REST API v0.0.44 (chosen by another process of this host just now)"
    ]


def test_the_host_lock_is_let_go_after_a_probe(shared_folder: Path):
    pings({"v0.0.45"}).run(ops_for(state_with(dialect=None)).dialect())
    (kept,) = shared_folder.glob("api-*.json")
    kept.unlink()  # the choice is gone (expired, say): the next process probes at once, without waiting
    script = pings({"v0.0.45"})
    assert script.run(ops_for(state_with(dialect=None)).dialect()).version == "v0.0.45"
    assert script.sleeps == [] and paths_sent(script) == ["/slurm/v0.0.45/ping"]


# ---------------------------------------------------------------- the rule: which version, or why none


def refusal(served: set[str]) -> str:
    with pytest.raises(MaxwellConfigError) as failure:
        negotiate(served)
    return str(failure.value)


def test_the_newest_common_version_is_chosen_and_newer_ones_are_passed_over():
    assert negotiate({"v0.0.40", "v0.0.42", "v0.0.41"}) is DIALECTS["v0.0.42"]
    assert negotiate({"v0.0.44", "v0.0.45", "v0.0.46"}) is DIALECTS["v0.0.45"]
    assert negotiate({"v0.0.38", "v0.0.39"}) is DIALECTS["v0.0.38"]  # v0.0.39 is not spoken
    assert negotiate({"v0.0.45"}, "v0.0.40") is DIALECTS["v0.0.40"]  # the version asked for


def test_a_server_newer_than_this_provider_names_the_newest_version_to_upgrade_for():
    assert refusal({"v0.0.47", "v0.0.46"}) == (
        "the server serves only Slurm REST API versions newer than this provider knows: v0.0.46, v0.0.47; "
        f"airflow-provider-maxwell {__version__} speaks v0.0.38 to v0.0.45. Upgrade to a release of "
        f"airflow-provider-maxwell newer than {__version__} that speaks v0.0.47 (pip install -U "
        "airflow-provider-maxwell; its CHANGELOG lists the versions each release speaks)"
    )


def test_a_server_with_older_and_newer_versions_but_none_in_common_is_no_upgrade_case():
    # an upgrade would not help a user whose server also offers a version older than every one spoken
    assert refusal({"v0.0.37", "v0.0.46"}) == (
        "the server offers Slurm REST API versions ['v0.0.37', 'v0.0.46'] and this provider speaks v0.0.38, "
        "v0.0.40, v0.0.41, v0.0.42, v0.0.43, v0.0.44, v0.0.45: no common version. Upgrade "
        "airflow-provider-maxwell or set api_version in the connection's extra"
    )
