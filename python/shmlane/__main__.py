"""`python -m shmlane ARGS` runs the shmlane command (`shmlane ARGS`,
docs/cli.md): the one installed with this package, in its environment's
scripts directory, else the first on PATH."""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from typing import List, Optional


def command() -> Optional[str]:
    """The shmlane program: beside this package's interpreter first, where
    pip puts it (a venv's bin/, or the user's for `pip install --user`)."""
    for scripts in (sysconfig.get_path("scripts"), sysconfig.get_path("scripts", f"{os.name}_user")):
        path = os.path.join(scripts, "shmlane")
        if os.access(path, os.X_OK):
            return path
    return shutil.which("shmlane")


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = command()
    if path is None:
        print("python -m shmlane: the shmlane command was not found beside this Python"
              f" ({sysconfig.get_path('scripts')}) or on PATH: reinstall the package"
              " (pip install shmlane) or build the source tree and run build/tools/shmlane",
              file=sys.stderr)  # fmt: skip
        return 1
    sys.stdout.flush()
    try:
        os.execv(path, ["shmlane", *args])
    except OSError as exc:
        print(f"python -m shmlane: cannot run {path}: {exc.strerror}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
