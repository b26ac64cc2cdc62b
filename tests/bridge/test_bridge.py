#!/usr/bin/env python3
"""The bridge end to end: two hosts on loopback, and in two network namespaces
joined by a veth pair (198.51.100.0/24, made and removed here; skipped with
the reason where `ip netns` is not permitted).

Usage: test_bridge.py SHMLANE-BRIDGE BRIDGE_PEER [--quick | --long | --part=N]
  --quick  the loopback frames and the bad peers only (the ASan build)
  --part=N  N = 1, 2, 3: a third of the whole run each (meson runs them side
           by side: they mostly wait); without it, the whole run
  --long   the slow-receiver check at its full length (make test-bridge-long)
  --only=test_NAME   that test alone (repeatable)
Exit status: 0 pass, 1 fail, 77 every test skipped. Python 3 stdlib only.

Each run is bounded in time: every process is started with a deadline and
killed at the end, and every stream name is removed afterwards. The host-A
writer is bridge_peer (frames whose bytes follow from the count in their
metadata), the host-B reader is bridge_peer too: it checks every frame
against its metadata and prints seq, lost, count and new_stream.
"""
import json
import math
import re
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns  # noqa: E402

BRIDGE, PEER = sys.argv[1], sys.argv[2]
QUICK, LONG = "--quick" in sys.argv, "--long" in sys.argv
ONLY = [a[7:] for a in sys.argv if a.startswith("--only=")]  # --only=test_NAME (repeatable)
PART = ([a[7:] for a in sys.argv if a.startswith("--part=")] or ["all"])[0]
CLI = os.path.join(os.path.dirname(os.path.abspath(BRIDGE)), "..", "tools", "shmlane")
TAG = "br%d" % os.getpid()
PORT = 20000 + os.getpid() % 1250 * 16  # PORT .. PORT + 13: runs side by side share none
# ipc:// endpoints live here; a directory others may enter, so that the
# sender's own check of their user is what keeps them out.
SOCKDIR = tempfile.mkdtemp(prefix="shlbr")
os.chmod(SOCKDIR, 0o755)
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
failures, procs = [], []


def ipc(what):
    return "ipc://%s/%s.sock" % (SOCKDIR, what)


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)
    return cond


def start(args, ns=None, stdout=subprocess.PIPE, umask=None):
    if ns:
        args = ["ip", "netns", "exec", ns] + args
    pre = (lambda: os.umask(umask)) if umask is not None else None
    p = subprocess.Popen(args, stdout=stdout, stderr=subprocess.PIPE, text=True, preexec_fn=pre)
    procs.append(p)
    return p


def run(args, timeout=10, ns=None):
    """Runs a command to its end: (exit status, stderr)."""
    if ns:
        args = ["ip", "netns", "exec", ns] + args
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stderr


def stop(p, sig=signal.SIGTERM, timeout=5):
    """Ends p (sig 0: waits for it to end by itself); its stderr. A process
    that does not stop in time is a failure."""
    if p.poll() is None and sig:
        p.send_signal(sig)
    try:
        _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
        check(False, "%s stops within %d s of signal %d" % (p.args, timeout, sig))
    return err or ""


def samples(p, timeout=10):
    out, _ = p.communicate(timeout=timeout)
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def wait_for(path_or_fn, timeout=5):
    end = time.time() + timeout
    while time.time() < end:
        if (path_or_fn() if callable(path_or_fn) else os.path.exists(path_or_fn)):
            return True
        time.sleep(0.02)
    return False


def shm(name):
    return "/dev/shm/shl." + name


def names(suffix):
    return TAG + suffix + "a", TAG + suffix + "b"


def bridge_pair(a, b, endpoint, send_args=(), recv_args=(), ns=(None, None), connect=None):
    s = start([BRIDGE, "send", a, endpoint, *send_args], ns=ns[0])
    r = start([BRIDGE, "recv", connect or endpoint, b, *recv_args], ns=ns[1])
    return s, r


def frames_ok(got, what, count=None):
    frames = [g for g in got if "seq" in g]
    check(frames and all(g["ok"] for g in frames), what + ": every frame matches its metadata")
    check(all(g["seq"] == g["count"] for g in frames),
          what + ": remote sequence numbers are the sender's")
    if count is not None:
        check(len(frames) >= count, what + ": %d frames of %d" % (len(frames), count))
    return frames


# ---------------------------------------------------------------- loopback


def test_frames(endpoint=None, ns=(None, None), connect=None, what="ipc", send_args=(),
                recv_args=()):
    a, b = names("f%s%d" % (what[0], len(what)))
    endpoint = ipc("frames%d" % len(what)) if endpoint is None else endpoint
    endpoint = endpoint % PORT if "%d" in endpoint else endpoint
    s, r = bridge_pair(a, b, endpoint, send_args, recv_args, ns, connect)
    w = start([PEER, "write", a, "0", "100"])
    rd = start([PEER, "read", b, "60", "8"])
    got = samples(rd)
    frames = frames_ok(got, what, 60)
    check(sum(g["lost"] for g in frames[1:]) == 0, what + ": nothing lost at 100 frames/s")
    stop(w)
    serr, rerr = stop(s), stop(r)
    check(s.returncode == 0 and r.returncode == 0, what + ": SIGTERM ends both sides with 0" + (
        "" if s.returncode == r.returncode == 0 else ":\n" + serr[-2000:] + rerr[-2000:]))
    check("frames/s" in serr and "frames/s" in rerr, what + ": both print statistics")
    check(not os.path.exists(shm(b)), what + ": the receive side removes its stream when stopped")
    return serr, rerr


def test_lost():
    """A receiver that falls behind: frames dropped by the sender's queue
    show as `lost` on the remote reader, with the sender's numbers."""
    a, b = names("l")
    ep = "tcp://127.0.0.1:%d" % (PORT + 1)
    s, r = bridge_pair(a, b, ep, send_args=["--max-fps", "20", "--insecure"],
                       recv_args=["--insecure"])
    w = start([PEER, "write", a, "0", "100"])
    got = samples(start([PEER, "read", b, "15", "6"]))
    frames = frames_ok(got, "rate limit")
    check(sum(g["lost"] for g in frames[1:]) > 0 and
          all(g["lost"] == g["seq"] - p["seq"] - 1 for p, g in zip(frames, frames[1:])),
          "rate limit: skipped frames are `lost` on the remote reader")
    stop(w), stop(s), stop(r)


def test_faults():
    a, b = names("k")
    ep = ipc("faults")
    s, r = bridge_pair(a, b, ep)
    w = start([PEER, "write", a, "0", "50"])
    rd = start([PEER, "read", b, "1000000", "12"])

    wait_for(shm(b))
    time.sleep(1.0)
    # The sender killed and started again: frames resume.
    s.kill()
    s.wait()
    time.sleep(0.3)
    s = start([BRIDGE, "send", a, ep])
    time.sleep(1.0)
    # The receiver killed and started again: it takes its stream over.
    r.kill()
    r.wait()
    time.sleep(0.2)
    r = start([BRIDGE, "recv", ep, b])
    time.sleep(1.0)
    # The writer on host A dies: remote readers get WRITER_GONE, then frames after a takeover.
    w.kill()
    w.wait()
    time.sleep(1.0)
    w = start([PEER, "write", a, "0", "50"])
    time.sleep(1.0)
    # The layout changes on host A: remote readers follow.
    stop(w)
    time.sleep(0.3)
    w = start([PEER, "write", a, "0", "50", "16,8,3"])
    time.sleep(1.5)
    rd.send_signal(signal.SIGTERM)
    got = samples(rd)
    events = [g.get("event") for g in got if "event" in g]
    frames = [g for g in got if "seq" in g]
    check(all(g["ok"] for g in frames), "faults: every frame matches its metadata")
    check("SHL_E_WRITER_GONE" in events, "faults: the writer's death reaches remote readers")
    after = [i for i, g in enumerate(got) if g.get("event") == "SHL_E_WRITER_GONE"]
    check(after and any("seq" in g for g in got[after[0]:]), "faults: frames again after takeover")
    new = [g for g in frames if g["new"]]
    check(new and new[-1]["bytes"] == 16 * 8 * 3, "faults: remote readers follow a layout change")
    check(all(x["seq"] < y["seq"] for x, y in zip(frames, frames[1:])),
          "faults: sequence numbers only grow")
    stop(w), stop(s), stop(r)
    check(s.returncode == 0 and r.returncode == 0, "faults: both sides end cleanly")
    check(not os.path.exists(shm(b)), "faults: nothing left in /dev/shm by the receive side")


def test_bad_peer():
    """Garbage from a 'sender': dropped with a logged error, never a crash."""
    ep = "tcp://127.0.0.1:%d" % (PORT + 3)
    g = start([PEER, "garbage", ep, "2"])
    r = start([BRIDGE, "recv", ep, TAG + "g", "--insecure"])
    g.communicate(timeout=10)
    alive = r.poll() is None
    err = stop(r)
    check(alive and r.returncode == 0, "bad peer: the receiver survives garbage" + (
        "" if r.returncode == 0 else ":\n" + err[-2000:]))
    check("dropped a bad message" in err, "bad peer: garbage is logged")
    # Garbage at the sender: a raw TCP client speaking nonsense.
    a = TAG + "h"
    s = start([BRIDGE, "send", a, ep, "--insecure"])
    time.sleep(0.3)
    import socket
    for blob in (b"\xff" * 100, os.urandom(4096), b"GET / HTTP/1.0\r\n\r\n"):
        try:
            c = socket.create_connection(("127.0.0.1", PORT + 3), timeout=1)
            c.sendall(blob)
            c.close()
        except OSError:
            pass
    time.sleep(0.3)
    check(s.poll() is None, "bad peer: the sender survives garbage on its socket")
    err = stop(s)
    check(s.returncode == 0, "bad peer: the sender ends cleanly" + ("" if s.returncode == 0 else
                                                                    ":\n" + err[-2000:]))
    # JPEG frames, most of them corrupt: cut short, a byte changed, a header
    # announcing more rows or columns than the layout (a decoder that believed
    # it would write past the slot), another image, random bytes.
    ep = ipc("garbage-jpeg")
    g = start([PEER, "garbage", ep, "1.5", "jpeg"])
    r = start([BRIDGE, "recv", ep, TAG + "gj"])
    g.communicate(timeout=10)
    alive = r.poll() is None
    err = stop(r)
    last = re.findall(r"received (\d+), lost \d+, bad (\d+)", err)
    received, bad = map(int, last[-1]) if last else (0, 0)
    check(alive and r.returncode == 0 and "ended by signal" not in err,
          "bad JPEG: the receiver (and its worker) survive corrupt JPEG frames" + (
              "" if r.returncode == 0 else ":\n" + err[-2000:]))
    check(bad > 100 and received > 0 and re.search(r"dropped a bad message \(JPEG", err),
          "bad JPEG: corrupt frames counted bad (%d), intact ones published (%d)" % (bad, received))


def keygen(d, prefix):
    p = subprocess.run([BRIDGE, "keygen", os.path.join(d, prefix)], capture_output=True, text=True)
    check(p.returncode == 0, "keygen %s" % prefix)
    return os.path.join(d, prefix)


def test_keys(host="127.0.0.1", ns=(None, None)):
    d = tempfile.mkdtemp()
    try:
        srv, cli, other = keygen(d, "sender"), keygen(d, "recv"), keygen(d, "other")
        check(oct(os.stat(srv + ".key").st_mode & 0o777) == "0o600", "keys: secret key file is 0600")
        a, b = names("s%d" % len(host))
        ep = "tcp://%s:%d" % (host, PORT + 4)
        send_args = ["--key", srv + ".key", "--allow", cli + ".pub"]
        s = start([BRIDGE, "send", a, ep, *send_args], ns=ns[0])
        w = start([PEER, "write", a, "0", "50"])
        r = start([BRIDGE, "recv", ep, b, "--key", cli + ".key", "--server-key", srv + ".pub"],
                  ns=ns[1])
        frames_ok(samples(start([PEER, "read", b, "10", "5"])), "curve", 10)
        stop(r)
        # The wrong server key, and a receiver the sender does not allow: the
        # receiver ends (status 1) and names the key file to check.
        rc_bad, err_bad = run([BRIDGE, "recv", ep, b, "--key", cli + ".key", "--server-key",
                               other + ".pub", "--seconds", "8"], ns=ns[1])
        rc_nl, err_nl = run([BRIDGE, "recv", ep, b, "--key", other + ".key", "--server-key",
                             srv + ".pub", "--seconds", "8"], ns=ns[1])
        # Keys on one side only, either side.
        # (--seconds only bounds a receiver that is never told: it ends at the refusal)
        rc_none, err_none = run([BRIDGE, "recv", ep, b, "--seconds", "8", "--insecure"], ns=ns[1])
        ep2 = "tcp://%s:%d" % (host, PORT + 8)
        plain = start([BRIDGE, "send", a, ep2, "--insecure"], ns=ns[0])
        rc_keyed, err_keyed = run([BRIDGE, "recv", ep2, b, "--server-key", srv + ".pub",
                                   "--seconds", "8"], ns=ns[1])
        stop(plain)
        serr = stop(s)
        stop(w)
        check(rc_bad == 1 and other + ".pub" in err_bad,
              "curve: a wrong server key ends the receiver (1), naming the file")
        check("wrong --server-key" in serr, "curve: ... and is reported by the sender")
        check(rc_nl == 1 and "--allow list" in err_nl and other + ".key" in err_nl,
              "curve: a refused key ends the receiver (1), naming the file")
        check("refused a receiver" in serr, "curve: ... and is reported by the sender")
        check(rc_none == 1 and "give --server-key" in err_none,
              "curve: a receiver without keys is told to give --server-key")
        check(rc_keyed == 1 and "give the sender --key" in err_keyed,
              "curve: a receiver with --server-key before a sender without keys is told so")
        check(not os.path.exists(shm(b)), "curve: refused receivers create no stream")
    finally:
        shutil.rmtree(d)


def squatter(port, greeting, until, hold=False):
    """Another program listening on the port (or unix socket path, a str;
    a local user's, say): it answers each connection with `greeting` and
    hangs up (or, if `hold`, keeps it open), until until[0]."""
    if isinstance(port, str):
        srv = socket.socket(socket.AF_UNIX)
        srv.bind(port)
        srv.listen()
    else:
        srv = socket.create_server(("127.0.0.1", port))
    srv.settimeout(0.1)
    held = []
    while not until:
        try:
            c, _ = srv.accept()
        except OSError:
            continue
        c.sendall(greeting)
        if hold:
            held.append(c)
            continue
        time.sleep(0.05)
        c.close()
    for c in held:
        c.close()
    srv.close()


def test_squatted_port():
    """A program that is no sender of ours on the port (there first, so a
    sender would fail to bind): a receiver with --server-key exits 1 saying
    that the peer at the address failed the handshake and may not be our
    sender, the keys one possibility among others. It gave advice about the
    keys only, as if the peer were our sender; and after a protocol error
    (libzmq connects no more) it waited for ever without a word. A peer that
    is no ZeroMQ program at all (an SSH server's banner, the connection
    kept) made libzmq end the connection without a handshake event and
    connect no more: the receiver said "hung up" once, then waited; without
    keys (ipc) libzmq took it for a ZeroMQ 1.0 peer and waited on it."""
    d = tempfile.mkdtemp()
    ep = "tcp://127.0.0.1:%d" % (PORT + 2)
    null, curve = (b"\xff" + bytes(8) + b"\x7f\x03\x00" + m.ljust(20, b"\0") + bytes(32)
                   for m in (b"NULL", b"CURVE"))
    try:
        key = keygen(d, "sender") + ".pub"
        for what, greeting in (("hangs up at once", b""), ("speaks ZeroMQ without keys", null),
                               ("garbles its CURVE handshake", curve + b"\x04\x03abc"),
                               ("is an SSH server", b"SSH-2.0-OpenSSH_9.6\r\n")):
            until = []
            t = threading.Thread(target=squatter, args=(PORT + 2, greeting, until, "SSH" in what))
            t.start()
            try:
                rc, err = run([BRIDGE, "recv", ep, TAG + "sq", "--server-key", key, "--seconds", "5",
                               "--quiet"])
            finally:
                until.append(True)
                t.join()
            said = ("the peer at %s failed the handshake: it may not be our sender" % ep in err
                    and "if it is our sender, check the keys: --server-key " + key in err)
            check(rc == 1 and said, "squatted port: a peer that %s: the receiver exits 1 saying it "
                  "may not be our sender, the keys one possibility%s" % (
                      what, "" if rc == 1 and said else " (%d):\n%s" % (rc, err)))
        until, path = [], ipc("ssh")
        t = threading.Thread(target=squatter, args=(path[6:], b"SSH-2.0-OpenSSH_9.6\r\n", until, 1))
        t.start()
        try:
            rc, err = run([BRIDGE, "recv", path, TAG + "sq", "--seconds", "5", "--quiet"])
        finally:
            until.append(True)
            t.join()
        said = "the peer at %s failed the handshake: it may not be our sender" % path in err
        check(rc == 1 and said, "squatted ipc socket: an SSH server: the receiver without keys "
              "exits 1 saying it may not be our sender%s" % (
                  "" if rc == 1 and said else " (%d):\n%s" % (rc, err)))
    finally:
        shutil.rmtree(d)


def test_key_files():
    """A key pair's file that other users may read, or that another user
    owns (planted: its secret is theirs), is refused by both sides, exit 2,
    with what to do; its public half may be anyone's."""
    d = tempfile.mkdtemp()
    try:
        key = keygen(d, "k") + ".key"
        ep = "tcp://127.0.0.1:%d" % (PORT + 13)
        sides = (["send", TAG + "kf", ep, "--key", key],
                 ["recv", ep, TAG + "kf", "--key", key, "--server-key", key[:-4] + ".pub"])
        for mode, owner, says in ((0o640, -1, "chmod 600 " + key), (0o604, -1, "chmod 600 " + key),
                                  (0o600, 65534, "owned by uid 65534")):
            if owner != -1 and os.geteuid() != 0:
                continue
            os.chmod(key, mode)
            os.chown(key, owner, -1)
            for side in sides:
                rc, err = run([BRIDGE, *side, "--seconds", "0.2"])
                check(rc == 2 and says in err, "key file of mode %o%s refused by %s: exit 2, '%s'"
                      % (mode, " owned by nobody" if owner != -1 else "", side[0], says)
                      + ("" if rc == 2 else " (exit %d)" % rc))
        os.chown(key, os.geteuid(), -1)
        os.chmod(key[:-4] + ".pub", 0o644)
        os.chown(key[:-4] + ".pub", 65534, -1) if os.geteuid() == 0 else None
        rc, err = run([BRIDGE, *sides[1], "--seconds", "0.2"])
        check(rc == 0, "a 0600 key file of ours and anyone's public key are taken (exit %d)" % rc)
    finally:
        shutil.rmtree(d)


def test_rules():
    """Endpoints and the security rule: what a new user types, and the
    messages they get (docs/bridge.md, Security)."""
    port = PORT + 5
    for side in ("send", "recv"):
        for host in ("127.0.0.1", "localhost", "0.0.0.0"):
            args = [TAG + "x", "tcp://%s:%d" % (host, port)]
            rc, err = run([BRIDGE, side, *(args if side == "send" else args[::-1]), "--seconds", "0.1"])
            check(rc == 2 and "ipc://" in err and "--insecure" in err,
                  "%s: TCP without keys is refused, loopback (%s) too, and ipc:// proposed" % (
                      side, host))
    for ep, says in (("127.0.0.1:%d" % port, "names no transport"),
                     ("udp://127.0.0.1:%d" % port, "tcp:// (across hosts) or ipc://"),
                     ("tcp://127.0.0.1:99999", "port from 1 to 65535"),
                     ("tcp://no-such-host.invalid:%d" % port, "cannot resolve")):
        rc, err = run([BRIDGE, "send", TAG + "x", ep, "--insecure", "--seconds", "0.1"])
        check(rc == 2 and says in err, "send %s: exit 2, '%s'" % (ep, says))
    # localhost is resolved (it is no interface name for ZeroMQ's bind).
    rc, err = run([BRIDGE, "send", TAG + "x", "tcp://localhost:%d" % port, "--insecure", "--seconds",
                   "0.3"])
    check(rc == 0 and "No such device" not in err, "send tcp://localhost:PORT binds" + (
        "" if rc == 0 else ": " + err[-500:]))
    check("waiting for it to appear" in err, "send on a missing name says it waits for it")
    # A name whose addresses are not all loopback is judged by its addresses
    # (a private /etc/hosts in a mount namespace of its own).
    hosts = os.path.join(SOCKDIR, "hosts")
    with open(hosts, "w") as f:
        f.write("127.0.0.1 localhost\n192.0.2.1 127.attacker.example\n")
    script = "mount --bind %s /etc/hosts && exec %s recv tcp://127.attacker.example:%d %sy " \
             "--seconds 0.1" % (hosts, BRIDGE, port, TAG)
    p = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True,
                       timeout=10)
    if "mount" in p.stderr or "unshare" in p.stderr:
        print("skip the /etc/hosts check: " + p.stderr.strip()[-200:])
    else:
        check(p.returncode == 2 and "anyone who reaches the address" in p.stderr,
              "a name that resolves off loopback is judged by its address")
    # What a message quotes from the command line reaches the terminal as
    # text: no escape sequence, no second line.
    rc, err = run([BRIDGE, "send", "x\033[2J\ny", ipc("esc"), "--seconds", "0.1"])
    ok = rc == 2 and "\033" not in err and err.count("\n") == 1 and "bad stream name" in err
    check(ok, "a bad name's message prints no raw control characters" + ("" if ok else ": %r" % err))
    # An array segment is not a stream: one clear error.
    name = TAG + "arr"
    if os.path.exists(CLI) and run([CLI, "create", name, "--format", "B", "--shape", "4"])[0] == 0:
        rc, err = run([BRIDGE, "send", name, ipc("arr"), "--seconds", "3"])
        check(rc == 2 and err.count("not a stream") == 1, "send on an array: one error, exit 2")
    else:
        check(False, "shmlane create makes an array segment")


def test_zstd():
    a, b = names("z")
    ep = ipc("zstd")
    s, r = bridge_pair(a, b, ep, send_args=["--zstd", "--latest"])
    w = start([PEER, "write", a, "0", "100"])
    frames_ok(samples(start([PEER, "read", b, "20", "6"])), "zstd", 20)
    time.sleep(1.1)
    stop(w)
    serr = stop(s)
    stop(r)
    check("zstd+delta" in serr and ":1" in serr,
          "zstd: rows delta-coded for byte images; the statistics show ratio and cost" + (
              "" if "zstd+delta" in serr else ":\n" + serr[-1500:]))


def psnr(mse):
    return 99.0 if mse == 0 else 10 * math.log10(255 ** 2 / mse)


def image_frames(frames, what, count=20):
    """Frames of `bridge_peer --image` through JPEG: metadata exact, sequence
    numbers the sender's (from where a new stream on host B went on), each
    frame within 30 dB of the one written and not of the next one (about 21
    dB away: the check tells frames apart)."""
    check(len(frames) >= count, "%s: %d frames (at least %d)" % (what, len(frames), count))
    check(all(g["meta_ok"] for g in frames) and all(
        y["seq"] - x["seq"] == y["count"] - x["count"] for x, y in zip(frames, frames[1:])),
        what + ": metadata exact, sequence numbers the sender's")
    worst = min((psnr(g["mse"]) for g in frames), default=0)
    nearest = max((psnr(g["mse_next"]) for g in frames), default=99)
    check(worst > 30 and nearest < 25, "%s: pixels within %.1f dB PSNR (> 30) of the frame "
          "written, %.1f dB of the next (< 25)" % (what, worst, nearest))


def test_jpeg():
    """--jpeg: a colour image, then (the writer replaced) a grey one with
    padded rows, then one JPEG cannot carry (4 channels: sent raw, exact,
    one line logged); and refused, exit 2, when the first layout is such."""
    a, b = names("j")
    ep = ipc("jpeg")
    s, r = bridge_pair(a, b, ep, send_args=["--jpeg"])
    w = start([PEER, "--image", "write", a, "0", "100", "45,61,3"])
    rd = start([PEER, "--image", "read", b, "1000000", "10"])
    wait_for(shm(b))
    for shape in ("45,61/64", "45,61,4"):
        time.sleep(0.8)
        stop(w)
        time.sleep(0.3)
        w = start([PEER, "--image", "write", a, "0", "100", shape])
    time.sleep(0.8)
    rd.send_signal(signal.SIGTERM)
    frames = [g for g in samples(rd) if "seq" in g]
    stop(w)
    serr, rerr = stop(s), stop(r)
    colour = [g for g in frames if g["bytes"] == 45 * 61 * 3]
    image_frames(colour, "jpeg (45, 61, 3)")
    check(colour and colour[0]["seq"] == colour[0]["count"], "jpeg: the sender's sequence numbers")
    image_frames([g for g in frames if g["bytes"] == 45 * 61], "jpeg (45, 61), rows 64 apart")
    raw = [g for g in frames if g["bytes"] == 45 * 61 * 4]
    check(len(raw) >= 20 and all(g["ok"] for g in raw),
          "jpeg: frames of 4 channels go raw, exact (%d)" % len(raw))
    check(serr.count("sending them without JPEG") == 1 and "(45, 61, 4)" in serr,
          "jpeg: a layout JPEG cannot carry is said once, naming its shape")
    check(re.search(r"jpeg [0-9.]+:1 [0-9.]+ ms/frame", serr) and
          re.search(r"jpeg [0-9.]+:1 [0-9.]+ ms/frame", rerr),
          "jpeg: both sides' statistics show the ratio and the time a frame takes")
    # The first layout JPEG cannot carry: refused.
    a2 = names("jr")[0]
    w = start([PEER, "--image", "write", a2, "0", "50", "45,61,4"])
    wait_for(shm(a2))
    rc, err = run([BRIDGE, "send", a2, ipc("jpeg-refused"), "--jpeg", "--seconds", "5"])
    stop(w)
    check(rc == 2 and "use --zstd" in err and "(45, 61, 4)" in err,
          "jpeg on frames it cannot carry: exit 2, naming the shape and --zstd" + (
              "" if rc == 2 else ": %d %s" % (rc, err[-500:])))


# ---------------------------------------------------------------- neighbours and faults


def can_be_nobody():
    return os.geteuid() == 0 and shutil.which("setpriv") and run(NOBODY + ["true"])[0] == 0


def test_users(ns=(None, None), what="users"):
    """A 0600 stream of root's reaches no other user: over ipc the sender
    admits only users who could read the stream (its socket writable by all
    here, umask 0), over TCP only holders of keys. A 0666 stream, which
    anyone may read from /dev/shm, is served to them."""
    if not can_be_nobody():
        print("skip %s: needs root and setpriv (to run as nobody)" % what)
        return
    a, a2 = names("u" + what[0])
    ep, ep2 = ipc("users-" + what), ipc("users2-" + what)
    w = start([PEER, "write", a, "0", "50", "32,24,3", "600"])
    w2 = start([PEER, "write", a2, "0", "50", "32,24,3", "666"])
    s = start([BRIDGE, "send", a, ep], ns=ns[0], umask=0)
    s2 = start([BRIDGE, "send", a2, ep2], ns=ns[0], umask=0)
    time.sleep(0.3)
    joiner = start(NOBODY + [PEER, "join", ep, "1.2"], ns=ns[1])
    joiner2 = start(NOBODY + [PEER, "join", ep2, "1.2"], ns=ns[1])
    recv = start(NOBODY + [BRIDGE, "recv", ep, TAG + "ux", "--seconds", "2"], ns=ns[1])
    got, got2 = samples(joiner)[0]["messages"], samples(joiner2)[0]["messages"]
    err = stop(recv, sig=0, timeout=5)
    rc = recv.returncode
    serr = stop(s)
    stop(s2), stop(w), stop(w2)
    check(got == 0, "%s: nobody gets nothing of root's 0600 stream over ipc (%d messages)" % (
        what, got))
    check(rc == 1 and "may not read" in err, "%s: nobody's bridge recv is refused, exit 1" % what)
    check("refused a receiver" in serr and "uid 65534" in serr,
          "%s: the sender says whom it refused" % what)
    check(got2 > 5, "%s: a 0666 stream is served to nobody over ipc (%d messages)" % (what, got2))
    # A 0660 stream of root's in nobody's group is served to nobody by group.
    a3 = names("g" + what[0])[0]
    ep3 = ipc("users3-" + what)
    w3 = start([PEER, "write", a3, "0", "50", "32,24,3", "660"])
    deadline = time.time() + 5
    while not os.path.exists("/dev/shm/shl." + a3) and time.time() < deadline:
        time.sleep(0.01)
    os.chown("/dev/shm/shl." + a3, -1, 65534)
    s3 = start([BRIDGE, "send", a3, ep3], ns=ns[0], umask=0)
    time.sleep(0.3)
    joiner3 = start(NOBODY + [PEER, "join", ep3, "1.2"], ns=ns[1])
    got3 = samples(joiner3)[0]["messages"]
    stop(s3), stop(w3)
    check(got3 > 5, "%s: a 0660 stream of nobody's group is served to nobody (%d messages)" % (
        what, got3))
    planted_sender(ns, what)
    # TCP: CURVE keys and an allow list; nobody holds the sender's public
    # key (anyone may) but no allowed key pair.
    d = tempfile.mkdtemp()
    try:
        key, allowed = keygen(d, "sender"), keygen(d, "recv")
        os.chmod(d, 0o755)
        ep3 = "tcp://%s:%d" % ("127.0.0.1" if ns[0] is None else netns.ADDR_A, PORT + 9)
        s = start([BRIDGE, "send", a, ep3, "--key", key + ".key", "--allow", allowed + ".pub"],
                  ns=ns[0])
        w = start([PEER, "write", a, "0", "50", "32,24,3", "600"])
        joiner = start(NOBODY + [PEER, "join", ep3, "1.2"], ns=ns[1])
        rc, err = run(NOBODY + [BRIDGE, "recv", ep3, TAG + "ux", "--server-key", key + ".pub",
                                "--seconds", "4"], ns=ns[1])
        got = samples(joiner)[0]["messages"]
        stop(s), stop(w)
        check(got == 0, "%s: nobody gets nothing over TCP with keys (%d messages)" % (what, got))
        check(rc == 1 and "--allow" in err,
              "%s: ... nor with the bridge and the sender's public key: exit 1" % what)
    finally:
        shutil.rmtree(d)


def test_groups():
    """Over ipc a member of a 0660 stream's group by a supplementary group is
    admitted by all of its groups (a user may be in thousands) and by whole
    numbers only. The sender once read /proc/PID/status 1023 characters at a
    time: a group past them was missed, and one cut there (600771 read as
    60077) was taken for the stream's group."""
    if not can_be_nobody():
        print("skip groups: needs root and setpriv (to run as nobody)")
        return
    a = names("gr")[0]
    ep = ipc("groups")
    w = start([PEER, "write", a, "0", "50", "32,24,3", "660"])
    wait_for(shm(a))
    os.chown(shm(a), -1, 60077)
    s = start([BRIDGE, "send", a, ep], umask=0)
    # Sorted as the kernel prints them: "Groups:\t" and 252 groups fill 1018
    # characters, so 600771 is cut after "60077"; the far list puts 60077
    # past 1200.
    cut = list(range(100, 350)) + [1000, 1001, 600771]
    far = list(range(100, 400)) + [60077]
    time.sleep(0.3)
    joiners = [start(NOBODY[:3] + ["--groups=" + ",".join(map(str, g)), PEER, "join", ep, "1.2"])
               for g in (cut, far)]
    got_cut, got_far = (samples(j)[0]["messages"] for j in joiners)
    stop(s), stop(w)
    check(got_cut == 0, "groups: a group whose number starts with the stream's admits no one "
          "(%d messages)" % got_cut)
    check(got_far > 5, "groups: a member by its 301st supplementary group is served (%d messages)"
          % got_far)


# Run by test_reused_pid as the first process of a PID namespace of its own,
# where it hands out the pids: nobody in no group connects to the sender of
# a 0660 stream of group 60077, passes the connection on and ends; nobody in
# group 60077 takes its pid; then the connection's handshake.
REUSED_PID = r"""
import json, os, signal, socket, subprocess, sys, time
bridge, peer, name, path = sys.argv[1:]
os.umask(0)
w = subprocess.Popen([peer, "write", name, "0", "50", "32,24,3", "660"],
                     stdout=subprocess.DEVNULL)
while not os.path.exists("/dev/shm/shl." + name):
    time.sleep(0.01)
os.chown("/dev/shm/shl." + name, -1, 60077)
s = subprocess.Popen([bridge, "send", name, "ipc://" + path, "--quiet"], stderr=subprocess.PIPE,
                     text=True)
while not os.path.exists(path):
    time.sleep(0.01)


def nobody(groups):
    os.setgroups(groups)
    os.setgid(65534)
    os.setuid(65534)


for _ in range(5):  # a thread started meanwhile takes the pid: again
    a, b = socket.socketpair()
    first = os.fork()
    if first == 0:
        nobody([])
        c = socket.socket(socket.AF_UNIX)
        c.connect(path)
        socket.send_fds(a, [b"c"], [c.fileno()])
        os._exit(0)
    conn = socket.socket(fileno=socket.recv_fds(b, 1, 1)[1][0])
    os.waitpid(first, 0)
    with open("/proc/sys/kernel/ns_last_pid", "w") as f:
        f.write(str(first - 1))
    second = os.fork()
    if second == 0:
        nobody([60077])
        time.sleep(10)
        os._exit(0)
    if second == first:
        break
    os.kill(second, signal.SIGKILL)
    os.waitpid(second, 0)
ready = b"\x05READY\x0bSocket-Type\x00\x00\x00\x06DEALER"
conn.settimeout(3)
conn.sendall(b"\xff" + bytes(8) + b"\x7f\x03\x00" + b"NULL".ljust(20, b"\0") + bytes(32)
             + b"\x04" + bytes([len(ready)]) + ready)
got = b""
while b"READY" not in got[64:] and b"ERROR" not in got[64:]:
    try:
        more = conn.recv(4096)
    except OSError:
        break
    if not more:
        break
    got += more
os.kill(second, signal.SIGKILL)
s.terminate()
w.terminate()
print(json.dumps({"pid": first, "reused": second == first, "admitted": b"READY" in got[64:],
                  "log": s.communicate()[1]}))
w.wait()
"""


def test_reused_pid():
    """Over ipc a receiver is judged by the groups its connection was made
    with (SO_PEERGROUPS), whatever process has its pid by the time the
    sender checks: nobody in no group connects and ends, nobody in the
    stream's group takes its pid (in a PID namespace of the test's own),
    then the connection's handshake: refused. The sender read the groups
    from /proc/PID/status, the second process's, and served the first."""
    if not can_be_nobody() or run(["unshare", "--pid", "--fork", "--mount-proc", "true"])[0]:
        print("skip reused pid: needs root, setpriv and unshare --pid")
        return
    a = names("rp")[0]
    out = subprocess.run(["unshare", "--pid", "--kill-child", "--mount-proc", sys.executable, "-c",
                          REUSED_PID, BRIDGE, PEER, a, SOCKDIR + "/reused.sock"],
                         capture_output=True, text=True, timeout=20)
    got = json.loads(out.stdout or "{}")
    if not check(got.get("reused"), "reused pid: a process of the stream's group takes the pid "
                 "of one that connected%s" % ("" if got else ":\n" + out.stderr[-500:])):
        return
    refused = not got["admitted"] and "(uid 65534, pid %d)" % got["pid"] in got["log"]
    check(refused, "reused pid: the connection is judged by its own groups: refused%s" % (
        "" if refused else ":\n" + got["log"]))


def planted_sender(ns, what):
    """The other way round: nobody plants a socket where root's receiver
    connects, and serves a stream of its own there. root's bridge recv
    takes nothing from a sender of another user (no stream made, the sender's
    uid said); with --insecure it does, which shows the check is what kept
    it out."""
    side = "n" if ns[0] else "l"
    a, b = names("q" + side)
    planted = os.path.join(SOCKDIR, "planted-" + side)
    os.mkdir(planted)
    os.chmod(planted, 0o777)  # anyone may plant a socket here
    ep = "ipc://%s/cam.sock" % planted
    w = start(NOBODY + [PEER, "write", a, "0", "50", "32,24,3", "600"])
    s = start(NOBODY + [BRIDGE, "send", a, ep], ns=ns[0])
    wait_for(os.path.join(planted, "cam.sock"))
    refused = start([BRIDGE, "recv", ep, b, "--seconds", "2"], ns=ns[1])
    taken = start([BRIDGE, "recv", ep, b + "i", "--insecure", "--seconds", "2"], ns=ns[1])
    made = insecure_made = False
    while refused.poll() is None or taken.poll() is None:
        made |= os.path.exists(shm(b))
        insecure_made |= os.path.exists(shm(b + "i"))
        time.sleep(0.02)
    err = stop(refused, sig=0)
    stop(taken, sig=0), stop(s), stop(w)
    check(not made and re.search(r"runs as uid 65534 \(pid \d+\), not as our user or root", err),
          "%s: root's bridge recv takes nothing from nobody's sender on a planted socket, and "
          "says its uid%s" % (what, "" if "65534" in err else ":\n" + err[-1000:]))
    check(insecure_made, "%s: ... which --insecure takes (the check is what refused it)" % what)


def where(pair, port):
    """Over ipc, or (a Pair) across the namespaces' veth pair, TCP without
    keys: (endpoint or None for ipc, the bridge's extra options, the
    namespaces of host A and B, the words for the checks)."""
    if not pair:
        return None, [], (None, None), "over ipc"
    return ("tcp://%s:%d" % (netns.ADDR_A, PORT + port), ["--insecure"], (pair.a, pair.b),
            "across namespaces")


def flowing(suffix, fps="50", pair=None, port=0):
    """A writer on host A, a sender and a receiver over ipc or across the
    namespaces (where), and the stream on host B there: (a, b, endpoint,
    sender, receiver, writer, the bridge's extra options, namespaces, words)."""
    a, b = names(suffix + ("n" if pair else ""))
    ep, args, ns, how = where(pair, port)
    ep = ep or ipc(suffix)
    s, r = bridge_pair(a, b, ep, args, args, ns=ns)
    w = start([PEER, "write", a, "0", fps])
    wait_for(shm(b))
    return a, b, ep, s, r, w, args, ns, how


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(next(l for l in f if l.startswith("VmRSS")).split()[1])


def test_flood(pair=None):
    """A hostile receiver (a 16 MiB message, then a flood of messages of
    every size) costs the sender no memory to speak of, and the statistics
    count receivers, not messages. Across the namespaces, the flood comes
    from nobody on host B."""
    a, b, ep, s, r, w, args, ns, how = flowing("o", fps="30", pair=pair, port=11)
    time.sleep(0.3)
    before = rss_kb(s.pid)
    flood = start((NOBODY if pair and can_be_nobody() else []) + [PEER, "flood", ep, "1.5"],
                  ns=ns[1])
    got = samples(start([PEER, "read", b, "1000", "2"]))
    flood.communicate(timeout=10)
    after = rss_kb(s.pid)
    serr = stop(s)
    stop(w), stop(r)
    frames = frames_ok(got, "flood " + how)
    check(len(frames) >= 30, "flood %s: a healthy receiver keeps receiving (%d frames in 2 s)" % (
        how, len(frames)))
    check(after - before < 20000, "flood %s: the sender's memory grows by %d kB (< 20 MB)" % (
        how, after - before))
    counts = [int(x) for x in re.findall(r"receivers (\d+)", serr)]
    check(counts and max(counts) <= 2, "flood %s: statistics count receivers (at most %s)" % (
        how, max(counts) if counts else "?"))


def slow_receivers(seconds, shape="480,640,3", pair=None):
    """A healthy receiver beside one that stops reading (SIGSTOP) and one
    that joins and leaves every 2.8 s, at 30 frames/s, over ipc or across
    the namespaces' veth pair: the frames the healthy one got from 0.5 s
    after the stop on (the stopped one's queue, hwm + 1 frames, is full by
    then: it is past its share of the pins, and every stall it could cause
    is still to come) to its end, against the 30 a second written then (a
    stall shows whether frames are lost or the writer is held up); and the
    sender's log."""
    a, b = names("wn" if pair else "w")
    ep, args, ns, _ = where(pair, 10)
    ep = ep or ipc("slow")
    s, r = bridge_pair(a, b, ep, args, args, ns=ns)
    stalled = start([BRIDGE, "recv", ep, b + "st", "--quiet", *args], ns=ns[1])
    flaky = start([PEER, "flaky-sub", ep, "2.8", str(seconds + 1)], ns=ns[1])
    w = start([PEER, "write", a, "0", "30", shape])
    wait_for(shm(b))
    wait_for(shm(b + "st"))
    end = time.monotonic() + seconds  # the reader's end, give or take its start
    rd = start([PEER, "read", b, "1000000", str(seconds)])
    time.sleep(0.5)
    os.kill(stalled.pid, signal.SIGSTOP)
    stopped = time.monotonic()
    got = samples(rd, timeout=seconds + 10)
    os.kill(stalled.pid, signal.SIGCONT)
    serr = stop(s)
    stop(w), stop(r), stop(stalled), stop(flaky)
    frames = frames_ok(got, "slow receivers")
    late = [g for g in frames if g["t"] >= stopped + 0.5]
    return len(late) / (30 * (end - stopped - 0.5)), len(late), serr


def test_slow(pair=None):
    """Across the namespaces where they can be made (make test), else over ipc."""
    how = where(pair, 10)[3]
    # 7 s here (6 s, 180 frames, counted: a 0.3 s hiccup of a loaded machine
    # costs 9 of them, 5%), 12 s in `make test-bridge-long`.
    share, counted, serr = slow_receivers(12 if LONG else 7, pair=pair)
    check(share >= 0.95, "slow receivers %s: the healthy one gets %d frames, %.1f%% of those "
          "written once the stopped one is past its pins (>= 95%%)" % (how, counted, 100 * share))
    check("dropped" in serr or "copied" in serr,
          "slow receivers %s: the sender copies or drops for them alone" % how)


def children_of(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def test_orphan(pair=None):
    """kill -9 of the receiver the user started ends its worker too (and the
    stream goes); a second receiver on a stream in use names its writer."""
    a, b, ep, s, r, w, args, ns, how = flowing("p", pair=pair, port=12)
    kids = children_of(r.pid)
    r2 = start([BRIDGE, "recv", ep, b, *args], ns=ns[1])
    time.sleep(0.8)
    err2 = stop(r2)
    check(kids and ("pid %d" % kids[0]) in err2,
          "%s: a stream held by another receiver is reported with its writer's pid" % how)
    r.kill()
    r.wait()
    gone = wait_for(lambda: not any(os.path.exists("/proc/%d" % k) for k in kids), timeout=3)
    check(kids and gone, "kill -9 of bridge recv %s: its worker ends too" % how)
    check(wait_for(lambda: not os.path.exists(shm(b)), timeout=3),
          "kill -9 of bridge recv %s: the worker removes the stream" % how)
    stop(w), stop(s)


def test_left_stream(pair=None):
    """The remote writer died (the worker exits, a new one waits), then the
    receiver is stopped: nothing stays in /dev/shm."""
    a, b, ep, s, r, w, args, ns, how = flowing("e", pair=pair, port=13)
    time.sleep(0.2)
    w.kill()
    w.wait()
    time.sleep(1.0)
    stop(r)
    check(r.returncode == 0, "writer died, then recv stopped %s: exit 0" % how)
    check(not os.path.exists(shm(b)),
          "writer died, then recv stopped %s: nothing left in /dev/shm" % how)
    stop(s)


def test_squatted():
    """The local name taken for good: by another user's stream (planted
    first), or by an array segment of ours. bridge recv says so, naming the
    owner, and exits 1 at the first frame; it went on refused, logging once
    a second, for as long as it ran."""
    if not can_be_nobody():
        print("skip squatted: needs root and setpriv (to run as nobody)")
        return
    a, b = names("sq")
    ep = ipc("squat")
    w = start([PEER, "write", a, "0", "50"])
    squat = start(NOBODY + [PEER, "write", b, "0", "5"])
    wait_for(shm(b))
    made = run([CLI, "create", b + "r", "--format", "B", "--shape", "4"])[0] == 0
    s = start([BRIDGE, "send", a, ep, "--quiet"])
    rs = [start([BRIDGE, "recv", ep, name, "--seconds", "4"]) for name in (b, b + "r")]
    t0 = time.time()
    (err, err2), took = [stop(r, sig=0, timeout=6) for r in rs], time.time() - t0
    stop(s), stop(w), stop(squat)
    check(rs[0].returncode == 1 and "uid 65534" in err and "LOCAL_NAME" in err and took < 3,
          "a stream name squatted by another user: recv exits 1 (%s, %.1f s), naming its owner%s"
          % (rs[0].returncode, took, "" if "uid 65534" in err else ":\n" + err[-600:]))
    check(made and rs[1].returncode == 1 and "not a stream" in err2,
          "a name holding an array segment: recv exits 1, saying it is no stream")
    check(os.stat(shm(b)).st_uid == 65534, "the squatter's stream is left as it was")


def test_late():
    """A receiver that joins after 100 frames counts none of them lost."""
    a, b = names("t")
    ep = ipc("late")
    s = start([BRIDGE, "send", a, ep, "--quiet"])
    w = start([PEER, "write", a, "0", "100"])
    time.sleep(0.7)
    r = start([BRIDGE, "recv", ep, b])
    wait_for(shm(b))
    time.sleep(0.5)
    rerr = stop(r)
    stop(w), stop(s)
    lost = [int(x) for x in re.findall(r"lost (\d+)", rerr)]
    check(lost and lost[-1] == 0, "a late receiver counts no earlier frame lost (%s)" % (
        lost[-1] if lost else "?"))


def idle_peers(suffix, count, send_args=(), preexec_fn=None):
    """A sender (started with send_args, preexec_fn), `count` unix
    connections that never send a byte, then a receiver: (whether the
    sender was alive after them, whether the receiver's stream came, the
    sender's stderr)."""
    a, b = names(suffix)
    ep = ipc("idle" + suffix)
    s = subprocess.Popen([BRIDGE, "send", a, ep, "--quiet", *send_args], stderr=subprocess.PIPE,
                         text=True, preexec_fn=preexec_fn)
    procs.append(s)
    w = start([PEER, "write", a, "0", "50"])
    wait_for(ep[6:])
    idle = [socket.socket(socket.AF_UNIX) for _ in range(count)]
    try:
        for c in idle:
            c.connect(ep[6:])
    except OSError:  # the sender is gone
        pass
    time.sleep(0.3)
    alive = s.poll() is None
    r = start([BRIDGE, "recv", ep, b, "--quiet"])
    came = wait_for(shm(b), timeout=2.5)
    for c in idle:
        c.close()
    serr = stop(s)
    stop(r), stop(w)
    return alive, came, serr


def test_idle():
    """Connections that never say a word (no ZMTP greeting: nobody knows who
    they are) do not keep a receiver out, though they outnumber
    --max-receivers twice over."""
    _, came, serr = idle_peers("i", 4, ["--max-receivers", "1"])
    check(came, "4 idle connections beside --max-receivers 1: a receiver is served (%s)" % (
        "; ".join(l for l in serr.splitlines() if "refused" in l)[:200] or "no refusal"))


def test_refused_retries():
    """A receiver refused while another is served (--max-receivers 1, ZAP
    status 300 then, which libzmq answers with nothing for 30 s) tries again
    until served: it waited to its end without a frame or a word. Over ipc,
    and over TCP with keys (where a refusal must not count as a failed
    CURVE handshake)."""
    d = tempfile.mkdtemp()
    try:
        key = keygen(d, "sender")
        refused_retries("ipc", ipc("max"), (), ())
        refused_retries("tcp with keys", "tcp://127.0.0.1:%d" % (PORT + 6), ("--key", key + ".key"),
                        ("--server-key", key + ".pub"))
    finally:
        shutil.rmtree(d)


def refused_retries(what, ep, send_args, recv_args):
    a, b = names("mr" + what[0])
    s = start([BRIDGE, "send", a, ep, "--quiet", "--max-receivers", "1", *send_args])
    w = start([PEER, "write", a, "0", "50"])
    first = start([BRIDGE, "recv", ep, b, "--quiet", *recv_args])
    wait_for(shm(b))
    second = start([BRIDGE, "recv", ep, b + "2", "--quiet", *recv_args])
    time.sleep(0.5)
    refused = not os.path.exists(shm(b + "2"))
    stop(first)
    t0 = time.time()
    came = wait_for(shm(b + "2"), timeout=3)
    took = time.time() - t0
    rerr = stop(second)
    stop(w), stop(s)
    tries = rerr.count("--max-receivers")
    check(refused and came and tries >= 1, "%s: a receiver refused by --max-receivers 1 is served "
          "%.1f s after the first one leaves (%d refusals said)%s" % (
              what, took, tries, "" if refused and came else ":\n" + rerr[-600:]))


def test_files():
    """A sender started with a soft limit of 256 files (under its hard
    limit, as 1024 under 500000 often is) survives 400 idle connections:
    each holds a file until libzmq's handshake time limit, and libzmq
    aborts when an ipc accept finds none left."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 1024:
        print("skip files: the hard limit of open files is %d" % hard)
        return
    low = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))  # noqa: E731
    alive, came, serr = idle_peers("f", 400, preexec_fn=low)
    check(alive and came, "400 idle connections, soft limit 256 files: the sender serves on (%s)" % (
        serr.strip().splitlines()[-1][:120] if serr.strip() else "alive"))


def zmtp_peer(c, kind):
    """A ZMTP 3.0 peer of our own (a DEALER or ROUTER) on a connected unix
    socket, past its handshake (NULL mechanism): what libzmq would not let
    us send, we may."""
    c.settimeout(5)
    ready = b"\x05READY\x0bSocket-Type\x00\x00\x00\x06" + kind
    c.sendall(b"\xff" + bytes(8) + b"\x7f\x03\x00" + b"NULL".ljust(20, b"\0") + bytes(32)
              + b"\x04" + bytes([len(ready)]) + ready)
    got = b""
    while len(got) < 64 + 2 + len(ready):  # its greeting and READY
        more = c.recv(4096)
        if not more:
            break
        got += more
    return c


def endless(c):
    """Parts of one message (flags MORE and LONG, the size, 1 KiB: under the
    sender's ZMQ_MAXMSGSIZE) until 600 MB or the peer hangs up: the bytes sent."""
    parts, sent = (b"\x03" + (1024).to_bytes(8, "big") + bytes(1024)) * 1024, 0
    try:
        while sent < 600 << 20:
            c.sendall(parts)
            sent += 1 << 20
    except OSError:
        pass
    c.close()
    return sent


def churn(path, until):
    """Connections made and closed at once, until until[0] is set: each
    one's end is a monitor event."""
    while not until:
        c = socket.socket(socket.AF_UNIX)
        c.settimeout(0.2)
        try:
            c.connect(path)
        except OSError:
            time.sleep(0.01)
        c.close()


def test_endless():
    """An admitted receiver that sends one message of endless parts (1 KiB
    each, up to 600 MB), three times, while other connections come and go:
    libzmq keeps the parts until the last, so the sender drops every
    connection once its memory passes the bound (each time without hanging
    libzmq's I/O thread, which an event for a connection being torn down
    could do); the healthy receiver joins again and gets frames."""
    a, b, ep, s, r, w, args, ns, how = flowing("x", fps="50")
    before = rss_kb(s.pid)
    until = []
    churning = threading.Thread(target=churn, args=(ep[6:], until), daemon=True)
    churning.start()
    sent, grown = 0, 0
    for _ in range(3):
        c = socket.socket(socket.AF_UNIX)
        try:
            c.connect(ep[6:])
            sent = max(sent, endless(zmtp_peer(c, b"DEALER")))
        except OSError:  # the sender hangs or is gone
            sent = 600 << 20
        grown = max(grown, rss_kb(s.pid) - before)
        time.sleep(0.2)
    until.append(True)
    churning.join()
    got = samples(start([PEER, "read", b, "1000", "1.5"]))
    serr = stop(s)
    stop(w), stop(r)
    check(sent < 600 << 20, "endless message: the sender cut it off each time (after %d MB at most)"
          % (sent >> 20))
    check(grown < 500000, "endless message: the sender's memory grows by %d kB (< 500 MB: 1 GB and "
          "more without the bound; ASan keeps 256 MB of what is freed)" % grown)
    check("every connection is dropped" in serr, "endless message: the sender says why")
    check(len(frames_ok(got, "endless message")) >= 10,
          "endless message: the healthy receiver joins again and gets frames")


def test_endless_sender():
    """The same from a "sender" of our own (another user's would be no
    different: its messages are dropped only once whole): the receiver's
    worker cuts it off, says why, and connects again."""
    b = names("y")[1]
    path = "%s/endless.sock" % SOCKDIR
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(4)
    srv.settimeout(5)
    r = start([BRIDGE, "recv", "ipc://" + path, b, "--quiet"])
    c, _ = srv.accept()
    zmtp_peer(c, b"ROUTER")
    kids = children_of(r.pid)
    before = rss_kb(kids[0]) if kids else 0
    sent = endless(c)
    grown = rss_kb(kids[0]) - before if kids else 0
    try:
        srv.accept()[0].close()
        again = True
    except OSError:
        again = False
    srv.close()
    rerr = stop(r)
    check(sent < 600 << 20, "endless message to recv: cut off (after %d MB)" % (sent >> 20))
    check(kids and grown < 200000, "endless message to recv: its worker's memory grows by %d kB "
          "(< 200 MB)" % grown)
    check("every connection is dropped" in rerr and again,
          "endless message to recv: it says why, and connects again")


def test_hoarded():
    """Local readers on host B keep every frame they may, so that no slot is
    left for the receiver (each frame waits for one, 100 ms, in vain) while
    frames keep coming (--hwm 100): SIGTERM still ends bridge recv at once,
    not after the frames it has already taken from its queue."""
    a, b = names("h")
    ep = ipc("hoard")
    s, r = bridge_pair(a, b, ep, ["--quiet", "--hwm", "100"], ["--quiet", "--hwm", "100"])
    w = start([PEER, "write", a, "0", "200"])
    wait_for(shm(b))
    hoarders = []
    for _ in range(4):  # one after the other, so that each keeps other frames (3 of 8 slots)
        hoarders.append(start([PEER, "hoard", b, "10"]))
        time.sleep(0.15)
    time.sleep(0.5)
    stop(r)  # a failure if it takes more than 5 s
    check(r.returncode == 0, "readers hoard every slot: bridge recv stops on SIGTERM, exit 0")
    for p in hoarders + [w, s]:
        stop(p)


# A peer with write access (nobody, in the stream's group) puts the metadata
# record at the end of each slot (A: 64 bytes), then, once the sender has bound
# the stream, switches between A and the slot's last 4 KiB (B). A's place with
# B's size reaches 4032 bytes into the next slot, or past the mapping from the
# last slot.
META_SWITCHER = r"""
import mmap, os, struct, sys, time
m = mmap.mmap(os.open("/dev/shm/shl." + sys.argv[1], os.O_RDWR), 0)
ext = struct.unpack_from("<Q", m, 96)[0]
fmt_at = ext + struct.unpack_from("<Q", m, ext + 48)[0]
stride = struct.unpack_from("<Q", m, ext + 16)[0]
A, B = (stride - 64, b"64x\0", 64), (stride - 4096, b"4096x\0", 4096)


def put(state, hold):
    offset, fmt, size = state
    m[fmt_at:fmt_at + len(fmt)] = fmt
    struct.pack_into("<I", m, ext + 12, len(fmt) - 1)
    struct.pack_into("<QQ", m, ext + 32, offset, size)
    time.sleep(hold)


put(A, 0)
print("A", flush=True)
sys.stdin.readline()
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    put(B, 0.004)
    put(A, 0.0005)
print("done", flush=True)
"""


def test_meta_switched():
    """The sender sends the metadata of the snapshot it took at bind (64
    bytes from A's place) whatever a peer with write access switches the
    record to afterwards: it never reads outside its mapping (SIGSEGV) nor
    sends B's size (which the receiver would drop)."""
    if not can_be_nobody():
        print("skip metadata switched: needs root and setpriv (to run as nobody)")
        return
    a, b = names("m")
    ep = ipc("meta")
    w = start([PEER, "write", a, "0", "100", "64,64", "660"])  # slots of 8 KiB, the record at 4 KiB
    check(wait_for(shm(a)), "metadata switched: the writer made its stream")
    os.chown(shm(a), -1, 65534)
    peer = subprocess.Popen(NOBODY + [sys.executable, "-c", META_SWITCHER, a, "2"], text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.append(peer)
    check(peer.stdout.readline().strip() == "A", "metadata switched: the peer put the record at A")
    s, r = bridge_pair(a, b, ep)
    check(wait_for(shm(b)), "metadata switched: the receiver made its stream")
    time.sleep(0.2)
    peer.stdin.write("go\n")
    peer.stdin.flush()
    peer.stdout.readline()  # "done": 2 s of switching
    with open(shm(b), "rb") as f:
        head = f.read(1 << 16)
    ext = int.from_bytes(head[96:104], "little")
    meta_size = int.from_bytes(head[ext + 40:ext + 48], "little")
    alive = s.poll() is None
    serr, rerr = stop(s), stop(r)
    stop(w), stop(peer)
    crashed = not alive and (s.returncode <= 0 or "ended by signal" in serr)
    check(not crashed, "metadata switched: the sender goes on, or ends with an error, never a "
          "crash" + ("" if not crashed else " (exit %s):\n%s" % (s.returncode, serr[-2000:])))
    check("cannot be read" not in serr, "metadata switched: every frame's record has the "
          "snapshot's size (the sender skipped none)")
    check(meta_size == 64, "metadata switched: the remote stream's record is the snapshot's "
          "64 bytes (%d)" % meta_size)
    last = re.findall(r"received (\d+), lost \d+, bad (\d+)", rerr)
    received, bad = map(int, last[-1]) if last else (0, -1)
    check(received >= 50 and bad == 0 and "dropped a bad message" not in rerr,
          "metadata switched: frames keep coming, each with the snapshot's record "
          "(received %d, bad %d)" % (received, bad))


# ---------------------------------------------------------------- two hosts


def test_netns(pair):
    ns = (pair.a, pair.b)
    test_frames("tcp://198.51.100.1:%d", ns=ns, connect="tcp://198.51.100.1:%d" % PORT,
                what="veth", send_args=["--insecure"], recv_args=["--insecure"])
    # The link cut and restored: frames resume without anyone's help.
    x, y = names("n")
    ep = "tcp://198.51.100.1:%d" % (PORT + 7)
    s, r = bridge_pair(x, y, ep, ["--insecure"], ["--insecure"], ns=ns)
    w = start([PEER, "write", x, "0", "50"])
    rd = start([PEER, "read", y, "1000000", "7"])
    time.sleep(1.0)
    pair.link(False)
    time.sleep(2.0)
    pair.link(True)
    got = samples(rd, timeout=15)
    frames = frames_ok(got, "link down/up")
    gap = [g for g in frames if g["lost"] > 20]
    check(gap and frames.index(gap[0]) < len(frames) - 20,
          "link down/up: frames lost while down show as lost, and frames come again")
    stop(w), stop(s), stop(r)
    test_keys("198.51.100.1", ns)
    test_users(ns, "users across namespaces")
    faults(pair)


def test_slow_link():
    """A link alive but slow, where one frame takes longer than ZeroMQ's
    heartbeat timeout (3 s) to cross: 576,000-byte frames at 1 Mbit/s, 4.6 s
    each (tbf on host A's end of a veth pair of its own). The first frame
    arrives, and the receiver stays connected; it was cut off by the
    heartbeat mid-frame, every 4 s, and got none. Runs beside the other
    two-host tests (its own namespaces, mostly waiting)."""
    pair = netns.setup(TAG[-5:] + "s")
    if isinstance(pair, str):
        print("skip slow link: " + pair)
        return
    try:
        r = subprocess.run(pair.exec_args(pair.a) + [
            "tc", "qdisc", "replace", "dev", pair.dev_a, "root", "tbf", "rate", "1mbit", "burst",
            "32kb", "latency", "400ms"], capture_output=True, text=True)
        if r.returncode != 0:
            print("skip slow link: tc tbf: " + r.stderr.strip())
            return
        x, y = names("sl")
        ep = "tcp://%s:%d" % (netns.ADDR_A, PORT)
        w = start([PEER, "write", x, "0", "2", "300,640,3"])
        s, r = bridge_pair(x, y, ep, ["--insecure", "--hwm", "1"], ["--insecure"],
                           ns=(pair.a, pair.b))
        t0 = time.time()
        arrived = wait_for(shm(y), timeout=8)
        took = time.time() - t0
        serr = stop(s)  # first: the receiver's stop would be a receiver that left
        stop(r), stop(w)
        check(arrived and "left" not in serr,
              "slow link (4.6 s a frame): the first frame arrives (%s after %.1f s), the receiver "
              "never cut off%s" % (arrived, took, "" if "left" not in serr else ":\n" + serr[-600:]))
    finally:
        netns.cleanup(pair)


def faults(pair=None):
    """The hostile receiver and the faults: across the namespaces where they
    can be made (make test), else over ipc."""
    test_flood(pair)
    test_orphan(pair)
    test_left_stream(pair)
    test_slow(pair)


def main():
    t0 = time.time()
    # meson's timeout sends SIGTERM: unwind, so that the namespaces, the
    # processes and the streams are removed below all the same.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        if ONLY:
            for name in ONLY:
                globals()[name]()
            return finish(t0)
        if LONG:
            test_slow()
            pair = netns.setup(TAG[-6:])
            if not isinstance(pair, str):
                try:
                    test_slow(pair)
                finally:
                    netns.cleanup(pair)
            return finish(t0)
        if PART in ("all", "1"):
            test_frames()
            test_bad_peer()
        if QUICK:
            return finish(t0)
        if PART in ("all", "1"):
            test_frames("tcp://127.0.0.1:%d", what="tcp", send_args=["--insecure"],
                        recv_args=["--insecure"])
            test_faults()
            test_lost()
            test_rules()
            test_keys()
            test_key_files()
            test_squatted_port()
            test_zstd()
        if PART in ("all", "3"):
            test_jpeg()
            test_users()
            test_groups()
            test_reused_pid()
            test_late()
            test_squatted()
            test_idle()
            test_refused_retries()
            test_files()
            test_endless()
            test_endless_sender()
            test_hoarded()
            test_meta_switched()
        if PART in ("all", "2"):
            slow = threading.Thread(target=test_slow_link)
            slow.start()
            pair = netns.setup(TAG[-6:])
            if isinstance(pair, str):
                print("skip two-host tests (network namespaces): " + pair)
                faults()
            else:
                try:
                    test_netns(pair)
                finally:
                    netns.cleanup(pair)
            slow.join()
    finally:
        for p in procs:
            if p.poll() is None:
                if p.returncode is None:
                    try:
                        os.kill(p.pid, signal.SIGCONT)
                    except OSError:
                        pass
                p.kill()
                p.wait()
        for n in os.listdir("/dev/shm"):
            if n.startswith("shl." + TAG):
                os.unlink("/dev/shm/" + n)
        shutil.rmtree(SOCKDIR, ignore_errors=True)
    return finish(t0)


def finish(t0):
    print("%d failure(s) in %.1f s" % (len(failures), time.time() - t0))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
