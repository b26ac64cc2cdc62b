"""Per-frame metadata on streams, and streams replaced under their name:
Writer(meta=, replace=), Loan.meta, Sample.meta, Reader(meta=, follow=),
LayoutChanged."""

from __future__ import annotations

import os
import time

import ctypes

import numpy as np
import pytest

import shmlane


class Header(ctypes.Structure):
    _fields_ = [
        ("frame", ctypes.c_uint64),
        ("capture_ns", ctypes.c_uint64),
        ("exposure", ctypes.c_float),
        ("width", ctypes.c_uint16),
        ("height", ctypes.c_uint16),
    ]


HEADER_DTYPE = np.dtype(
    {"names": ["frame", "capture_ns", "exposure", "width", "height"],
     "formats": ["<u8", "<u8", "<f4", "<u2", "<u2"], "offsets": [0, 8, 16, 20, 22],
     "itemsize": 24}
)  # fmt: skip


def test_ctypes_metadata_rides_with_its_frame(name: str) -> None:
    with shmlane.Writer(name, shape=(4, 5), dtype="u1", slots=4, meta=Header) as w:
        r = shmlane.Reader(name, policy="all", timeout=0, meta=Header)
        plain = shmlane.Reader(name, policy="all", timeout=0)
        assert w.meta_dtype == HEADER_DTYPE and r.meta_dtype == HEADER_DTYPE
        assert isinstance(w.meta, Header)
        for n in (1, 2, 3):
            loan = w.loan()
            assert loan.meta is w.meta
            with loan as frame:
                frame[...] = n
                loan.meta.frame, loan.meta.exposure = n, n / 4
                loan.meta.width, loan.meta.height = 5, 4
        w.publish(np.full((4, 5), 9, "u1"))  # the copy path carries the record too
        for n in (1, 2, 3, 4):
            with r.receive(timeout=5) as s:
                assert isinstance(s.meta, Header) and not s.new_stream
                # Fields set once keep their value; the last frame repeats frame 3's record.
                assert (s.meta.frame, s.meta.exposure, s.meta.width) == (min(n, 3), min(n, 3) / 4, 5)
                assert int(s.array[0, 0]) == (n if n < 4 else 9)
            with plain.receive(timeout=5) as p:
                assert isinstance(p.meta, np.void) and p.meta["frame"] == min(n, 3)
                with pytest.raises(ValueError):
                    p.meta["frame"] = 7  # read-only
        r.close()
        plain.close()


def test_dtype_metadata_and_records_kept_after_release(name: str) -> None:
    with shmlane.Writer(name, shape=(3,), dtype="<f8", slots=4, meta=HEADER_DTYPE) as w:
        r = shmlane.Reader(name, policy="all", timeout=0, meta=HEADER_DTYPE)
        assert isinstance(w.meta, np.void)
        w.meta["frame"] = 41
        loan = w.loan()
        loan.discard()  # nothing published
        w.meta["frame"] = 42
        w.publish(np.arange(3.0))
        s = r.receive(timeout=5)
        s.release()
        assert s.meta["frame"] == 42 and s.seq == 1  # taken before the slot went back
        with pytest.raises(TimeoutError):
            r.receive(timeout=0)
        r.close()


def test_metadata_layout_is_checked(name: str) -> None:
    small = np.dtype([("frame", "<u4")])
    with shmlane.Writer(name, shape=(2,), dtype="u1", meta=Header):
        with pytest.raises(shmlane.LayoutMismatch, match="metadata: .*field `capture_ns` is in the stream.s metadata but not here"):
            shmlane.Reader(name, timeout=0, meta=small)
        shmlane.Reader(name, timeout=0, meta=HEADER_DTYPE).close()
    other = f"{name}-plain"
    try:
        with shmlane.Writer(other, shape=(2,), dtype="u1") as plain:
            with pytest.raises(shmlane.LayoutMismatch, match="none in the stream"):
                shmlane.Reader(other, timeout=0, meta=Header)
            with pytest.raises(ValueError, match="carries no metadata"):
                plain._raw.publish_copy(np.zeros(2, "u1"), 1.0, b"")
    finally:
        shmlane.unlink(other)
    # A takeover needs the same metadata; replacing it is asked for, never
    # silent. The message says it is the metadata, and which field.
    for meta, says in [
        (small, "other metadata: field `capture_ns` is in the stream's metadata but not here"),
        (None, r"other metadata: none here, T\{<Q:frame:.* in the stream"),
        (np.dtype([("frame", "<u8"), ("capture_ns", "<u8"), ("exposure", "<f8"),
                   ("width", "<u2"), ("height", "<u2")], align=True),
         "other metadata: field `exposure`: `<f8` here, `<f4` in the stream's metadata"),
    ]:
        with pytest.raises(shmlane.LayoutMismatch, match=says + r".*replace=True"):
            shmlane.Writer(name, shape=(2,), dtype="u1", meta=meta)
    with pytest.raises(ValueError, match="24 bytes, not 3"):
        with shmlane.Writer(name, shape=(2,), dtype="u1", meta=Header) as w:
            w._raw.publish_copy(np.zeros(2, "u1"), 1.0, b"abc")


def test_replace_is_followed_and_old_samples_stay(name: str) -> None:
    w = shmlane.Writer(name, shape=(4,), dtype="<u2", slots=4, meta=Header)
    r = shmlane.Reader(name, policy="all", timeout=0, meta=Header)
    stay = shmlane.Reader(name, policy="all", timeout=0, follow=False)
    picky = shmlane.Reader(name, policy="all", timeout=0, shape=(4,))
    w.meta.frame = 1
    w.publish(np.arange(4, dtype="<u2"))
    kept = r.receive(timeout=5)
    kept_array = kept.array
    with pytest.raises(shmlane.StreamBusy):
        shmlane.Writer(name, shape=(6, 2), dtype="u1", replace=True)  # its writer lives
    w.close()
    w2 = shmlane.Writer(name, shape=(6, 2), dtype="u1", slots=2, meta=Header, replace=True)
    assert w2.next_seq == 2
    w2.meta.frame = 2
    w2.publish(np.full((6, 2), 7, "u1"))

    with r.receive(timeout=5) as s:
        assert s.new_stream and s.seq == 2 and s.lost == 0 and s.meta.frame == 2
        assert s.array.shape == (6, 2) and int(s.array.sum()) == 7 * 12
    assert (r.shape, r.dtype) == ((6, 2), np.dtype("u1"))
    # Held from the old stream: still mapped, still its own layout.
    assert kept_array.dtype == np.dtype("<u2") and kept_array.tolist() == [0, 1, 2, 3]
    assert memoryview(kept._raw).format == "<H" and kept.meta.frame == 1
    kept.release()
    del kept_array

    with stay.receive(timeout=5) as s:
        assert s.seq == 1
    with pytest.raises(shmlane.LayoutChanged) as caught:
        stay.receive(timeout=5)
    assert isinstance(caught.value, shmlane.WriterGone) and caught.value.reason == "replaced"

    with picky.receive(timeout=5) as s:
        assert s.seq == 1
    for _ in range(2):  # and from then on
        with pytest.raises(shmlane.LayoutChanged, match=r"shape \(4,\) here, \(6, 2\)"):
            picky.receive(timeout=5)
    for reader in (r, stay, picky):
        reader.close()
    w2.close()


def test_replacement_numpy_cannot_read_ends_the_reader(name: str) -> None:
    """A writer of the stream replaced it with frames of a format the core
    accepts and NumPy does not (two fields named `a`): the reader raised
    ValueError once, then went on reading the new frames with the old
    dtype. It ends, as for a layout it did not ask for."""
    from shmlane import _shmlane

    w = shmlane.Writer(name, shape=(2,), dtype=[("a", "u1"), ("b", "u1")])
    r = shmlane.Reader(name, policy="all", timeout=0)
    w.publish(np.zeros(2, w.dtype))
    raw = _shmlane.writer_replace(w._raw, "T{B:a:B:a:}", (2,), 0, 0, 0, 0, None, 0)
    try:
        for frame in (b"\1\2\3\4", b"\5\6\7\10"):
            raw.publish_copy(frame, 1.0)
        with r.receive(timeout=5) as s:
            assert s.seq == 1
        for _ in range(2):  # and from then on
            with pytest.raises(shmlane.LayoutChanged, match="NumPy cannot use its element format"):
                r.receive(timeout=5)
    finally:
        r.close()
        raw.close()


def test_receive_into_across_a_replacement(name: str) -> None:
    w = shmlane.Writer(name, shape=(3,), dtype="u1", slots=2)
    r = shmlane.Reader(name, policy="all", timeout=0)
    w.publish(np.array([1, 2, 3], "u1"))
    out = np.zeros(3, "u1")
    assert r.receive_into(out, timeout=5)[0] == 1 and out.tolist() == [1, 2, 3]
    w.close()
    w = shmlane.Writer(name, shape=(5,), dtype="u1", slots=2, replace=True)
    w.publish(np.arange(5, dtype="u1"))
    w.publish(np.arange(5, dtype="u1") + 1)
    with pytest.raises(shmlane.LayoutChanged, match="frame 2 was dropped"):
        r.receive_into(out, timeout=5)
    assert r.shape == (5,)
    bigger = np.zeros(5, "u1")
    assert r.receive_into(bigger, timeout=5)[0] == 3 and bigger.tolist() == [1, 2, 3, 4, 5]
    r.close()
    w.close()


def test_name_removed_and_created_again_is_followed(name: str) -> None:
    w = shmlane.Writer(name, shape=(2,), dtype="u1", slots=2)
    r = shmlane.Reader(name, policy="latest", timeout=0)
    w.publish(np.array([1, 1], "u1"))
    w.close()
    shmlane.unlink(name)
    w = shmlane.Writer(name, shape=(3,), dtype="<f4", slots=2)
    w.publish(np.ones(3, "<f4"))
    with r.receive(timeout=5) as s:
        assert s.seq == 1 and not s.new_stream
    with r.receive(timeout=5) as s:
        assert s.new_stream and s.seq == 1 and s.array.dtype == np.dtype("<f4")
    r.close()
    w.close()


def test_writer_replaces_its_own_stream(name: str) -> None:
    w = shmlane.Writer(name, shape=(4,), dtype="u1", slots=4, meta=Header, block=True)
    r = shmlane.Reader(name, policy="all", timeout=0)
    w.meta.frame = 1
    w.publish(np.ones(4, "u1"))
    loan = w.loan()
    with pytest.raises(RuntimeError, match="loan is already outstanding"):
        w.replace((2, 3), "<u2")
    loan.discard()
    w.replace((2, 3), "<u2")  # the metadata type and the slots stay
    assert (w.shape, w.dtype, w.next_seq) == ((2, 3), np.dtype("<u2"), 2)
    info = w.info()
    assert (info.slots, info.block, info.first_seq, info.meta_size) == (4, True, 2, 24)
    w.meta.frame = 2  # a new record, of the same type
    w.publish(np.full((2, 3), 2, "<u2"))
    with r.receive(timeout=5) as s:
        assert (s.seq, s.new_stream, s.meta["frame"]) == (1, False, 1)
    with r.receive(timeout=5) as s:  # never WriterGone in between
        assert (s.seq, s.new_stream, s.meta["frame"], s.array.shape) == (2, True, 2, (2, 3))
    w.replace((3,), "u1", meta=None, slots=2)
    assert w.meta is None and w.info().slots == 2
    w.publish(np.arange(3, dtype="u1"))
    with r.receive(timeout=5) as s:
        assert s.new_stream and s.meta is None and r.meta_dtype is None
    w.close()
    with pytest.raises(ValueError, match="closed"):
        w.replace((3,), "u1")
    r.close()


def test_a_replacement_that_cannot_be_made_leaves_the_stream(name: str) -> None:
    """Too big for /dev/shm: replace() fails, and the old stream is still the
    name's, its writer and readers going on (it is built aside and swapped in)."""
    w = shmlane.Writer(name, shape=(4,), dtype="u1", slots=2)
    r = shmlane.Reader(name, policy="all", timeout=0)
    w.publish(np.ones(4, "u1"))
    before = os.stat(f"/dev/shm/shl.{name}").st_ino
    with pytest.raises(OSError):
        w.replace((1 << 40,), "u1")  # 2 TiB a ring
    assert os.stat(f"/dev/shm/shl.{name}").st_ino == before
    assert not [f for f in os.listdir("/dev/shm") if f.startswith(".shl-stage.") and name in f]
    w.publish(np.full(4, 2, "u1"))
    for seq in (1, 2):
        with r.receive(timeout=5) as s:
            assert (s.seq, s.new_stream) == (seq, False)
    with shmlane.Reader(name, timeout=0) as late, late.receive(timeout=5) as s:
        assert s.seq == 2
    r.close()
    w.close()


# A peer with write access (nobody, on a 0666 stream) switches the metadata's
# place and size between two valid states, many times a millisecond.
META_FLIPPER = """
import mmap, os, struct, sys, time
os.setgroups([]); os.setgid(65534); os.setuid(65534)
fd = os.open("/dev/shm/shl." + sys.argv[1], os.O_RDWR)
m = mmap.mmap(fd, 0)
ext = struct.unpack_from("<Q", m, 96)[0]
fmt_at = ext + struct.unpack_from("<Q", m, ext + 48)[0]
states = [(12288 - 64, b"T{<Q:a:<Q:b:48x}\\0", 64), (8192, b"4096x\\0", 4096)]
print("flipping", flush=True)
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    for offset, fmt, size in states:
        m[fmt_at:fmt_at + len(fmt)] = fmt
        struct.pack_into("<I", m, ext + 12, len(fmt) - 1)
        struct.pack_into("<QQ", m, ext + 32, offset, size)
        hold = time.monotonic() + 0.0002  # each state lasts a little, and the switches strike too
        while time.monotonic() < hold:
            pass
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_metadata_a_peer_switches_is_never_read_past_its_slot(name, spawn_py) -> None:
    """Place and size come from the reader's one snapshot: Sample.meta is the
    64-byte record or the 4096-byte one, whole and inside its slot, never the
    first's place with the second's size (which would reach past the mapping
    from the last slot)."""
    w = shmlane.Writer(name, shape=(8192,), dtype="u1", slots=2, mode=0o666,
                       meta=np.dtype([("a", "u1"), ("b", "u1", (63,))]))
    flipper = spawn_py(META_FLIPPER, name, "20")
    assert flipper.stdout.readline().strip() == "flipping"
    seen, opened = set(), 0
    deadline = time.monotonic() + 15
    while opened < 50 and time.monotonic() < deadline:
        try:
            r = shmlane.Reader(name, timeout=0)
        except shmlane.CorruptSegment:
            continue  # opened mid-switch: the state it saw did not validate
        opened += 1
        w.publish(np.full(8192, 0xFF, "u1"))  # the record's bytes stay zero
        with r.receive(timeout=5) as s:
            raw = s._raw.meta
            seen.add(len(raw))
            # The 64-byte record at the slot's end, or the 4096 bytes before
            # it; the first's place with the second's size would hold the next
            # slot's frame (0xFF), or reach past the mapping.
            assert len(raw) in (64, 4096) and not any(raw), (len(raw), raw[:80])
        r.close()
    assert seen, "no reader ever opened"
    flipper.kill()
    w.close()


# A peer with write access (nobody, in the group of a 0660 stream) writes
# numbers no frame can carry: 2^60 into slot 3's seq (empty), and frame 2^55 into
# `latest`.
SEQ_SCRIBBLER = """
import mmap, os, struct, sys
os.setgroups([]); os.setgid(65534); os.setuid(65534)
fd = os.open("/dev/shm/shl." + sys.argv[1], os.O_RDWR)
m = mmap.mmap(fd, 0)
ext = struct.unpack_from("<Q", m, 96)[0]
struct.pack_into("<Q", m, ext + 128 + 16 * 3, 1 << 60)  # slot 3's seq
struct.pack_into("<Q", m, ext + 72, 1 << 63 | 3)  # latest
print("written", flush=True)
"""


def receive_until(reader: shmlane.Reader, seq: int) -> shmlane.Sample:
    """The reader's samples up to frame seq (a clean close on the way is
    passed over, as a takeover follows it): the last one, still held."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            s = reader.receive(timeout=5)
        except shmlane.WriterGone:
            continue
        if s.seq >= seq:
            return s
        s.release()
    raise AssertionError(f"frame {seq} never came")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
@pytest.mark.parametrize("then", ["takeover", "replace"])
def test_numbers_a_peer_writes_never_brick_the_name(name, run_py, then) -> None:
    """After the peer's numbers, a writer taking over or replacing the stream
    goes on from the real ones (3), the name opens, and readers old and new
    receive again."""
    w = shmlane.Writer(name, shape=(16,), dtype="u1", slots=4, mode=0o660)
    os.chown(f"/dev/shm/shl.{name}", -1, 65534)  # the peer's group
    old = shmlane.Reader(name, policy="all", timeout=0)
    for v in (1, 2):
        w.publish(np.full(16, v, "u1"))
    if then == "takeover":
        w.close()
    assert run_py(SEQ_SCRIBBLER, name).strip() == "written"
    if then == "takeover":
        w = shmlane.Writer(name, shape=(16,), dtype="u1")
        shape = (16,)
    else:
        w.replace((32,), "u1")
        shape = (32,)
    assert w.next_seq == 3
    w.publish(np.full(shape, 3, "u1"))
    with receive_until(old, 3) as s:
        assert (s.seq, s.array.shape, int(s.array[0])) == (3, shape, 3)
    with shmlane.Reader(name, timeout=0) as late, late.receive(timeout=5) as s:
        assert (s.seq, s.array.shape) == (3, shape)
    w.publish(np.full(shape, 4, "u1"))
    with old.receive(timeout=5) as s:
        assert s.seq == 4
    old.close()
    w.close()


class Tagged(ctypes.Structure):  # C's char arrays: bytes, as the camera service's FrameMeta.source
    _fields_ = [("frame", ctypes.c_uint64), ("source", ctypes.c_char * 16),
                ("names", (ctypes.c_char * 4) * 2)]  # fmt: skip


def test_char_arrays_are_bytes_in_every_form(name: str) -> None:
    with shmlane.Writer(name, shape=(2,), dtype="u1", meta=Tagged) as w:
        assert w.meta_dtype["source"] == np.dtype("S16")
        assert w.meta_dtype["names"] == np.dtype(("S4", (2,)))
        w.meta.source, w.meta.names[0].value, w.meta.names[1].value = b"pattern", b"ab", b"cd"
        records = shmlane.Reader(name, timeout=0)  # NumPy records
        typed = shmlane.Reader(name, timeout=0, meta=Tagged)
        # NumPy's own view of the type (16 items of S1) is the same layout.
        legacy = shmlane.Reader(name, timeout=0, meta=np.dtype(Tagged))
        w.publish(np.zeros(2, "u1"))
        with records.receive(timeout=5) as s:
            assert s.meta["source"] == b"pattern"
            assert s.meta["names"].tolist() == [b"ab", b"cd"]
        with typed.receive(timeout=5) as s:
            assert s.meta.source == b"pattern" and s.meta.names[1].value == b"cd"
        with legacy.receive(timeout=5) as s:
            assert s.meta["source"] == b"pattern"
        for r in (records, typed, legacy):
            r.close()
    with shmlane.Writer(name, shape=(2,), dtype="u1", meta=np.dtype(Tagged)) as w:
        pass  # takes the stream over: the same layout, said NumPy's way


class ReadmeHeader(ctypes.Structure):  # the README's: ctypes pads it to 16 bytes
    _fields_ = [("frame", ctypes.c_uint64), ("exposure", ctypes.c_float)]


def test_a_c_writers_metadata_of_another_size_is_named(name: str) -> None:
    """A C writer's record without the trailing padding ctypes adds: Python
    says it is the metadata, and how it differs, not the (equal) frames."""
    raw = shmlane._shmlane.writer_open(name, "B", (2,), 0, 64, 0, 0o600, "T{<Q:frame:<f:exposure:}")
    raw.close()
    with pytest.raises(shmlane.LayoutMismatch) as exc:
        shmlane.Writer(name, shape=(2,), dtype="u1", meta=ReadmeHeader)
    assert "other metadata: 16 bytes here, 12 in the stream's metadata" in str(exc.value)
    assert "shape" not in str(exc.value)
    # The padded format, as the README's C writer now gives it, is the same layout.
    raw = shmlane._shmlane.writer_open(
        name, "B", (2,), 0, 64, shmlane._shmlane.STREAM_REPLACE, 0o600, "T{<Q:frame:<f:exposure:4x}"
    )
    raw.close()
    shmlane.Writer(name, shape=(2,), dtype="u1", meta=ReadmeHeader).close()
