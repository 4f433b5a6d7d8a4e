# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1

.PHONY: demo test test-fast bench lint clean install

install: $(STAMP)

# Reinstall only when the requirements or the project metadata change.
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/crossfuse demo

test: $(STAMP)
	$(BIN)/python -m pytest -x -q

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy src/crossfuse/__init__.py src/crossfuse/api.py src/crossfuse/data/schema.py src/crossfuse/data/table.py

clean:
	rm -rf $(VENV) demo_out .pytest_cache .ruff_cache .mypy_cache
