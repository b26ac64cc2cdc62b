#!/usr/bin/env python3
"""The CLI's own help is the source; docs/cli.md and the man page follow it.

Usage: test_help_docs.py PATH-TO-shmlane PATH-TO-cli.md PATH-TO-shmlane.1
Exit status: 0 pass, 1 fail. Python 3 stdlib only.

From `shmlane --help` it takes the top-level synopsis and the commands; from
`shmlane COMMAND --help` each command's synopsis and options (the lines of
its "Options:" list). Then it checks that:
  - docs/cli.md's synopsis block lists exactly those synopses, in order, and
    has a section `## \\`shmlane COMMAND ...\\`` for each command;
  - the man page's SYNOPSIS, rendered to text, lists exactly the same lines,
    and its COMMANDS section has an item for each command;
  - every option appears in both, as the help spells it: the long form with
    its value (`--grace SECONDS`) and the short form (`-n`) where there is
    one; in the man page as the heading of an item (`-n, --dry-run`), as the
    help's options list spells it; --help and --version too;
  - both give the version `shmlane --version` prints (the man page in .TH).
"""
import re
import subprocess
import sys

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL: " + what, file=sys.stderr)
    return cond


def run(cli, *args):
    p = subprocess.run([cli, *args], capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        sys.exit("%s %s exited %d: %s" % (cli, " ".join(args), p.returncode, p.stderr))
    return p.stdout


# ---------------------------------------------------------------- the help


def usage_line(text):
    first = text.splitlines()[0]
    assert first.startswith("Usage: "), first
    return first[len("Usage: "):]


def parse_help(cli):
    """(top synopsis, [(command, synopsis, [option heading, ...])])."""
    top = run(cli, "--help")
    commands = re.findall(r"^  (\w+) +\S", top.split("Commands:\n", 1)[1], re.M)
    result = []
    for cmd in commands:
        text = run(cli, cmd, "--help")
        options = []
        if "Options:\n" in text:
            block = text.split("Options:\n", 1)[1]
            # "  -f, --format F    element format": the heading ends at two blanks.
            options = re.findall(r"^  ((?:-\w, )?--[\w-]+(?: [A-Z]+)?)(?:  |$)", block, re.M)
        result.append((cmd, usage_line(text), options))
    return usage_line(top), result


# ---------------------------------------------------------------- the man page


def roff_args(line):
    """A macro line's arguments, honouring double quotes."""
    return [a[1:-1] if a.startswith('"') else a for a in re.findall(r'"[^"]*"|\S+', line)]


def roff_text(s):
    s = re.sub(r"\\f[BIRP]", "", s)
    return s.replace("\\-", "-").replace("\\ ", " ").replace("\\e", "\\")


def render(line):
    """One roff line as plain text: font macros dropped, their arguments
    joined (.B and .I with blanks, the alternating ones without)."""
    if not line.startswith("."):
        return roff_text(line)
    macro, _, rest = line[1:].partition(" ")
    args = roff_args(rest)
    if macro in ("B", "I"):
        return roff_text(" ".join(args))
    if macro in ("BR", "RB", "BI", "IB", "IR", "RI"):
        return roff_text("".join(args))
    return None


def man_sections(man):
    sections, name = {}, None
    for line in man.splitlines():
        if line.startswith(".SH "):
            name = roff_args(line[4:])[0] if roff_args(line[4:]) else ""
            sections[name] = []
        elif name is not None:
            sections[name].append(line)
    return sections


def man_synopsis(lines):
    """The SYNOPSIS lines, each a `.br`- or `.PP`-separated run of macros."""
    out, words = [], []
    for line in lines + [".br"]:
        if line in (".br", ".PP"):
            if words:
                out.append(" ".join(words))
            words = []
        else:
            text = render(line)
            if text is not None:
                words.append(text)
    return out


def man_item_headings(man):
    """The rendered line after each .TP: item headings, commands and options."""
    lines = man.splitlines()
    return [render(lines[i + 1]) or "" for i, line in enumerate(lines[:-1]) if line == ".TP"]


# ---------------------------------------------------------------- the checks


def mentioned(form, md):
    """A short option as `-n` (in backticks: not inside --no-rate), a long one
    with its value as the help spells it (`--grace SECONDS`)."""
    return ("`%s`" % form in md) if not form.startswith("--") else form in md


def check_cli_md(md, top, commands):
    block = re.search(r"^```(?:text)?\n(.*?)^```", md, re.M | re.S)
    got = [line for line in block.group(1).splitlines() if line] if block else []
    want = [top] + [synopsis for _, synopsis, _ in commands]
    check(got == want, "docs/cli.md synopsis block differs from the help:\n  got:  %s\n  want: %s"
          % ("\n        ".join(got), "\n        ".join(want)))
    for option in re.findall(r"--[\w-]+", top):
        check("`shmlane %s`" % option in md, "docs/cli.md does not describe 'shmlane %s'" % option)
    for cmd, _, options in commands:
        check(re.search(r"^## `shmlane %s\b" % cmd, md, re.M),
              "docs/cli.md has no section for '%s'" % cmd)
        for heading in options:
            for form in heading.split(", "):
                check(mentioned(form, md),
                      "docs/cli.md does not mention '%s' (shmlane %s --help)" % (form, cmd))


def check_man(man, top, commands):
    sections = man_sections(man)
    got = man_synopsis(sections.get("SYNOPSIS", []))
    want = [top] + [synopsis for _, synopsis, _ in commands]
    check(got == want, "docs/shmlane.1 SYNOPSIS differs from the help:\n  got:  %s\n  want: %s"
          % ("\n        ".join(got), "\n        ".join(want)))
    headings = man_item_headings(man)
    for option in re.findall(r"--[\w-]+", top):
        check(any(option in h.split(", ") for h in headings),
              "docs/shmlane.1 has no item for '%s' (shmlane --help)" % option)
    for cmd, _, options in commands:
        check(any(h.split(" ")[0] == cmd for h in headings),
              "docs/shmlane.1 COMMANDS has no item for '%s'" % cmd)
        for heading in options:
            check(heading in headings,
                  "docs/shmlane.1 has no item '%s' (shmlane %s --help)" % (heading, cmd))


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: test_help_docs.py PATH-TO-shmlane PATH-TO-cli.md PATH-TO-shmlane.1")
    cli, md_path, man_path = sys.argv[1:]
    top, commands = parse_help(cli)
    check(len(commands) >= 5, "shmlane --help lists %d commands" % len(commands))
    for cmd, synopsis, _ in commands:
        check(synopsis.startswith("shmlane %s" % cmd), "%s --help: usage %r" % (cmd, synopsis))
    version = run(cli, "--version").strip()  # "shmlane 0.2.0"
    with open(md_path, encoding="utf-8") as f:
        md = f.read()
    check_cli_md(md, top, commands)
    check("`%s`" % version in md, "docs/cli.md does not say `%s` (shmlane --version)" % version)
    with open(man_path, encoding="utf-8") as f:
        man = f.read()
    check_man(man, top, commands)
    th = roff_args(man.split(".TH ", 1)[1].splitlines()[0]) if ".TH " in man else []
    check(len(th) > 3 and th[3] == version,
          "docs/shmlane.1 .TH says %r, shmlane --version %r" % (th[3:4], version))
    print("%d failure(s)" % len(failures) if failures else
          "help, docs/cli.md and docs/shmlane.1 agree on %d commands" % len(commands))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
