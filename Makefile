# Set-up and day-to-day commands. `make run` and `make test` work on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# remade when the Makefile (its package list) changes
APT_STAMP := /var/tmp/.pyheadscale-apt-installed
APT_PACKAGES := iproute2 sqlite3 curl postgresql postgresql-client chromium libnss3-tools pebble nginx-light podman buildah runc uidmap fuse-overlayfs slirp4netns containernetworking-plugins debootstrap

.PHONY: venv lock run test test-fast fuzz bench soak soak-load soak-model lint apt npm clean

venv: $(STAMP)

PIP_VERSION := 26.0.1
LOCKS := entrypoint/requirements.lock tests/requirements.lock

# The venv holds exactly the locked versions: nothing is resolved against the registry here, so
# `make test` behaves the same on any later day. `make lock` re-resolves on purpose.
$(STAMP): pyproject.toml $(LOCKS)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check pip==$(PIP_VERSION)
	$(BIN)/pip install -q --no-deps $(foreach l,$(LOCKS),-r $(l))
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	touch $(STAMP)

lock:
	$(PY) tools/lock.py

# System packages the tests need (network namespaces, PostgreSQL for back-to-sqlite).
apt: $(APT_STAMP)

$(APT_STAMP): Makefile
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; fi; \
	fi
	touch $(APT_STAMP)

# Node tools for the tests (a real OpenID provider on Node 22), exactly as package-lock.json pins them.
NPM_DIR := tests/npm
NPM_STAMP := $(NPM_DIR)/node_modules/.installed

npm: $(NPM_STAMP)

$(NPM_STAMP): $(NPM_DIR)/package.json $(NPM_DIR)/package-lock.json | $(APT_STAMP)
	cd $(NPM_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $(NPM_STAMP)

run: venv
	$(BIN)/headscale serve --dev

test: venv apt npm
	$(BIN)/pytest -q -p no:cacheprovider

test-fast: venv
	$(BIN)/pytest -q -p no:cacheprovider -m "not realclient and not slow"

# Coverage-guided fuzzing of every untrusted-input parser (fuzz/): FUZZ_SECONDS per target
# (default 600), FUZZ_TARGETS=a,b to pick; the corpus grows in FUZZ_WORKDIR across runs.
FUZZ_SECONDS ?= 600
fuzz: venv
	$(BIN)/python -m fuzz --seconds $(FUZZ_SECONDS) --json fuzz-report.json

bench: venv
	$(BIN)/python -m bench

# Long fault campaigns. Crash campaign (tests/crash_campaign.py): kill -9 at random moments
# during CRASH_MUTATIONS writes (CLI, API, registrations, map updates, policy sets) with
# CRASH_KILLS kills; CRASH_SEED=n repeats a run. A short run is part of `make test`.
CRASH_MUTATIONS ?= 1000
CRASH_KILLS ?= 100
CRASH_SEED ?= 0
# Then the load soak (bench/soak.py): SOAK_NODES simulated nodes, SOAK_RATE endpoint changes per
# second for SOAK_MINUTES; no lost deltas, server RSS growth after warm-up under SOAK_RSS_TOLERANCE
# percent, no leaked sessions, tasks or descriptors (figures in soak-report.json).
SOAK_NODES ?= 1000
SOAK_RATE ?= 100
SOAK_MINUTES ?= 10
SOAK_RSS_TOLERANCE ?= 5
soak: venv
	CRASH_MUTATIONS=$(CRASH_MUTATIONS) CRASH_KILLS=$(CRASH_KILLS) CRASH_SEED=$(CRASH_SEED) \
	  $(BIN)/python -m tests.crash_campaign
	$(MAKE) soak-load
	$(MAKE) soak-model

# Map sessions against a model at MODEL_NODES in-process nodes (tests/service/test_map_model.py;
# make test runs it at 2,000): every session's accumulated map equals one built from scratch.
MODEL_NODES ?= 5000
soak-model: venv
	MAP_MODEL_NODES=$(MODEL_NODES) MAP_MODEL_SESSIONS=400 MAP_MODEL_TICKS=80 \
	  $(BIN)/pytest -q -p no:cacheprovider --timeout 3600 tests/service/test_map_model.py

soak-load: venv
	$(BIN)/python -m bench.soak --nodes $(SOAK_NODES) --rate $(SOAK_RATE) --minutes $(SOAK_MINUTES) \
	  --rss-tolerance $(SOAK_RSS_TOLERANCE) --json soak-report.json

lint: venv
	$(BIN)/ruff check app entrypoint tests bench fuzz tools
	$(BIN)/hadolint Dockerfile

clean:
	rm -rf $(VENV) data .pytest_cache
