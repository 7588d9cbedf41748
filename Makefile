# Two commands do all set-up on a fresh Debian 12 machine (as root): `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
AIRFLOW_VERSION ?= 3.3.2
BIN := $(VENV)/bin
# The lowest Airflow pyproject.toml declares: the unit tests run on it too, in a second venv.
LOWEST_AIRFLOW ?= 3.1.0
LOWEST := .venv-lowest

.PHONY: venv docs site-venv site site-down site-test browser cluster-up cluster-down cluster-status demo test lint unit unit-lowest unit-pythons bench bench-tasks test-rate-limit mutation record soak test-events

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev,docs]" "apache-airflow==$(AIRFLOW_VERSION)"
	touch $@

# The local site's parts (devcluster/site.py) in the same venv: the Celery executor, and the drivers of
# its broker (Redis) and metadata database (PostgreSQL, sync and async). Celery stays below 5.7, which
# dropped a name this Celery provider imports. The lowest-Airflow venv runs no site and gets none of it.
SITE_PACKAGES := apache-airflow-providers-celery==3.26.0 "celery[redis]==5.6.3" psycopg2-binary==2.9.13 asyncpg==0.32.0

site-venv: $(VENV)/.site-installed

$(VENV)/.site-installed: $(VENV)/.installed
	$(BIN)/pip install -q $(SITE_PACKAGES) "apache-airflow==$(AIRFLOW_VERSION)"
	touch $@

$(LOWEST)/.installed: pyproject.toml .ci/lowest-airflow-constraints.txt
	$(PYTHON) -m venv $(LOWEST)
	$(LOWEST)/bin/pip install -q --upgrade pip
	$(LOWEST)/bin/pip install -q -e ".[dev]" "apache-airflow==$(LOWEST_AIRFLOW)" -c .ci/lowest-airflow-constraints.txt
	touch $@

# Debian's chromium for the browser tests (tests/cluster/test_ui_browser.py, Playwright drives it): CI
# machines start without it. Playwright's own browser download (`playwright install`) is never used.
browser:
	@test -x /usr/bin/chromium || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

cluster-up:
	$(PYTHON) devcluster/cluster.py up

cluster-down:
	$(PYTHON) devcluster/cluster.py down

cluster-status:
	$(PYTHON) devcluster/cluster.py status

# Airflow as a site runs it, beside the local Maxwell (`make cluster-up` first): PostgreSQL, Redis, the API
# server, scheduler, DAG processor, two Celery workers and two triggerers, each worker and triggerer a host
# of its own (devcluster/site.py). UI and login: .devcluster/site.env. SITE_DAGS picks the DAG folder.
SITE_DAGS ?= example_dags
site: site-venv
	$(PYTHON) devcluster/site.py up --dags $(SITE_DAGS) --venv $(VENV)

site-down:
	$(PYTHON) devcluster/site.py down

# The tests against the site that take minutes (about 11 for test_site_full.py, 2 for the smoke `make test` runs;
# each module brings its own site up and down).
site-test: site-venv
	MAXWELL_SITE_FULL=1 devcluster/with-cluster.sh $(BIN)/python -m pytest -s -p no:cacheprovider tests/cluster/test_site_full.py tests/cluster/test_site.py $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python tools/check_structure.py

# Everything: lint, the documentation site, unit tests on the lowest Airflow, then the whole suite on
# the newest against the local Maxwell (brought up and down if needed), packaging included.
test: lint docs unit-lowest browser site-venv
	devcluster/with-cluster.sh $(BIN)/python -m pytest $(PYTEST_ARGS)

# The documentation site (mkdocs.yml: docs/ and the package's docstrings) into site/, any warning an
# error (a broken link, a missing page, a docstring mkdocstrings cannot read). A few seconds. Not
# --quiet: it hides the warnings from the count that --strict fails on.
docs: venv
	$(BIN)/mkdocs build --strict

# Only the tests that need no cluster.
unit: venv
	$(BIN)/python -m pytest -m "not cluster and not package" $(PYTEST_ARGS)

unit-lowest: $(LOWEST)/.installed
	$(LOWEST)/bin/python -m pytest -m "not cluster and not package" -p no:cacheprovider $(PYTEST_ARGS)

# The unit tests on every CPython Debian's archives offer besides the host's 3.11 (trixie's 3.13, sid's
# 3.14), each in a Debian root and venv built once under .cache/python-roots/ (tools/unit_pythons.py).
# Needs no cluster and never touches its roots: it can run beside the cluster tests. UNIT_PYTHONS_ARGS
# for more, e.g. "--suites trixie" or "-- -x". Cold about 5 min (roots 25 s and venvs 30 s each, then
# the tests), warm about 3 min (the two test runs, ~90 s each, on 2 cores).
unit-pythons:
	AIRFLOW_VERSION=$(AIRFLOW_VERSION) $(PYTHON) tools/unit_pythons.py $(UNIT_PYTHONS_ARGS)

# The example DAGs end to end against the local Maxwell.
demo: venv
	devcluster/with-cluster.sh $(BIN)/python devcluster/demo.py

# Figures, not a test: N = 10, 100, 1000 jobs waited on in one event loop, shared poller vs per-job
# polling (about 15 minutes), and the import cost DAG files pay. BENCH_ARGS="--sizes 10,100" for less.
# N = 10,000: BENCH_ARGS="--sizes 10000 --modes shared --end cancel" (~3 minutes); every run leaves its
# jobs' records in the stack's accounting (a day of 60,000 made the cluster tests that list the user's day
# time out): `devcluster/cluster.py unload s26` deletes them.
bench: venv
	devcluster/with-cluster.sh $(BIN)/python benchmarks/waiting_at_scale.py $(BENCH_ARGS)

# Figures: what one task process costs (requests, bytes, token mints), 50 fresh processes on 26.05 with
# portal auth, shared_cache on and off (about 3 minutes). BENCH_TASKS_ARGS="-n 20 --at-once 5" for less.
bench-tasks: venv
	devcluster/with-cluster.sh $(BIN)/python benchmarks/task_processes.py $(BENCH_TASKS_ARGS)

# The large exactly-once run: 200 concurrent submits (8 processes x 25 threads) while slurmctld
# rate-limits, on 24.11 and 26.05 (each turned on for its test and off afterwards; a few minutes).
# `make test` runs the small one (60 submits on 26.05).
test-rate-limit: venv
	RATE_LIMIT_BURST_PROCESSES=8 RATE_LIMIT_BURST_THREADS=25 RATE_LIMIT_STACKS=s24,s26 \
	  devcluster/with-cluster.sh $(BIN)/python -m pytest -s tests/cluster/test_exactly_one_job.py $(PYTEST_ARGS)

# Re-record the unit tests' data (tests/data: each release's OpenAPI document and job answers) from
# the running local Maxwell (`make cluster-up` first; never started or stopped here), about 2 minutes.
# See docs/test-data.md.
record: venv
	$(BIN)/python devcluster/record.py $(RECORD_ARGS)

# Mutation testing (docs/mutation-testing.md): mutmut ([tool.mutmut] in pyproject.toml) mutates the
# logic modules in a snapshot under .mutation/, runs each mutant against the unit tests that call
# its function, then prints the score and every mutant no test killed (file:line, original -> mutated).
# About 3 hours on 2 cores (estimated), so not part of `make test`. MUTANTS='airflow_provider_maxwell.watch.*'
# (names or globs, as the report prints them) for a part; MUTATION_ARGS=--keep resumes the last run.
mutation: venv
	$(BIN)/pip install -q "$$(grep -o 'mutmut==[0-9.]*' pyproject.toml)"
	nice -n 10 $(BIN)/python tools/mutation.py $(MUTATION_ARGS) $(MUTANTS)

# Under faults, at length (issue 15): ~200 deferred waits through the real scheduler and triggerer while
# slurmctld, slurmrestd, slurmdbd and the triggerer are stopped and brought back at random (about 15
# minutes). `make test` runs a 6-job smoke of it. SOAK_JOBS, SOAK_RESTARTS, SOAK_SEED to vary it.
SOAK_JOBS ?= 200
SOAK_RESTARTS ?= 12
soak: venv
	MAXWELL_SOAK_JOBS=$(SOAK_JOBS) MAXWELL_SOAK_RESTARTS=$(SOAK_RESTARTS) $(if $(SOAK_SEED),MAXWELL_SOAK_SEED=$(SOAK_SEED)) \
		devcluster/with-cluster.sh $(BIN)/python -m pytest tests/cluster/test_soak.py -s -p no:cacheprovider

# DAGs that start when a job ends, through the real scheduler and triggerer, with Airflow stopped and
# started again while jobs end (the watcher carries on from the asset's stored cursor; about 2.5 minutes).
# `make test` runs it without the restart.
test-events: venv
	MAXWELL_EVENTS_RESTART=1 devcluster/with-cluster.sh $(BIN)/python -m pytest -s -p no:cacheprovider \
		tests/cluster/test_job_events_triggerer.py tests/cluster/test_job_events.py $(PYTEST_ARGS)
