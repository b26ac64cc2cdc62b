"""iceoryx2 for bench/py/pair.py. Not written yet: the benchmark reports it
as skipped with this reason."""

SKIP = ("iceoryx2 0.10 installs and imports, but a publish-subscribe harness with slices was not "
        "written within the benchmark's time box (issue 5)")
