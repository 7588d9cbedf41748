#!/bin/bash
# One run of a beamtime, as a Slurm batch job. Airflow renders the params; RUN comes from the environment.
# The run's frames are simulated: run N has N x frames_per_run frames and frame k counted k photons, so the
# total is n(n+1)/2 for n frames (run 1 of 1000 frames: 500500), a sum anyone can check by hand.
set -euo pipefail
frames=$((RUN * {{ params.frames_per_run }}))
echo "beamtime {{ params.beamtime }}: processing run ${RUN} ($frames frames) on $(hostname) as $(whoami)"
photons=$(seq 1 "$frames" | awk '{ total += $1 } END { printf "%d", total }')
echo "run ${RUN}: ${frames} frames, ${photons} photons"
