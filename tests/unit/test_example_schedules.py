"""When the example DAGs run, as Airflow's scheduler plans it from their serialized form: what a user
who unpauses one gets, and which data a run by hand reduces."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from tests.unit.test_provider_metadata import run_in_fresh_airflow

PLAN_NIGHTLY_REDUCTION = """
import pendulum
try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # Airflow 3.1
    from airflow.models.dagbag import DagBag
try:
    from airflow.serialization.serialized_objects import DagSerialization as Serialization
except ImportError:  # before 3.3
    from airflow.serialization.serialized_objects import SerializedDAG as Serialization
from airflow.timetables.base import TimeRestriction

dag = DagBag(dag_folder="example_dags").dags["nightly_reduction"]
dag = Serialization.from_dict(Serialization.to_dict(dag))  # what the scheduler reads
# What the scheduler plans for a DAG just unpaused: no run of it yet (catchup, start_date and end_date apply).
restriction = TimeRestriction(earliest=dag.start_date, latest=dag.end_date, catchup=dag.catchup)
first = dag.timetable.next_dagrun_info(last_automated_data_interval=None, restriction=restriction)
now = pendulum.now("UTC")
by_hand = dag.timetable.infer_manual_data_interval(run_after=now)
for moment in (now, first.run_after, first.data_interval.start, first.data_interval.end, by_hand.start, by_hand.end):
    print("RESULT", moment.isoformat())
"""


def test_unpausing_the_nightly_reduction_starts_no_run_before_the_next_2am_and_every_run_reduces_a_day(tmp_path):
    out, _ = run_in_fresh_airflow(PLAN_NIGHTLY_REDUCTION, tmp_path)
    now, first_run, first_start, first_end, by_hand_start, by_hand_end = map(datetime.fromisoformat, out)
    # Unpausing (also "Unpause on trigger" in the trigger form) runs nothing now: the first run waits for 02:00.
    assert now < first_run <= now + timedelta(days=1)
    assert first_run.astimezone(ZoneInfo("Europe/Berlin")).time().isoformat() == "02:00:00"
    # A scheduled run reduces the 24 hours up to its 02:00; a run by hand the 24 hours up to its logical date.
    assert (first_start, first_end) == (first_run - timedelta(days=1), first_run)
    assert (by_hand_start, by_hand_end) == (now - timedelta(days=1), now)
