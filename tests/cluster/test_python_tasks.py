"""@task.maxwell end to end on the local Maxwell: functions run as Slurm jobs by the stack's own python3
(as mxuser1, in a sticky world-writable folder), their sealed values reach downstream tasks, a raising
function fails its task with the remote traceback, an array's tasks each return a value."""

from __future__ import annotations

import os
import re

from .airflow_cli import EXAMPLES, TEST_DAGS, dags_test, noisy_task_lines, submitted_ids, task_sections


def return_files(cluster: dict, job_ids: set[int]) -> list[str]:
    """The return files of these jobs still in the shared jobs folder (sticky and world-writable, as /tmp)."""
    return [
        n
        for n in os.listdir(cluster["jobs_dir"])
        if n.endswith(".return") and int(n.split(".")[0][8:].split("_")[0]) in job_ids
    ]


def test_a_mapped_fan_out_of_functions_returns_their_values_downstream(airflow_env, cluster):
    """Deferred: the values are read on the worker that resumes the task, then deleted."""
    rc, out = dags_test(airflow_env, TEST_DAGS, "maxwell_python_fanout")
    assert rc == 0, out[-4000:]
    job_ids = set(submitted_ids(out))
    assert len(job_ids) == 3
    assert "checked 3 values from Maxwell" in out  # non-ASCII, nested, ~2 MB in and ~1 MB out, intact
    assert return_files(cluster, job_ids) == []  # read once, then gone


def test_a_function_that_raises_fails_its_task_with_the_remote_traceback(airflow_env):
    rc, out = dags_test(airflow_env, TEST_DAGS, "maxwell_python_raises")
    assert rc != 0
    assert "ended FAILED" in out and "exit code 1" in out, out[-4000:]
    assert "Traceback (most recent call last)" in out and "ValueError: kein Bild in Lauf 3" in out, out[-4000:]


def test_an_array_of_a_function_gives_one_value_per_task_in_index_order(airflow_env, cluster):
    """Waiting in the worker (not deferred): the same reading of sealed values, then deleted."""
    rc, out = dags_test(airflow_env, TEST_DAGS, "maxwell_python_array")
    assert rc == 0, out[-4000:]
    assert "array values [0, 1, 4]" in out
    assert return_files(cluster, set(submitted_ids(out))) == []


def test_the_python_example_dag_sums_each_runs_photons_on_maxwell(airflow_env):
    rc, out = dags_test(airflow_env, EXAMPLES, "beamtime_python", {"runs": [2, 5], "frames_per_run": 300})
    assert rc == 0, out[-4000:]
    jobs = submitted_ids(out)
    assert len(set(jobs)) == 2
    # Run N has N x 300 frames, frame k counted k photons: n frames hold n(n+1)/2, a mean of (n+1)/2.
    summary = task_sections(out)["summarize"]
    # A healthy run's tasks log nothing at warning level or above, deferred waits included.
    assert not noisy_task_lines(out), "\n".join(noisy_task_lines(out))
    for run, frames, photons, mean in ((2, 600, 180300, 300.5), (5, 1500, 1125750, 750.5)):
        assert frames * (frames + 1) // 2 == photons
        assert re.search(
            rf"run {run}: {frames} frames, {photons} photons, mean {mean} per frame \(Slurm job (\d+) on maxwn26\)",
            summary,
        ), summary[-3000:]
    reported = [int(j) for j in re.findall(r"photons, mean \S+ per frame \(Slurm job (\d+)", summary)]
    assert sorted(reported) == sorted(jobs)  # each run's value came from its own job
