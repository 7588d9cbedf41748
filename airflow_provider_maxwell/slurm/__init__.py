"""The Slurm REST API without I/O: versions, request bodies, answers parsed into one job model.

Knows no HTTP library and no Airflow: every version difference lives here, nowhere else.
"""
