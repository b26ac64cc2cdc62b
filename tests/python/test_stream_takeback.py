"""A stream's name after a peer with write access damaged the stream's
header or control block, so that openers refuse it: a writer in a fresh
interpreter takes the name back with replace=True while no writer holds the
stream, and readers of the damaged stream follow; without replace=True, or
while a writer lives, it is refused with an error that says what to do."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest

import shmlane

# Offsets in docs/format.md: the header's format_len, ext_offset, and the
# stream control block's slot count.
FORMAT_LEN, EXT_OFFSET, CTL_SLOTS = 56, 96, 0

TAKE_BACK = """
import sys
import numpy as np
import shmlane
with shmlane.Writer(sys.argv[1], shape=(6,), dtype="<u4", slots=2, replace=True) as w:
    w.publish(np.full(6, 9, "<u4"))
    print(w.next_seq)
"""


def scribble(name: str, where: str) -> None:
    """What the peer does, through a descriptor of its own."""
    fd = os.open(f"/dev/shm/shl.{name}", os.O_RDWR)
    try:
        if where == "header":
            os.pwrite(fd, struct.pack("<I", 0), FORMAT_LEN)
        else:
            (ext,) = struct.unpack("<Q", os.pread(fd, 8, EXT_OFFSET))
            os.pwrite(fd, struct.pack("<I", 1), ext + CTL_SLOTS)
    finally:
        os.close(fd)


@pytest.mark.parametrize("where", ["header", "control-block"])
def test_replace_takes_a_damaged_name_back(name: str, where: str, run_py) -> None:
    writer = shmlane.Writer(name, shape=(4,), dtype="<u8", slots=2)
    writer.publish(np.full(4, 1, "<u8"))
    reader = shmlane.Reader(name, policy="all")
    with reader.receive(timeout=5) as sample:
        assert int(sample.array[0]) == 1
    scribble(name, where)
    # A live writer holds the stream: never taken from it.
    with pytest.raises(shmlane.StreamBusy):
        shmlane.Writer(name, shape=(6,), dtype="<u4", slots=2, replace=True)
    writer.close()
    # Without replace=True: what is wrong, and how to take the name back.
    with pytest.raises(shmlane.CorruptSegment) as exc:
        shmlane.Writer(name, shape=(4,), dtype="<u8", slots=2)
    text = str(exc.value)
    assert f"stream '{name}': the object under the name is not a valid stream" in text
    assert "SHL_E_BAD_HEADER" in text
    assert "replace=True" in text and f"shmlane rm {name}" in text
    # A writer in a fresh interpreter takes it back.
    assert run_py(TAKE_BACK, name).strip() == "2"
    with reader.receive(timeout=5) as sample:
        assert sample.array.dtype == np.dtype("<u4") and list(sample.array) == [9] * 6
        assert sample.new_stream
    reader.close()
