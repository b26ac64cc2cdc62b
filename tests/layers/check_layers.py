"""Checks the core's rooms (docs/internals.md): which file of src/ calls
which, read from the static library's objects (nm), has no loop, so every
file has a clear top and bottom; and no file of src/ is longer than the
limit. Prints the calls, file by file. Exit 0 pass, 1 fail, 77 skip (no nm).

    check_layers.py --lib libshmlane.a --src SRC_DIR [--max-lines N]
"""

import argparse
import os
import shutil
import subprocess
import sys


def symbols(nm, lib):
    """{source file: (defined global names, undefined names)} of an archive's
    members, named by meson as src_<file>.o."""
    out = subprocess.run([nm, "-A", "-P", lib], check=True, capture_output=True,
                         text=True).stdout
    table = {}
    for line in out.splitlines():
        where, _, rest = line.partition("]: ")
        parts = rest.split()
        member = where.rpartition("[")[2]
        if len(parts) < 2 or not member.startswith("src_"):
            continue
        defined, undefined = table.setdefault(member[len("src_"):-len(".o")], (set(), set()))
        name, kind = parts[0], parts[1]
        if kind == "U":
            undefined.add(name)
        elif kind.isupper():
            defined.add(name)
    return table


def loops(graph):
    """Strongly connected components of more than one file (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lib", required=True, help="the core's static library")
    ap.add_argument("--src", required=True)
    ap.add_argument("--max-lines", type=int, default=700)
    a = ap.parse_args()
    nm = shutil.which("nm")
    if nm is None:
        print("skip: no nm")
        return 77
    table = symbols(nm, a.lib)
    owner = {name: f for f, (defined, _) in table.items() for name in defined}
    graph = {f: {owner[n] for n in undef if n in owner and owner[n] != f}
             for f, (_, undef) in table.items()}
    errors = []
    if not graph:
        errors.append("no objects of src/ found in " + a.lib)
    for f in sorted(graph):
        print("%-16s calls %s" % (f, " ".join(sorted(graph[f])) or "-"))
    for comp in loops(graph):
        errors.append("files that call into each other in a loop: " + " ".join(comp))
    for f in sorted(os.listdir(a.src)):
        with open(os.path.join(a.src, f)) as fh:
            n = sum(1 for _ in fh)
        if n > a.max_lines:
            errors.append("src/%s: %d lines, over %d" % (f, n, a.max_lines))
    for e in errors:
        print(e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
