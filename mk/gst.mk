# The GStreamer plugin (gst/, docs/gstreamer.md). Included from the Makefile.
#
#   make gst-deps        GStreamer's development packages and tools, from Debian
#                        (part of make deps; without them the plugin is left out)
#   make gst-extras      what docs/gstreamer.md's pipelines use beyond that, from
#                        Debian: x264enc (gstreamer1.0-plugins-ugly) and an OpenCV
#                        built with GStreamer (python3-opencv, for /usr/bin/python3);
#                        without them their tests skip
#   make test-gst-long   a source pipeline stopped and started 100 times beside a
#                        running sink, each run a gst-launch-1.0 of its own (every
#                        tenth killed), the sink killed and restarted 10 times (10 to
#                        15 s: over what make test can spend), and the documented
#                        OpenCV and H.264 pipelines (with gst-extras installed first)
#   make bench-gst       shmlanesink/shmlanesrc against shmsink/shmsrc (part of make bench)
#
# The quick tests run in make test: the GstCheck program in test-c and test-asan
# (tests/gst: among them a source pipeline taken NULL <-> PLAYING 100 times
# beside a running sink, in one process, 0.6 s), the pipelines across processes in test-python
# (tests/python/test_gstreamer.py).

GST_PACKAGES := libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-tools \
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good

GST_EXTRAS := gstreamer1.0-plugins-ugly python3-opencv

.PHONY: gst-deps gst-extras test-gst-long bench-gst

deps: gst-deps

gst-deps:
	@{ pkg-config --exists gstreamer-video-1.0 gstreamer-check-1.0 2>/dev/null && \
	  command -v gst-launch-1.0 >/dev/null && gst-inspect-1.0 videotestsrc >/dev/null 2>&1; } || \
	  mk/apt-install.sh $(GST_PACKAGES) || \
	  echo "deps: no GStreamer: the plugin will not be built"

# The pipelines drive the elements from other processes; ASan's runtime is
# not in gst-launch-1.0 (the GstCheck program runs the plugin under ASan).
ASAN_SKIP += --ignore=tests/python/test_gstreamer.py

gst-extras:
	@{ gst-inspect-1.0 x264enc >/dev/null 2>&1 && /usr/bin/python3 -c "import cv2" 2>/dev/null; } || \
	  mk/apt-install.sh --no-install-recommends $(GST_EXTRAS)

test-gst-long: install-python build gst-extras
	SHMLANE_BUILD=$(BUILD) SHMLANE_GST_LONG=1 $(BIN)/pytest -q tests/python/test_gstreamer.py \
	  -k "100_times or opencv or h264"

# shmsink and shmsrc are in gst-plugins-bad, x264enc (docs' pipelines) in -ugly.
# The plugin of the release build, as Debian builds shmsink's.
bench-gst: bench-c
	@gst-inspect-1.0 shmsink >/dev/null 2>&1 || mk/apt-install.sh gstreamer1.0-plugins-bad
	$(PYTHON) bench/gst.py $(BENCH_ARGS) --plugin $(BENCH_C)/gst --out bench/results

bench: bench-gst
