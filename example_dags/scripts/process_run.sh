#!/bin/bash
# One run of a beamtime, as a Slurm batch job. Airflow renders the params; RUN comes from the environment.
set -euo pipefail
echo "beamtime {{ params.beamtime }}: processing run ${RUN} on $(hostname) as $(whoami)"
sleep {{ params.seconds_per_run }}
echo "run ${RUN}: $((RUN * 1000)) frames integrated"
