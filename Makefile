# guardrails — the two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: setup demo test test-unit test-integration checkov bench fuzz clean

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements-dev.txt
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

demo: setup
	$(BIN)/python -m guardrails demo

test: setup checkov
	$(BIN)/python -m pytest

test-unit: setup
	$(BIN)/python -m pytest tests/unit

test-integration: setup
	$(BIN)/python -m pytest tests/integration

# static analysis of infra/ (Bicep) with Checkov in its own venv (pinned: infra/requirements-checkov.txt);
# zero failed checks and zero parsing errors, every suppression in the Bicep carries its reason
CHECKOV_VENV := .venv-checkov
$(CHECKOV_VENV)/.installed: infra/requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --disable-pip-version-check -q -r infra/requirements-checkov.txt
	@touch $@

checkov: $(CHECKOV_VENV)/.installed
	$(CHECKOV_VENV)/bin/checkov -d infra --framework bicep --skip-download --compact --quiet
	@$(CHECKOV_VENV)/bin/checkov -d infra --framework bicep --skip-download -o json --quiet \
	  | $(PYTHON) -c 'import json,sys; d=json.load(sys.stdin); d=d[0] if isinstance(d,list) else d; n=d["summary"]["parsing_errors"]; sys.exit(f"checkov: {n} Bicep file(s) not parsed" if n else 0)'

# nightly: 200,000 generated events (CI runs 20,000, derandomized, as part of `make test`),
# fresh random seeds; a failure is saved in .hypothesis/ and replayed first on the next run
fuzz: setup
	GUARDRAILS_FUZZ_EXAMPLES=200000 GUARDRAILS_FUZZ_RANDOM=1 $(BIN)/python -m pytest tests/fuzz -s

# benchmarks (bench/README.md): one table on stdout and in bench/results/latest.json; the first run
# builds bench/.c7n-venv (Cloud Custodian); BENCH_ARGS="--quick" for a short run
# the worker's thread pool as the app settings set it (local.settings.sample.json): one per core
PYTHON_THREADPOOL_THREAD_COUNT ?= 2
bench: setup
	PYTHON_THREADPOOL_THREAD_COUNT=$(PYTHON_THREADPOOL_THREAD_COUNT) $(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules out .pytest_cache
