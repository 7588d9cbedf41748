"""The Slurm client under the hook, without Airflow.

Rooms, in the spirit of psycopg 3's generators/waiting split:

- `state.py`       what one process keeps per connection settings (token cache, version, release)
- `exchange.py`    one REST call as protocol steps: token, renewal on refusal, retries where safe
- `discovery.py`   which REST API version to speak, decided once per connection state
- `operations.py`  the Slurm operations (submit, read, list, cancel) as protocol steps
- `drivers.py`     the only network I/O: requests for workers, pooled httpx for the triggerer
"""
