"""Names that mean one thing: a reader's receive `policy` (not `mode`, which
is permission bits) and a segment's `changes` (not `version`, which is the
library's or the header format's). The new names work without a warning;
the old spellings still work and raise a DeprecationWarning naming the new."""

from __future__ import annotations

import os
import stat
import warnings

import numpy as np
import pytest

import shmlane

from conftest import SHM_DIR


def test_segment_changes(name):
    with shmlane.create(name, 4, "<u4") as seg:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert seg.changes == 0
            assert seg.notify() == 1 and seg.changes == 1
            (info,) = [i for i in shmlane.list() if i.name == name]
            assert info.changes == 1
            assert info._fields[4] == "changes"  # where `version` was
        with pytest.warns(DeprecationWarning, match=r"Segment\.version .*Segment\.changes"):
            assert seg.version == 1
        with pytest.warns(DeprecationWarning, match=r"SegmentInfo\.version .*SegmentInfo\.changes"):
            assert info.version == info.changes == 1
        with pytest.warns(DeprecationWarning, match=r"SegmentInfo\(changes=\.\.\.\)"):
            assert shmlane.SegmentInfo(name, version=7) == shmlane.SegmentInfo(name, changes=7)
        assert repr(info).startswith("SegmentInfo(name=") and "changes=1" in repr(info)


def test_wait_returns_the_change_count(name):
    with shmlane.create(name, 4, "<u4") as seg, shmlane.open(name) as other:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            other.notify()
            other.notify()
            assert seg.wait(timeout=5) == 2 == seg.changes == other.changes


def writer(name):
    return shmlane.Writer(name, shape=(2,), dtype="u1", slots=4)


@pytest.mark.parametrize("policy", ["latest", "all"])
def test_reader_policy(name, policy):
    with writer(name) as w:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with shmlane.Reader(name, policy=policy, timeout=0) as by_keyword:
                assert by_keyword.policy == policy
                assert f" {policy} " in repr(by_keyword)
            with shmlane.Reader(name, policy, timeout=0) as by_position:
                assert by_position.policy == policy
            with shmlane.Reader(name, timeout=0) as default:
                assert default.policy == "latest"
        with pytest.warns(DeprecationWarning, match=r"Reader\(mode=\.\.\.\).*Reader\(policy=\.\.\.\)"):
            old = shmlane.Reader(name, mode=policy, timeout=0)
        with old:
            assert old.policy == policy
            with pytest.warns(DeprecationWarning, match=r"Reader\.mode .*Reader\.policy"):
                assert old.mode == policy
            # The old keyword still chooses the policy: `all` receives the
            # first frame of two, `latest` the newest.
            w.publish(np.array([1, 1], "u1"))
            w.publish(np.array([2, 2], "u1"))
            with old.receive(timeout=5) as s:
                assert s.seq == (1 if policy == "all" else 2)


def test_reader_policy_checked(name):
    with writer(name):
        with pytest.raises(ValueError, match="policy must be 'latest' or 'all'"):
            shmlane.Reader(name, policy="newest")
        with pytest.raises(TypeError, match="policy= only"):
            shmlane.Reader(name, policy="all", mode="all")


def test_permission_mode_is_still_mode(name, new_name):
    """`mode` keeps its one meaning, permission bits, and does not warn."""
    stream = new_name()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with shmlane.create(name, 4, "<u4", mode=0o640), shmlane.Writer(
            stream, shape=(2,), dtype="u1", mode=0o660
        ):
            for each, mode in ((name, 0o640), (stream, 0o660)):
                assert stat.S_IMODE(os.stat(SHM_DIR / f"shl.{each}").st_mode) == mode
