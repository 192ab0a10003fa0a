# Threadline developer commands. `make run` and `make test` are all a newcomer needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Secrets and per-machine settings live in an optional, git-ignored .env.
-include .env
export

VENV      := .venv
PY        := $(VENV)/bin/python
RASA      := $(VENV)/bin/rasa
STAMP     := $(VENV)/.installed-$(shell sha1sum requirements.lock | cut -c1-12)
MODEL     := models/threadline.tar.gz
TRAIN_SRC := config.yml domain.yml $(shell find data -name '*.yml' 2>/dev/null)
export PYTHONPATH := $(CURDIR)
# Keep TensorFlow quiet and deterministic across runs.
export TF_CPP_MIN_LOG_LEVEL := 2
export TF_DETERMINISTIC_OPS := 1
export PYTHONHASHSEED := 0
export SQLALCHEMY_SILENCE_UBER_WARNING := 1

.PHONY: help install run shell train test test-unit test-services validate test-core test-nlu bench lock clean tools db replay-failed readme cluster erase-customer export-customer

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): requirements.lock scripts/find_python.sh
	@PYBIN=$$(scripts/find_python.sh) || exit 1; \
	 if [ ! -x $(PY) ]; then echo "creating $(VENV) with $$PYBIN"; $$PYBIN -m venv $(VENV) || exit 1; fi
	$(PY) -m pip install --quiet "pip==24.0" "setuptools==70.3.0" "wheel==0.45.1"
	$(PY) -m pip install --quiet --no-deps -r requirements.lock
	$(PY) -m pip check
	rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP)  ## create .venv and install the exact locked versions

$(MODEL): $(STAMP) $(TRAIN_SRC)
	$(RASA) train --fixed-model-name threadline --out models
	@touch $@

train: $(MODEL)  ## train the model, only when config, domain or data changed

run: $(MODEL)  ## start the whole stack on embedded defaults (Ctrl-C stops it)
	$(PY) -m threadline.stack

shell: $(MODEL)  ## talk to the bot in the terminal (starts the action server too)
	$(PY) -m threadline.stack --shell

db: $(STAMP)  ## create the business database's schema, with the demo data
	$(PY) -m threadline.db init --demo

replay-failed: $(STAMP)  ## send undelivered messages again, once each
	$(PY) -m connectors.replay

cluster: $(MODEL)  ## N rasa and action servers behind HAProxy on this machine (REPLICAS=2)
	$(PY) -m threadline.cluster --replicas $(or $(REPLICAS),2)

readme: $(STAMP)  ## regenerate the README's settings and Redis key tables from their registries
	$(PY) scripts/readme_tables.py

erase-customer: $(STAMP)  ## erase one customer's data (CUSTOMER=c_... or PHONE=+1...), GDPR art. 17
	$(PY) -m threadline.erasure erase $(if $(PHONE),--phone "$(PHONE)",--customer "$(CUSTOMER)")

export-customer: $(STAMP)  ## print one customer's data as JSON (CUSTOMER=c_... or PHONE=+1...), GDPR art. 15/20
	@$(PY) -m threadline.erasure export $(if $(PHONE),--phone "$(PHONE)",--customer "$(CUSTOMER)")

validate: $(STAMP)  ## check domain, stories, rules and journeys for conflicts and errors
	$(PY) scripts/validate_data.py

test-unit: $(MODEL)  ## pytest: actions, data layer, redis, connectors, end-to-end
	$(PY) -m pytest

test-core: $(MODEL)  ## every test story must pass
	$(RASA) test core --model $(MODEL) --stories tests/test_stories.yml \
	  --fail-on-prediction-errors --out results/core

test-nlu: $(MODEL)  ## held-out NLU evaluation, fails below the macro F1 target
	$(RASA) test nlu --model $(MODEL) --nlu tests/nlu_test.yml --out results/nlu
	$(PY) scripts/check_nlu.py results/nlu/intent_report.json

tools:  ## Debian's chromium (browser tests) and haproxy (cluster tests), installed with apt-get when root
	@missing=""; [ -x /usr/bin/chromium ] || missing="chromium"; \
	 command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing="$$missing haproxy"; \
	 if [ -z "$$missing" ]; then :; \
	 elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	   echo "installing Debian's$$missing for the browser and cluster tests"; \
	   (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	     || echo "warning: could not install$$missing; those tests will be skipped"; \
	 else echo "note:$$missing missing (sudo apt-get install$$missing); those tests will be skipped"; fi

test: validate tools test-unit test-core test-nlu  ## install, validate, train if needed, run every test

test-services: $(MODEL)  ## the database and redis tests against REDIS_URL / DATABASE_URL
	$(PY) -m pytest -m "services or e2e"

bench: $(MODEL)  ## run the benchmarks under bench/ and print their figures
	@for b in bench/*.py; do case $$b in */stopping.py|*/stock.py|*/turn_profile.py) continue;; esac; \
	   echo "== $$b"; $(PY) $$b || exit 1; done

lock:  ## re-resolve requirements.in into requirements.lock (needs the network)
	@PYBIN=$$(scripts/find_python.sh) || exit 1; rm -rf /tmp/threadline-lock; \
	 $$PYBIN -m venv /tmp/threadline-lock && /tmp/threadline-lock/bin/pip install -q "pip==24.0" "setuptools==70.3.0" "wheel==0.45.1" && \
	 /tmp/threadline-lock/bin/pip install -q -r requirements.in && \
	 /tmp/threadline-lock/bin/pip freeze --exclude-editable > requirements.lock

clean:  ## remove the venv, models and local state
	rm -rf $(VENV) models results var
