# The two commands of the README: `make train` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install train test test-fast lint zoo-table timm-suite clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch and torchvision first, pinned, so that nothing else pulls another build.
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)
	$(BIN)/python train.py $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q --durations=30 tests

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q -m "not slow" tests

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

zoo-table: $(STAMP)
	$(BIN)/python -m zoo.table

# timm's own tests/test_models.py on the zoo's models matching MODELS (fetched once from PyPI)
timm-suite: $(STAMP)
	@test -n "$(MODELS)" || { echo "set MODELS, e.g. make timm-suite MODELS='hornet_*'"; exit 2; }
	$(BIN)/python tools/timm_suite.py '$(MODELS)'

clean:
	rm -rf $(VENV) outputs logs
