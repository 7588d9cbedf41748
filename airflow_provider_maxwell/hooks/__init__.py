"""Hooks: MaxwellHook, Airflow's face of the Slurm client (client/), which does the network I/O."""
