"""The C library an installed package carries (python -m shmlane.config):
its flags build a program that runs against the package's libshmlane.so.0,
pkg-config agrees, the library exports exactly the API, and every place a
version shows agrees."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

import shmlane
from conftest import ROOT
from shmlane import config

PROGRAM = r"""
#include <shmlane.h>
#include <stdio.h>

int main(int argc, char **argv) {
  shl_layout layout = {.format = "<I", .ndim = 1, .shape = {4}};
  shl_segment *seg;
  int rc = shl_create(&seg, argv[1], &layout, NULL);
  if (rc < 0) {
    fprintf(stderr, "%s: %s\n", argv[1], shl_strerror(rc));
    return 1;
  }
  ((unsigned *)shl_payload(seg))[3] = 42;
  shl_close(seg);
  printf("%s %s\n", shl_version_string(), SHL_VERSION_STRING);
  return argc > 2;
}
"""


def config_says(*options: str) -> List[str]:
    out = subprocess.run([sys.executable, "-m", "shmlane.config", *options], capture_output=True,
                         text=True, check=True, timeout=60).stdout  # fmt: skip
    return out.split()


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("cc") is None:
        pytest.skip("needs a C compiler")
    out = tmp_path_factory.mktemp("config")
    (out / "prog.c").write_text(PROGRAM)
    subprocess.run(["cc", "-std=c11", "-Wall", "-Werror", "-o", str(out / "prog"), str(out / "prog.c"),
                    *config_says("--cflags", "--libs")], check=True, timeout=120)  # fmt: skip
    return out / "prog"


def test_a_program_built_with_its_flags_runs_on_the_package_library(program, name):
    run = subprocess.run([str(program), name], capture_output=True, text=True, timeout=60,
                         env={k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"})
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [shmlane.__version__] * 2  # library and header
    with shmlane.open(name) as seg:
        assert seg.array[3] == 42
    maps = subprocess.run(["ldd", str(program)], capture_output=True, text=True, timeout=60).stdout
    found = [line.split("=>")[1].split()[0] for line in maps.splitlines() if "libshmlane" in line]
    assert found and Path(found[0]).resolve() == config.LIB_DIR / "libshmlane.so.0"


def test_pkg_config_gives_the_same_flags():
    if shutil.which("pkg-config") is None:
        pytest.skip("no pkg-config")
    env = dict(os.environ, PKG_CONFIG_PATH=" ".join(config_says("--pkgconfigdir")))

    def pkg_config(*options: str) -> List[str]:
        return subprocess.run(["pkg-config", *options, "shmlane"], env=env, capture_output=True,
                              text=True, check=True).stdout.split()  # fmt: skip

    assert pkg_config("--modversion") == [shmlane.__version__]
    flags = [os.path.normpath(f) for f in pkg_config("--cflags", "--libs")]  # no /../ in them
    assert flags == config_says("--cflags", "--libs")


def test_the_package_library_exports_the_api_only():
    if shutil.which("nm") is None:
        pytest.skip("no nm")
    check = subprocess.run(
        [sys.executable, str(ROOT / "tests/abi/check_symbols.py"), "--lib",
         str(config.LIB_DIR / "libshmlane.so.0"), "--header", str(ROOT / "include/shmlane.h"),
         "--map", str(ROOT / "src/libshmlane.map")],
        capture_output=True, text=True, timeout=60)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert (config.INCLUDE_DIR / "shmlane.h").read_bytes() == (ROOT / "include/shmlane.h").read_bytes()


def test_every_version_agrees():
    cli = Path(sys.executable).parent / "shmlane"
    if not cli.exists():
        pytest.skip("no shmlane command beside this interpreter")
    said = subprocess.run([str(cli), "--version"], capture_output=True, text=True, check=True)
    assert said.stdout.split() == ["shmlane", shmlane.__version__]
    assert importlib.metadata.version("shmlane") == shmlane.__version__
    assert config_says("--modversion") == [shmlane.__version__]


def test_without_options_it_shows_its_help():
    run = subprocess.run([sys.executable, "-m", "shmlane.config"], capture_output=True, text=True)
    assert run.returncode == 2 and "--pkgconfigdir" in run.stdout


def test_python_m_shmlane_runs_the_command():
    """`python -m shmlane` is the shmlane command: it was no module at all
    ("No module named shmlane.__main__")."""
    run = subprocess.run([sys.executable, "-m", "shmlane", "--version"], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.split() == ["shmlane", shmlane.__version__], run
    run = subprocess.run([sys.executable, "-m", "shmlane", "nonsense"], capture_output=True, text=True)
    assert run.returncode == 2 and run.stderr.startswith("shmlane: unknown command 'nonsense'"), run
