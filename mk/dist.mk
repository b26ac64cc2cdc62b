# Release artefacts (docs/install.md). Included from the Makefile.
#
#   make dist        the sdist, and wheels built from it for CPython 3.9-3.13
#                    (cp39, cp310, and abi3 for 3.11+), repaired by auditwheel
#                    with shmlane-bridge's libraries and their licences, in dist/
#   make test-dist   each wheel installed and used where no compiler and none
#                    of the libraries it carries are visible (root: mount
#                    namespaces): the quick starts, the commands, C programs
#                    built against the wheel's library, a bridge on loopback
#   DIST_BUILDS="cp39 abi3"  only those wheels (the two that test-dist
#                    installs, on CPython 3.9 and 3.13)
#
# make test does the same for those two wheels in two phases: dist-quick
# builds them beside an earlier phase (on the core its tests leave idle) and
# leaves a stamp; check-dist checks them, building them first when there is
# no stamp (dist-quick failed, or check-dist runs alone).
#
# All work in build-dist/ (venvs with the build tools, made once, builds,
# logs). The sdist holds the committed tree (HEAD): commit first.

QUICK_DIST := cp39 abi3
QUICK_STAMP := build-dist/quick.stamp

.PHONY: dist test-dist dist-quick check-dist clean-dist

dist: deps
	$(PYTHON) release/build_dist.py --out dist --work build-dist $(if $(DIST_BUILDS),--only $(DIST_BUILDS))

test-dist: dist
	$(PYTHON) tests/wheels/check_wheels.py --dist dist --work build-dist/check

dist-quick: deps
	rm -f $(QUICK_STAMP)
	$(PYTHON) release/build_dist.py --out dist --work build-dist --only $(QUICK_DIST)
	touch $(QUICK_STAMP)

check-dist:
	test -f $(QUICK_STAMP) || $(MAKE) --no-print-directory dist-quick
	rm -f $(QUICK_STAMP)
	$(PYTHON) tests/wheels/check_wheels.py --dist dist --work build-dist/check

# dist/ stays: it holds what a release ships.
clean: clean-dist
clean-dist:
	rm -rf build-dist
