"""Checks the rooms of the code (docs/internals.md): in each folder, which
file calls which has no loop, so every file has a clear top and bottom; and
no file of these folders is longer than the limit. C files are read from
their objects (nm on an archive of them), a Python package from its imports.
Prints the calls, file by file. Exit 0 pass, 1 fail, 77 skip (no nm).

    check_layers.py [--objects DIR ARCHIVE]... [--package DIR]...
                    [--lines DIR]... [--max-lines N] [--root DIR]
"""

import argparse
import ast
import os
import shutil
import subprocess
import sys


def source_of(member, sources):
    """The file of `sources` an archive member was compiled from: meson names
    it after the source's path (src_stream_info.c.o, send.c.o; a thin
    archive's members are paths: x.a.p/.._.._python_ext_base.c.o)."""
    member = member.rpartition("/")[2]
    stem = member[:-len(".o")] if member.endswith(".o") else member
    found = [f for f in sources if stem == f or stem.endswith("_" + f)]
    return max(found, key=len) if found else None


def objects_graph(nm, archive, folder):
    """{file: files of the same folder it calls}, from an archive of the
    folder's objects."""
    sources = [f for f in os.listdir(folder) if f.endswith(".c")]
    out = subprocess.run([nm, "-A", "-P", archive], check=True, capture_output=True,
                         text=True).stdout
    table = {}
    for line in out.splitlines():
        where, _, rest = line.partition("]: ")
        parts = rest.split()
        f = source_of(where.rpartition("[")[2], sources)
        if len(parts) < 2 or f is None:
            continue
        defined, undefined = table.setdefault(f, (set(), set()))
        name, kind = parts[0], parts[1]
        if kind == "U":
            undefined.add(name)
        elif kind.isupper():
            defined.add(name)
    owner = {name: f for f, (defined, _) in table.items() for name in defined}
    return {f: {owner[n] for n in undef if n in owner and owner[n] != f}
            for f, (_, undef) in table.items()}


def package_graph(folder):
    """{module file: module files of the same package it imports}, from every
    import statement, at the top or inside a function alike."""
    package = os.path.basename(os.path.normpath(folder))
    names = os.listdir(folder)
    files = {f for f in names if f.endswith(".py")}
    # Modules with a stub and no source are compiled (the extension): not rooms here.
    compiled = {f[:-1] for f in names if f.endswith(".pyi") and f[:-1] not in files}

    def module(dotted):
        """The file of the package a dotted name inside it names, if any."""
        head = dotted.split(".")[0] if dotted else ""
        if not head:
            return "__init__.py"
        return head + ".py" if head + ".py" in files else None

    def imported(name):
        """`from . import name`: a module, a compiled one, or a name of __init__."""
        return module(name) or (None if name + ".py" in compiled else "__init__.py")

    graph = {}
    for f in sorted(files):
        with open(os.path.join(folder, f)) as fh:
            tree = ast.parse(fh.read(), f)
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                inside = [a.name[len(package) + 1:] for a in node.names
                          if a.name.startswith(package + ".")]
                targets.update(module(m) for m in inside)
                if any(a.name == package for a in node.names):
                    targets.add("__init__.py")
            elif isinstance(node, ast.ImportFrom):
                if node.level == 0 and node.module and (
                        node.module == package or node.module.startswith(package + ".")):
                    base = node.module[len(package) + 1:]
                elif node.level == 1:
                    base = node.module or ""
                else:
                    continue
                if base:
                    targets.add(module(base))
                else:  # from . import a, b: modules, or names of __init__
                    targets.update(imported(a.name) for a in node.names)
        graph[f] = {t for t in targets if t and t != f}
    return graph


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


def long_files(folder, max_lines):
    """(path, lines) of the files under `folder` longer than max_lines."""
    for top, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(names):
            path = os.path.join(top, name)
            with open(path, "rb") as fh:
                n = sum(1 for _ in fh)
            if n > max_lines:
                yield path, n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--objects", nargs=2, action="append", default=[],
                    metavar=("DIR", "ARCHIVE"), help="C files of DIR, compiled into ARCHIVE")
    ap.add_argument("--package", action="append", default=[], metavar="DIR",
                    help="a Python package's folder")
    ap.add_argument("--lines", action="append", default=[], metavar="DIR",
                    help="a folder whose files (and subfolders') are held to the limit")
    ap.add_argument("--max-lines", type=int, default=700)
    ap.add_argument("--root", default=".", help="folders are named relative to it")
    a = ap.parse_args()
    nm = shutil.which("nm")
    if a.objects and nm is None:
        print("skip: no nm")
        return 77
    rooms = [(d, objects_graph(nm, lib, d)) for d, lib in a.objects]
    rooms += [(d, package_graph(d)) for d in a.package]
    root = a.root
    errors = []
    for folder, graph in rooms:
        room = os.path.relpath(folder, root)
        print("%s:" % room)
        if not graph:
            errors.append("%s: no files found" % room)
        for f in sorted(graph):
            print("  %-18s calls %s" % (f, " ".join(sorted(graph[f])) or "-"))
        for comp in loops(graph):
            errors.append("%s: files that call into each other in a loop: %s"
                          % (room, " ".join(comp)))
    for folder in a.lines:
        for path, n in long_files(folder, a.max_lines):
            errors.append("%s: %d lines, over %d" % (os.path.relpath(path, root), n, a.max_lines))
    for e in errors:
        print(e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
