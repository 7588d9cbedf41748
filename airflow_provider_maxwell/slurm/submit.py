"""Version-neutral job fields in, the negotiated version's submit body out.

Bad input is refused here, before anything is sent, with the field named and the fix said.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from airflow_provider_maxwell.exceptions import MaxwellConfigError, shown
from airflow_provider_maxwell.slurm.dialects import ApiDialect

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
MAX_TIME_LIMIT_MINUTES = 366 * 24 * 60  # Maxwell's partitions allow days, not years: above a year is a typo
MAX_COUNT = 2**31 - 1  # tasks, CPUs, nodes: Slurm's are 32-bit, and more is a typo
MAX_MEMORY_MIB = 2**62  # Slurm's memory is 64-bit (MiB), its top values mean "unset" or "infinite"
# ASCII digits only: \d also takes full-width and other scripts' digits, which int() reads as plain ones.
_MEMORY = re.compile(r"^\s*(\d+)\s*([KMGT]?)B?\s*$", re.IGNORECASE | re.ASCII)
_STRING_FIELDS = (
    "name",
    "partition",
    "account",
    "qos",
    "constraints",
    "dependency",
    "comment",
    "array",
    "current_working_directory",
    "standard_output",
    "standard_error",
    "standard_input",
)


def minutes(field: str, value: int | float | timedelta) -> int:
    """A time limit as whole minutes, rounded up, as Slurm counts them."""
    if isinstance(value, timedelta):
        value = value.total_seconds() / 60
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MaxwellConfigError(f"{field} must be minutes (a number) or a datetime.timedelta, not {shown(value)}")
    result = math.ceil(value)
    if result <= 0 or result > MAX_TIME_LIMIT_MINUTES:
        raise MaxwellConfigError(
            f"{field}={shown(value)} minutes is out of range: give a positive limit of at most "
            f"{MAX_TIME_LIMIT_MINUTES} minutes (a year), e.g. time_limit=timedelta(hours=2)"
        )
    return result


def memory_mib(field: str, value: int | str) -> int:
    """Memory as MiB from an integer (MiB) or a string such as '4G' or '512M'."""
    if isinstance(value, int) and not isinstance(value, bool):
        mib = value
    elif isinstance(value, str) and (match := _MEMORY.match(value)):
        mib = int(match.group(1)) * {"": 1, "K": 1, "M": 1, "G": 1024, "T": 1024 * 1024}[match.group(2).upper()]
        if match.group(2).upper() == "K":
            mib = math.ceil(int(match.group(1)) / 1024)
    else:
        raise MaxwellConfigError(
            f"{field} must be MiB as an integer or a string like '4G' or '512M', not {shown(value)}"
        )
    if not 0 < mib <= MAX_MEMORY_MIB:
        raise MaxwellConfigError(f"{field} must be positive and at most {MAX_MEMORY_MIB} MiB, not {shown(value)}")
    return mib


def positive_int(field: str, value: Any) -> int:
    """The value if it is a positive integer; else an error naming the field."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_COUNT:
        raise MaxwellConfigError(f"{field} must be a positive integer of at most {MAX_COUNT}, not {shown(value)}")
    return value


def environment(value: Mapping[str, Any] | None) -> dict[str, str]:
    """The job's environment: PATH always set (the job inherits nothing), the user's values on top."""
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise MaxwellConfigError(f"environment must be a dict of names to strings, not {type(value).__name__}")
    env = {"PATH": DEFAULT_PATH}
    for key, item in value.items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise MaxwellConfigError(
                f"environment has an invalid variable name {shown(key)}: use a non-empty name without '=' or NUL"
            )
        if isinstance(item, str) and "\0" in item:
            raise MaxwellConfigError(f"environment[{shown(key)}] contains a NUL byte, which no process can receive")
        if not isinstance(item, str):
            small = isinstance(item, float) or (isinstance(item, int) and abs(item) < 10**30)  # str(10**5000) fails
            raise MaxwellConfigError(
                f"environment[{shown(key)}] must be a string, not {type(item).__name__} ({shown(item)}): "
                "write it as a string" + (f", e.g. {key}={str(item)!r}" if small else "")
            )
        env[key] = item
    return env


def default_working_directory(login: str) -> str:
    """The working directory a job gets when the task sets none (slurmrestd's own would be no use)."""
    return f"/home/{login}"


def working_directory(argument: str | None, job_fields: Mapping[str, Any], login: str) -> str:
    """The job's working directory as a task sets it: its argument, else its job field, else the default."""
    return argument or job_fields.get("current_working_directory") or default_working_directory(login)


def refuse_script_field(fields: Mapping[str, Any]) -> None:
    """The batch script is an argument of its own, never a job field: two scripts would leave Slurm (or
    Python's call, `submit_job(script, **fields)`) to pick one. The hook and the operator refuse it alike."""
    if "script" in fields:
        raise MaxwellConfigError(
            "job field 'script' is not allowed: the batch script is the script argument (operator: script=...)"
        )


def check_script(script: object) -> None:
    """Refuse what sbatch would not run as a batch script, naming what is wrong with it."""
    if not isinstance(script, str):
        raise MaxwellConfigError(
            f"script must be text (str), not {type(script).__name__}: decode it first (e.g. data.decode())"
        )
    if not script.strip():
        raise MaxwellConfigError(
            "script is empty: give the batch script's text (starting with #!/bin/bash) or a path to a .sh file"
        )
    if "\0" in script:
        raise MaxwellConfigError("script contains a NUL byte: sbatch cannot run it; check how the script was read")
    if not script.startswith("#!"):
        raise MaxwellConfigError(
            "script must start with an interpreter line such as '#!/bin/bash', as sbatch requires; "
            f"it starts with {script[:30]!r}"
        )


def build_submit_body(dialect: ApiDialect, script: str, fields: Mapping[str, Any], default_cwd: str) -> dict[str, Any]:
    """The JSON body of POST /slurm/vX/job/submit for `dialect`.

    `fields` uses the neutral names (`time_limit` in minutes or a timedelta, `environment` as a dict,
    `nodes`, `ntasks`, `cpus_per_task`, `memory_per_node`, ...); any other key is a Slurm job field
    passed through as it is, for the caller to shape for the version.
    """
    check_script(script)
    refuse_script_field(fields)
    rest = dict(fields)
    job: dict[str, Any] = {}
    for name in _STRING_FIELDS:
        value = rest.pop(name, None)
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip() or "\0" in value:
            raise MaxwellConfigError(f"{name} must be a non-empty string without NUL bytes, not {shown(value)}")
        if name == "current_working_directory" and not value.startswith("/"):
            raise MaxwellConfigError(
                f"current_working_directory must be an absolute path on Maxwell, not {shown(value)}: slurmctld has no "
                "directory to resolve it against (e.g. /beegfs/desy/user/me/run42)"
            )
        job[name] = value
    job.setdefault("current_working_directory", default_cwd)
    job["environment"] = dialect.environment(environment(rest.pop("environment", None)))
    if (limit := rest.pop("time_limit", None)) is not None:
        job["time_limit"] = dialect.number(minutes("time_limit", limit))
    if (mem := rest.pop("memory_per_node", None)) is not None:
        job["memory_per_node"] = dialect.number(memory_mib("memory_per_node", mem))
    if (ntasks := rest.pop("ntasks", None)) is not None:
        job["tasks"] = positive_int("ntasks", ntasks)
    if (cpus := rest.pop("cpus_per_task", None)) is not None:
        job["cpus_per_task"] = positive_int("cpus_per_task", cpus)
    if (nodes := rest.pop("nodes", None)) is not None:
        job["nodes"] = dialect.node_range(*_node_range(nodes))
    for name, value in rest.items():  # anything else: a Slurm field, passed through as given
        try:
            json.dumps(value, allow_nan=False)  # as the drivers will encode it
        except (TypeError, ValueError, RecursionError):
            raise MaxwellConfigError(
                f"job field {shown(name)} is {_a(type(value).__name__)} that no JSON request can carry (or holds "
                "one): give Slurm's own JSON value for it (text, a number, true/false, a list or a dict)"
            ) from None
    job.update(rest)
    if dialect.script_in_job:
        job["script"] = script
        return {"job": job}
    return {"job": job, "script": script}


def _a(noun: str) -> str:
    """The noun with its article: 'a float', 'an int'."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _node_range(value: Any) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return positive_int("nodes", value), value
    if isinstance(value, str) and (match := re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", value, re.ASCII)):
        low, high = int(match.group(1)), int(match.group(2) or match.group(1))
        if 0 < low <= high <= MAX_COUNT:
            return low, high
    raise MaxwellConfigError(f"nodes must be a positive count or a range like '2-4', not {shown(value)}")
