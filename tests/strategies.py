"""Hypothesis strategies for hostile input at the provider's boundaries (issue 15): connection
extras, hosts and secrets, job fields and job ids, and JSON-ish junk for answers.

Every generated secret holds MARK, so a test can tell a leak in any form (quoted, repr-escaped,
URL-encoded, cut short) from an innocent message: MARK must never appear in one.
"""

from __future__ import annotations

import base64
import math
from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from airflow_provider_maxwell.provider_info import AUTH_METHODS, CONN_FIELDS, MAX_TOKEN_LIFESPAN, MIN_TOKEN_LIFESPAN
from airflow_provider_maxwell.slurm.dialects import SUPPORTED_VERSIONS

MARK = "Zx9QsEcReT"  # in every generated secret; in no other generated value
EXISTING_FILE = str(Path(__file__).resolve())  # a CA bundle path that exists (verify=<path> is checked for that)
HUGE_TEXT = "9" * 5000  # longer than int() reads (4300 digits) and than any message should quote

ODD_TEXTS = [
    "",
    " ",
    "\n",
    "\x00",
    "\r\nX-Evil: 1",
    "é",
    "\uff11\uff12",  # full-width "12": int() reads it as 12
    "²",  # isdigit() says yes, int() says no
    "\u202e",
    "None",
    "null",
    "true",
    "-1",
    "nan",
    "Infinity",
    "1e400",
    HUGE_TEXT,
]
odd_text = st.text(max_size=12) | st.sampled_from(ODD_TEXTS)
odd_numbers = (
    st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([10**400, -(10**400)])
    | st.floats(allow_nan=True, allow_infinity=True)
)
json_leaf = st.none() | st.booleans() | odd_numbers | odd_text
json_values = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(odd_text, inner, max_size=3),
    max_leaves=6,
)


def mostly(good: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`good` seven times in ten, else `hostile`: a value of several parts each usually good, so that the
    whole is accepted often enough and each part's refusal is reached too."""
    return st.integers(min_value=0, max_value=9).flatmap(lambda n: good if n < 7 else hostile)


def printable_ascii(text: str) -> str:
    """The text with every character a header could not carry left out (what a good secret looks like)."""
    return "".join(c for c in text if c.isascii() and c.isprintable())


def secrets(ascii_only: bool = False) -> st.SearchStrategy[str]:
    """A secret holding MARK, with odd text around it: control characters, line breaks, non-ASCII."""
    around = st.text(st.characters(codec="ascii") if ascii_only else st.characters(), max_size=6) | st.sampled_from(
        ["", "\n", " ", "\t", "\r\n", "\x00", "€", "%", "+", '"', "\\", "&", "="]
    )
    return st.builds(lambda before, after: f"{before}{MARK}{after}", around, around)


GOOD_HOSTS = ["https://rest.example/sapi", "http://127.0.0.1:6820", "https://rest.example:8443/sapi/", " https://r.ex "]


def urls(secret: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """URLs good and bad: credentials or a secret in userinfo, query or fragment, broken IPv6, whitespace,
    other schemes, impossible ports."""
    with_secret = st.builds(
        lambda template, value: template.format(value),
        st.sampled_from(
            [
                "https://alice:{}@rest.example/sapi",
                "https://{}@rest.example/sapi",
                "https://rest.example/sapi?token={}",
                "https://rest.example/sapi#{}",
                "rest.example/sapi?t={}",
                "http://alice:{}@[::1",
            ]
        ),
        secret,
    )
    bad = st.sampled_from(
        [
            "http://[::1",
            "https://rest.example:99999/sapi",
            "https://rest.example:0/sapi",
            "https://rest.example:x/sapi",
            "ftp://rest.example/sapi",
            "https://",
            "https://rest.exa mple/sapi",
            "https://rest.example/sa\npi",
            "https://rest.example/sa\tpi",
            "https://rest.example/\x00",
            "//rest.example/sapi",
            "rest.example",
        ]
    )
    return mostly(st.sampled_from(GOOD_HOSTS), st.one_of(bad, with_secret, odd_text))


logins = mostly(
    st.sampled_from(["alice", " alice ", "a.b-c_d"]), st.sampled_from(["Jürgen", "a b", "a:b", "a@b", "a/b"]) | odd_text
)
good_passwords = secrets(ascii_only=True).map(printable_ascii)
passwords = mostly(good_passwords, st.none() | secrets())
good_hosts = st.sampled_from(GOOD_HOSTS)
good_logins = st.sampled_from(["alice", " alice ", "a.b-c_d"])


def _good(name: str) -> st.SearchStrategy[Any]:
    """Values the connection form would produce for an extra field (strings too, as Airflow 3.1's form sends)."""
    lifespans = st.integers(min_value=MIN_TOKEN_LIFESPAN, max_value=MAX_TOKEN_LIFESPAN)
    good: dict[str, st.SearchStrategy[Any]] = {
        "rest_root": good_hosts,
        "auth_method": st.sampled_from(AUTH_METHODS),
        "portal_url": st.sampled_from(["https://portal.example/reservation", "http://127.0.0.1:8080/r/"]),
        "jwt_lifespan": lifespans | lifespans.map(str) | lifespans.map(float),
        "keycloak_url": st.sampled_from(["https://kc.example/auth", "http://127.0.0.1:8081"]),
        "keycloak_realm": st.sampled_from(["production", "maxwell-dev"]),
        "keycloak_client_id": st.sampled_from(["desy-public", "airflow"]),
        "keycloak_client_secret": secrets(ascii_only=True).map(printable_ascii),
        "keycloak_scope": st.sampled_from(["openid sun", "openid"]),
        "signing_secret": st.binary(min_size=16, max_size=48).map(lambda key: base64.b64encode(key).decode()),
        "api_version": st.sampled_from([*SUPPORTED_VERSIONS, "auto"]),
        "verify": st.booleans() | st.sampled_from(["true", "False", "no", "1", EXISTING_FILE]),
        "timeout": st.floats(min_value=0.001, max_value=3600) | st.integers(min_value=1, max_value=3600).map(str),
        "submit_timeout": st.floats(min_value=0.001, max_value=3600) | st.integers(min_value=1, max_value=3600),
        "ca_bundle": st.just(EXISTING_FILE),
        "job_url_template": st.sampled_from(
            ["https://slurm-web.example/job/{job_id}", "https://w.example/{user}/{job_id}"]
        ),
        "shared_cache": st.booleans() | st.sampled_from(["true", "False", "no", "1"]),
        "allow_plain_http": st.booleans() | st.sampled_from(["true", "False", "no", "1"]),
    }
    return good[name]


def _hostile(name: str) -> st.SearchStrategy[Any]:
    if name in ("rest_root", "portal_url", "keycloak_url"):
        return urls(secrets()) | json_values
    if name in ("keycloak_client_secret", "signing_secret"):
        return secrets() | json_values
    return json_values


def extra_values(name: str) -> st.SearchStrategy[Any]:
    """One extra field's value: mostly what the form gives, often hostile."""
    return mostly(_good(name), _hostile(name))


def merged(*parts: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts drawn from each strategy, later ones overriding earlier ones' keys."""
    return st.builds(lambda *dicts: {k: v for d in dicts for k, v in d.items()}, *parts)


def good_extras() -> st.SearchStrategy[dict[str, Any]]:
    """An extra as the connection form gives it: every field optional, each value valid."""
    fields = st.fixed_dictionaries({}, optional={name: _good(name) for name in CONN_FIELDS})
    return fields.filter(
        lambda extra: (
            (extra.get("auth_method") != "signing_key" or "signing_secret" in extra)
            # a CA bundle goes with verification on, given in one place
            and ("ca_bundle" not in extra or str(extra.get("verify", True)).lower() in ("true", "yes", "1"))
        )
    )


def extras() -> st.SearchStrategy[Any]:
    """A connection's extra: fields as the form gives them with at most two hostile ones (so that both
    acceptance and each refusal are reached), some prefixed as Airflow once stored them, now and then an
    unknown key; or not a JSON object at all."""
    good = good_extras()
    names = st.sampled_from(sorted(CONN_FIELDS))
    hostile = st.lists(names.flatmap(lambda n: st.tuples(st.just(n), _hostile(n))), max_size=2).map(dict)
    prefixed = st.fixed_dictionaries(
        {}, optional={f"extra__maxwell__{name}": extra_values(name) for name in ("auth_method", "timeout")}
    )
    unknown = st.dictionaries(st.sampled_from(["tiemout", "token", "extra__maxwell__x"]), json_values, max_size=1)
    rare = mostly(st.just({}), prefixed | unknown)
    few_hostile = mostly(st.just({}), hostile)
    return mostly(merged(good, few_hostile, rare), st.none() | json_values)


def secret_fields_of(extra: Any) -> list[str]:
    """The secret values in an extra as generated (strings under the secret fields)."""
    if not isinstance(extra, dict):
        return []
    return [
        value
        for key, value in extra.items()
        if key.removeprefix("extra__maxwell__") in ("keycloak_client_secret", "signing_secret")
        and isinstance(value, str)
    ]


# ---------------------------------------------------------------- job fields, scripts, job ids

GOOD_SCRIPTS = st.sampled_from(["#!/bin/bash\necho hi\n", "#!/bin/sh\n", "#!/usr/bin/env python3\nprint(1)\n"])
SCRIPTS = mostly(
    GOOD_SCRIPTS,
    st.sampled_from(["", "   ", "echo no shebang\n", "#!/bin/bash\necho \x00\n", "\ufeff#!/bin/bash\n"])
    | st.just(b"#!/bin/bash\n")
    | json_values,
)

NAMES = st.sampled_from(["nightly.reduce", "run 42", "é"]) | odd_text | json_values
PATHS = st.sampled_from(["/beegfs/run42", "/home/alice/%j.out", "data/run42", "~/x", "/a\x00b"]) | odd_text
MINUTES = (
    st.integers(min_value=1, max_value=366 * 24 * 60)
    | st.floats(min_value=0.01, max_value=1e6)
    | st.builds(lambda s: timedelta(seconds=s), st.floats(min_value=-1e6, max_value=1e9))
    | json_values
)
MEMORY = (
    st.integers(min_value=1, max_value=2**20)
    | st.sampled_from(["4G", "512M", "512", " 2 T ", "1K", "0G", "4 GB", "\uff14G", "4g", "-1G", "1P"])
    | json_values
)
COUNTS = st.integers(min_value=1, max_value=256) | json_values
NODE_RANGES = COUNTS | st.sampled_from(["2-4", "4-2", "2", " 1 - 3 ", "0-2", "\uff12", "2-", "-2"])
ENVIRONMENTS = (
    st.dictionaries(
        st.sampled_from(["RUN", "PATH", "A=B", "", "A\x00B", "É"]), st.text(max_size=5) | json_values, max_size=3
    )
    | json_values
)
# Slurm job fields the provider passes through as given: JSON values (which need not make sense), and
# values no JSON body can carry.
PASSED_THROUGH = json_values | st.sampled_from([b"bytes", {1, 2}, float("nan"), object()])

GOOD_JOB_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    **{name: st.sampled_from(["nightly.reduce", "run 42", "é"]) for name in ("name", "partition", "comment")},
    **{
        name: st.sampled_from(["/beegfs/run42", "/home/alice/%j.out"])
        for name in ("current_working_directory", "standard_output")
    },
    "time_limit": st.integers(min_value=1, max_value=366 * 24 * 60) | st.floats(min_value=0.01, max_value=1e5),
    "memory_per_node": st.integers(min_value=1, max_value=2**20) | st.sampled_from(["4G", "512M", " 2 T ", "1K", "4g"]),
    "ntasks": st.integers(min_value=1, max_value=256),
    "cpus_per_task": st.integers(min_value=1, max_value=256),
    "nodes": st.integers(min_value=1, max_value=64) | st.sampled_from(["2-4", "2", " 1 - 3 "]),
    "environment": st.dictionaries(st.sampled_from(["RUN", "PATH", "É"]), st.text(max_size=5), max_size=3),
    "exclusive": json_values,
}
HOSTILE_JOB_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    **{
        name: NAMES for name in ("name", "partition", "account", "qos", "constraints", "dependency", "comment", "array")
    },
    **{name: PATHS for name in ("current_working_directory", "standard_output", "standard_error")},
    "time_limit": MINUTES,
    "memory_per_node": MEMORY,
    "ntasks": COUNTS,
    "cpus_per_task": COUNTS,
    "nodes": NODE_RANGES,
    "environment": ENVIRONMENTS,
    "script": SCRIPTS,
    "exclusive": PASSED_THROUGH,
    "mail_user": PASSED_THROUGH,
}
# Operator and hook job fields: good ones with at most two hostile ones, so that both the accepted body
# and each refusal are reached.
job_fields = merged(
    st.fixed_dictionaries({}, optional=GOOD_JOB_FIELDS),
    mostly(
        st.just({}),
        st.lists(
            st.sampled_from(sorted(HOSTILE_JOB_FIELDS)).flatmap(lambda n: st.tuples(st.just(n), HOSTILE_JOB_FIELDS[n])),
            min_size=1,
            max_size=2,
        ).map(dict),
    ),
)

job_ids = (
    st.integers(min_value=-(2**40), max_value=2**40)
    | st.sampled_from([2**32 - 1, 2**32, 10**5000, True, False, None, 12.0, float("nan")])
    | st.integers(min_value=0, max_value=2**33).map(str)
    | st.integers(min_value=0, max_value=2**33).map(lambda n: f" {n:010d}\n")
    | st.text(st.characters(categories=["Nd"]), min_size=1, max_size=4)  # digits of any script
    | st.sampled_from(["²", "\uff11\uff12", "0x10", "1e3", "+5", "-0", "12; rm -rf /", HUGE_TEXT, "1_000"])
    | json_values
)


def finite_minutes(value: Any) -> float | None:
    """A time limit's minutes as the tests reckon them independently (None: not a time limit)."""
    if isinstance(value, timedelta):
        value = value.total_seconds() / 60
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
