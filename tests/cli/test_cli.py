#!/usr/bin/env python3
"""Tests for the shmlane command-line tool. Python 3 stdlib only.

Usage: test_cli.py PATH-TO-shmlane PATH-TO-stream_peer
Exit status: 0 pass, 1 fail, 77 skip (no /dev/shm).

Every segment (and planted foreign file) is named cli<pid>-<tag>, so parallel
runs never collide, and everything matching is removed at the end, even when a
check fails or the run is interrupted. So are the stream_peer processes, which
write the streams (the CLI cannot create one).
"""
import fcntl
import glob
import json
import os
import pwd
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys

SHM_DIR = "/dev/shm"
PREFIX = "shl."
EXPECTED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "expected")
NATIVE = "<" if sys.byteorder == "little" else ">"

if len(sys.argv) != 3:
    sys.exit("usage: test_cli.py PATH-TO-shmlane PATH-TO-stream_peer")
CLI, PEER = sys.argv[1:]
TAG = "cli%d-" % os.getpid()
failures = []
peers = []


def name(tag):
    return TAG + tag


def shm_path(seg_name):
    return os.path.join(SHM_DIR, PREFIX + seg_name)


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL: " + what, file=sys.stderr)
    return cond


ROOT = os.geteuid() == 0


def as_nobody():
    """In a child, before exec: become nobody (uid and gid 65534)."""
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)


def run(*args, rc=0, output=False, preexec=None, prefix=()):
    """Run the CLI (preexec: called in the child first, e.g. as_nobody;
    prefix: a command that runs it, e.g. in a user namespace); check its
    exit status, that it did not crash, and that a failure prints exactly
    one 'shmlane: ...' line on stderr and nothing on stdout (unless
    `output`: ls lists what it could read before it fails)."""
    p = subprocess.run([*prefix, CLI, *args], capture_output=True, encoding="utf-8",
                       errors="replace", timeout=30, preexec_fn=preexec)
    where = "shmlane %s" % " ".join(args)
    if not check(p.returncode >= 0, "%s: killed by signal %d" % (where, -p.returncode)):
        return p
    check(p.returncode == rc, "%s: exit %d, want %d; stderr: %r" % (where, p.returncode, rc,
                                                                    p.stderr))
    if rc == 0:
        check(p.stderr == "", "%s: unexpected stderr %r" % (where, p.stderr))
    else:
        lines = p.stderr.splitlines()
        check(len(lines) == 1 and lines[0].startswith("shmlane: "),
              "%s: want one 'shmlane: ...' line on stderr, got %r" % (where, p.stderr))
        check(output or p.stdout == "", "%s: unexpected stdout on failure %r" % (where, p.stdout))
    return p


def info_json(seg_name, *args):
    p = run("info", "--json", seg_name, *args)
    try:
        return json.loads(p.stdout)
    except ValueError as e:
        check(False, "info --json %s: invalid JSON (%s): %r" % (seg_name, e, p.stdout))
        return {}


def ls_json():
    p = run("ls", "--json")
    try:
        entries = json.loads(p.stdout)
    except ValueError as e:
        check(False, "ls --json: invalid JSON (%s): %r" % (e, p.stdout))
        return {}
    check(isinstance(entries, list), "ls --json: not an array")
    return {e["name"]: e for e in entries}


# Fields that change from run to run, and what they become.
VOLATILE = [
    (re.compile(r"^(owner:\s+).*$"), r"\1<owner>"),
    (re.compile(r"^(creator pid:\s+)\d+"), r"\1<pid>"),
    (re.compile(r"^(created:\s+).* \((\d+[smhd]) ago\)$"), r"\1<time> (<age> ago)"),
    (re.compile(r"^(changes:\s+)\d+$"), r"\1<changes>"),
    (re.compile(r"^(writer pid:\s+)\d+"), r"\1<pid>"),
    (re.compile(r"^(last frame:\s+)\S+ ago$"), r"\1<age> ago"),
]


def normalise(text, seg_name):
    out = []
    for line in text.replace(seg_name, "<name>").splitlines():
        for pattern, repl in VOLATILE:
            line = pattern.sub(repl, line)
        out.append(line)
    return out


def check_info_golden(seg_name, expected_file):
    p = run("info", seg_name)
    with open(os.path.join(EXPECTED_DIR, expected_file), encoding="utf-8") as f:
        want = f.read().splitlines()
    got = normalise(p.stdout, seg_name)
    check(got == want, "info %s differs from %s:\n  got:  %s\n  want: %s"
          % (seg_name, expected_file, "\n        ".join(got), "\n        ".join(want)))


def test_help_and_version():
    p = run("--version")
    check(re.fullmatch(r"shmlane \d+\.\d+\.\d+\n", p.stdout), "--version: %r" % p.stdout)
    for args in (["--help"], ["-h"], ["ls", "--help"], ["info", "--help"], ["create", "--help"],
                 ["rm", "--help"], ["gc", "--help"], ["create", "x", "--help"]):
        p = run(*args)
        check(p.stdout.startswith("Usage: shmlane"), "%s: %r" % (args, p.stdout[:80]))
        if args[0] in ("ls", "info"):
            check("--no-rate" in p.stdout, "%s does not mention --no-rate" % args)
    p = run("--help")
    for command in ("ls", "info", "create", "rm", "gc"):
        check(re.search(r"^  %s " % command, p.stdout, re.M), "--help lacks command " + command)


def test_create_info():
    arr, st = name("arr"), name("st")
    run("create", arr, "--format", "<f8", "--shape", "3,4")
    check_info_golden(arr, "info_array.txt")
    run("create", st, "--format=T{<i:x:<d:y:}", "--shape", "()")
    check_info_golden(st, "info_struct.txt")

    j = info_json(arr)
    want = {"name": arr, "status": "ok", "kind": "array", "format": "<d", "itemsize": 8,
            "ndim": 2, "shape": [3, 4], "strides": [32, 8], "payload_size": 96, "mode": 0o600,
            "uid": os.getuid(), "owner": pwd.getpwuid(os.getuid()).pw_name, "creator_alive": False, "changes": 0, "version": 0, "format_version": 5,
            "stream": None}
    for key, value in want.items():
        check(j.get(key) == value, "info --json %s: %s = %r, want %r" % (arr, key, j.get(key),
                                                                          value))
    for key in ("total_size", "creator_pid", "created_ns", "age_s"):
        check(isinstance(j.get(key), int), "info --json %s: %s missing or not an integer"
              % (arr, key))
    check(0 <= j.get("age_s", -1) < 600, "info --json: implausible age_s %r" % j.get("age_s"))

    j = info_json(st)
    check(j.get("kind") == "struct" and j.get("ndim") == 0 and j.get("shape") == []
          and j.get("itemsize") == 12 and "stream" in j and j["stream"] is None,
          "info --json %s: %r" % (st, j))

    # Options after the name, short forms, a parenthesised shape, a mode.
    grp = name("grp")
    run("create", grp, "-f", "u2", "-s", "(5)", "-m", "0640")
    j = info_json(grp)
    check(j.get("mode") == 0o640, "create --mode 0640: mode = %r" % j.get("mode"))
    check(j.get("shape") == [5] and j.get("format") == NATIVE + "H", "create -s (5): %r" % j)


def test_numpy_formats():
    seg = name("np")
    cases = [("f8", NATIVE + "d", 8), ("<f8", "<d", 8), (">f8", ">d", 8), ("=f4", NATIVE + "f", 4),
             ("f2", NATIVE + "e", 2), ("u1", "B", 1), ("i1", "b", 1), ("|u1", "B", 1),
             ("u2", NATIVE + "H", 2), ("i2", NATIVE + "h", 2), (">i4", ">i", 4),
             ("u4", NATIVE + "I", 4), ("u8", NATIVE + "Q", 8), ("i8", NATIVE + "q", 8),
             ("c8", NATIVE + "Zf", 8), ("<c16", "<Zd", 16), ("b1", "?", 1), ("?", "?", 1),
             ("B", "B", 1), ("<d", "<d", 8), ("(2)<h", "(2)<h", 4), ("S16", "16s", 16),
             ("|S3", "3s", 3), ("<U3", "<3w", 12), (">U1", ">1w", 4)]
    for given, fmt, itemsize in cases:
        run("create", seg, "--replace", "--format", given, "--shape", "2")
        j = info_json(seg)
        check(j.get("format") == fmt and j.get("itemsize") == itemsize
              and j.get("payload_size") == 2 * itemsize,
              "--format %s: got format %r itemsize %r, want %r %d"
              % (given, j.get("format"), j.get("itemsize"), fmt, itemsize))


def test_format_limit():
    seg = name("wide")
    run("create", seg, "--format", "B" * 256)  # SHL_FORMAT_MAX_FIELDS items
    check(info_json(seg).get("itemsize") == 256, "create with 256 items")
    p = run("create", name("x"), "--format", "B" * 257, rc=2)
    check("256 items" in p.stderr, "create with 257 items: %r" % p.stderr)
    run("rm", seg)


def test_formats_read_as_bytes():
    """C char arrays, however a header spells them, show as the byte strings
    every reader reads (the canonical form), below the format as stored."""
    st = name("chars")
    run("create", st, "--format", "T{<Q:frame:(16)1s:source:}")
    lines = run("info", st).stdout.splitlines()
    at = [i for i, line in enumerate(lines) if line.startswith("format:")]
    check(at and lines[at[0]].split() == ["format:", "T{<Q:frame:(16)1s:source:}"]
          and lines[at[0] + 1].split() == ["reads", "as", "T{<Q:frame:16s:source:}"],
          "info of a char-array struct: %r" % lines[:4])
    check(info_json(st).get("format") == "T{<Q:frame:(16)1s:source:}",
          "info --json keeps the format as stored")
    # Stream metadata too; a format already canonical gets no second line.
    stream = name("charmeta")
    stop_peer(start_peer(stream, 1, 0, 0, "T{<Q:frame:(64)<c:source:}"))
    lines = run("info", "--no-rate", stream).stdout.splitlines()
    at = [i for i, line in enumerate(lines) if line.startswith("metadata:")]
    check(at and lines[at[0] + 1].split() == ["reads", "as", "T{<Q:frame:64s:source:}"],
          "info of a stream with char-array metadata: %r" % lines)
    check(not any(line.split()[:2] == ["reads", "as"] for line in lines[:at[0]]),
          "info: a canonical frame format got a 'reads as' line: %r" % lines)
    run("rm", st, stream)


def test_strides_as_recorded():
    # shl_create stores C-order strides; zeros are what a writer put there,
    # and what the library then addresses with: every element at offset 0.
    seg = name("zs")
    run("create", seg, "--format", "f8", "--shape", "3,4")
    with open(shm_path(seg), "r+b") as f:
        f.seek(192)  # strides[8], docs/format.md
        f.write(bytes(16))
    check(info_json(seg).get("strides") == [0, 0], "info --json strides: %r"
          % info_json(seg).get("strides"))
    check(info_fields(seg, "--no-rate").get("strides") == "0,0", "info strides: %r"
          % info_fields(seg, "--no-rate").get("strides"))
    run("rm", seg)


def test_owner():
    """info and ls show the owner, also another user's, and a uid with no name."""
    if not ROOT:
        return
    seg, nameless = name("own"), 54321
    run("create", seg, "--format", "u1")
    os.chown(shm_path(seg), 65534, -1)
    nobody = pwd.getpwuid(65534).pw_name
    j = info_json(seg)
    check(j.get("uid") == 65534 and j.get("owner") == nobody, "info --json owner: %r" % j)
    fields = info_fields(seg, "--no-rate")
    check(fields.get("owner") == "%s (uid 65534)" % nobody, "info owner: %r" % fields)
    check(ls_rows("--no-rate").get(seg, [])[8:9] == [nobody], "ls owner of %s" % seg)
    try:
        pwd.getpwuid(nameless)
        return  # this machine names it: nothing more to check
    except KeyError:
        pass
    os.chown(shm_path(seg), nameless, -1)
    j = info_json(seg)
    check(j.get("uid") == nameless and "owner" in j and j["owner"] is None,
          "info --json of a nameless owner: %r" % j)
    fields = info_fields(seg, "--no-rate")
    check(fields.get("owner") == "uid %d" % nameless, "info of a nameless owner: %r" % fields)
    check(ls_rows("--no-rate").get(seg, [])[8:9] == [str(nameless)], "ls of a nameless owner")
    run("rm", seg)


def test_ls_closes_as_it_goes():
    # Each entry is read and closed before the next: 64 segments list under a
    # limit of 16 descriptors.
    many = [name("fd%02d" % i) for i in range(64)]
    for seg in many:
        run("create", seg, "--format", "u1")
    limit = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (16, 16))
    p = run("ls", "--json", "--no-rate", preexec=limit)
    try:
        entries = {e["name"]: e for e in json.loads(p.stdout)}
    except ValueError:
        entries = {}
    bad = [(seg, entries.get(seg, {}).get("status")) for seg in many
           if entries.get(seg, {}).get("status") != "ok"]
    check(not bad, "ls under 16 descriptors: %d of %d not ok, e.g. %r" % (len(bad), len(many),
                                                                       bad[:3]))
    run("rm", *many)


def test_ls_private_and_unreadable_entries():
    """Another user's private object (0600, the default) is listed as
    private with its owner, and ls exits 0: on any shared machine it exited 1
    (EACCES). An entry ls cannot read for another reason (its own object,
    mode 0000, here) still makes it exit 1."""
    if not ROOT:
        return
    seg, own = name("private"), name("ownlocked")
    run("create", seg, "--format", "u1", "--mode", "0600")
    for args in (["ls", "--no-rate"], ["ls", "--json", "--no-rate"]):
        p = run(*args, output=True, preexec=as_nobody)
        check("could not be read" not in p.stderr, "%s as nobody: %r" % (args, p.stderr))
    row = [line.split() for line in run("ls", "--no-rate", output=True, preexec=as_nobody)
           .stdout.splitlines() if line.split()[:1] == [seg]]
    check(row and row[0][8:10] == [pwd.getpwuid(0).pw_name, "private"] and row[0][1] == "-",
          "ls as nobody, root's private object: %r" % row)
    entries = {e["name"]: e for e in json.loads(
        run("ls", "--json", "--no-rate", output=True, preexec=as_nobody).stdout)}
    e = entries.get(seg, {})
    check(e.get("status") == "private" and e.get("uid") == 0 and "kind" not in e,
          "ls --json as nobody, root's private object: %r" % e)
    run("create", own, "--format", "u1")
    os.chown(shm_path(own), 65534, 65534)
    os.chmod(shm_path(own), 0)
    for args in (["ls", "--no-rate"], ["ls", "--json", "--no-rate"]):
        p = run(*args, rc=1, output=True, preexec=as_nobody)
        check("could not be read" in p.stderr, "%s as nobody: %r" % (args, p.stderr))
        check(own in p.stdout and "EACCES" in p.stdout, "%s as nobody lacks %s: %r"
              % (args, own, p.stdout[:200]))
    run("rm", seg, own)


LS_COLUMNS = ["NAME", "KIND", "SHAPE", "BYTES", "CHANGES", "PID", "ALIVE", "AGE", "OWNER",
              "STATUS", "STREAM", "FORMAT"]


def ls_rows(*args):
    """`ls` table rows by name, each split on blanks."""
    p = run("ls", *args)
    return {line.split()[0]: line.split() for line in p.stdout.splitlines()[1:] if line.split()}


def test_ls():
    arr, st = name("arr"), name("st")
    p = run("ls")
    lines = p.stdout.splitlines()
    check(lines and lines[0].split() == LS_COLUMNS, "ls header: %r" % (lines[:1],))
    rows = {}
    for line in lines[1:]:  # the first row of a name: its stream's or segment's
        if line.split():
            rows.setdefault(line.split()[0], line.split())
    row = rows.get(arr, [])
    me = pwd.getpwuid(os.getuid()).pw_name
    check(len(row) == 12 and row[1:5] == ["array", "3,4", "96", "0"] and row[5].isdigit()
          and row[6] == "no" and re.fullmatch(r"\d+[smhd]", row[7])
          and row[8:] == [me, "ok", "-", "<d"], "ls row for %s: %r" % (arr, row))
    row = rows.get(st, [])
    check(row[1:3] == ["struct", "()"] and row[-1] == "T{<i:x:<d:y:}", "ls row for %s: %r"
          % (st, row))
    # Columns line up: the last column (FORMAT) starts at the same place in every row.
    col = lines[0].find("FORMAT") if lines else -1
    for line in lines[1:]:
        check(line[col - 2:col] == "  " and line[col] != " ", "ls: misaligned row %r" % line)

    entries = ls_json()
    check(entries.get(arr, {}).get("shape") == [3, 4], "ls --json %s: %r" % (arr, entries.get(arr)))
    check(entries.get(st, {}).get("kind") == "struct", "ls --json %s: %r" % (st, entries.get(st)))
    check(entries.get(arr) == dict(info_json(arr), age_s=entries.get(arr, {}).get("age_s")),
          "ls --json and info --json disagree on %s" % arr)


def start_peer(seg_name, count, fps, readers, meta_format=None):
    """A stream_peer writing seg_name, once it has published (see stream_peer.c)."""
    extra = [meta_format] if meta_format else []
    p = subprocess.Popen([PEER, seg_name, str(count), str(fps), str(readers)] + extra,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, encoding="utf-8")
    peers.append(p)
    line = p.stdout.readline()
    check(line == "ready\n", "stream_peer %s: said %r, want 'ready'" % (seg_name, line))
    return p


def stop_peer(p, kill=False):
    """Closing stdin lets the peer close its writer; SIGKILL leaves it claimed by a dead pid."""
    if kill:
        p.kill()
    else:
        p.stdin.close()
    # Reaped, or a zombie would still count as alive.
    rc = p.wait(timeout=10)
    check(rc == (-signal.SIGKILL if kill else 0), "stream_peer exited with %d" % rc)


def info_fields(seg_name, *args):
    """`info` text as {key: value}."""
    return dict(re.findall(r"^(.+?):\s+(.*)$", run("info", seg_name, *args).stdout, re.M))


def check_stream(where, stream, **want):
    for key, value in want.items():
        check(isinstance(stream, dict) and stream.get(key) == value,
              "%s: stream %s = %r, want %r" % (where, key, (stream or {}).get(key), value))


# Everything but the frame count and rate is fixed by stream_peer.
PEER_STREAM = {"slots": 4, "slot_stride": 128, "max_readers": 8, "blocking": False,
               "meta_format": "T{<Q:frame:<d:exposure:}", "meta_size": 16, "meta_offset": 64}


def test_stream_live():
    live = name("live")
    peer = start_peer(live, 0, 50, 2)

    j = info_json(live)
    check(j.get("kind") == "stream" and j.get("format") == "<f" and j.get("shape") == [2, 3]
          and j.get("payload_size") == 4 * 128, "info --json %s: %r" % (live, j))
    s = j.get("stream")
    check_stream("info --json", s, readers_alive=2, writer_pid=peer.pid, writer_alive=True,
                 **PEER_STREAM)
    s = s or {}
    check(s.get("last_seq", 0) >= 1, "info --json: last_seq %r" % s.get("last_seq"))
    check(0 <= s.get("last_frame_age_s", -1) < 10, "info --json: last_frame_age_s %r"
          % s.get("last_frame_age_s"))
    # Loose bounds: the rate only has to show that frames are flowing.
    check(0 < s.get("fps", 0) < 1000, "info --json: fps %r while publishing" % s.get("fps"))

    f = info_fields(live)
    for key, value in (("kind", "stream"), ("slots", "4"), ("slot stride", "128"),
                       ("max readers", "8"), ("readers alive", "2"), ("blocking", "no"),
                       ("writer pid", "%d (alive: yes)" % peer.pid)):
        check(f.get(key) == value, "info %s: %s: %r, want %r" % (live, key, f.get(key), value))
    check(re.fullmatch(r"\d+", f.get("last seq", "")) and int(f["last seq"]) >= 1,
          "info: last seq %r" % f.get("last seq"))
    check(re.fullmatch(r"\d+\.\d{3}s ago", f.get("last frame", "")), "info: last frame %r"
          % f.get("last frame"))
    m = re.fullmatch(r"(\d+\.\d) fps", f.get("frame rate", ""))
    check(m and float(m.group(1)) > 0, "info: frame rate %r" % f.get("frame rate"))

    row = ls_rows().get(live, [])
    m = len(row) == 12 and re.fullmatch(r"slots=4,readers=2,seq=(\d+),fps=(\d+\.\d)", row[10])
    check(m and row[1:4] == ["stream", "2,3", "512"] and row[11] == "<f" and int(m.group(1)) >= 1
          and float(m.group(2)) > 0, "ls row for %s: %r" % (live, row))
    s = ls_json().get(live, {}).get("stream")
    check_stream("ls --json", s, readers_alive=2, writer_alive=True, **PEER_STREAM)
    check(0 < (s or {}).get("fps", 0), "ls --json: fps %r" % (s or {}).get("fps"))

    # --no-rate: everything but the rate.
    s = info_json(live, "--no-rate").get("stream")
    check_stream("info --json --no-rate", s, readers_alive=2, fps=None, **PEER_STREAM)
    check(info_fields(live, "--no-rate").get("frame rate") == "not measured",
          "info --no-rate: frame rate line")
    row = ls_rows("--no-rate").get(live, [])
    check(len(row) == 12 and re.fullmatch(r"slots=4,readers=2,seq=\d+", row[10]),
          "ls --no-rate row for %s: %r" % (live, row))

    # A writer that closes gives the stream up: no writer, no readers, no frames.
    stop_peer(peer)
    check_stream("after close", info_json(live).get("stream"), writer_pid=None,
                 writer_alive=False, readers_alive=0, fps=0.0)
    run("rm", live)


def test_stream_writer_gone():
    done = name("done")
    stop_peer(start_peer(done, 5, 0, 1))
    check_info_golden(done, "info_stream.txt")
    j = info_json(done)
    check_stream("info --json", j.get("stream"), writer_pid=None, writer_alive=False,
                 readers_alive=0, last_seq=5, fps=0.0, **PEER_STREAM)
    # ls and info agree but for the ages.
    e = ls_json().get(done, {})
    for obj in (j, e):
        obj.pop("age_s", None)
        (obj.get("stream") or {}).pop("last_frame_age_s", None)
    check(e == j, "ls --json and info --json disagree on %s:\n  %r\n  %r" % (done, e, j))

    # A killed writer still holds the stream, under a dead pid.
    crash = name("crash")
    peer = start_peer(crash, 3, 0, 1)
    stop_peer(peer, kill=True)
    check_stream("info --json after kill", info_json(crash).get("stream"), writer_pid=peer.pid,
                 writer_alive=False, readers_alive=0, last_seq=3, fps=0.0)
    f = info_fields(crash)
    check(f.get("writer pid") == "%d (alive: no)" % peer.pid, "info after kill: writer pid %r"
          % f.get("writer pid"))
    row = ls_rows().get(crash, [])
    check(row[10:11] == ["slots=4,readers=0,seq=3,fps=0.0"], "ls row for %s: %r" % (crash, row))
    run("rm", done, crash)


def gc(*args, rc=0, preexec=None, prefix=()):
    """Run gc; the names it says it removed (or would remove)."""
    p = run("gc", *args, rc=rc, preexec=preexec, prefix=prefix)
    return re.findall(r"^(?:removed|would remove) (\S+) \(", p.stdout, re.M)


def hold_creator_role(fd):
    """Take the creator role lock of the object open as fd, as a creator
    does (docs/format.md, Role locks): an open-file-description lock on byte
    2^50 (struct flock as Linux lays it out on 64-bit machines)."""
    F_OFD_SETLK = 37
    fcntl.fcntl(fd, F_OFD_SETLK, struct.pack("hhxxxxqqixxxx", fcntl.F_WRLCK, os.SEEK_SET, 1 << 50,
                                              1, 0))


def age(seg_name, seconds):
    """Make an object look last changed `seconds` ago (gc ages stuck objects by mtime)."""
    t = os.stat(shm_path(seg_name)).st_mtime - seconds
    os.utime(shm_path(seg_name), (t, t))


def test_top():
    """`top` against a stream being published with two readers, one whose
    writer was killed, and an array: the text table, JSON lines, --count."""
    live, dead, arr = name("top"), name("topdead"), name("toparr")
    peer = start_peer(live, 0, 50, 2)
    stop_peer(start_peer(dead, 3, 0, 1), kill=True)
    run("create", arr, "--format", "f8", "--shape", "2")

    p = run("top", "--once")
    lines = p.stdout.splitlines()
    check(lines and lines[0].startswith("shmlane top - ") and "\033" not in p.stdout,
          "top --once: first line %r" % lines[:1])
    rows = {}
    for line in lines[1:]:  # the first row of a name: its stream's or segment's
        if line.split():
            rows.setdefault(line.split()[0], line.split())
    check(rows.get("STREAM", [])[:7] == ["STREAM", "WRITER", "ALIVE", "FPS", "SEQ", "READERS",
                                         "SLOTS"], "top: stream header %r" % rows.get("STREAM"))
    row = rows.get(live, [])
    check(len(row) == 10 and row[1:3] == [str(peer.pid), "yes"] and float(row[3]) > 0
          and int(row[4]) >= 1 and row[5:7] == ["2/8", "0/4"]
          and row[9] == PEER_STREAM["meta_format"], "top row for %s: %r" % (live, row))
    # Its two readers, each a row of the readers' table: the peer's `latest`
    # readers, alive, pinning nothing (they never receive).
    mine = [line.split() for line in lines if line.split()[:1] == [live]]
    check(len(mine) == 3 and all(r[1:] == [str(peer.pid), "yes", "latest", "0", "-", "0"]
                                 for r in mine[1:]), "top reader rows of %s: %r" % (live, mine))
    row = rows.get(dead, [])
    check(len(row) == 10 and row[2:7] == ["no", "0.0", "3", "0/8", "0/4"],
          "top row for %s (writer killed): %r" % (dead, row))
    row = rows.get(arr, [])
    check(row[1:5] == ["array", "2", "0", "0.0"] and row[-2:] == ["ok", "<d"],
          "top row for %s: %r" % (arr, row))

    p = run("top", "--json", "--count", "2")
    lines = p.stdout.splitlines()
    check(len(lines) == 2, "top --json --count 2: %d lines" % len(lines))
    for line in lines:
        try:
            entries = {e["name"]: e for e in json.loads(line)["entries"]}
        except (ValueError, KeyError, TypeError) as e:
            check(False, "top --json: not a table of entries (%s): %r" % (e, line[:200]))
            continue
        s = entries.get(live, {}).get("stream")
        check_stream("top --json", s, readers_alive=2, writer_pid=peer.pid, writer_alive=True,
                     **PEER_STREAM)
        check((s or {}).get("readers") == [{"pid": peer.pid, "alive": True, "policy": "latest",
                                            "pinned": 0, "next_seq": None, "lost": 0}] * 2,
              "top --json: readers of %s: %r" % (live, (s or {}).get("readers")))
        check(0 < (s or {}).get("fps", 0) and 0 < entries.get(live, {}).get("changes_per_s", 0),
              "top --json: rates of %s: %r" % (live, entries.get(live)))
        check(entries.get(arr, {}).get("changes_per_s") == 0.0, "top --json: %r"
              % entries.get(arr))
    p = run("top", "--count", "2")  # into a pipe: the tables follow each other
    check(p.stdout.count("shmlane top - ") == 2 and "\n\nshmlane top - " in p.stdout,
          "top --count 2: %r" % p.stdout[:300])
    for args in (["--count", "0"], ["--count", "x"], ["--once", "--count", "2"], [arr]):
        run("top", *args, rc=2)
    stop_peer(peer)
    run("rm", live, dead, arr)


def start_reader(seg_name, policy):
    """A stream_peer --reader of seg_name, once open."""
    p = subprocess.Popen([PEER, "--reader", policy, seg_name], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, encoding="utf-8")
    peers.append(p)
    line = p.stdout.readline()
    check(line == "ready\n", "stream_peer --reader %s: said %r, want 'ready'" % (seg_name, line))
    return p


def ask(p, line):
    p.stdin.write(line + "\n")
    p.stdin.flush()


def drain(reader):
    """What the reader receives now, without waiting: [(seq, lost)]."""
    ask(reader, "")
    got = []
    for line in reader.stdout:
        if line == "end\n":
            break
        seq, lost = line.split()
        got.append((int(seq), int(lost)))
    return got


def publish(writer, n):
    """n frames more from a stream_peer writer; the last one's number."""
    ask(writer, str(n))
    line = writer.stdout.readline()
    check(line.startswith("published "), "stream_peer: said %r, want 'published SEQ'" % line)
    return int(line.split()[1]) if line.startswith("published ") else 0


def test_top_losses():
    """The losses each reader reports in its entry, seen by `top --once
    --json`, `top` and `info`: a writer and three readers, each a process
    of its own. An `all` reader lapped by the writer, a `latest` one that
    skips, an `all` one that keeps up; each counts every frame, received or
    lost, and each keeps its last sample pinned."""
    live = name("toplost")
    writer = start_peer(live, 1, 0, 0)
    lapped, skipping = start_reader(live, "all"), start_reader(live, "latest")
    got = {lapped: drain(lapped), skipping: drain(skipping)}
    check(got[lapped] == got[skipping] == [(1, 0)], "first frame: %r" % list(got.values()))
    last = publish(writer, 10)  # a ring of 4 slots: `lapped` misses frames
    for r in (lapped, skipping):
        got[r] += drain(r)
    keeping = start_reader(live, "all")
    got[keeping] = drain(keeping)  # from the newest frame on
    last = publish(writer, 2)
    got[keeping] += drain(keeping)
    want = {}
    for r, policy, first in ((lapped, "all", 1), (skipping, "latest", 1),
                             (keeping, "all", last - 2)):
        seqs = [seq for seq, _ in got[r]]
        lost = sum(n for _, n in got[r])
        # Every frame from its first to the newest it saw: received, or counted lost.
        check(seqs and seqs[0] == first and len(seqs) + lost == seqs[-1] - first + 1,
              "reader %d (%s) received %r" % (r.pid, policy, got[r]))
        want[r.pid] = {"pid": r.pid, "alive": True, "policy": policy, "pinned": 1,
                       "next_seq": seqs[-1] + 1 if policy == "all" else None, "lost": lost}
    check(want[lapped.pid]["lost"] > 0 and want[skipping.pid]["lost"] > 0
          and want[keeping.pid]["lost"] == 0, "losses: %r" % want)

    p = run("top", "--once", "--json")
    try:
        (entry,) = [e for e in json.loads(p.stdout)["entries"] if e["name"] == live]
        readers = entry["stream"]["readers"]
    except (ValueError, KeyError, TypeError) as e:
        check(False, "top --once --json: %s: %r" % (e, p.stdout[:300]))
        readers = []
    check(sorted(readers, key=lambda r: r["pid"]) == [want[pid] for pid in sorted(want)],
          "top --once --json: readers of %s: %r, want %r" % (live, readers, want))
    check((info_json(live).get("stream") or {}).get("readers") == readers,
          "info --json: readers differ from top's")

    rows = [line.split() for line in run("top", "--once").stdout.splitlines()]
    check(["READER", "OF", "PID", "ALIVE", "POLICY", "PINNED", "NEXT", "LOST"] in rows,
          "top: no reader table header")
    shown = sorted(row[1:] for row in rows if row[:1] == [live] and len(row) == 7)
    check(shown == sorted([str(r["pid"]), "yes", r["policy"], "1", str(r["next_seq"] or "-"),
                           str(r["lost"])] for r in want.values()),
          "top reader rows of %s: %r" % (live, shown))
    lines = re.findall(r"^reader: +(.*)$", run("info", live, "--no-rate").stdout, re.M)
    check(sorted(lines) == sorted(
        "pid %d (alive: yes), %s, pinned 1%s, lost %d" % (
            r["pid"], r["policy"], ", next %d" % r["next_seq"] if r["next_seq"] else "",
            r["lost"]) for r in want.values()), "info reader lines: %r" % lines)
    for p in (lapped, skipping, keeping, writer):
        stop_peer(p)
    run("rm", live)


def test_gc():
    # Every run names its segments: gc over all of /dev/shm would touch other tests' streams.
    live, closed, killed = name("gclive"), name("gcclosed"), name("gckilled")
    arr, empty, zeros, text = name("gcarr"), name("gcempty"), name("gczeros"), name("gctext")
    everything = [live, closed, killed, arr, empty, zeros, text, name("gcmissing")]
    peer = start_peer(live, 0, 50, 1)
    stop_peer(start_peer(closed, 2, 0, 0))
    stop_peer(start_peer(killed, 2, 0, 1), kill=True)
    run("create", arr, "--format", "f8", "--shape", "4")
    plant("gcempty", b"")            # creator died before ftruncate
    plant("gczeros", bytes(8192))    # creator died before writing the header
    plant("gctext", b"not ours\n")  # foreign: never gc's to remove
    for seg in (empty, zeros, text):
        age(seg, 3600)
    exists = lambda seg: os.path.exists(shm_path(seg))

    # Dry run: says what would go, removes nothing.
    got = gc("--dry-run", *everything)
    check(sorted(got) == sorted([closed, killed, empty, zeros]), "gc --dry-run: %r" % got)
    got = gc("-n", "--all-dead", *everything)
    check(sorted(got) == sorted([closed, killed, arr, empty, zeros]), "gc -n --all-dead: %r" % got)
    check(all(exists(seg) for seg in everything[:-1]), "gc --dry-run removed something")

    # A fresh never-initialised object is within its grace period.
    fresh = plant("gcfresh", b"")
    check(gc(fresh) == [] and exists(fresh), "gc removed an object within its grace period")
    check(gc("--grace", "0", fresh) == [fresh] and not exists(fresh),
          "gc --grace 0 kept a never-initialised object")
    # Not ready while its creator holds the creator role lock (a large
    # reservation, a stopped creator): alive, kept whatever its age; once the
    # lock is free, removed at once.
    slow = plant("gcslow", bytes(8192))
    age(slow, 3600)
    fd = os.open(shm_path(slow), os.O_RDWR)
    try:
        hold_creator_role(fd)
        check(gc(slow) == [] and gc("--grace", "0", slow) == [] and exists(slow),
              "gc removed an object whose creator holds its role lock")
    finally:
        os.close(fd)
    check(gc(slow) == [slow] and not exists(slow), "gc kept an object whose creator died")

    got = gc(*everything)
    check(sorted(got) == sorted([closed, killed, empty, zeros]), "gc removed %r" % got)
    for seg in (live, arr, text):
        check(exists(seg), "gc removed %s" % seg)
    check_stream("gc kept the live stream", info_json(live).get("stream"), writer_alive=True,
                 readers_alive=1)
    # Idempotent: a second run finds nothing and succeeds.
    check(gc(*everything) == [], "second gc removed something")
    got = gc("--all-dead", *everything)
    check(got == [arr] and exists(live) and exists(text), "gc --all-dead removed %r" % got)

    # Once its writer has closed (and its readers with it), the stream goes too.
    stop_peer(peer)
    check(gc(live) == [live] and not exists(live), "gc kept a stream nobody uses")
    run("rm", text)

    # Several gc at once: every one succeeds, each segment is removed once.
    many = []
    for i in range(4):
        stop_peer(start_peer(name("gcs%d" % i), 1, 0, 0), kill=True)
        many.append(name("gcs%d" % i))
        many.append(plant("gcz%d" % i, b""))
        age(many[-1], 3600)
    procs = [subprocess.Popen([CLI, "gc", *many], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              encoding="utf-8") for _ in range(3)]
    removed = []
    for p in procs:
        out, err = p.communicate(timeout=30)
        check(p.returncode == 0 and err == "", "concurrent gc: exit %d, stderr %r"
              % (p.returncode, err))
        removed += re.findall(r"^removed (\S+) ", out, re.M)
    check(not any(exists(seg) for seg in many), "concurrent gc left segments behind")
    check(sorted(removed) == sorted(many), "concurrent gc reported removals %r of %r"
          % (sorted(removed), sorted(many)))

    # Only this user's objects; root's gc takes anyone's.
    if ROOT:
        mine, theirs = plant("gcroot", b""), plant("gcnobody", b"")
        os.chown(shm_path(theirs), 65534, 65534)
        for seg in (mine, theirs):
            age(seg, 3600)
        check(gc(mine, theirs, preexec=as_nobody) == [theirs] and exists(mine),
              "gc as nobody touched root's object")
        theirs = plant("gcnobody", b"")
        os.chown(shm_path(theirs), 65534, 65534)
        age(theirs, 3600)
        check(sorted(gc(mine, theirs)) == sorted([mine, theirs]),
              "gc as root kept another user's dead object")
        # The root of a user namespace (a rootless container: uid 65533 here,
        # its namespace mapping it alone) is root only over the owners it
        # maps: another user's dead object is kept, not a removal that fails.
        ns_root = ("setpriv", "--reuid=65533", "--regid=65533", "--clear-groups", "unshare",
                   "--user", "--map-root-user")
        if (shutil.which("setpriv") and shutil.which("unshare")
                and subprocess.run([*ns_root, "true"], capture_output=True).returncode == 0):
            ours, theirs = plant("gcnsroot", b""), plant("gcnobody", b"")
            os.chown(shm_path(ours), 65533, 65533)
            os.chown(shm_path(theirs), 65534, 65534)
            for seg in (ours, theirs):
                age(seg, 3600)
            check(gc("-n", ours, theirs, prefix=ns_root) == [ours],
                  "gc -n in a user namespace would remove what it may not")
            check(gc(ours, theirs, prefix=ns_root) == [ours] and exists(theirs)
                  and not exists(ours), "gc in a user namespace: %s" % sorted(
                      seg for seg in (ours, theirs) if exists(seg)))
            run("rm", theirs)

    for args in (["gc", "--grace"], ["gc", "--grace", "-1"], ["gc", "--grace", "1.5"],
                 ["gc", "--grace", "x"], ["gc", "--json"], ["gc", "bad/name"]):
        run(*args, rc=2)


def test_usage_errors():
    existing = name("arr")
    for args in (["frob"], ["--frob"], [], ["info"], ["rm"], ["create", "--format", "f8"],
                 ["create", name("x")], ["create", name("x"), "--format"],
                 ["ls", "--frob"], ["ls", "--json=yes"], ["ls", "extra"], ["ls", "--no-rate=1"],
                 ["create", name("x"), "--format", "f8", "--no-rate"],
                 ["info", existing, "another"], ["info", "--format", "f8", existing],
                 ["create", "bad name", "--format", "f8"], ["info", "-dash"], ["info", "x" * 27],
                 ["rm", name("never"), "bad/name"],
                 ["create", name("x"), "--format", "zz"], ["create", name("x"), "--format", "T{<i"],
                 ["create", name("x"), "--format", ""],
                 ["create", name("x"), "--format", "f8", "--shape", "3,-1"],
                 ["create", name("x"), "--format", "f8", "--shape", "3,,4"],
                 ["create", name("x"), "--format", "f8", "--shape", "3,"],
                 ["create", name("x"), "--format", "f8", "--shape", " 3"],
                 ["create", name("x"), "--format", "f8", "--shape", "+3"],
                 ["create", name("x"), "--format", "f8", "--shape", "0x10"],
                 ["create", name("x"), "--format", "f8", "--shape", "1,1,1,1,1,1,1,1,1"],
                 ["create", name("x"), "--format", "f8", "--shape", "99999999999999999999999"],
                 ["create", name("x"), "--format", "f8", "--mode", "0999"],
                 ["create", name("x"), "--format", "f8", "--mode", "01777"],
                 ["create", name("x"), "--format", "f8", "--mode", "0"],
                 ["create", name("x"), "--format", "f8", "--mode", "-600"],
                 ["create", name("x"), "--format", "f8", "--mode", "0066"],
                 ["create", name("x"), "--format", "f8", "--mode", "0602"]):
        run(*args, rc=2)
    p = run("create", name("x"), "--format", "f8", "--mode", "0200", rc=2)
    check("bad mode '0200': bad mode: the owner must read and write" in p.stderr,
          "a refused mode's message does not say the rule: %r" % p.stderr)
    check(not os.path.exists(shm_path(name("x"))), "a rejected create left %s behind" % name("x"))
    p = run("create", name("bad") + " x", "--format", "f8", rc=2)
    check(name("bad") + " x" in p.stderr, "bad name message lacks the name: %r" % p.stderr)
    check("1 to 26 characters from A-Z a-z 0-9 . _ -" in p.stderr,
          "bad name message does not say what a valid name is: %r" % p.stderr)
    p = run("frob", rc=2)
    check("frob" in p.stderr, "unknown command message lacks the command: %r" % p.stderr)
    # Every usage error points at the help; `create calib '<d'` forgot --format.
    p = run("create", name("x"), "<d", rc=2)
    check("unexpected argument '<d' (see 'shmlane create --help')" in p.stderr,
          "an unexpected argument's message does not point at the help: %r" % p.stderr)
    # What a message quotes from the command line reaches the terminal as
    # text: no escape sequence, no second line.
    for args in (["info", "x\033[2J\ny"], ["\033]0;title\007"], ["ls", "--x\033[31m"],
                 ["create", name("x"), "--format", "\033[31m"]):
        p = run(*args, rc=2)
        check(not re.search("[\x00-\x1f\x7f]", p.stderr.rstrip("\n")),
              "shmlane %r: raw control characters in %r" % (args, p.stderr))


def test_runtime_errors():
    arr = name("arr")
    p = run("create", arr, "--format", "f8", rc=1)
    check(arr in p.stderr and "File exists" in p.stderr, "create existing: %r" % p.stderr)
    check("--replace" in p.stderr and p.stderr.count("\n") == 1,
          "create existing does not point to --replace on one line: %r" % p.stderr)
    check(info_json(arr).get("shape") == [3, 4], "failed create changed %s" % arr)
    p = run("info", name("missing"), rc=1)
    check(name("missing") in p.stderr, "info missing: %r" % p.stderr)
    # Output that cannot be written: exit 1 and one line that says why.
    for args in (["ls", "--no-rate"], ["top", "--once"], ["info", "--no-rate", arr], ["--help"]):
        with open("/dev/full", "w") as full:
            p = subprocess.run([CLI, *args], stdout=full, stderr=subprocess.PIPE, encoding="utf-8",
                               timeout=30)
        check(p.returncode == 1 and p.stderr.count("\n") == 1 and "No space left" in p.stderr,
              "shmlane %s > /dev/full: exit %d, stderr %r" % (" ".join(args), p.returncode, p.stderr))


def test_bridge_missing():
    """An install without the bridge (a copy of the tool alone, nothing on
    PATH) says how to get one: the wheels, or libzmq's development files."""
    import shutil
    import tempfile
    d = tempfile.mkdtemp(prefix=TAG)
    try:
        copy = shutil.copy(CLI, d)
        env = {"PATH": d, "LD_LIBRARY_PATH": os.path.join(os.path.dirname(os.path.abspath(CLI)),
                                                          "..")}
        p = subprocess.run([copy, "bridge", "send", "cam", "ipc:///nonexistent"],
                           capture_output=True, text=True, timeout=30, env=env)
    finally:
        shutil.rmtree(d)
    lines = p.stderr.splitlines()
    check(p.returncode == 1 and len(lines) == 1 and lines[0].startswith("shmlane: bridge: "),
          "bridge without shmlane-bridge: one line, exit 1: %d %r" % (p.returncode, p.stderr))
    for says in ("wheels include the bridge", "'pip install .'", "libzmq3-dev", "make deps build"):
        check(says in p.stderr, "bridge without shmlane-bridge: says %r: %r" % (says, p.stderr))
    check("never includes" not in p.stderr, "bridge without shmlane-bridge: no stale pip hint")


def plant(tag, data):
    with open(shm_path(name(tag)), "wb") as f:
        f.write(data)
    return name(tag)


def test_foreign_files():
    foreign = [
        plant("text", b"hello, I am not a segment\n"),
        plant("random", os.urandom(4096)),
        plant("magic", b"SHMLANE\0" + b"\xff" * 120),  # our magic, garbage after it
        plant("empty", b""),  # looks like a creator that has not sized it yet
    ]
    # Names shmlane would refuse: listed escaped, so that an operator sees
    # them, their bytes never raw on the terminal (they were left out).
    bad = {TAG + "bad name\x01\xff": TAG + "bad\\x20name\\x01\\xff",
           TAG + "\x1b[31mred\nline": TAG + "\\x1b[31mred\\x0aline"}
    for raw in bad:
        with open(os.path.join(SHM_DIR.encode(), (PREFIX + raw).encode("latin-1")), "wb") as f:
            f.write(b"junk")

    rows = ls_rows()
    entries = ls_json()
    raw_out = run("ls", "--no-rate", output=True).stdout
    for raw, shown in bad.items():
        check(rows.get(shown, [None] * 10)[9] == "SHL_E_BAD_NAME", "ls row for %r: %r"
              % (raw, rows.get(shown)))
        check(entries.get(shown, {}).get("status") == "SHL_E_BAD_NAME", "ls --json for %r: %r"
              % (raw, entries.get(shown)))
    check("\x1b" not in raw_out and "\x01" not in raw_out, "ls let a name's bytes through raw")
    for seg in foreign:
        row = rows.get(seg, [])
        check(len(row) == 12 and row[9].startswith("SHL_E_") and row[1] == "-",
              "ls row for foreign %s: %r" % (seg, row))
        e = entries.get(seg, {})
        check(e.get("status", "ok") != "ok" and e.get("error") and "kind" not in e,
              "ls --json for foreign %s: %r" % (seg, e))
    check(entries.get(name("text"), {}).get("status") == "SHL_E_NOT_SHMLANE",
          "text file not reported as SHL_E_NOT_SHMLANE: %r" % entries.get(name("text")))
    for seg in foreign:
        p = run("info", seg, rc=1)
        check(seg in p.stderr, "info %s: message lacks the name: %r" % (seg, p.stderr))
        run("info", "--json", seg, rc=1)
    check(entries.get(name("arr"), {}).get("status") == "ok", "foreign files hid good segments")
    # rm removes a name whatever it holds: the way to clean up.
    run("rm", name("text"))
    check(not os.path.exists(shm_path(name("text"))), "rm left the foreign file behind")


def test_cut_short_while_read():
    """Whoever owns an object may cut it short while the tool reads it: a
    SIGBUS killed ls, info, gc and top (about one run in three here) when
    they mapped it. Now the entry says SHL_E_TRUNCATED, or whatever the
    object holds then."""
    seg = name("cut")
    stop_peer(start_peer(seg, 3, 0, 1))
    with open(shm_path(seg), "rb") as f:
        content = f.read()
    cutter = os.fork()
    if cutter == 0:  # cuts it to nothing and writes it back, until killed
        try:
            fd = os.open(shm_path(seg), os.O_RDWR)
            while True:
                os.ftruncate(fd, 0)
                os.pwrite(fd, content, 0)
        finally:
            os._exit(0)
    try:
        for i in range(30):
            for args in (["info", "--no-rate", seg], ["ls", "--no-rate"], ["gc", "-n", seg]):
                p = subprocess.run([CLI, *args], capture_output=True, encoding="utf-8",
                                   errors="replace", timeout=30)
                check(p.returncode in (0, 1), "shmlane %s, its object cut short meanwhile: exit %d %r"
                      % (" ".join(args), p.returncode, p.stderr[-200:]))
    finally:
        os.kill(cutter, signal.SIGKILL)
        os.waitpid(cutter, 0)
    run("rm", seg)


def test_rm():
    arr, st = name("arr"), name("st")
    p = run("rm", arr, name("missing"), st, rc=1)
    check(name("missing") in p.stderr, "rm missing: %r" % p.stderr)
    for seg in (arr, st):
        check(not os.path.exists(shm_path(seg)), "rm left %s behind" % seg)
        p = run("info", seg, rc=1)
        check(seg in p.stderr and "No such file" in p.stderr, "info after rm: %r" % p.stderr)
    check(arr not in ls_json(), "ls --json still lists %s after rm" % arr)
    planted = name("dir")
    os.mkdir(shm_path(planted))
    p = run("rm", planted, rc=1)
    check("is a directory, not a segment" in p.stderr and "left in place" in p.stderr,
          "rm of a directory: %r" % p.stderr)
    check(os.path.isdir(shm_path(planted)), "rm removed a directory")
    os.rmdir(shm_path(planted))
    run("rm", name("np"), name("grp"))
    # Another user's object: whose it is and who may remove it (it said only "Permission denied").
    if ROOT:
        theirs = name("theirs")
        run("create", theirs, "--format", "u1", "--mode", "0644")
        p = run("rm", theirs, rc=1, preexec=as_nobody)
        check("Permission denied: it belongs to root (uid 0)" in p.stderr and "only its owner" in p.stderr,
              "rm of another user's object: %r" % p.stderr)
        check(os.path.exists(shm_path(theirs)), "rm as nobody removed root's object")
        run("rm", theirs)


def cleanup():
    for p in peers:
        if p.poll() is None:
            p.kill()
            p.wait()
    for path in glob.glob(os.path.join(glob.escape(SHM_DIR), glob.escape(PREFIX + TAG) + "*")):
        try:
            os.unlink(path)
        except OSError:
            pass


def main():
    if not os.path.isdir(SHM_DIR):
        print("skip: no %s" % SHM_DIR)
        return 77
    # meson's timeout sends SIGTERM: unwind so the cleanup below still runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        for test in (test_help_and_version, test_create_info, test_numpy_formats,
                     test_format_limit, test_formats_read_as_bytes, test_strides_as_recorded,
                     test_owner,
                     test_ls_closes_as_it_goes, test_ls_private_and_unreadable_entries, test_ls,
                     test_stream_live, test_stream_writer_gone, test_top, test_top_losses,
                     test_gc, test_usage_errors, test_runtime_errors, test_bridge_missing,
                     test_foreign_files, test_cut_short_while_read,
                     test_rm):
            before = len(failures)
            test()
            print("%s %s" % ("ok  " if len(failures) == before else "FAIL", test.__name__))
    finally:
        cleanup()
    leftovers = glob.glob(os.path.join(glob.escape(SHM_DIR), glob.escape(PREFIX + TAG) + "*"))
    check(not leftovers, "cleanup left %r" % leftovers)
    print("%d failure(s)" % len(failures) if failures else "all CLI tests passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
