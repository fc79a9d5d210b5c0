# Two entry points for a fresh clone: `make run` and `make test`.
# Everything else is what they are built from.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck check bench clean bytecode native

# What the console and engine need: no torch, which only the GPU box and the tests use (from
# PyPI it is a multi-GB CUDA build a trading box has no use for).
$(RUN_STAMP): pyproject.toml requirements.lock
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e .
	touch $(RUN_STAMP)

# Everything: the test tools and torch (CPU-sized tests of the GPU jobs).
$(STAMP): $(RUN_STAMP)
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev,gpu]'
	touch $(STAMP)

## Bytecode for the project's own modules, refreshed on every run and test (a no-op taking a
## fraction of a second when it is up to date). Where PYTHONDONTWRITEBYTECODE is set, as on the
## CI image, Python never caches it itself, so every `hotcoin` process compiled ~120 modules
## from source on start: ~0.35 s of CPU each time (bench/RESULTS.md, fixed cost).
bytecode: $(RUN_STAMP)
	$(BIN)/python -m compileall -q engine hotcoin_tui ml gpu_jobs

## The compiled rolling baselines (engine/discovery/rolling_robust.py), built with the machine's
## C compiler where it has one; without one the numpy path runs instead (same figures, slower),
## so a missing compiler warns and fails nothing. -ffp-contract=off: its arithmetic must be
## numpy's, operation for operation.
NATIVE := engine/discovery/librolling_robust.so.1
native: $(NATIVE)
$(NATIVE): engine/discovery/rolling_robust.c
	@if command -v $(CC) >/dev/null 2>&1; then \
		$(CC) -O2 -ftree-vectorize -fPIC -shared -ffp-contract=off -o $@ $< || { rm -f $@; echo "warning: $(CC) could not build $@; the baselines, rank counts and volume folds run on numpy"; }; \
	else echo "warning: no C compiler ($(CC)): the baselines, rank counts and volume folds run on numpy (same figures, slower)"; fi

## Start the main job: the console over the engine on the built-in simulated market, paper trading.
run: $(RUN_STAMP) bytecode native
	$(BIN)/hotcoin $(or $(ARGS),tui)

## The whole test suite, on two worker processes (the CI box has two cores: 12 min instead
## of 15). `$(BIN)/pytest tests/...` alone runs in one process, as addopts has no -n.
test: $(STAMP) bytecode native
	$(BIN)/pytest -n 2

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

## What CI runs.
check: test lint typecheck

bench: $(STAMP) bytecode native
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(NATIVE)
