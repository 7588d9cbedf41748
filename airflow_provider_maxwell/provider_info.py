"""What Airflow's ProvidersManager reads about this package (entry point `apache_airflow_provider`)."""

from __future__ import annotations

from typing import Any

from airflow_provider_maxwell import __version__

CONNECTION_TYPE = "maxwell"
AUTH_METHODS = ("portal", "keycloak", "token", "signing_key")
MIN_TOKEN_LIFESPAN = 10  # seconds: short enough for tests of renewal, long enough for one request
MAX_TOKEN_LIFESPAN = 86400  # DESY caps Slurm tokens at 24 h
# A signing key mints for free, so its tokens need not live long; a leaked one is worth an hour, not a day.
SIGNING_KEY_TOKEN_LIFESPAN = 3600


def _field(label: str, kind: str, description: str, required: bool = False, **schema: Any) -> dict[str, Any]:
    # A type without "null" is what Airflow's form (3.2 on) marks required and will not save empty.
    kinds = [kind] if required else [kind, "null"]
    return {"label": label, "description": description, "schema": {"type": kinds, **schema}}


# Where users look when a connection fails: the form's Test button cannot test this type on Airflow
# 3.3.2 (the UI sends port 0 and the server answers "Bad Request"; fixed upstream), the CLI can.
TEST_COMMAND_NOTE = (
    'To test this connection, run "maxwell-connection test <connection id>" where your Airflow runs '
    '(e.g. on a worker): the Test button answers "Bad Request" for it on Airflow 3.3.2.'
)
EXAMPLE_REST_ROOT = "https://max-slurm-rest.desy.de/sapi"  # DESY's Maxwell


# Defaults the provider applies but the form does not save: a portal connection's extra then holds no
# Keycloak settings it never uses (the form saves every field's schema default). Shown in the field's
# description instead; config.py fills them in.
UNSAVED_DEFAULTS: dict[str, Any] = {
    "keycloak_url": "https://keycloak.desy.de/auth",
    "keycloak_realm": "production",
    "keycloak_client_id": "desy-public",
    "keycloak_scope": "openid sun",
    # Not saved so that a signing_key connection can tell "not set" (an hour) from a day chosen on purpose.
    "jwt_lifespan": MAX_TOKEN_LIFESPAN,
    # Not saved: Airflow hands every saved extra value to its secrets masker on each connection lookup, and
    # the masker warns in every task log about a value shorter than 5 characters, secret or not.
    "api_version": "auto",
}

# Field names are chosen for Airflow's secrets masker, which hides every extra field whose NAME contains
# one of its sensitive words ("token", "secret", "password", "private_key", ...; `[core]
# sensitive_var_conn_names` adds more) in the UI, the REST API and logs, and whose UI then saves the
# shown "***" as the value. So a secret field's name must contain one of those words (both
# "signing_secret" and "keycloak_client_secret" contain "secret") and no other field's name may.
CONN_FIELDS: dict[str, dict[str, Any]] = {
    # The form hides host and asks here, as a required field: host cannot be required (Airflow 3.3.2).
    "rest_root": _field(
        "REST root URL",
        "string",
        f"Required: where slurmrestd answers, e.g. {EXAMPLE_REST_ROOT} for DESY's Maxwell. {TEST_COMMAND_NOTE}",
        required=True,
    ),
    "auth_method": _field(
        "Auth method",
        "string",
        "portal: Secret is your portal token; keycloak: Secret is your DESY password; "
        "token: Secret is a Slurm JWT; signing_key: a service account's HS256 key (Signing key) mints tokens.",
        enum=list(AUTH_METHODS),
        default="portal",
    ),
    "portal_url": _field("Portal URL", "string", "Default: the host's origin + /reservation."),
    "jwt_lifespan": _field(
        "Slurm token lifespan (s)",
        "integer",
        f"Lifetime of the Slurm tokens minted for you (portal, signing_key), {MIN_TOKEN_LIFESPAN} to "
        f"{MAX_TOKEN_LIFESPAN} s. Default: {MAX_TOKEN_LIFESPAN} (portal), {SIGNING_KEY_TOKEN_LIFESPAN} (signing_key).",
        minimum=MIN_TOKEN_LIFESPAN,
        maximum=MAX_TOKEN_LIFESPAN,
    ),
    "keycloak_url": _field(
        "Keycloak URL", "string", f"auth_method=keycloak only. Default: {UNSAVED_DEFAULTS['keycloak_url']}"
    ),
    "keycloak_realm": _field(
        "Keycloak realm", "string", f"auth_method=keycloak only. Default: {UNSAVED_DEFAULTS['keycloak_realm']}"
    ),
    "keycloak_client_id": _field(
        "Keycloak client id", "string", f"auth_method=keycloak only. Default: {UNSAVED_DEFAULTS['keycloak_client_id']}"
    ),
    "keycloak_client_secret": _field(
        "Keycloak client secret", "string", "auth_method=keycloak, confidential clients only.", format="password"
    ),
    "keycloak_scope": _field(
        "Keycloak scope",
        "string",
        f"auth_method=keycloak only; must include sun. Default: {UNSAVED_DEFAULTS['keycloak_scope']}",
    ),
    "signing_secret": _field(
        "Signing key (base64)",
        "string",
        "auth_method=signing_key, privileged service accounts only: the cluster's jwt_hs256.key, base64-encoded "
        "(base64 -w0 jwt_hs256.key).",
        format="password",
    ),
    "api_version": _field(
        "Slurm REST API version",
        "string",
        f"auto (asked of the server), or e.g. v0.0.40. Default: {UNSAVED_DEFAULTS['api_version']}",
    ),
    "verify": _field(
        "Verify TLS certificates",
        "boolean",
        "Off only for tests against a self-signed server (warned about); for a private CA, give the CA bundle.",
        default=True,
    ),
    "allow_plain_http": _field(
        "Allow plain http://",
        "boolean",
        "Send passwords and tokens unencrypted to a plain http:// host, portal or Keycloak on another machine "
        "(this machine's, e.g. 127.0.0.1, need not). Only where every network on the way is trusted; warned about.",
    ),
    "ca_bundle": _field(
        "CA bundle (path)",
        "string",
        "A PEM file to verify the server with, readable on workers and triggerers. Default: the system's CAs.",
    ),
    "timeout": _field("HTTP timeout (s)", "number", "Per request.", default=30),
    "submit_timeout": _field(
        "Submit timeout (s)",
        "number",
        "The most a job submission may take from its first sending: the wait for Slurm's answer (up to "
        "120 s, as slurmrestd holds a submission while slurmctld backs off), the search for the job of a "
        "lost answer and any second sending. Gives up after at most 1.1 x this + 1.5 s.",
        default=180,
        minimum=1,
        maximum=3600,
    ),
    "shared_cache": _field(
        "Share between task processes",
        "boolean",
        "Task processes of one host share the current Slurm token (encrypted) and the API version.",
        default=True,
    ),
    "job_url_template": _field(
        "Job page URL template",
        "string",
        'For the "Slurm job" link on tasks, e.g. https://slurm-web.example/job/{job_id}. '
        "Placeholders: {job_id}, {user}. No link when empty.",
    ),
}


def field_default(name: str) -> Any:
    """The default of a connection extra field: the one value the form, the validation and the docs use."""
    return CONN_FIELDS[name]["schema"].get("default", UNSAVED_DEFAULTS.get(name))


UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "port", "extra", "host"],  # host: asked as the required extra field rest_root
    "relabeling": {"login": "User", "password": "Secret"},
    "placeholders": {
        "login": "your DESY user name",
        "password": "portal token, DESY password or Slurm token (see Auth method)",
    },
}
# Airflow 3.1's form has no required fields, and without the FAB provider no extra fields at all: it
# keeps asking for the REST root in host.
LEGACY_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "port", "extra"],
    "relabeling": {**UI_FIELD_BEHAVIOUR["relabeling"], "host": "REST root URL"},
    "placeholders": {**UI_FIELD_BEHAVIOUR["placeholders"], "host": f"required, e.g. {EXAMPLE_REST_ROOT}"},
}
LEGACY_HIDDEN_EXTRAS = frozenset({"rest_root"})  # asked in host on 3.1


def legacy_form_widgets() -> dict[str, Any]:
    """CONN_FIELDS as WTForms fields, for Airflow 3.1, which cannot read `conn-fields` (3.2 can).

    Needs the FAB provider (wtforms, flask_appbuilder), as every provider's form fields do on 3.1.
    """
    from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
    from wtforms import BooleanField, IntegerField, PasswordField, StringField

    widgets: dict[str, Any] = {}
    for name, spec in CONN_FIELDS.items():
        if name in LEGACY_HIDDEN_EXTRAS:
            continue
        schema = spec["schema"]
        kind = schema["type"][0]
        default = schema.get("default")
        # Airflow 3.1's UI turns these classes into the same widgets 3.2 builds from `conn-fields`.
        if schema.get("format") == "password":
            widgets[name] = PasswordField(
                spec["label"], widget=BS3PasswordFieldWidget(), description=spec["description"]
            )
        elif kind == "boolean":
            widgets[name] = BooleanField(spec["label"], description=spec["description"], default=default)
        elif kind == "integer":
            widgets[name] = IntegerField(spec["label"], description=spec["description"], default=default)
        else:
            widgets[name] = StringField(
                spec["label"],
                widget=BS3TextFieldWidget(),
                description=spec["description"],
                default=None if default is None else str(default),
            )
    return widgets


def legacy_field_behaviour() -> dict[str, Any]:
    """LEGACY_FIELD_BEHAVIOUR with the key spelling of the hook method Airflow 3.1 calls."""
    return {key.replace("-", "_"): value for key, value in LEGACY_FIELD_BEHAVIOUR.items()}


def get_provider_info() -> dict[str, Any]:
    """What Airflow's ProvidersManager reads about this package."""
    return {
        "package-name": "airflow-provider-maxwell",
        "name": "DESY Maxwell (Slurm REST)",
        "description": "Submit, watch and cancel Slurm jobs on DESY's Maxwell cluster through slurmrestd.",
        "versions": [__version__],
        "connection-types": [
            {
                "connection-type": CONNECTION_TYPE,
                "hook-class-name": "airflow_provider_maxwell.hooks.maxwell.MaxwellHook",
                "hook-name": "DESY Maxwell (Slurm REST)",
                "conn-fields": CONN_FIELDS,
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
            }
        ],
        "hooks": [{"integration-name": "DESY Maxwell", "python-modules": ["airflow_provider_maxwell.hooks.maxwell"]}],
        "operators": [
            {"integration-name": "DESY Maxwell", "python-modules": ["airflow_provider_maxwell.operators.job"]}
        ],
        "sensors": [{"integration-name": "DESY Maxwell", "python-modules": ["airflow_provider_maxwell.sensors.job"]}],
        "triggers": [
            {
                "integration-name": "DESY Maxwell",
                "python-modules": ["airflow_provider_maxwell.triggers.job", "airflow_provider_maxwell.triggers.events"],
            }
        ],
        "extra-links": ["airflow_provider_maxwell.links.SlurmJobLink"],
        "task-decorators": [
            {"name": "maxwell", "class-name": "airflow_provider_maxwell.decorators.maxwell.maxwell_task"}
        ],
    }
