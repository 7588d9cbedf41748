"""@task.maxwell DAGs the tests run with `airflow dags test` (tests/cluster/test_python_tasks.py)."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from airflow.sdk import DAG, task

WORKDIR = os.environ.get("AIRFLOW_VAR_MAXWELL_WORKDIR", "/tmp")
CONN = os.environ.get("MAXWELL_TEST_CONN", "maxwell_default")
START = datetime(2026, 1, 1)
ON_MAXWELL = {
    "maxwell_conn_id": CONN,
    "time_limit": 5,
    "current_working_directory": WORKDIR,
    "deferrable": True,
    "poll_interval": 2,
}
INPUTS = [
    {"run": 1, "label": "Übersicht", "nested": {"a": [1, (2, 3)], "b": None}},
    {"run": 2, "label": "漢字 ✓", "nested": {"a": [], "b": 2.5}},
    {"run": 3, "label": "x" * 10, "nested": {"blob": "ß" * 1_000_000}},  # about 2 MB of arguments
]


with DAG("maxwell_python_fanout", schedule=None, start_date=START, catchup=False):

    @task.maxwell(**ON_MAXWELL)
    def transform(item: dict[str, Any]) -> dict[str, Any]:
        import os

        blob = item["nested"].get("blob", "")
        return {
            "run": item["run"],
            "label": item["label"][::-1],
            "nested": item["nested"] | {"seen": True},
            "blob_size": len(blob),
            "echo": "é" * 500_000 if blob else "",  # about 1 MB back
            "job": os.environ["SLURM_JOB_ID"],
        }

    @task
    def check(values: list[dict[str, Any]]) -> None:
        got = sorted(values, key=lambda v: v["run"])
        assert [v["label"] for v in got] == [i["label"][::-1] for i in INPUTS], got
        assert got[0]["nested"] == {"a": [1, (2, 3)], "b": None, "seen": True}
        assert got[2]["blob_size"] == 1_000_000 and got[2]["echo"] == "é" * 500_000
        assert len({v["job"] for v in got}) == 3
        print(f"checked {len(got)} values from Maxwell")

    check(transform.expand(item=INPUTS))


with DAG("maxwell_python_raises", schedule=None, start_date=START, catchup=False):

    @task.maxwell(**ON_MAXWELL)
    def broken(run: int) -> None:
        raise ValueError(f"kein Bild in Lauf {run}")

    broken(3)


with DAG("maxwell_python_array", schedule=None, start_date=START, catchup=False):

    @task.maxwell(**(ON_MAXWELL | {"deferrable": False}), array="0-2")  # waits in the worker
    def square() -> int:
        import os

        return int(os.environ["SLURM_ARRAY_TASK_ID"]) ** 2

    @task
    def check_squares(values: list[int]) -> None:
        assert values == [0, 1, 4], values
        print(f"array values {values}")

    check_squares(square())
