# The two commands of the README: `make run` and `make test`. Both set everything up.
# `make lint` checks style (ruff) and the layers of code (import-linter); CI runs it before the tests.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= conf/local.yaml
ARGS ?=
# Test processes (pytest-xdist), each with its own SparkSession; a test file stays in one process.
TEST_WORKERS ?= 2

.PHONY: run test lint setup clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev,airflow]"
	touch $(STAMP)

setup: $(STAMP)

# Only the demo config generates its raw data; any other config runs on the files it names.
GENERATE := $(if $(filter conf/local.yaml,$(CONFIG)),--generate,)

run: $(STAMP)
	$(BIN)/crm-spark pipeline --config $(CONFIG) $(GENERATE) $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports pyproject.toml

test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

clean:
	rm -rf $(VENV) lakehouse lakehouse-examples data spark-warehouse build dist *.egg-info crm_spark.zip
