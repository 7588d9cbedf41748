"""Version discovery without the OpenAPI document: probe pings newest first, keep the choice per host."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_maxwell import __version__
from airflow_provider_maxwell.client import discovery
from airflow_provider_maxwell.effects import HttpResult, Send, Sleep
from airflow_provider_maxwell.exceptions import MaxwellConfigError
from airflow_provider_maxwell.slurm.dialects import DIALECTS, SUPPORTED_VERSIONS, negotiate, served_versions
from tests.paths import DATA
from tests.unit.client.test_protocol_steps import META, Script, ok, ops_for, state_with

RECORDED = sorted(DATA.glob("slurm-*/openapi-v3.json.gz"))
NOT_HERE = HttpResult(404, b"Unable to find path", {})


def pings(answering: set[str], **more: list[HttpResult]) -> Script:
    """A server whose ping answers for `answering` and is "no such path" for every other known version."""
    replies: dict[str, list[HttpResult]] = {
        f"/slurm/{v}/ping": [ok({**META, "pings": []}) if v in answering else NOT_HERE] for v in SUPPORTED_VERSIONS
    }
    return Script({**replies, **more})


def paths_sent(script: Script) -> list[str]:
    return [call.url.split("example", 1)[1] for call in script.sent]


def test_the_newest_version_whose_ping_answers_wins_without_reading_the_document():
    script = pings({"v0.0.40", "v0.0.41", "v0.0.42"})  # Slurm 24.11
    state = state_with(dialect=None)
    assert script.run(ops_for(state).dialect()).version == "v0.0.42"
    assert paths_sent(script) == [f"/slurm/v0.0.{n}/ping" for n in (45, 44, 43, 42)]
    assert "REST API v0.0.42" in script.notes[-1] and state.release == "26.05.5"


@pytest.mark.parametrize("document", RECORDED, ids=lambda p: p.parent.name)
def test_probing_chooses_what_the_servers_own_document_would_on_every_recorded_release(document: Path):
    openapi: dict[str, Any] = json.loads(gzip.decompress(document.read_bytes()))
    served = served_versions(openapi)
    script = pings(served)
    chosen = script.run(ops_for(state_with(dialect=None)).dialect())
    assert chosen == negotiate(served)
    assert not any("openapi" in path for path in paths_sent(script))


def test_a_server_serving_only_newer_versions_is_named_with_the_upgrade_to_make():
    newer = {"paths": {f"/{s}/v0.0.{n}/jobs": {} for s in ("slurm", "slurmdb") for n in (46, 47)}}
    script = pings(set(), **{"/openapi/v3": [ok(newer)]})
    with pytest.raises(MaxwellConfigError) as raised:
        script.run(ops_for(state_with(dialect=None)).dialect())
    message = str(raised.value)
    assert "v0.0.46, v0.0.47" in message and f"airflow-provider-maxwell {__version__}" in message
    assert "pip install -U airflow-provider-maxwell" in message
    assert paths_sent(script)[-1] == "/openapi/v3"  # the document only once probing found nothing


def test_the_other_processes_of_the_host_reuse_the_choice_without_a_request():
    first = pings({"v0.0.44", "v0.0.45"})
    assert first.run(ops_for(state_with(dialect=None)).dialect()).version == "v0.0.45"
    again = Script({})  # a fresh process: any request would fail this script
    later = state_with(dialect=None)
    assert again.run(ops_for(later).dialect()).version == "v0.0.45"
    assert again.sent == [] and later.release == "26.05.5"
    assert "chosen by this host" in again.notes[-1]


def test_a_kept_choice_expires_so_an_upgraded_server_is_probed_again():
    state = state_with(dialect=None)
    discovery.remember(state.config, DIALECTS["v0.0.42"], "24.11.5")
    assert discovery.recall(state.config) == (DIALECTS["v0.0.42"], "24.11.5")
    assert discovery.recall(state.config, now=time.time() + discovery.VERSION_FILE_TTL + 1) is None


def test_a_choice_for_another_host_or_a_damaged_file_is_not_used(shared_folder: Path):
    state = state_with(dialect=None)
    discovery.remember(state.config, DIALECTS["v0.0.42"], None)
    (kept,) = shared_folder.glob("api-*.json")
    kept.write_text(json.dumps({"host": "https://elsewhere", "version": "v0.0.42", "checked_at": time.time()}))
    assert discovery.recall(state.config) is None
    kept.write_text("{not json")
    assert discovery.recall(state.config) is None
    kept.write_text(json.dumps({"host": state.config.host, "version": "v0.0.99", "checked_at": time.time()}))
    assert discovery.recall(state.config) is None


def test_with_sharing_off_every_process_probes_for_itself(shared_folder: Path):
    first = pings({"v0.0.45"})
    first.run(ops_for(state_with(dialect=None, shared_cache=False)).dialect())
    again = pings({"v0.0.45"})
    again.run(ops_for(state_with(dialect=None, shared_cache=False)).dialect())
    assert len(again.sent) == 1 and not list(shared_folder.glob("api-*"))


def test_a_pinned_version_sends_nothing_to_choose():
    script = Script({})
    state = state_with(dialect=None, api_version="v0.0.41")
    assert script.run(ops_for(state).dialect()).version == "v0.0.41" and script.sent == []


def test_processes_starting_together_probe_once_the_others_read_the_choice():
    # 50 task processes of one fan-out start at once: before this, each probed (up to 7 pings) before
    # any had saved its choice. Two processes' protocols interleaved by hand, as their drivers would run them.
    script = pings({"v0.0.44", "v0.0.45"})
    first = ops_for(state_with(dialect=None)).dialect()
    later_state = state_with(dialect=None)
    later = ops_for(later_state).dialect()
    ping = first.send(None)
    while not isinstance(ping, Send):  # the first process up to its first ping: it holds the lock now
        ping = first.send(script.answer(ping))
    waiting = later.send(None)
    assert isinstance(waiting, Sleep), waiting  # the later process waits instead of probing too
    assert later.send(None) == waiting  # and keeps waiting while the probe goes on
    with pytest.raises(StopIteration) as probed:
        effect = first.send(script.answer(ping))
        while True:
            effect = first.send(script.answer(effect))
    assert probed.value.value.version == "v0.0.45"
    with pytest.raises(StopIteration) as read:
        while True:
            later.send(None)  # after its pause it finds the saved choice
    assert read.value.value.version == "v0.0.45" and later_state.release == "26.05.5"
    assert paths_sent(script) == ["/slurm/v0.0.45/ping"]
