"""Apache Airflow provider for DESY's Maxwell cluster (Slurm through slurmrestd).

Kept import-free on purpose: DAG files import this package on every parse.
"""

__version__ = "0.1.0"
