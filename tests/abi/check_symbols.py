"""Checks what the shared library exports against what include/shmlane.h
declares: every function the header declares is marked SHL_API, listed in
the version script and exported by the library with a version; the library
exports nothing else. Exit 0 pass, 1 fail, 77 skip (no nm).

    check_symbols.py --lib libshmlane.so --header shmlane.h --map libshmlane.map
"""

import argparse
import re
import shutil
import subprocess
import sys


def header_functions(text):
    """{name: marked SHL_API} for each function declared at file scope."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    text = re.sub(r"^\s*#(?:[^\n]*\\\n)*[^\n]*", " ", text, flags=re.M)  # directives
    found = {}
    for stmt in text.split(";"):
        stmt = " ".join(re.split(r"[{}]", stmt)[-1].split())  # after any struct/extern brace
        m = re.match(r"(SHL_API\s+)?(?!typedef\b)[\w\s*]*?\b(shl_\w+)\s*\(", stmt)
        if m:
            found[m.group(2)] = bool(m.group(1))
    return found


def map_nodes(text):
    """{node: [global names]} of a GNU ld version script."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"#[^\n]*", " ", text)
    nodes = {}
    for node, body in re.findall(r"(\w[\w.]*)\s*\{(.*?)\}", text, flags=re.S):
        names = []
        scope = None
        for item in body.replace(":", ":;").split(";"):
            item = item.strip()
            if item in ("global:", "local:"):
                scope = item
            elif item and scope == "global:":
                names.append(item)
        nodes[node] = names
    return nodes


def exported(lib, nm):
    """[(type, name, version or None)] of the library's defined dynamic symbols."""
    out = subprocess.run([nm, "-D", "--defined-only", lib], check=True, capture_output=True,
                         text=True).stdout
    syms = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        kind, full = parts[-2], parts[-1]
        name, _, version = full.partition("@")
        syms.append((kind, name, version.lstrip("@") or None))
    return syms


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lib", required=True)
    ap.add_argument("--header", required=True)
    ap.add_argument("--map", required=True)
    a = ap.parse_args()
    nm = shutil.which("nm")
    if nm is None:
        print("skip: no nm")
        return 77

    with open(a.header) as f:
        declared = header_functions(f.read())
    with open(a.map) as f:
        nodes = map_nodes(f.read())
    errors = [f"{n}: declared in the header without SHL_API" for n, api in declared.items() if not api]
    if not declared:
        errors.append("no functions found in the header")

    in_map = {name: node for node, names in nodes.items() for name in names}
    errors += [f"{n}: declared in the header, not in the version script" for n in declared
               if n not in in_map]
    errors += [f"{n}: in the version script ({in_map[n]}), not declared in the header"
               for n in in_map if n not in declared]

    seen = set()
    for kind, name, version in exported(a.lib, nm):
        if kind == "A" and name in nodes:
            continue  # the version node's own symbol
        seen.add(name)
        if name not in declared:
            errors.append(f"{name}: exported ({kind}), not declared in the header")
        elif version is None:
            errors.append(f"{name}: exported without a symbol version")
        elif version != in_map.get(name):
            errors.append(f"{name}: version {version}, the version script says {in_map.get(name)}")
    errors += [f"{n}: declared in the header, not exported" for n in declared if n not in seen]

    for e in errors:
        print(e)
    print(f"{len(declared)} functions declared, {len(seen)} symbols exported, "
          f"{len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
