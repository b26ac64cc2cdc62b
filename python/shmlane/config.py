"""Where the C library inside this package lies, for C programs: the package
carries libshmlane.so.0, its headers and a pkg-config file (docs/install.md).

    cc prog.c $(python -m shmlane.config --cflags --libs)
    PKG_CONFIG_PATH=$(python -m shmlane.config --pkgconfigdir) pkg-config --cflags --libs shmlane

The flags put the package's lib/ into the program's run path, so it runs
without LD_LIBRARY_PATH while the package stays where it is.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from ._shmlane import core_version

PACKAGE = Path(__file__).resolve().parent
INCLUDE_DIR = PACKAGE / "include"
LIB_DIR = PACKAGE / "lib"
PKGCONFIG_DIR = LIB_DIR / "pkgconfig"


def cflags() -> str:
    return f"-I{INCLUDE_DIR}"


def libs() -> str:
    # By its path: a wheel holds no libshmlane.so link for -lshmlane.
    return f"{LIB_DIR / 'libshmlane.so.0'} -Wl,-rpath,{LIB_DIR}"


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m shmlane.config",
        description="Compiler and linker flags for C programs using the shmlane library "
        "carried by this Python package. Several options print their answers on one line, "
        "in the order given.",
    )
    answers = {
        "cflags": cflags,
        "libs": libs,
        "includedir": lambda: str(INCLUDE_DIR),
        "libdir": lambda: str(LIB_DIR),
        "pkgconfigdir": lambda: str(PKGCONFIG_DIR),
        "modversion": lambda: core_version,
    }
    helps = {
        "cflags": "the preprocessor flags (-I...)",
        "libs": "the linker flags (.../libshmlane.so.0 -Wl,-rpath,...)",
        "includedir": "the directory of shmlane.h",
        "libdir": "the directory of libshmlane.so.0",
        "pkgconfigdir": "the directory of shmlane.pc, for PKG_CONFIG_PATH",
        "modversion": "the library's version",
    }
    for key in answers:
        ap.add_argument("--" + key, dest="asked", action="append_const", const=key, help=helps[key])
    args = ap.parse_args(argv)
    if not args.asked:
        ap.print_help()
        return 2
    missing = [p for p in (INCLUDE_DIR / "shmlane.h", LIB_DIR / "libshmlane.so.0") if not p.exists()]
    if missing:
        print(f"shmlane.config: {missing[0]} is missing: this package was built without its C "
              "library", file=sys.stderr)  # fmt: skip
        return 1
    print(" ".join(answers[key]() for key in args.asked))
    return 0


if __name__ == "__main__":
    sys.exit(main())
