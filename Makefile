# The documented way in: `make help`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TOOLS  := .venv-tools
CHECKOV_VERSION := 3.3.30
TOOLS_STAMP := $(TOOLS)/.installed-$(CHECKOV_VERSION)
OPS_VENV := .venv-ops
OPS_STAMP := $(OPS_VENV)/.installed
STACK  ?= ecom-pipeline
# The state machine's job layout (make deploy): two-tasks, or one-task (jobs.run in one task; README).
JOB_LAYOUT ?= two-tasks
PARAMS ?=
OUT    ?= out
DEMO   := $(OUT)/demo
LAKE   := $(OUT)/lake
PYTEST_ARGS ?=
JARS   := .jars
JARS_STAMP := $(JARS)/.fetched
# The driver JVM's class-data-sharing archive, recorded from a small run (common/io/spark.py).
CLASS_ARCHIVE := $(JARS)/spark-classes.jsa
# MinIO for the S3 end-to-end tests, built from source (Go module proxy). MinIO tags releases
# outside semver, so the proxy knows this commit (2026-02-12) by its pseudo-version.
MINIO_VERSION := v0.0.0-20260212201848-7aac2a2c5b7c
MINIO_BIN := .tools/minio-$(MINIO_VERSION)/minio
# The container image: built offline from pinned wheels (.wheels/) and jars (.jars/).
IMAGE  ?= ecom-pipeline:local
WHEELS := .wheels
WHEELS_STAMP := $(WHEELS)/.fetched
# Wheels for the image's platform (Fargate's default is x86_64; manylinux2014_aarch64 for Graviton).
WHEEL_PLATFORM ?= manylinux2014_x86_64

.DEFAULT_GOAL := help
.PHONY: help prereqs system-deps unit docs install jars class-archive minio tools wheels image run demo-data validate transform test drills bench bench-quick lint typecheck check lock deploy ops report clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

prereqs: ## Check Python 3.11+ and Java 17+ (says how to install what is missing)
	@PYTHON=$(PYTHON) bash .ci/prereqs.sh

system-deps: ## The suite's system packages (podman, runc, debootstrap, chromium): apt-get installs them as root, else says how
	@bash .ci/system-deps.sh

$(STAMP): pyproject.toml constraints.txt
	@PYTHON=$(PYTHON) bash .ci/prereqs.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $@

install: $(STAMP) $(JARS_STAMP) $(CLASS_ARCHIVE) ## Create .venv and fetch the pinned jars (the only step that needs the network)

# The JVM side, pinned in jvm-deps.xml; fetched once, then every run is offline.
$(JARS_STAMP): jvm-deps.xml
	@command -v mvn >/dev/null || { echo "Maven (mvn) is needed once to fetch the jars: apt-get install maven"; exit 1; }
	rm -rf $(JARS)
	mvn -q -B -f jvm-deps.xml dependency:copy-dependencies
	@printf 'spark.jars %s\n' "$$(ls $(CURDIR)/$(JARS)/*.jar | paste -sd, -)" > $(JARS)/spark-defaults.conf
	@echo "spark.sql.extensions io.delta.sql.DeltaSparkSessionExtension" >> $(JARS)/spark-defaults.conf
	@echo "spark.sql.catalog.spark_catalog org.apache.spark.sql.delta.catalog.DeltaCatalog" >> $(JARS)/spark-defaults.conf
	@touch $@

jars: $(JARS_STAMP) ## Fetch the pinned JVM jars (jvm-deps.xml) into .jars/

# A small validate + transform run in one JVM that records the classes it loads at exit; recorded
# again when the jars or the way common/io/spark.py starts the JVM (its class path) change.
$(CLASS_ARCHIVE): $(JARS_STAMP) common/io/spark.py | $(STAMP)
	.ci/class-archive.sh $(PY) $@

class-archive: $(CLASS_ARCHIVE) ## Record the driver JVM's class archive (faster job start), part of make install

$(MINIO_BIN):
	@command -v go >/dev/null || { echo "Go is needed to build MinIO for the S3 tests"; exit 1; }
	GOBIN=$(CURDIR)/$(dir $(MINIO_BIN)) go install github.com/minio/minio@$(MINIO_VERSION)
	mkdir -p .tools/bin && ln -sfn ../minio-$(MINIO_VERSION)/minio .tools/bin/minio

minio: $(MINIO_BIN) ## Build MinIO from source into .tools/ (cached) for the S3 end-to-end tests

# The image's Python dependencies, pinned by constraints.txt: pyspark is published only as a source
# archive (pure Python), so it is built into a wheel once; every other wheel is the image platform's.
$(WHEELS_STAMP): pyproject.toml constraints.txt | $(STAMP)
	rm -rf $(WHEELS) && mkdir -p $(WHEELS)
	$(PY) -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
	  > $(WHEELS)/requirements.txt
	$(PY) -m pip wheel --quiet --no-deps --wheel-dir $(WHEELS) -c constraints.txt pyspark
	$(PY) -m pip download --quiet --only-binary=:all: --platform $(WHEEL_PLATFORM) --python-version 3.11 \
	  --implementation cp --dest $(WHEELS) --find-links $(WHEELS) -c constraints.txt -r $(WHEELS)/requirements.txt
	@touch $@

wheels: $(WHEELS_STAMP) ## Prepare the image's pinned Python wheels in .wheels/ (needs PyPI once)

image: $(WHEELS_STAMP) $(JARS_STAMP) ## Build the container image (docker, else podman) offline from .wheels/ and .jars/
	docker/base-image.sh
	docker/engine build --network host --tag $(IMAGE) .

# checkov lives in its own venv: its large dependency tree must not move the project's pins.
$(TOOLS_STAMP):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --upgrade pip
	$(TOOLS)/bin/pip install --quiet checkov==$(CHECKOV_VERSION)
	@touch $@

tools: $(TOOLS_STAMP) ## Install checkov (infrastructure scanner) into .venv-tools

# The operator CLI needs what the Lambdas need, boto3 alone: a small venv of its own (seconds to
# install, no Spark), pinned by the same constraints.txt.
$(OPS_STAMP): constraints.txt
	$(PYTHON) -m venv $(OPS_VENV)
	$(OPS_VENV)/bin/pip install --quiet -c constraints.txt boto3
	@touch $@

demo-data: $(STAMP) $(JARS_STAMP) $(CLASS_ARCHIVE) ## Generate the demo batch (20k order items, ~1% defects) under out/demo
	$(PY) -m jobs.generate --out $(DEMO) --items 20000 --parts 3 --batch-id demo-0001

validate: $(STAMP) $(JARS_STAMP) ## Validate the demo batch into out/lake
	ECOM_LOG_FORMAT=text $(PY) -m jobs.validate --manifest $(DEMO)/manifest.json --lake-root $(LAKE)

transform: $(STAMP) $(JARS_STAMP) ## Compute the demo batch's daily KPIs into out/lake/kpi (Delta only)
	ECOM_LOG_FORMAT=text $(PY) -m jobs.transform --batch-id demo-0001 --lake-root $(LAKE)

run: prereqs demo-data validate transform ## Generate a demo batch, validate it and compute KPIs, locally (no AWS, no Docker)

REPORT_PORT ?= 8000
report: ## Serve the local lake's reports on 127.0.0.1 (after make run): the index and each batch's page
	@test -f $(LAKE)/_reports/index.html || { echo "no reports yet under $(LAKE): run make run first"; exit 2; }
	@echo "index:  http://127.0.0.1:$(REPORT_PORT)/_reports/index.html"
	@for r in $(LAKE)/_results/*/report.html; do echo "report: http://127.0.0.1:$(REPORT_PORT)/$${r#$(LAKE)/}"; done
	$(PY) -m http.server $(REPORT_PORT) --bind 127.0.0.1 --directory $(LAKE)

TEST_DEPS := prereqs system-deps $(STAMP) $(JARS_STAMP) $(CLASS_ARCHIVE) $(MINIO_BIN) $(TOOLS_STAMP)

# Two runs side by side: the JVM-free tests, four at a time (most of their time is moto's state
# machine waiting), in the background, their output kept and printed after; the rest in one process
# around one SparkSession, which leaves the cores idle most of the time (user+sys CPU was 3.6 of its
# 10.3 minutes). It fails if either fails. PYTEST_ARGS: options for both runs (-x, --durations=20);
# to run one file, call .venv/bin/python -m pytest FILE.
test: $(TEST_DEPS) ## Run the test suite, all but the slow tests (fault drills, the batch through the image, benchmark smoke run)
	@log=$$(mktemp); $(UNIT_PYTEST) $(PYTEST_ARGS) >$$log 2>&1 & unit=$$!; \
	trap 'kill $$unit 2>/dev/null; rm -f $$log' EXIT; \
	echo "the JVM-free tests run in the background; their output follows the Spark tests'"; \
	$(PY) -m pytest -m "not slow" --ignore=tests/unit $(PYTEST_ARGS); spark=$$?; \
	wait $$unit; unit_rc=$$?; echo "--- the JVM-free tests (tests/unit), run beside the ones above:"; \
	cat $$log; test $$spark -eq 0 && test $$unit_rc -eq 0

# JAVA_HOME points nowhere: a test here that starts a JVM fails instead of quietly being slow.
UNIT_PYTEST = JAVA_HOME=/nonexistent/no-jvm-for-unit-tests $(PY) -m pytest tests/unit -m "not slow" -n 4
unit: $(STAMP) $(JARS_STAMP) $(TOOLS_STAMP) ## The tests that need no JVM (contracts, ODCS mapping, Lambdas, reports, settings, docs): under a minute
	$(UNIT_PYTEST) $(PYTEST_ARGS)

# Two test files at a time (each with its own MinIO and SparkSession): a job process keeps about one
# core busy, so one drill at a time leaves the other mostly idle. Files go out in collection order
# (tests/conftest.py puts the longest first), not xdist's default of most tests first.
drills: $(TEST_DEPS) ## The slow tests: fault drills (jobs killed mid-commit, S3/DynamoDB faults, hostile files) and the benchmark smoke run
	$(PY) -m pytest -m slow -n 2 --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

bench: prereqs $(STAMP) $(JARS_STAMP) $(CLASS_ARCHIVE) ## Benchmark at 27k (the real sample's size), 1M and 5M order items (2 runs each; report under bench-results/)
	$(PY) -m tests.bench $(BENCH_ARGS)

bench-quick: prereqs $(STAMP) $(JARS_STAMP) $(CLASS_ARCHIVE) ## A fast look: 27k and 1M, one run each
	$(PY) -m tests.bench --quick

# The ODCS JSON Schema of the pinned standard (the job checks contracts against the same file):
# stricter than datacontract's built-in one, which only warns about an unknown field.
ODCS_SCHEMA = $$($(PY) -c 'import importlib.resources as r; print(r.files("open_data_contract_standard") / "schema.json")')

lint: $(STAMP) ## ruff (lint + format check), the import layers (import-linter), the contracts (datacontract lint)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	@mkdir -p $(OUT); for contract in common/contracts/*.odcs.yaml; do \
	  echo "datacontract lint $$contract"; \
	  $(VENV)/bin/datacontract lint --json-schema "$(ODCS_SCHEMA)" "$$contract" > $(OUT)/.datacontract-lint.txt 2>&1 \
	    || { cat $(OUT)/.datacontract-lint.txt; exit 1; }; \
	done

docs: $(STAMP) ## Rewrite the generated parts of README.md and docs/ (settings, reason codes) from the code
	$(PY) -m tests.docgen

typecheck: $(STAMP) ## mypy over jobs/, common/ and the Lambdas
	$(VENV)/bin/mypy

check: lint typecheck test drills ## lint + typecheck + tests + drills (what CI runs)

lock: ## Re-pin constraints.txt from a fresh resolve of pyproject.toml
	rm -rf /tmp/ecom-lock && $(PYTHON) -m venv /tmp/ecom-lock
	/tmp/ecom-lock/bin/pip install --quiet -e '.[dev]'
	/tmp/ecom-lock/bin/pip freeze --exclude-editable | grep -v '^-e' > constraints.txt

deploy: ## Deploy to AWS: make deploy ARTIFACT_BUCKET=b IMAGE_URI=i SUBNETS=a,b SECURITY_GROUPS=sg ALERT_EMAIL=you@example.com|none [STACK=ecom-pipeline] [JOB_LAYOUT=one-task] [PARAMS="Name=value ..."]
	$(if $(ALERT_EMAIL),,$(error ALERT_EMAIL is needed: the address that gets the pipeline's alerts (ALERT_EMAIL=none to subscribe one to the alert topic later)))
	@test -n "$(ARTIFACT_BUCKET)" -a -n "$(IMAGE_URI)" -a -n "$(SUBNETS)" -a -n "$(SECURITY_GROUPS)" || \
	  { echo "usage: make deploy ARTIFACT_BUCKET=<bucket for packaged code> IMAGE_URI=<ecr image> SUBNETS=<id,id> SECURITY_GROUPS=<id> ALERT_EMAIL=<address>|none"; exit 2; }
	mkdir -p $(OUT)
	aws cloudformation package --template-file infra/template.yaml --s3-bucket $(ARTIFACT_BUCKET) \
	  --s3-prefix $(STACK) --output-template-file $(OUT)/packaged.yaml
	aws cloudformation deploy --template-file $(OUT)/packaged.yaml --stack-name $(STACK) \
	  --capabilities CAPABILITY_IAM --no-fail-on-empty-changeset --parameter-overrides \
	  ValidateImageUri=$(IMAGE_URI) TransformImageUri=$(IMAGE_URI) \
	  SubnetIds=$(SUBNETS) SecurityGroupIds=$(SECURITY_GROUPS) AlertEmail=$(filter-out none,$(ALERT_EMAIL)) \
	  JobLayout=$(JOB_LAYOUT) $(PARAMS)

ops: $(OPS_STAMP) ## Operate a deployed stack: make ops CMD="list|show B|rerun B|submit s3://...|drain-dlq --queue-url U" [STACK=...]
	@test -n "$(CMD)" || { echo 'usage: make ops CMD="list" (or "show <batch>", "rerun <batch>", "submit s3://<bucket>/raw/...", "drain-dlq --queue-url <url>") [STACK=$(STACK)]'; exit 2; }
	PYTHONPATH=infra/lambdas $(OPS_VENV)/bin/python -m orchestration.ops --stack $(STACK) $(CMD)

clean: ## Remove generated data and caches (keeps .venv, .jars and .tools)
	rm -rf $(OUT) .pytest_cache .mypy_cache .ruff_cache spark-warehouse
