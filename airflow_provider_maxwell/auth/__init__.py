"""Where a Slurm token comes from and when it must be renewed."""
