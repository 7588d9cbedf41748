"""Array retries that rerun only the failed indices (issue 17), on the local Maxwell: a 5-task array
whose tasks 1 and 3 fail once; the retry submits exactly those two (checked in accounting) and the
task succeeds with the tries merged per index."""

from __future__ import annotations

from .airflow_cli import TEST_DAGS, dags_test, submitted_ids, xcom_value


def test_a_retry_resubmits_exactly_the_failed_indices(airflow_env, hook):
    rc, out = dags_test(airflow_env, TEST_DAGS, "maxwell_array_retry")
    assert rc == 0, out[-4000:]
    first, second = submitted_ids(out)
    assert "Rerunning only the array tasks that failed in the last try: 1,3 (of 0-4)" in out
    tasks = {j.array_task_id: j for j in hook.get_accounting_jobs(first)}
    assert sorted(tasks) == [0, 1, 2, 3, 4]
    assert {i for i, j in tasks.items() if not j.succeeded()} == {1, 3}
    rerun = hook.get_accounting_jobs(second)
    assert sorted(j.array_task_id for j in rerun) == [1, 3] and all(j.succeeded() for j in rerun)
    summary = xcom_value(airflow_env, "maxwell_array_retry", "job", "slurm_job")
    assert summary["job_id"] == second
    assert summary["array_results"] == {
        str(i): {
            "state": "COMPLETED",
            "exit_code": 0,
            "try": 2 if i in (1, 3) else 1,
            "job_id": second if i in (1, 3) else first,
        }
        for i in range(5)
    }
