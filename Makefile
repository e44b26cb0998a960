# The documented way in: `make help`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TOOLS  := .venv-tools
CHECKOV_VERSION := 3.3.30
TOOLS_STAMP := $(TOOLS)/.installed-$(CHECKOV_VERSION)
STACK  ?= ecom-pipeline
OUT    ?= out
DEMO   := $(OUT)/demo
LAKE   := $(OUT)/lake
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help prereqs install tools run demo-data validate transform test bench bench-quick lint typecheck check lock deploy clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

prereqs: ## Check Python 3.11+ and Java 17+ (says how to install what is missing)
	@PYTHON=$(PYTHON) bash .ci/prereqs.sh

$(STAMP): pyproject.toml constraints.txt
	@PYTHON=$(PYTHON) bash .ci/prereqs.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $@

install: $(STAMP) ## Create .venv with pinned dependencies

# checkov lives in its own venv: its large dependency tree must not move the project's pins.
$(TOOLS_STAMP):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --upgrade pip
	$(TOOLS)/bin/pip install --quiet checkov==$(CHECKOV_VERSION)
	@touch $@

tools: $(TOOLS_STAMP) ## Install checkov (infrastructure scanner) into .venv-tools

demo-data: $(STAMP) ## Generate the demo batch (20k order items, ~1% defects) under out/demo
	$(PY) -m jobs.generate --out $(DEMO) --items 20000 --parts 3 --batch-id demo-0001

validate: $(STAMP) ## Validate the demo batch into out/lake
	ECOM_LOG_FORMAT=text $(PY) -m jobs.validate --manifest $(DEMO)/manifest.json --lake-root $(LAKE)

transform: $(STAMP) ## Compute the demo batch's daily KPIs into out/lake/kpi (Delta only)
	ECOM_LOG_FORMAT=text $(PY) -m jobs.transform --batch-id demo-0001 --lake-root $(LAKE)

run: prereqs demo-data validate transform ## Generate a demo batch, validate it and compute KPIs, locally (no AWS, no Docker)

test: prereqs $(STAMP) $(TOOLS_STAMP) ## Run the whole test suite (what CI runs)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: prereqs $(STAMP) ## Benchmark at 100k, 1M and 5M order items (2 runs each; report under bench-results/)
	$(PY) -m jobs.bench $(BENCH_ARGS)

bench-quick: prereqs $(STAMP) ## A fast look: 100k and 1M, one run each
	$(PY) -m jobs.bench --quick

lint: $(STAMP) ## ruff (lint + format check)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP) ## mypy over jobs/ and common/
	$(VENV)/bin/mypy

check: lint typecheck test ## lint + typecheck + tests

lock: ## Re-pin constraints.txt from a fresh resolve of pyproject.toml
	rm -rf /tmp/ecom-lock && $(PYTHON) -m venv /tmp/ecom-lock
	/tmp/ecom-lock/bin/pip install --quiet -e '.[dev]'
	/tmp/ecom-lock/bin/pip freeze --exclude-editable | grep -v '^-e' > constraints.txt

deploy: ## Deploy to AWS: make deploy ARTIFACT_BUCKET=b IMAGE_URI=i SUBNETS=a,b SECURITY_GROUPS=sg [STACK=ecom-pipeline]
	@test -n "$(ARTIFACT_BUCKET)" -a -n "$(IMAGE_URI)" -a -n "$(SUBNETS)" -a -n "$(SECURITY_GROUPS)" || \
	  { echo "usage: make deploy ARTIFACT_BUCKET=<bucket for packaged code> IMAGE_URI=<ecr image> SUBNETS=<id,id> SECURITY_GROUPS=<id>"; exit 2; }
	mkdir -p $(OUT)
	aws cloudformation package --template-file infra/template.yaml --s3-bucket $(ARTIFACT_BUCKET) \
	  --s3-prefix $(STACK) --output-template-file $(OUT)/packaged.yaml
	aws cloudformation deploy --template-file $(OUT)/packaged.yaml --stack-name $(STACK) \
	  --capabilities CAPABILITY_IAM --no-fail-on-empty-changeset --parameter-overrides \
	  ValidateImageUri=$(IMAGE_URI) TransformImageUri=$(IMAGE_URI) \
	  SubnetIds=$(SUBNETS) SecurityGroupIds=$(SECURITY_GROUPS) AlertEmail=$(ALERT_EMAIL)

clean: ## Remove generated data and caches (keeps .venv)
	rm -rf $(OUT) .pytest_cache .mypy_cache .ruff_cache spark-warehouse
