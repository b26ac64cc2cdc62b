"""iceoryx2 (0.10 Python bindings) for bench/py/pair.py: a publish-subscribe
service with a u8 slice payload sized to the frame, plus an event service
whose notifier wakes the reader (iceoryx2's way to block a subscriber).

Zero-copy both ways: the writer loans an uninitialised sample and the frame
is written into the shared memory through a NumPy view of it; the reader
gets a NumPy view of the received sample and releases it afterwards."""

from __future__ import annotations

import ctypes
import glob
import os

import numpy as np

import iceoryx2 as iox2
from method import Method, now, ns, stamp_slot


class Iceoryx2(Method):
    fill = True  # pair.py turns it off in phases c and t, as for shmlane

    def __init__(self, role, name, shape):
        self.role, self.shape = role, shape
        self.nbytes = int(np.prod(shape))
        self.view_type = ctypes.c_uint8 * self.nbytes  # to map a payload address as a buffer
        iox2.set_log_level(iox2.LogLevel.Error)  # quiet: warnings would land in the run's output
        # Disabled: the node must not swallow SIGINT/SIGTERM (we never call node.wait()).
        self.node = (iox2.NodeBuilder.new()
                     .signal_handling_mode(iox2.SignalHandlingMode.Disabled)
                     .create(iox2.ServiceType.Ipc))
        data = self.node.service_builder(iox2.ServiceName.new(f"shlbench/{name}")).publish_subscribe(
            iox2.Slice[ctypes.c_uint8])
        event = self.node.service_builder(iox2.ServiceName.new(f"shlbench/{name}/ev")).event()
        if role == "writer":
            # "latest": no history, a one-sample subscriber buffer that the
            # newest sample overwrites (safe overflow), as shmlane's "latest" policy.
            self.data = (data.history_size(0).subscriber_max_buffer_size(1)
                         .subscriber_max_borrowed_samples(2).enable_safe_overflow(True).create())
            self.event = event.create()
            self.pub = (self.data.publisher_builder().initial_max_slice_len(self.nbytes)
                        .allocation_strategy(iox2.AllocationStrategy.Static).create())
            self.notifier = self.event.notifier_builder().create()
        else:
            self.data = data.open()
            self.event = event.open()
            self.sub = self.data.subscriber_builder().buffer_size(1).create()
            self.listener = self.event.listener_builder().create()

    def view(self, ptr):
        return np.frombuffer(self.view_type.from_address(ptr), np.uint8).reshape(self.shape)

    def send(self, src):
        t0 = ns()
        loan = self.pub.loan_slice_uninit(self.nbytes)
        arr = self.view(loan.payload_ptr)
        t1 = ns()
        stamp = stamp_slot(arr)  # counted with the fill, apart from send
        if self.fill:
            np.copyto(arr, src)  # straight into shared memory, as shmlane's fill
        t2 = ns()
        stamp[0] = now()  # only this store between stamp and send, as for shmlane
        loan.assume_init().send()
        self.notifier.notify()
        t3 = ns()
        self.fill_ns = t2 - t1
        return (t1 - t0) + (t3 - t2)

    def recv(self, timeout):
        # Polling the subscriber first is cheap (no syscall); only when it is
        # empty wait on the listener, which also drains stale wake-ups.
        sample = self.sub.receive()
        if sample is None and timeout != 0:
            deadline = None if timeout is None else now() + int(timeout * 1e9)
            while sample is None:
                if deadline is None:
                    self.listener.blocking_wait()
                else:
                    left = deadline - now()
                    if left <= 0:
                        break
                    self.listener.timed_wait(iox2.Duration.from_nanos(left))
                sample = self.sub.receive()
        if sample is None:
            return None
        arr = self.view(sample.payload_ptr)
        arr.flags.writeable = False  # the subscriber's mapping is read-only
        self.held_ns = now()
        key = ctypes.c_uint64.from_address(sample.payload_ptr).value  # the stamp
        return arr, sample.delete, key

    def close(self):
        # Delete the ports, then drop the services and the node: iceoryx2
        # removes its files in /dev/shm and /tmp/iceoryx2 when they go.
        for port in ("pub", "notifier", "sub", "listener"):
            if hasattr(self, port):
                getattr(self, port).delete()
        self.pub = self.notifier = self.sub = self.listener = None
        self.data = self.event = self.node = None
        if self.role == "writer":  # the writer closes last
            remove_global_files()


def files():
    """iceoryx2's files on this machine: its prefix in /dev/shm, its root
    directory's files."""
    g = iox2.config.global_config().global_cfg
    found = set(glob.glob(f"/dev/shm/{g.prefix.to_string()}*"))
    for top, _, names in os.walk(g.root_path.to_string()):
        found.update(os.path.join(top, n) for n in names)
    return found


def clean_after_kill(before):
    """After nodes were SIGKILLed: a node's look for dead nodes removes their
    services and ports; what is left that was not there `before` (a killed
    listener's socket) goes too, once no node is left."""
    iox2.set_log_level(iox2.LogLevel.Error)
    node = (iox2.NodeBuilder.new().signal_handling_mode(iox2.SignalHandlingMode.Disabled)
            .create(iox2.ServiceType.Ipc))
    node.try_cleanup_dead_nodes()
    node = None  # dropped: its own files go
    if iox2.Node.list(iox2.ServiceType.Ipc, iox2.config.global_config()):
        return
    for f in files() - set(before):
        try:
            os.unlink(f)
        except FileNotFoundError:
            pass
    remove_global_files()


def remove_global_files():
    """Dropping the last node still leaves iceoryx2's empty directories and
    its 16-byte node-id counter in /dev/shm. Remove them, but only when no
    node of any process is left (another iceoryx2 user would need them)."""
    g = iox2.config.global_config().global_cfg
    nodes, services = g.node_dir.to_string(), g.service_dir.to_string()
    if os.path.isdir(nodes) and os.listdir(nodes):
        return
    for f in glob.glob(f"/dev/shm/{g.prefix.to_string()}*{g.node.global_mgmt_suffix.to_string()}"):
        os.unlink(f)
    for d in (services, nodes, g.root_path.to_string()):
        try:
            os.rmdir(d)  # only if empty
        except OSError:
            pass
