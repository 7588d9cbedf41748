"""The verdict on a finished job in the words users read, at the edges the other verdict tests leave open:
the commonest failure (exit code 1), a job the kernel killed for memory, and cancels among other failures
(issue 18: each test pins behaviour mutation testing found unasserted)."""

from __future__ import annotations

from airflow_provider_maxwell.outcome import judge
from airflow_provider_maxwell.slurm.states import JobState
from tests.factories import slurm_job


def test_a_job_that_exited_1_says_so():
    outcome = judge(7, [slurm_job(JobState.FAILED, 1, nodes="max-wn01")])
    assert (outcome.succeeded, outcome.retryable) == (False, True)
    assert outcome.message == "Slurm job 7 (reduce) ended FAILED with exit code 1 after 0:00:30 on max-wn01"


def test_out_of_memory_is_the_jobs_failure_not_the_clusters():
    outcome = judge(7, [slurm_job(JobState.OUT_OF_MEMORY, 0, nodes="max-wn01")])
    assert (outcome.succeeded, outcome.retryable) == (False, True)  # Airflow's retries decide, as for FAILED
    assert outcome.message == "Slurm job 7 (reduce) ended OUT_OF_MEMORY after 0:00:30 on max-wn01"
    assert outcome.summary["state"] == "OUT_OF_MEMORY" and outcome.summary["exit_code"] == 0
