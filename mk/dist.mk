# Release artefacts (docs/install.md). Included from the Makefile.
#
#   make dist        the sdist, and wheels built from it for CPython 3.9-3.13
#                    (cp39, cp310, and abi3 for 3.11+), repaired by auditwheel
#                    with shmlane-bridge's libraries and their licences, in dist/
#   make test-dist   each wheel installed and used where no compiler and none
#                    of the libraries it carries are visible (root: mount
#                    namespaces): the quick starts, the commands, C programs
#                    built against the wheel's library, a bridge on loopback
#   DIST_BUILDS="cp39 abi3"  only those wheels (CI: the two that test-dist
#                    installs, on CPython 3.9 and 3.13)
#
# Both work in build-dist/ (venvs with the build tools, made once, builds,
# logs). The sdist holds the committed tree (HEAD): commit first.

.PHONY: dist test-dist clean-dist

dist: deps
	$(PYTHON) release/build_dist.py --out dist --work build-dist $(if $(DIST_BUILDS),--only $(DIST_BUILDS))

test-dist: dist
	$(PYTHON) tests/wheels/check_wheels.py --dist dist --work build-dist/check

# dist/ stays: it holds what a release ships.
clean: clean-dist
clean-dist:
	rm -rf build-dist
