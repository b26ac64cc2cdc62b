# The two commands a newcomer needs: `make test` and `make demo`.
# Everything else they need is installed here: a venv with the build tools,
# and the C compiler from Debian if it is missing.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
BUILD := build
ASAN_BUILD := build-asan
MESON := $(BIN)/meson
export UBSAN_OPTIONS := halt_on_error=1:print_stacktrace=1
export ASAN_OPTIONS := detect_leaks=1:abort_on_error=0

.PHONY: all deps bridge-deps build test test-c test-asan asan-build test-bridge-long install-python test-python \
  test-pythons test-pythons-quick pythons-prepare test-python-asan python-asan-build \
  demo demo-window demo-c clean distclean

all: build

deps: $(VENV)/.deps-stamp bridge-deps

# libzmq (and libzstd, libjpeg-turbo) for shmlane-bridge, from Debian, like
# the compiler; without them everything else builds and the bridge is left
# out (or has no --zstd, no --jpeg).
bridge-deps:
	@pkg-config --exists libzmq libzstd libjpeg 2>/dev/null || \
	  mk/apt-install.sh pkg-config libzmq3-dev libzstd-dev libjpeg62-turbo-dev || \
	  echo "deps: no libzmq: shmlane-bridge will not be built"

# The venv's own pip, unless older than PIP: --config-settings given twice
# (test-python-asan) needs pip 23.1. Tools and packages are not byte-compiled
# at install (seconds of CPU per venv): Python compiles what it imports.
PIP := pip>=23.1

$(VENV)/.deps-stamp: requirements-dev.txt requirements-opencv.txt
	@command -v cc >/dev/null || mk/apt-install.sh gcc libc6-dev
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { mk/apt-install.sh python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install --quiet "$(PIP)"
	$(BIN)/pip install --quiet --no-compile -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-compile -r requirements-opencv.txt || echo "deps: no OpenCV: tests/python/test_video.py skips its service tests"
	touch $@

# A build directory is set up once: ninja reruns meson by itself when a
# meson.build changes. (One whose setup failed half-way is set up afresh.)
meson_setup = $(MESON) setup $(if $(wildcard $(1)/meson-private),--wipe) $(1) --werror $(2)
# No benchmark programs: no test runs them (bench-smoke uses $(BUILD)'s).
ASAN_SETUP := -Db_sanitize=address,undefined -Db_lundef=false -Ddefault_library=static -Dbench=false

$(BUILD)/build.ninja: | $(VENV)/.deps-stamp
	$(call meson_setup,$(BUILD))

$(ASAN_BUILD)/build.ninja: | $(VENV)/.deps-stamp
	$(call meson_setup,$(ASAN_BUILD),$(ASAN_SETUP))

build: $(BUILD)/build.ninja
	$(BIN)/ninja -C $(BUILD)

# Four at a time on any machine: the two halves of the bridge's run (half a
# minute each) mostly wait, and would hold both slots of a 2-core machine.
test-c: build
	$(MESON) test -C $(BUILD) --print-errorlogs --num-processes 4

# The bridge's long check, not in `make test`: healthy receivers keep 95% of
# the frames beside a stopped one and one that comes and goes, over ipc and
# across two network namespaces (about 25 s).
test-bridge-long: build
	$(PYTHON) tests/bridge/test_bridge.py $(BUILD)/bridge/shmlane-bridge $(BUILD)/bridge/bridge_peer --long

asan-build: $(ASAN_BUILD)/build.ninja
	$(BIN)/ninja -C $(ASAN_BUILD)

test-asan: asan-build
	$(MESON) test -C $(ASAN_BUILD) --print-errorlogs

# What the Python package is built from (the wheel builds tools/ too): a
# package is rebuilt when one of these changes, not at every target that
# needs it (each pip install compiles it afresh).
PACKAGE_SOURCES := $(shell find src include python tools -type f ! -path '*/__pycache__/*') \
  meson.build meson.options pyproject.toml

# The Python package, built and installed the way users get it (pip, meson-python).
install-python: deps $(VENV)/.shmlane-stamp

$(VENV)/.shmlane-stamp: $(VENV)/.deps-stamp $(PACKAGE_SOURCES)
	$(BIN)/pip install --quiet --no-build-isolation --config-settings=setup-args=-Dwerror=true .
	touch $@

# C peers of the Python tests link the core of $(BUILD) (SHMLANE_BUILD).
test-python: install-python build
	SHMLANE_BUILD=$(BUILD) $(BIN)/pytest -q tests/python

# The Python tests on every CPython 3.9-3.13 found (pyenv or PATH) and on
# NumPy 1.26 as well as 2.x, each in a venv of its own (tests/pythons.py).
test-pythons: build
	$(PYTHON) tests/pythons.py --build $(BUILD)

# What `make test` runs: the quick subset on the oldest and the newest CPython
# and on NumPy 1.26 (test-python has run everything on this one, with NumPy
# 2.x); `make test-pythons` runs every version found, in full. Their venvs
# and the package in each are prepared (pythons-prepare) apart from the run,
# and again only when the package's sources change.
PYTHONS_QUICK := --quick --skip 3.10 3.11 3.12 --jobs 2

build-pythons/.quick-stamp: $(PACKAGE_SOURCES) tests/pythons.py
	$(PYTHON) tests/pythons.py $(PYTHONS_QUICK) --prepare
	touch $@

pythons-prepare: build-pythons/.quick-stamp

test-pythons-quick: build pythons-prepare
	$(PYTHON) tests/pythons.py --build $(BUILD) $(PYTHONS_QUICK) --installed

# The Python tests once more against an extension built with ASan+UBSan,
# installed into a directory of its own that goes first on PYTHONPATH: the
# test venv's interpreter, pytest and NumPy serve (no second venv to set up),
# and the check before the run makes sure the ASan build is the one imported.
# Python itself is not instrumented: the runtime is preloaded,
# Python's allocator is bypassed so ASan sees objects, and leaks (the
# interpreter's own, at exit) are not reported. The tests that mostly drive
# other programs (the README's, the docs' and the examples' programs, the
# camera service) are left to test-python: they add time, not coverage of
# the extension.
ASAN_SKIP := --ignore=tests/python/test_readme.py --ignore=tests/python/test_docs.py \
  --ignore=tests/python/test_examples.py \
  --ignore=tests/python/test_video.py --ignore=tests/python/test_bridge.py \
  --ignore=tests/python/test_stream_follow.py --ignore=tests/python/test_stream_processes.py \
  --ignore=tests/python/test_containers.py --ignore=tests/python/test_config.py
PYASAN := build-pyasan
python-asan-build: $(PYASAN)/.stamp

$(PYASAN)/.stamp: $(VENV)/.deps-stamp $(PACKAGE_SOURCES)
	$(BIN)/pip install --quiet --no-build-isolation --no-deps --upgrade --target $(PYASAN)/site \
	  --config-settings=setup-args=-Db_sanitize=address,undefined \
	  --config-settings=setup-args=-Db_lundef=false --config-settings=build-dir=$(PYASAN)/build .
	touch $@

ASAN_PYTHON_ENV = LD_PRELOAD=$$(cc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 \
  PYTHONMALLOC=malloc PYTHONPATH=$(PYASAN)/site

test-python-asan: python-asan-build build
	$(ASAN_PYTHON_ENV) $(BIN)/python -c 'import shmlane._shmlane as m, sys; \
	  sys.exit(0 if m.__file__.startswith("$(CURDIR)/$(PYASAN)/") else "not the ASan build: " + m.__file__)'
	$(ASAN_PYTHON_ENV) SHMLANE_BUILD=$(BUILD) $(BIN)/pytest -q $(ASAN_SKIP) tests/python

# make test: its phases in order, each run as `make PHASE` by tests/phases.py,
# which prints the time each took and a summary line, and fails the run if a
# phase leaves shared-memory objects behind in /dev/shm. PHASE+PREP,...: the
# builds and installs PREP of later phases run beside PHASE at nice 19, on
# the CPU that its tests leave idle (the C and Python tests mostly wait on
# other processes; libFuzzer uses one core). PREP writes nothing PHASE uses
# (bench-packages installs into .venv: only beside a phase that does not use
# it). check-dist, a check of wheels built apart, runs beside bench-smoke in the
# same way, and stress-smoke (its processes mostly wait) beside test-asan:
# neither of a pair uses what the other writes. `make test SERIAL=1` runs
# everything one after another.
TEST_PHASES := deps build test-c+asan-build,fuzz-build test-asan+stress-smoke \
  fuzz-smoke+install-python,python-asan-build mutants test-python+pythons-prepare \
  test-python-asan+dist-quick test-pythons-quick+bench-packages bench-smoke+check-dist

test:
	@$(PYTHON) tests/phases.py --make "$(MAKE)" $(if $(SERIAL),--serial) $(TEST_PHASES)

# The camera demo in Python (a test pattern: no camera needed). OpenCV is
# optional: without it the writer draws its text itself and the reader prints.
# With a display, the OpenCV that opens windows (read.py shows the frames);
# without one, the headless build. The two install the same cv2 module, so
# the other one is removed first and this one installed afresh over it.
OPENCV := $(if $(DISPLAY)$(WAYLAND_DISPLAY),opencv-python,opencv-python-headless)
OPENCV_OTHER := $(if $(DISPLAY)$(WAYLAND_DISPLAY),opencv-python-headless,opencv-python)

demo: install-python
	@if $(BIN)/pip show --quiet $(OPENCV_OTHER) 2>/dev/null; then \
	  $(BIN)/pip uninstall --quiet --yes $(OPENCV_OTHER) && again=--force-reinstall; fi; \
	$(BIN)/pip install --quiet $${again:+$$again --no-deps} $(OPENCV) \
	  || echo "demo: going on without OpenCV"
	@$(BIN)/python -c "import cv2" 2>/dev/null || echo "demo: OpenCV does not load here: \
	  $$($(BIN)/python -c 'import cv2' 2>&1 | tail -1); the reader prints instead"
	examples/python/demo.sh $(BIN)/python

# make demo on a virtual display (Xvfb): a screenshot taken while it runs must
# show read.py's window with a frame (examples/python/demo_window.sh). Not
# part of make test. Installs Xvfb, ImageMagick and libGL from Debian if missing.
demo-window:
	@{ command -v xvfb-run && command -v import && ldconfig -p | grep -q libGL.so.1; } >/dev/null \
	  || mk/apt-install.sh xvfb imagemagick libgl1
	xvfb-run -a -s "-screen 0 1024x768x24" examples/python/demo_window.sh "$(MAKE)" $(BIN)/python \
	  $(BUILD)/demo-window.png

# The C demos: a segment with wait/notify, then a stream.
demo-c: build
	examples/c/demo.sh $(BUILD)
	examples/c/stream_demo.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(PYASAN) build-pythons

distclean: clean
	rm -rf $(VENV)
include mk/reliability.mk
include mk/bench.mk
include mk/gst.mk
include mk/dist.mk
