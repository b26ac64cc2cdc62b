# Reliability checks (docs/reliability.md). Included from the Makefile, whose
# MESON, BIN and deps it uses; every check that needs other build options
# builds in its own directory.
#
#   make fuzz               libFuzzer, FUZZ_SECONDS (60) per target, held to
#                           coverage floors (fuzz/fuzz_<target>.floor)
#   make fuzz-smoke         the same, FUZZ_SMOKE_SECONDS (6) per target
#   make check-valgrind     C tests and corpus replays under valgrind memcheck
#   make check-tsan         multi-threaded C tests under ThreadSanitizer
#   make stress             kill storm, STRESS_SECONDS (300)
#   make stress-smoke       kill storm, 20 s
#   make soak               an hour of streaming with readers joining and leaving:
#                           memory and descriptors of long-lived processes (SOAK_SECONDS)
#   make mutants            break each key mechanism in turn (tests/mutants/mutants.py):
#                           the tests that guard it must fail, or the check does
#   make reliability-smoke  fuzz-smoke + stress-smoke + mutants (what CI runs)

FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 6
STRESS_SECONDS ?= 300
STRESS_SMOKE_SECONDS ?= 12
SOAK_SECONDS ?= 3600
CLANG ?= clang

FUZZ_BUILD := build-fuzz
VG_BUILD := build-vg
TSAN_BUILD := build-tsan
# The kill storm drives the examples and the CLI of the ordinary build
# (debugoptimized, like a user's): a build of its own would be the same one.
STRESS_BUILD := $(BUILD)
FUZZ_TARGETS := format header stream wire
# The fuzzing build: meson with clang, ASan + UBSan, and -Dfuzzing=true for
# the libFuzzer programs (meson.build, fuzz/meson.build); it replays the seeds
# and regression inputs too (`meson test -C build-fuzz`).
FUZZ_SETUP := -Dbuildtype=debug -Doptimization=1 -Db_sanitize=address,undefined -Db_lundef=false \
  -Ddefault_library=static -Dtests=false -Dbench=false -Dfuzzing=true

.PHONY: clang-installed fuzz fuzz-smoke fuzz-build check-valgrind check-tsan stress stress-smoke \
  reliability-smoke soak mutants

clang-installed:
	@command -v $(CLANG) >/dev/null || mk/apt-install.sh clang

$(FUZZ_BUILD)/build.ninja: | clang-installed $(VENV)/.deps-stamp
	CC=$(CLANG) $(call meson_setup,$(FUZZ_BUILD),$(FUZZ_SETUP))

# Only the libFuzzer programs and the seeds they start from: `meson test -C
# build-fuzz` builds what the replays need by itself.
fuzz-build: $(FUZZ_BUILD)/build.ninja
	$(BIN)/ninja -C $(FUZZ_BUILD) $(FUZZ_TARGETS:%=fuzz/fuzz_%) fuzz/seeds

# fuzz/run.sh: each target on the seeds the build made from the code as it
# is (build-fuzz/fuzz/seeds/<target>), the regression inputs of
# fuzz/corpus/<target> and what earlier runs found (build-fuzz/corpus-<target>,
# where new inputs go); crashes land in build-fuzz/artifacts/. It prints each
# target's executions and edges and fails below the floors of
# fuzz/fuzz_<target>.floor (`smoke` for every run, `fuzz` for make fuzz once
# it made the executions the floor names). A crash: fix it, then copy the input to
# fuzz/corpus/<target>/regress-<what> so `meson test --suite fuzz` replays it.
fuzz: fuzz-build
	fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) fuzz $(FUZZ_TARGETS)

fuzz-smoke: fuzz-build
	fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SMOKE_SECONDS) smoke $(FUZZ_TARGETS)

# Tests that re-exec themselves through /proc/self/exe run that child outside
# valgrind (no --trace-children): only the parent and forked children are checked.
VALGRIND := valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect -q

$(VG_BUILD)/build.ninja: | $(VENV)/.deps-stamp
	$(call meson_setup,$(VG_BUILD),-Dbuildtype=debug)

check-valgrind: $(VG_BUILD)/build.ninja
	@command -v valgrind >/dev/null || mk/apt-install.sh valgrind
	$(BIN)/ninja -C $(VG_BUILD)
	$(MESON) test -C $(VG_BUILD) --suite c --suite fuzz --print-errorlogs --timeout-multiplier=8 \
	  --num-processes=2 --wrap='$(VALGRIND)'

# TSan needs the address-space layout it was built for: with the kernel's
# larger mmap randomisation it dies with "unexpected memory mapping", so the
# tests run under `setarch -R` (ASLR off for them only). TSan models the
# threads of one process; no pthread mutex is shared between processes (the
# segment lock is a futex word of our own), so every report is on.
TSAN_TESTS := notify lock lifetime stream stream_wait stream_writers stream_block stream_torn \
  stream_alive stream_follow stream_hostile

$(TSAN_BUILD)/build.ninja: | $(VENV)/.deps-stamp
	$(call meson_setup,$(TSAN_BUILD),-Db_sanitize=thread -Db_lundef=false -Ddefault_library=static)

check-tsan: $(TSAN_BUILD)/build.ninja
	$(BIN)/ninja -C $(TSAN_BUILD)
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 setarch "$$(uname -m)" -R \
	  $(MESON) test -C $(TSAN_BUILD) --print-errorlogs --timeout-multiplier=4 $(TSAN_TESTS)

stress: build
	python3 tests/stress/kill_storm.py --build $(STRESS_BUILD) --seconds $(STRESS_SECONDS)

stress-smoke: build
	python3 tests/stress/kill_storm.py --build $(STRESS_BUILD) --seconds $(STRESS_SMOKE_SECONDS)

# The Python demo reader runs too, from the venv's installed package.
soak: build install-python
	python3 tests/stress/soak.py --build $(STRESS_BUILD) --python $(BIN)/python --seconds $(SOAK_SECONDS)

mutants: deps
	$(BIN)/python tests/mutants/run.py --meson $(MESON)

reliability-smoke: fuzz-smoke stress-smoke mutants
