# Reliability checks (docs/reliability.md). Included from the Makefile, whose
# MESON, BIN and deps it uses; every check builds in its own directory.
#
#   make fuzz               libFuzzer, FUZZ_SECONDS (60) per target
#   make fuzz-smoke         the same, 10 s per target
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
STRESS_BUILD := build-stress
FUZZ_TARGETS := format header stream wire
# The fuzzing build: meson with clang, ASan + UBSan, and -Dfuzzing=true for
# the libFuzzer programs (meson.build, fuzz/meson.build); it replays the corpus
# too (`meson test -C build-fuzz`).
FUZZ_SETUP := -Dbuildtype=debug -Doptimization=1 -Db_sanitize=address,undefined -Db_lundef=false \
  -Ddefault_library=static -Dtests=false -Dbench=false -Dfuzzing=true

.PHONY: clang-installed fuzz fuzz-smoke fuzz-build fuzz-corpus check-valgrind check-tsan stress stress-smoke \
  reliability-smoke soak mutants

clang-installed:
	@command -v $(CLANG) >/dev/null || mk/apt-install.sh clang

$(FUZZ_BUILD)/build.ninja: | clang-installed $(VENV)/.deps-stamp
	CC=$(CLANG) $(call meson_setup,$(FUZZ_BUILD),$(FUZZ_SETUP))

fuzz-build: $(FUZZ_BUILD)/build.ninja
	$(BIN)/ninja -C $(FUZZ_BUILD)

# New inputs go to build-fuzz/corpus-<target>, crashes to build-fuzz/artifacts/;
# fuzz/corpus/<target> is only read. A crash: fix it, then copy the input to
# fuzz/corpus/<target>/regress-<what> so `meson test --suite fuzz` replays it.
define run_fuzz
	@mkdir -p $(FUZZ_BUILD)/artifacts
	@status=0; for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_BUILD)/corpus-$$t; \
	  $(FUZZ_BUILD)/fuzz/fuzz_$$t -max_total_time=$(1) -timeout=10 -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_BUILD)/artifacts/$$t- $(FUZZ_BUILD)/corpus-$$t fuzz/corpus/$$t \
	    > $(FUZZ_BUILD)/log-$$t.txt 2>&1; rc=$$?; \
	  execs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $(FUZZ_BUILD)/log-$$t.txt); \
	  cov=$$(grep -E '^#[0-9]+' $(FUZZ_BUILD)/log-$$t.txt | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+'); \
	  echo "fuzz_$$t: $(1) s, $${execs:-?} executions, $${cov:-cov ?}, exit $$rc"; \
	  if [ $$rc -ne 0 ]; then status=1; grep -E 'ERROR|SUMMARY|runtime error|Test unit' \
	    $(FUZZ_BUILD)/log-$$t.txt | head -5; fi; \
	done; exit $$status
endef

fuzz: fuzz-build
	$(call run_fuzz,$(FUZZ_SECONDS))

fuzz-smoke: fuzz-build
	$(call run_fuzz,$(FUZZ_SMOKE_SECONDS))

# Rewrites the seeds in fuzz/corpus/ from real segments (the regress-* files stay).
fuzz-corpus: build
	$(BUILD)/fuzz/gen_corpus fuzz/corpus

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
# threads of one process: a process-shared mutex locked by another process
# (or by one that died) looks to it like "unlock of an unlocked mutex", so
# mutex-misuse reports are off (report_mutex_bugs=0); data races, lock-order
# inversions within a process and thread leaks are still reported.
TSAN_TESTS := notify lock lifetime stream stream_torn stream_alive stream_follow stream_hostile

$(TSAN_BUILD)/build.ninja: | $(VENV)/.deps-stamp
	$(call meson_setup,$(TSAN_BUILD),-Db_sanitize=thread -Db_lundef=false -Ddefault_library=static)

check-tsan: $(TSAN_BUILD)/build.ninja
	$(BIN)/ninja -C $(TSAN_BUILD)
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:report_mutex_bugs=0 setarch "$$(uname -m)" -R \
	  $(MESON) test -C $(TSAN_BUILD) --print-errorlogs --timeout-multiplier=4 $(TSAN_TESTS)

$(STRESS_BUILD)/build.ninja: | $(VENV)/.deps-stamp
	$(call meson_setup,$(STRESS_BUILD),-Dbuildtype=debugoptimized)

stress: $(STRESS_BUILD)/build.ninja
	$(BIN)/ninja -C $(STRESS_BUILD)
	python3 tests/stress/kill_storm.py --build $(STRESS_BUILD) --seconds $(STRESS_SECONDS)

stress-smoke: $(STRESS_BUILD)/build.ninja
	$(BIN)/ninja -C $(STRESS_BUILD)
	python3 tests/stress/kill_storm.py --build $(STRESS_BUILD) --seconds $(STRESS_SMOKE_SECONDS)

# The Python demo reader runs too, from the venv's installed package.
soak: $(STRESS_BUILD)/build.ninja install-python
	$(BIN)/ninja -C $(STRESS_BUILD)
	python3 tests/stress/soak.py --build $(STRESS_BUILD) --python $(BIN)/python --seconds $(SOAK_SECONDS)

mutants: deps
	$(BIN)/python tests/mutants/run.py --meson $(MESON)

reliability-smoke: fuzz-smoke stress-smoke mutants
