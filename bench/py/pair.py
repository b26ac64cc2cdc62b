"""One writer process and one reader process moving frames with one method
(shmlane or an alternative), the Python counterpart of bench/c/stream.c.

    python pair.py writer METHOD NAME FRAME ITERS GAP_S SECONDS PHASES OUT
    python pair.py reader METHOD NAME FRAME ITERS PHASES OUT

FRAME is HxWxC (uint8) or a byte count. The writer sets everything up,
prints "ready", waits for the reader, then runs the phases (see stream.c):
l (latency, the reader blocked; GAP_S apart, 0.5x..1.5x, or with GAP_S
negative exactly -GAP_S apart on an absolute schedule, as a camera), c
(cost, the reader polling, timing the successful receive), t (throughput
for SECONDS). A frame carries in its first 8 bytes the writer's clock just
before it is handed over: for shmlane after the frame is filled in the slot
(the fill is timed apart), for the others before their copy-in, which is
part of how they send. shmlane's writer reads the clock once more after
storing that stamp, just before its publish call, and writes the
difference to OUT.store (phase l): the latency from the call itself is the
reader's less that, with no Python store in between. The latency ends
when the reader holds the frame (its array, a copy for the copying
methods): each method's recv reads the clock then (Method.held_ns), before
its own bookkeeping.

In phase t the reader counts distinct frames apart from duplicates: each
method's recv names the frame it returned (shmlane: its sequence number;
the semaphore recipes: the frame counter read with the frame, under the
lock; the queues, pyzmq, pipes and iceoryx2, whose every receive is another
message: its stamp). A counting semaphore lets a reader take one post per
publish while it copies whatever frame is current, so several posts can
give the same frame: that is a duplicate, not a frame delivered. The rate
is distinct frames over the reader's time, from the writer's start to the
last distinct frame (a queue drained after the writer stopped counts its
time). Each process also reports the CPU time it used (all its threads,
user + system): the cost of methods that copy on background threads (pyzmq)
or in the kernel shows there, not in the calls' own time.

Per frame the writer records `send` (shmlane: loan + publish; others: copy
in + signal), the reader `recv` (receive until it holds an ndarray and has
released what it must: shmlane receive + array + release; others: wake-up
bookkeeping + copy out). Files OUT.send, OUT.recv, OUT.lat, OUT.fill; one
JSON line of counts on stdout. Control traffic goes through a shmlane
segment NAME.c and is not timed.
"""

from __future__ import annotations

import json
import mmap
import os
import sys
import time

import numpy as np

import shmlane
from method import Method, now, ns, put_stamp, stamp_of, stamp_slot

BUSY_GAP = os.environ.get("BENCH_BUSY_GAP") == "1"
# Phase l: how long one receive call waits before the loop calls again (the
# idle measurement sets it long: the loop's own wake-ups would count).
RECV_TIMEOUT = float(os.environ.get("BENCH_RECV_TIMEOUT", "1.0"))
# Phase l: frames whose CPU time is left out, the writer's and the reader's
# alike: the start-up's tail (NumPy's OpenBLAS thread spins for about 0.1 s
# after the import; first touches of the slots) is not a cost per frame.
WARMUP = int(os.environ.get("BENCH_WARMUP", "0"))
STAMP, ACKS, READY, PHASE, DONE, ELAPSED, START = 0, 8, 16, 24, 32, 40, 48


def parse_frame(text: str) -> tuple:
    return tuple(int(x) for x in text.split("x"))


class Shmlane(Method):
    def __init__(self, role, name, shape, policy="latest"):
        self.role, self.name = role, name
        if role == "writer":
            shmlane.unlink(name) if name in {i.name for i in shmlane.list()} else None
            self.w = shmlane.Writer(name, shape=shape, dtype="u1", block=policy == "all")
        else:
            spin = os.environ.get("BENCH_READER_SPIN", "0")
            spin = spin if spin == "auto" else float(spin)
            self.r = shmlane.Reader(name, policy=policy, timeout=5.0, spin=spin)

    fill = True  # on in phase l only: in c and t the producer wrote the slot itself

    def send(self, src: np.ndarray) -> int:
        t0 = ns()
        loan = self.w.loan()
        arr = loan.array
        t1 = ns()
        stamp = stamp_slot(arr)  # counted with the fill, apart from send
        if self.fill:
            np.copyto(arr, src)  # the fill: a camera would write here directly
        t2 = ns()
        stamp[0] = t_stamp = now()  # only this store between stamp and publish
        t_call = now()  # no store between this and the call: the latency from the call
        loan.publish()
        t3 = ns()
        self.fill_ns = t2 - t1
        self.store_ns = t_call - t_stamp
        return (t1 - t0) + (t3 - t2)

    def recv(self, timeout):
        try:
            s = self.r.receive(timeout=timeout)
        except TimeoutError:
            return None
        arr = s.array
        self.held_ns = now()
        self.published_ns = s.timestamp_ns  # the time publish() stored with the frame
        return arr, s.release, s.seq

    def close(self):
        if self.role == "writer":
            self.w.close()
            self.w.unlink()
        else:
            self.r.close()


class ShmlaneCopy(Shmlane):
    """shmlane's copying calls, copying in and out as the alternatives do:
    Writer.publish(frame) and Reader.receive_into(a preallocated array)."""

    def __init__(self, role, name, shape, policy="latest"):
        super().__init__(role, name, shape, policy)
        self.out = np.empty(shape, np.uint8)

    def send(self, src):
        t0 = ns()
        put_stamp(src, now())
        self.w.publish(src)
        return ns() - t0

    def recv(self, timeout):
        try:
            got = self.r.receive_into(self.out, timeout)
        except TimeoutError:
            return None
        self.held_ns = now()
        return self.out, None, got[0]


class _Shared(Method):
    """A shared buffer guarded by a named posix_ipc semaphore, with a frame
    counter in front of it; subclasses provide the buffer."""

    def __init__(self, role, name, shape):
        import posix_ipc

        self.role, self.name, self.shape = role, name, shape
        self.nbytes = int(np.prod(shape))
        flags = posix_ipc.O_CREX if role == "writer" else 0
        if role == "writer":
            for n in ("/" + name + ".m", "/" + name + ".n"):
                try:
                    posix_ipc.unlink_semaphore(n)
                except posix_ipc.ExistentialError:
                    pass
        self.mutex = posix_ipc.Semaphore("/" + name + ".m", flags, initial_value=1)
        self.avail = posix_ipc.Semaphore("/" + name + ".n", flags, initial_value=0)
        self.buf = self.attach()  # uint8 array: 8-byte counter, then the frame
        self.count = self.buf[:8].view("<u8")
        self.frame = self.buf[8:].reshape(shape)
        self.seen = 0

    def send(self, src):
        t0 = ns()
        put_stamp(src, now())
        self.mutex.acquire()
        self.frame[...] = src  # copy in
        self.count[0] += 1
        self.mutex.release()
        self.avail.release()  # wake the reader
        return ns() - t0

    def recv(self, timeout):
        import posix_ipc

        try:
            self.avail.acquire(timeout)
        except posix_ipc.BusyError:
            return None
        self.mutex.acquire()
        out = self.frame.copy()  # copy out
        self.held_ns = now()
        key = int(self.count[0])  # which frame it is, with it
        self.mutex.release()
        return out, None, key

    def close(self):
        for s in (self.mutex, self.avail):
            if self.role == "writer":
                s.unlink()
            s.close()


class Seed(_Shared):
    """The seed's recipe: posix_ipc SharedMemory + mmap, a semaphore as a
    lock, frame.tobytes() copied into the mapping, the reader polling the
    counter every millisecond (when blocked) and copying the frame out."""

    def attach(self):
        import posix_ipc

        size = 8 + self.nbytes
        if self.role == "writer":
            try:
                posix_ipc.unlink_shared_memory("/" + self.name)
            except posix_ipc.ExistentialError:
                pass
            shm = posix_ipc.SharedMemory("/" + self.name, posix_ipc.O_CREX, size=size)
        else:
            shm = posix_ipc.SharedMemory("/" + self.name)
        self.mm = mmap.mmap(shm.fd, size)
        shm.close_fd()
        return np.ndarray((size,), np.uint8, buffer=self.mm)

    def send(self, src):
        t0 = ns()
        put_stamp(src, now())
        data = src.tobytes()  # the seed copies twice: tobytes(), then into the mapping
        self.mutex.acquire()
        self.mm[8:] = data
        self.count[0] += 1
        self.mutex.release()
        return ns() - t0

    def recv(self, timeout):
        deadline = time.monotonic() + (timeout or 0)
        while True:
            self.mutex.acquire()
            if int(self.count[0]) != self.seen:
                self.seen = int(self.count[0])
                out = np.ndarray(self.shape, np.uint8, buffer=self.mm, offset=8).copy()
                self.held_ns = now()
                self.mutex.release()
                return out, None, self.seen
            self.mutex.release()
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.001)  # the seed polls at a fixed rate

    def close(self):
        super().close()
        if self.role == "writer":
            import posix_ipc

            try:
                posix_ipc.unlink_shared_memory("/" + self.name)
            except posix_ipc.ExistentialError:
                pass


class MpShm(_Shared):
    """multiprocessing.shared_memory + a posix_ipc lock and a posix_ipc
    counting semaphore to wake the reader; copy in and out with NumPy."""

    def attach(self):
        from multiprocessing import resource_tracker, shared_memory

        size = 8 + self.nbytes
        if self.role == "writer":
            try:
                shared_memory.SharedMemory(self.name).unlink()
            except FileNotFoundError:
                pass
            self.shm = shared_memory.SharedMemory(self.name, create=True, size=size)
        else:
            self.shm = shared_memory.SharedMemory(self.name)
            # Python < 3.13 would unlink it when this reader exits.
            resource_tracker.unregister(self.shm._name, "shared_memory")
        return np.ndarray((size,), np.uint8, buffer=self.shm.buf)

    def close(self):
        super().close()
        self.buf = self.count = self.frame = None
        self.shm.close()
        if self.role == "writer":
            self.shm.unlink()


class SharedArrayMethod(_Shared):
    """SharedArray (a named array with its dtype and shape) + posix_ipc
    semaphores, copy in and out."""

    def attach(self):
        import SharedArray as sa

        size = 8 + self.nbytes
        if self.role == "writer":
            try:
                sa.delete("shm://" + self.name)
            except FileNotFoundError:
                pass
            return sa.create("shm://" + self.name, (size,), np.uint8)
        return sa.attach("shm://" + self.name)

    def close(self):
        super().close()
        if self.role == "writer":
            import SharedArray as sa

            sa.delete("shm://" + self.name)


class Zmq(Method):
    """pyzmq PUSH/PULL over ipc://. The send copies the frame into a ZeroMQ
    message: the writer rewrites its buffer for the next frame at once, and a
    zero-copy send (copy=False) would let ZeroMQ's I/O thread transmit it
    afterwards, mixing frames (received stamps repeat). The receive is
    zero-copy (the message is the reader's)."""

    def __init__(self, role, name, shape):
        import zmq

        self.zmq, self.shape = zmq, shape
        self.ctx = zmq.Context()
        self.path = f"/tmp/shlbench-{name}.ipc"
        if role == "writer":
            self.sock = self.ctx.socket(zmq.PUSH)
            self.sock.bind("ipc://" + self.path)
        else:
            self.sock = self.ctx.socket(zmq.PULL)
            self.sock.connect("ipc://" + self.path)
        self.role = role

    def send(self, src):
        t0 = ns()
        put_stamp(src, now())
        self.sock.send(src, copy=True)
        return ns() - t0

    def recv(self, timeout):
        if timeout is not None and not self.sock.poll(int(timeout * 1000) if timeout else 0):
            return None
        msg = self.sock.recv(copy=False)
        arr = np.frombuffer(msg.buffer, np.uint8).reshape(self.shape)
        self.held_ns = now()
        return arr, None, int.from_bytes(msg.buffer[:8], "little")  # key: the stamp

    def close(self):
        self.sock.close(linger=0)
        self.ctx.term()
        if self.role == "writer":
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


class Pipe(Method):
    """multiprocessing.connection.Connection over a named pipe (what
    multiprocessing.Pipe(duplex=False) gives, between unrelated processes):
    send_bytes / recv_bytes_into a preallocated array."""

    def __init__(self, role, name, shape):
        from multiprocessing.connection import Connection

        self.path = f"/tmp/shlbench-{name}.fifo"
        self.role, self.shape = role, shape
        if role == "writer":
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            os.mkfifo(self.path, 0o600)
            self.conn = Connection(os.open(self.path, os.O_RDWR), readable=False)
        else:
            self.conn = Connection(os.open(self.path, os.O_RDONLY), writable=False)
            self.out = np.empty(int(np.prod(shape)), np.uint8)
            self.stamp = self.out[:8].view("<u8")

    def send(self, src):
        t0 = ns()
        put_stamp(src, now())
        self.conn.send_bytes(src.reshape(-1))  # flat: send_bytes counts len()
        return ns() - t0

    def recv(self, timeout):
        if timeout is not None and not self.conn.poll(timeout):
            return None
        self.conn.recv_bytes_into(self.out)
        arr = self.out.reshape(self.shape)
        self.held_ns = now()
        return arr, None, int(self.stamp[0])

    def close(self):
        self.conn.close()
        if self.role == "writer":
            os.unlink(self.path)


def make(method, role, name, shape, policy):
    if method == "shmlane":
        return Shmlane(role, name, shape, policy)
    if method == "shmlane-copy":
        return ShmlaneCopy(role, name, shape, policy)
    if method == "iceoryx2":
        from iox2_method import Iceoryx2

        return Iceoryx2(role, name, shape)
    cls = {"seed": Seed, "mpshm": MpShm, "sharedarray": SharedArrayMethod, "zmq": Zmq, "pipe": Pipe}
    return cls[method](role, name, shape)


def control(name, create):
    if create:
        return shmlane.create(name + ".c", shape=64, dtype="<u8", replace=True)
    return shmlane.open(name + ".c", timeout=5.0)


def dump(path, values):
    with open(path, "w") as f:
        f.write("\n".join(str(v) for v in values) + "\n")


def wait_for(c, index, value):
    while c[index] < value:
        pass


def writer(method, name, frame, iters, gap, seconds, phases, out, policy):
    shape = parse_frame(frame)
    seg = control(name, True)
    c = seg.array
    m = make(method, "writer", name, shape, policy)
    src = np.random.default_rng(1).integers(0, 255, shape, dtype=np.uint8)
    print("ready", flush=True)
    while c[READY] < 1:
        time.sleep(0.001)
    send, fill, store, send_polled = [], [], [], []
    rng = np.random.default_rng(2)
    acked, lat_cpu, cpu0 = 0, 0, 0
    for ph, code in ((1, "l"), (2, "c")):
        if code not in phases:
            continue
        c[PHASE] = ph
        m.fill = ph == 1  # shmlane: as in stream.c, phase c times the hand-over alone, caches warm
        due = time.monotonic()
        for i in range(iters):
            if i == min(WARMUP, iters - 1):
                cpu0 = time.process_time_ns()  # paced: the frames from here on
            if ph == 1 and gap < 0:  # a camera, on a schedule: sleep first, never spin on the ack
                due -= gap
                time.sleep(max(0.0, due - time.monotonic()))
            wait_for(c, ACKS, acked)
            if ph == 1 and gap > 0:
                pause = gap * rng.uniform(0.5, 1.5)
                if BUSY_GAP:  # stay on the CPU: the writer's caches stay warm
                    end = time.perf_counter() + pause
                    while time.perf_counter() < end:
                        pass
                else:
                    time.sleep(pause)
            cost = m.send(src)
            if ph == 1:
                send.append(cost)
                fill.append(m.fill_ns)
                store.append(m.store_ns)
            else:
                send_polled.append(cost)
            acked += 1
        wait_for(c, ACKS, acked)
        if ph == 1:
            lat_cpu = time.process_time_ns() - cpu0  # paced: this process's CPU, all threads
    published, elapsed, cpu = 0, 0.0, 0
    if "t" in phases:
        c[PHASE] = 3
        m.fill = False  # shmlane: as if produced in place (the others copy a ready frame in)
        start, cpu0 = time.monotonic(), time.process_time_ns()
        c[START] = now()
        end = start + seconds
        while time.monotonic() < end:
            m.send(src)
            published += 1
        elapsed = time.monotonic() - start
        cpu = time.process_time_ns() - cpu0  # every thread of the process, user + system
        c[ELAPSED] = int(elapsed * 1e9)
        c[DONE] = 1
    while c[READY] > 0:
        time.sleep(0.001)
    dump(out + ".send", send)
    dump(out + ".fill", fill)
    dump(out + ".store", store)
    dump(out + ".send_polled", send_polled)
    m.close()
    seg.close()
    seg.unlink()
    print(json.dumps({"published": published, "seconds": elapsed, "cpu_ns": cpu, "lat_cpu_ns": lat_cpu,
                      "lat_cpu_frames": len(send) - min(WARMUP, len(send) - 1) if send else 0}),
          flush=True)


def latency_phase(m, iters, c, acks):
    """Phase l on the reader's side: each frame's latency from the writer's
    stamp and from publish's own time, acknowledged in c[acks] (the writer
    waits for it before the next), and the CPU time of the frames after the
    first WARMUP, as the writer's."""
    lat, latp, cpu0 = [], [], 0
    for i in range(iters):
        if i == min(WARMUP, iters - 1):
            cpu0 = time.process_time_ns()
        got = None
        m.held_ns = 0
        while got is None:
            got = m.recv(RECV_TIMEOUT)
        t1 = m.held_ns or now()
        arr, release, _ = got
        lat.append(t1 - stamp_of(arr))
        latp.append(t1 - m.published_ns)
        del arr
        if release:
            release()
        c[acks] += 1
    return lat, latp, time.process_time_ns() - cpu0


def reader(method, name, frame, iters, phases, out, policy):
    shape = parse_frame(frame)
    seg = control(name, False)
    c = seg.array
    m = make(method, "reader", name, shape, policy)
    c[READY] += 1
    lat, recv, latp = [], [], []
    lat_cpu = 0
    if "l" in phases:
        lat, latp, lat_cpu = latency_phase(m, iters, c, ACKS)
    if "c" in phases:
        for _ in range(iters):
            while True:
                t0 = ns()
                got = m.recv(0)
                if got is not None:
                    arr, release, _ = got
                    if release:
                        release()
                    recv.append(ns() - t0)
                    del arr, got
                    break
            c[ACKS] += 1
    frames, duplicates, cpu, last, seen = 0, 0, 0, 0, None
    if "t" in phases:
        while c[PHASE] != 3:
            time.sleep(0.0001)
        cpu0 = time.process_time_ns()
        while True:
            got = m.recv(0.01)
            if got is None:
                if c[DONE]:
                    break
                continue
            arr, release, key = got
            if key != seen:
                seen, frames, last = key, frames + 1, now()
            else:
                duplicates += 1
            del arr
            if release:
                release()
        cpu = time.process_time_ns() - cpu0
    dump(out + ".lat", lat)
    dump(out + ".latp", latp)
    dump(out + ".recv", recv)
    m.close()
    seconds = (last - int(c[START])) / 1e9 if frames else 0.0
    print(json.dumps({"frames": frames, "duplicates": duplicates, "seconds": seconds,
                      "writer_seconds": int(c[ELAPSED]) / 1e9, "cpu_ns": cpu,
                      "lat_cpu_ns": lat_cpu,
                      "lat_cpu_frames": len(lat) - min(WARMUP, len(lat) - 1) if lat else 0}), flush=True)
    c[READY] -= 1
    seg.close()


def main(argv):
    role, method = argv[1], argv[2]
    policy = os.environ.get("BENCH_POLICY", "latest")
    if role == "writer":
        _, _, _, name, frame, iters, gap, seconds, phases, out = argv
        writer(method, name, frame, int(iters), float(gap), float(seconds), phases, out, policy)
    else:
        _, _, _, name, frame, iters, phases, out = argv
        reader(method, name, frame, int(iters), phases, out, policy)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main(sys.argv)
