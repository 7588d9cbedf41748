"""Which Slurm REST API version a connection speaks, and what a user reads when there is none: the newest
version both sides speak, the one asked for, and, for a server newer than this provider, the exact upgrade
to make (issue 18: the message's versions were not asserted)."""

from __future__ import annotations

import pytest

from airflow_provider_maxwell import __version__
from airflow_provider_maxwell.exceptions import MaxwellConfigError
from airflow_provider_maxwell.slurm.dialects import DIALECTS, negotiate


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
