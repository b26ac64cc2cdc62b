# Benchmarks (docs/performance.md). Included from the Makefile.
#
#   make bench            every scenario; about 1.5 minutes on 2 cores
#   make bench QUICK=1    the same scenarios with fewer iterations, under a minute
#
# Writes bench/results/latest.json, latest.md and the PNG plots. Everything
# is built in release mode in build-bench/: the C programs of bench/c/ with
# -O2 -DNDEBUG straight from src/*.c, and the Python package (meson-python,
# buildtype=release) into its own venv, build-bench/venv, where the benchmark
# also pip-installs the packages it compares against.

BENCH_BUILD := build-bench
BENCH_VENV := $(BENCH_BUILD)/venv
BENCH_PY := $(BENCH_VENV)/bin/python
BENCH_CORE := $(wildcard src/*.c)
BENCH_CFLAGS := -std=c11 -D_GNU_SOURCE -O2 -DNDEBUG -Wall -Wextra -Iinclude -Isrc
BENCH_PROGS := $(addprefix $(BENCH_BUILD)/c/,wake stream attach)
BENCH_ARGS := $(if $(QUICK),--quick,)

.PHONY: bench bench-build bench-smoke

# The comparison packages, one by one: one that fails to install is reported
# as skipped by the benchmark instead of stopping it.
bench_packages = for p in $$(grep -v '^\#' bench/requirements.txt); do \
	  $(1) -m pip install --quiet $$p || echo "bench: could not install $$p"; done

$(BENCH_BUILD)/c/%: bench/c/%.c bench/c/common.h $(BENCH_CORE) $(wildcard src/*.h) include/shmlane.h
	@command -v $(CC) >/dev/null || { apt-get update && apt-get install -y gcc libc6-dev; }
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) $(BENCH_CORE) $< -o $@ -lpthread

$(BENCH_VENV)/.stamp:
	@$(PYTHON) -m venv $(BENCH_VENV) 2>/dev/null || { apt-get update && apt-get install -y python3-venv && $(PYTHON) -m venv $(BENCH_VENV); }
	$(BENCH_PY) -m pip install --quiet --upgrade pip
	$(BENCH_PY) -m pip install --quiet meson meson-python ninja numpy pytest
	$(call bench_packages,$(BENCH_PY))
	touch $@

# The package, rebuilt when the C core or the package changes.
$(BENCH_VENV)/.shmlane-stamp: $(BENCH_VENV)/.stamp $(BENCH_CORE) $(wildcard src/*.h) include/shmlane.h \
    $(wildcard python/ext/* python/meson.build python/shmlane/*.py) meson.build pyproject.toml
	$(BENCH_PY) -m pip install --quiet --no-build-isolation --force-reinstall --no-deps \
	  --config-settings=setup-args=-Dbuildtype=release \
	  --config-settings=build-dir=$(BENCH_BUILD)/py .
	touch $@

bench-build: $(BENCH_PROGS) $(BENCH_VENV)/.shmlane-stamp

bench: bench-build
	$(BENCH_PY) bench/run.py $(BENCH_ARGS) --bin $(BENCH_BUILD)/c --out bench/results

# Seconds: every scenario with a handful of iterations; checks only that
# they run and write well-formed results (bench/test_bench_smoke.py). Part of
# `make test`: uses the test venv and the package installed there.
bench-smoke: install-python
	@$(call bench_packages,$(BIN)/python)
	$(BIN)/pytest -q bench/test_bench_smoke.py
