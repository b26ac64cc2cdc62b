"""Checks what the shared library exports against what include/shmlane.h
declares: every function the header declares is marked SHL_API, listed in
the version script and exported by the library with a version; the library
exports nothing else. With --doc, the table of symbol versions there
(docs/install.md) names every function in its node's row and no other
function; the types and struct fields it names are the header's. Exit 0
pass, 1 fail, 77 skip (no nm).

    check_symbols.py --lib libshmlane.so --header shmlane.h --map libshmlane.map
                     [--doc install.md]
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


def doc_rows(text):
    """{node: [names in code spans]} of the markdown table whose first column
    is "symbol version"."""
    rows, in_table = {}, False
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == "symbol version":
            in_table = True
        elif not line.startswith("|"):
            in_table = False
        elif in_table and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = re.findall(r"`([\w.]+)`", " ".join(cells[1:]))
    return rows


def struct_fields(header):
    """{type name: field names} of the header's typedef'd structs."""
    header = re.sub(r"/\*.*?\*/", " ", header, flags=re.S)
    found = {}
    for body, name in re.findall(r"typedef struct \w*\s*\{(.*?)\}\s*(\w+);", header, flags=re.S):
        found[name] = set(re.findall(r"(\w+)\s*(?:\[[^]]*\])?\s*;", body))
    for name in re.findall(r"typedef [^;{]*?\b(shl_\w+);", header):
        found.setdefault(name, set())
    return found


def doc_errors(doc, header, nodes):
    """What the doc's table of symbol versions gets wrong."""
    rows = doc_rows(doc)
    types = struct_fields(header)
    in_map = {name: node for node, names in nodes.items() for name in names}
    errors = [f"{doc_node}: a row of the doc's table, not a node of the version script"
              for doc_node in rows if doc_node not in nodes]
    for node, names in nodes.items():
        if node not in rows:
            errors.append(f"{node}: no row in the doc's table")
            continue
        errors += [f"{n}: not named in the doc's row of {node}" for n in names
                   if n not in rows[node]]
    for node, spans in rows.items():
        for span in spans:
            kind, _, field = span.partition(".")
            if not kind.startswith("shl_"):
                continue
            if field:
                if field not in types.get(kind, ()):
                    errors.append(f"{span}: in the doc's row of {node}, not a field of the header")
            elif kind in in_map:
                if in_map[kind] != node:
                    errors.append(f"{kind}: in the doc's row of {node}, "
                                  f"the version script says {in_map[kind]}")
            elif kind not in types:
                errors.append(f"{kind}: in the doc's row of {node}, neither a function nor a type")
    return errors


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
    ap.add_argument("--doc", help="the page with the table of symbol versions")
    a = ap.parse_args()
    nm = shutil.which("nm")
    if nm is None:
        print("skip: no nm")
        return 77

    with open(a.header) as f:
        header = f.read()
    declared = header_functions(header)
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
    if a.doc:
        with open(a.doc) as f:
            errors += doc_errors(f.read(), header, nodes)

    for e in errors:
        print(e)
    print(f"{len(declared)} functions declared, {len(seen)} symbols exported, "
          f"{len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
