"""receive_async()'s executor slices of one Reader, and the frames a
cancelled one leaves for the reader's next receive (_stream.Reader)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import threading
from typing import Any, Optional

from . import _shmlane
from ._common import RECEIVE_SLICE, in_slices


class _Ticket:
    """One receive_async() call, as its slices see it. raw: the frame a
    slice took for it. claim["by"], set once (dict.setdefault is atomic):
    "slice" if the slice with the frame finished first (the frame is the
    task's), "cancel" if the task stopped waiting first, or its event loop
    was closed (the task never runs again): the reader keeps the frame."""

    __slots__ = ("claim", "raw", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.claim: dict = {}
        self.raw: Optional[_shmlane.Sample] = None
        self.loop = loop


class Handover:
    """The slices run one at a time (in the process that opened the reader:
    a forked child has none of them running, and none of its frames); a
    frame a slice took for a task cancelled meanwhile is kept (appends and
    pops of a deque are atomic), and the next receive takes it first."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw  # the extension's reader
        self._pid = os.getpid()
        self._slicing = threading.Lock()
        self._slice: Optional[_Ticket] = None
        self._kept: collections.deque = collections.deque()

    async def receive(self, timeout: Optional[float]) -> _shmlane.Sample:
        """The next frame, received in slices; if the task is cancelled (or
        fails) once a slice took one, that frame is kept; a slice still
        waiting is woken, and ends."""
        ticket = _Ticket(asyncio.get_running_loop())
        try:
            await in_slices(lambda seconds: self._run_slice(ticket, seconds), timeout,
                            RECEIVE_SLICE)
        except BaseException:
            if ticket.claim.setdefault("by", "cancel") == "slice":
                self.keep(ticket.raw)
                ticket.raw = None
            else:
                self._raw.interrupt()  # its receive_slice sees the claim
            raise
        raw, ticket.raw = ticket.raw, None
        assert raw is not None  # the slice that returned left it
        return raw

    def _run_slice(self, ticket: _Ticket, seconds: float) -> None:
        """One slice, in an executor thread: the frame goes to the ticket,
        or, if its task stopped waiting meanwhile, is kept. A receive after
        a cancelled call waits for that call's slice to end instead of
        meeting it in the core (RuntimeError), and takes what it left."""
        mine = os.getpid() == self._pid
        with self._slicing if mine else contextlib.nullcontext():
            self._slice = ticket
            try:
                raw = self.take(waiting=False)
                if raw is None:
                    raw = self._raw.receive_slice(seconds, ticket.claim)
            finally:
                self._slice = None
        ticket.raw = raw
        by = "cancel" if ticket.loop.is_closed() else "slice"
        if ticket.claim.setdefault("by", by) != "slice":  # its task stopped waiting
            ticket.raw = None
            self.keep(raw)

    def keep(self, raw: _shmlane.Sample, first: bool = False) -> None:
        """Keep a frame for the next receive (first: before any other)."""
        (self._kept.appendleft if first else self._kept.append)(raw)
        if self._raw.closed:  # clear() may have run before the append
            self._kept.clear()

    def take(self, waiting: bool = True) -> Optional[_shmlane.Sample]:
        """A kept frame, if any (none once cleared, nor in a forked child:
        its parent's frames are not its own); waiting: after the end of a
        cancelled call's slice still running (within one slice), which may
        leave one. Nothing kept or running: None at once, no system call
        (the receive calls' hot path)."""
        running = self._slice
        if not self._kept and running is None:
            return None
        if os.getpid() != self._pid:
            return None
        if waiting and running is not None and running.claim.get("by") == "cancel":
            with self._slicing:
                pass
        try:
            return self._kept.popleft()
        except IndexError:
            return None

    def clear(self) -> None:
        """Drop the kept frames (the reader is closed): they are released."""
        self._kept.clear()

