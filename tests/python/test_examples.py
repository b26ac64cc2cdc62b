"""The README's Python quick start (examples/python/) runs as documented."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

import shmlane
from conftest import ROOT

EXAMPLES = ROOT / "examples" / "python"


@pytest.fixture
def quickstart_names():
    names = ("pose", "calib")  # fixed by the scripts: leave a user's own segments alone
    if any(info.name in names for info in shmlane.list()):
        pytest.skip("segments named pose or calib already exist")
    yield
    for name in names:
        try:
            shmlane.unlink(name)
        except FileNotFoundError:
            pass


def test_quickstart_writer_and_reader(quickstart_names):
    reader = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "quickstart_reader.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not any(info.name == "calib" for info in shmlane.list()):  # reader is up
            assert time.monotonic() < deadline and reader.poll() is None, reader.stderr.read()
            time.sleep(0.02)
        subprocess.run(
            [sys.executable, str(EXAMPLES / "quickstart_writer.py")], check=True, timeout=60
        )
        out, err = reader.communicate(timeout=60)
    finally:
        reader.kill()
    assert reader.returncode == 0, err
    assert out.splitlines()[-1] == "frame 5: x=2.5 y=-5.0 trace=15.0"


def test_readme_shows_the_examples():
    readme = (ROOT / "README.md").read_text()
    for script in ("quickstart_writer.py", "quickstart_reader.py"):
        body = (EXAMPLES / script).read_text().split("\n", 1)[1].strip()  # without the docstring
        assert body in readme, f"README's copy of {script} is out of date"
