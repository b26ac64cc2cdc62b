# Benchmarks (docs/performance.md). Included from the Makefile.
#
#   make bench            every scenario, the GStreamer elements and the bridge
#                         included; about 15 minutes on 2 cores (the death
#                         step, 3 cases x 5 kills a cell, 2 of them)
#   make bench QUICK=1    the same scenarios with fewer iterations, about half
#   make bench-bridge     the bridge alone (part of bench)
#
# Writes bench/results/latest.json, latest.md and the PNG plots. Everything
# is built in release mode in build-bench/: the C programs of bench/c/ by
# meson (-O2 -DNDEBUG, linking the static core) in build-bench/c, and the
# Python package (meson-python, buildtype=release) into its own venv,
# build-bench/venv, where the benchmark also pip-installs the packages it
# compares against.

BENCH_BUILD := build-bench
BENCH_VENV := $(BENCH_BUILD)/venv
BENCH_PY := $(BENCH_VENV)/bin/python
BENCH_C := $(BENCH_BUILD)/c
BENCH_SETUP := -Dbuildtype=release -Doptimization=2 -Db_ndebug=true -Ddefault_library=static \
  -Dtests=false
BENCH_ARGS := $(if $(QUICK),--quick,)

.PHONY: bench bench-build bench-c bench-smoke bench-bridge bench-packages

# The comparison packages, all at once (one resolution), or else one by one:
# one that fails to install is reported as skipped by the benchmark instead
# of stopping it.
bench_packages = $(1) -m pip install --quiet --no-compile -r bench/requirements.txt 2>/dev/null || \
	for p in $$(grep -v '^\#' bench/requirements.txt); do \
	  $(1) -m pip install --quiet --no-compile $$p || echo "bench: could not install $$p"; done

$(BENCH_C)/build.ninja: | $(VENV)/.deps-stamp
	$(call meson_setup,$(BENCH_C),$(BENCH_SETUP))

bench-c: $(BENCH_C)/build.ninja
	$(BIN)/ninja -C $(BENCH_C)

$(BENCH_VENV)/.stamp:
	@$(PYTHON) -m venv $(BENCH_VENV) 2>/dev/null || { mk/apt-install.sh python3-venv && $(PYTHON) -m venv $(BENCH_VENV); }
	$(BENCH_PY) -m pip install --quiet --upgrade pip
	$(BENCH_PY) -m pip install --quiet meson meson-python ninja numpy pytest
	$(call bench_packages,$(BENCH_PY))
	touch $@

# The package, rebuilt when the C core or the package changes.
$(BENCH_VENV)/.shmlane-stamp: $(BENCH_VENV)/.stamp $(PACKAGE_SOURCES)
	$(BENCH_PY) -m pip install --quiet --no-build-isolation --force-reinstall --no-deps \
	  --config-settings=setup-args=-Dbuildtype=release \
	  --config-settings=build-dir=$(BENCH_BUILD)/py .
	touch $@

bench-build: bench-c $(BENCH_VENV)/.shmlane-stamp

bench: bench-build
	$(BENCH_PY) bench/run.py $(BENCH_ARGS) --bin $(BENCH_C)/bench --out bench/results
	$(MAKE) bench-bridge

# shmlane-bridge against raw ZeroMQ PUB/SUB, and its codecs over shaped links
# (docs/bridge.md): about 4 minutes, 2 with QUICK=1; over a veth pair
# between two network namespaces (loopback where `ip netns` is not permitted).
bench-bridge: bench-c
	@if [ -x $(BENCH_C)/bridge/shmlane-bridge ]; then \
	  $(PYTHON) bench/bridge.py $(BENCH_ARGS) --bin $(BENCH_C)/bridge --out bench/results; \
	else echo "bench: no shmlane-bridge (libzmq missing: make deps): bridge benchmark skipped"; fi

# Seconds: every scenario with a handful of iterations; checks only that
# they run and write well-formed results (bench/test_bench_smoke.py). Part of
# `make test`: uses the test venv, the package installed there and the C
# programs of the ordinary build. The comparison packages are installed
# there once (again when bench/requirements.txt changes), not at every run.
$(VENV)/.bench-stamp: bench/requirements.txt $(VENV)/.deps-stamp
	@$(call bench_packages,$(BIN)/python)
	touch $@

bench-packages: $(VENV)/.bench-stamp

bench-smoke: install-python build bench-packages
	SHMLANE_BUILD=$(BUILD) $(BIN)/pytest -q bench/test_bench_smoke.py
