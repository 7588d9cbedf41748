"""Airflow names that moved after 3.1, the oldest release this provider supports, in one place.

3.2 made `conf` and the task-ending exceptions part of the Task SDK (`airflow.sdk`); 3.1 has them
in Airflow core. Import them from here, never from either place directly.
"""

from __future__ import annotations

from typing import Any, Protocol

try:
    from airflow.sdk import conf
except ImportError:  # Airflow 3.1
    from airflow.configuration import conf  # type: ignore[assignment]

try:
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
except ImportError:  # Airflow 3.1
    from airflow.exceptions import AirflowFailException, AirflowSkipException  # type: ignore[no-redef]


class TaskLog(Protocol):
    """A task's logger (`self.log`) as code outside the operator writes to it: Airflow's own type lives
    in a private module of the Task SDK, and `logging.Logger` fits too."""

    def info(self, event: Any, *args: Any, **kw: Any) -> Any:
        """A line at INFO, %-formatted with `args`."""

    def warning(self, event: Any, *args: Any, **kw: Any) -> Any:
        """A line at WARNING, %-formatted with `args`."""


__all__ = ["AirflowFailException", "AirflowSkipException", "TaskLog", "conf"]
