"""Two network namespaces joined by a veth pair, 198.51.100.1 and .2/30 (a
documentation range, routed nowhere else): the bridge's two hosts in its
test (test_bridge.py) and benchmark (bench/bridge.py). Python 3 stdlib only."""
import os
import shutil
import subprocess

ADDR_A, ADDR_B = "198.51.100.1", "198.51.100.2"


class Pair:
    def __init__(self, tag):
        self.a, self.b = "shlA" + tag, "shlB" + tag
        self.dev_a, self.dev_b = "va" + tag, "vb" + tag

    def exec_args(self, ns):
        return ["ip", "netns", "exec", ns]

    def link(self, up):
        subprocess.run(["ip", "-n", self.b, "link", "set", self.dev_b, "up" if up else "down"],
                       check=True)


def setup(tag):
    """A Pair, or the reason (a string) why namespaces cannot be made here."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        return "needs root and iproute2 (ip netns)"
    p = Pair(tag)
    cmds = [["ip", "netns", "add", p.a], ["ip", "netns", "add", p.b],
            ["ip", "link", "add", p.dev_a, "type", "veth", "peer", "name", p.dev_b],
            ["ip", "link", "set", p.dev_a, "netns", p.a],
            ["ip", "link", "set", p.dev_b, "netns", p.b],
            ["ip", "-n", p.a, "addr", "add", ADDR_A + "/30", "dev", p.dev_a],
            ["ip", "-n", p.b, "addr", "add", ADDR_B + "/30", "dev", p.dev_b],
            ["ip", "-n", p.a, "link", "set", p.dev_a, "up"],
            ["ip", "-n", p.b, "link", "set", p.dev_b, "up"],
            ["ip", "-n", p.a, "link", "set", "lo", "up"], ["ip", "-n", p.b, "link", "set", "lo", "up"]]
    for c in cmds:
        r = subprocess.run(c, capture_output=True, text=True)
        if r.returncode != 0:
            cleanup(p)
            return "'%s' not permitted here: %s" % (" ".join(c), r.stderr.strip())
    return p


def cleanup(p):
    for n in (p.a, p.b):  # deleting a namespace removes its end of the veth pair, and so the pair
        subprocess.run(["ip", "netns", "del", n], capture_output=True)
