# Developer commands. `make test` is the one CI runs (through .ci/run).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
REQUIREMENTS := tests/requirements.txt scripts/requirements.txt $(wildcard serving/requirements.txt webapp/requirements.txt reporting/requirements.txt monitoring/requirements.txt tracking/requirements.txt bench/requirements.txt)

.PHONY: venv test lint format lock clean config bench bench-ab bench-delivery e2e traffic-docs k8s-tools k8s-config k8s-secrets k8s-lock

venv: $(VENV)/.installed

# The virtual environment is rebuilt whenever a pin changes. pip first, at the lock's version:
# the one venv ships (23.2 with Python 3.11) takes twice as long to resolve the lock.
$(VENV)/.installed: $(REQUIREMENTS) constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile -r tests/requirements.txt -c constraints.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@# Bytecode on every core at once (pip compiles one file at a time: 30 s against 20 s here);
	@# like pip's, a file that does not compile (a package's Python 2 test data) is skipped.
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib >/dev/null || true
	touch $@

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy
	$(BIN)/hadolint serving/Dockerfile webapp/Dockerfile reporting/Dockerfile tracking/Dockerfile

test: lint
	$(BIN)/python -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

# The whole stack through Docker Compose (needs a Docker engine); prints start times and sizes.
# tests/k8s: each Kubernetes container started with Docker exactly as its manifest says.
e2e: venv
	$(BIN)/python -m pytest tests/e2e tests/k8s -m docker -s $(PYTEST_ARGS)

# Every setting is declared once (docs/configuration.md): this regenerates .env.example, the
# environment blocks of docker-compose.yml, docs/configuration.md's tables and k8s/base/generated/.
config: venv
	$(BIN)/python -m stackgen.generate
	$(BIN)/python -m k8s.generate

# Kubernetes (k8s/, docs/kubernetes.md). k8s-config regenerates k8s/base/generated/ from
# docker-compose.yml, .env.example and monitoring/; k8s-secrets writes an overlay's Secret files
# (OVERLAY=local or production); k8s-tools installs the manifest checkers that make test runs
# (kubernetes-validate, checkov; kubectl comes from your system) in their own environment.
k8s-config: venv
	$(BIN)/python -m k8s.generate

k8s-secrets: venv
	@test -n "$(OVERLAY)" || { echo "usage: make k8s-secrets OVERLAY=local|production"; exit 1; }
	$(BIN)/python -m k8s.secret_files $(OVERLAY)

k8s-tools: .venv-k8s/.installed

.venv-k8s/.installed: k8s/requirements.txt k8s/constraints.txt
	$(PYTHON) -m venv .venv-k8s
	.venv-k8s/bin/python -m pip install --quiet --disable-pip-version-check -r k8s/requirements.txt -c k8s/constraints.txt
	touch $@

k8s-lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --disable-pip-version-check -r k8s/requirements.txt
	( echo "# Transitive pins of k8s/requirements.txt (.venv-k8s); regenerate with 'make k8s-lock'."; \
	  .lock-venv/bin/python -m pip freeze ) > k8s/constraints.txt
	rm -rf .lock-venv

# Serving benchmark (see docs/benchmarks.md). Needs wrk (apt-get install wrk); BentoML, only for
# the comparison, lives in its own environment.
bench: venv .venv-bench/.installed
	@command -v wrk >/dev/null || { echo "bench needs wrk: apt-get install wrk"; exit 1; }
	$(BIN)/python bench/serving.py $(BENCH_ARGS)

# /predict of this checkout against another one (BASELINE=../other-checkout, with its own .venv),
# interleaved in one run: before/after figures for a change.
bench-ab: venv
	@command -v wrk >/dev/null || { echo "bench-ab needs wrk: apt-get install wrk"; exit 1; }
	@test -n "$(BASELINE)" || { echo "usage: make bench-ab BASELINE=../other-checkout"; exit 1; }
	$(BIN)/python bench/ab.py --baseline $(BASELINE) $(AB_ARGS)

# /predict with a shadow at 100 % against no stage, interleaved in one run (docs/benchmarks.md).
bench-delivery: venv
	@command -v wrk >/dev/null || { echo "bench-delivery needs wrk: apt-get install wrk"; exit 1; }
	$(BIN)/python -m bench.delivery $(DELIVERY_ARGS)

# docs/traffic.md: the drift scenario (python -m traffic) on fresh local stacks.
traffic-docs: venv
	$(BIN)/python bench/traffic_docs.py $(TRAFFIC_ARGS)

.venv-bench/.installed: bench/requirements.txt pyproject.toml
	$(PYTHON) -m venv .venv-bench
	.venv-bench/bin/python -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	.venv-bench/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The one lock: constraints.txt pins every package of every image (their requirements files name
# packages, never versions). This re-resolves it to the newest versions: review the diff, run the tests.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	.lock-venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	( echo "# The one lock: the version of every package of every image; regenerate with 'make lock'."; \
	  .lock-venv/bin/python -m pip freeze --all --exclude-editable | grep -v -E '^(setuptools|wheel)==' ) > constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .venv-bench .venv-k8s .pytest_cache .ruff_cache .mypy_cache
