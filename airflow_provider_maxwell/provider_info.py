"""What Airflow's ProvidersManager reads about this package (entry point `apache_airflow_provider`)."""

from __future__ import annotations

from typing import Any

from airflow_provider_maxwell import __version__

CONNECTION_TYPE = "maxwell"
AUTH_METHODS = ("portal", "keycloak", "token", "signing_key")
MIN_TOKEN_LIFESPAN = 10  # seconds: short enough for tests of renewal, long enough for one request
MAX_TOKEN_LIFESPAN = 86400  # DESY caps Slurm tokens at 24 h


def _field(label: str, kind: str | list[str], description: str, **schema: Any) -> dict[str, Any]:
    types = [kind, "null"] if isinstance(kind, str) else [*kind, "null"]
    return {"label": label, "description": description, "schema": {"type": types, **schema}}


CONN_FIELDS: dict[str, dict[str, Any]] = {
    "auth_method": _field(
        "Auth method",
        "string",
        "portal: password is your portal token; keycloak: password is your DESY password; "
        "token: password is a Slurm JWT; signing_key: a service account's HS256 key mints tokens.",
        enum=list(AUTH_METHODS),
        default="portal",
    ),
    "portal_url": _field("Portal URL", "string", "Default: the host's origin + /reservation."),
    "token_lifespan": _field(
        "Token lifespan (s)",
        "integer",
        f"Lifetime of minted Slurm tokens, {MIN_TOKEN_LIFESPAN} to {MAX_TOKEN_LIFESPAN}.",
        default=MAX_TOKEN_LIFESPAN,
        minimum=MIN_TOKEN_LIFESPAN,
        maximum=MAX_TOKEN_LIFESPAN,
    ),
    "keycloak_url": _field("Keycloak URL", "string", "Keycloak base URL.", default="https://keycloak.desy.de/auth"),
    "keycloak_realm": _field("Keycloak realm", "string", "Keycloak realm.", default="production"),
    "keycloak_client_id": _field("Keycloak client id", "string", "OIDC client id.", default="desy-public"),
    "keycloak_client_secret": _field(
        "Keycloak client secret", "string", "Only for confidential clients.", format="password"
    ),
    "keycloak_scope": _field("Keycloak scope", "string", "Must include sun.", default="openid sun"),
    "signing_key": _field(
        "Signing key (base64)",
        "string",
        "Privileged service accounts only: the cluster's jwt_hs256.key, base64-encoded.",
        format="password",
    ),
    "api_version": _field("Slurm REST API version", "string", "auto, or e.g. v0.0.40.", default="auto"),
    "verify": _field("TLS verification", ["boolean", "string"], "true, false, or a CA bundle path.", default=True),
    "timeout": _field("HTTP timeout (s)", "number", "Per request.", default=30),
    "shared_cache": _field(
        "Share between task processes",
        "boolean",
        "Task processes of one host share the current Slurm token (encrypted) and the API version.",
        default=True,
    ),
}


def field_default(name: str) -> Any:
    """The default of a connection extra field: the one value the form, the validation and the docs use."""
    return CONN_FIELDS[name]["schema"].get("default")


UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "port", "extra"],
    "relabeling": {"host": "REST root URL", "login": "User", "password": "Secret"},
    "placeholders": {
        "host": "https://max-slurm-rest.desy.de/sapi",
        "login": "your DESY user name",
        "password": "portal token, DESY password or Slurm token (see Auth method)",
    },
}


def legacy_form_widgets() -> dict[str, Any]:
    """CONN_FIELDS as WTForms fields, for Airflow 3.1, which cannot read `conn-fields` (3.2 can).

    Needs the FAB provider (wtforms, flask_appbuilder), as every provider's form fields do on 3.1.
    """
    from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
    from wtforms import PasswordField, StringField

    widgets: dict[str, Any] = {}
    for name, spec in CONN_FIELDS.items():
        secret = spec["schema"].get("format") == "password"
        field_class, widget = (PasswordField, BS3PasswordFieldWidget) if secret else (StringField, BS3TextFieldWidget)
        default = spec["schema"].get("default")
        widgets[name] = field_class(
            spec["label"],
            widget=widget(),
            description=spec["description"],
            default=None if default is None else str(default).lower() if isinstance(default, bool) else str(default),
        )
    return widgets


def legacy_field_behaviour() -> dict[str, Any]:
    """UI_FIELD_BEHAVIOUR with the key spelling of the hook method Airflow 3.1 calls."""
    return {key.replace("-", "_"): value for key, value in UI_FIELD_BEHAVIOUR.items()}


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
        "triggers": [{"integration-name": "DESY Maxwell", "python-modules": ["airflow_provider_maxwell.triggers.job"]}],
    }
