"""OpenCV's capture and writer surface over streams: code written for
cv2.VideoCapture and cv2.VideoWriter switches to a shared stream by
changing the line that opens it.

    cap = shmlane.VideoCapture("cam0")       # was cv2.VideoCapture(0)
    while True:
        ok, frame = cap.read()               # the newest frame, an array of your own
        if not ok:
            break                            # the writer is gone (an unplugged camera)
        cv2.imshow("cam0", frame)

    out = shmlane.VideoWriter("cam0", 30, (640, 480))   # was cv2.VideoWriter(path, fourcc, ...)
    out.write(frame)

See docs/opencv.md.
"""

from __future__ import annotations

import collections
import numbers
import time
import warnings
from typing import Any, Deque, Dict, Iterator, Optional, Sequence, Tuple, Union

import numpy as np

from ._common import OwnerLike
from ._shmlane import LayoutChanged, WriterGone
from ._stream import LOAN_TIMEOUT, Loan, Reader, Sample, StreamInfo, Writer

__all__ = [
    "CAP_PROP_BUFFERSIZE",
    "CAP_PROP_CONVERT_RGB",
    "CAP_PROP_FPS",
    "CAP_PROP_FRAME_COUNT",
    "CAP_PROP_FRAME_HEIGHT",
    "CAP_PROP_FRAME_WIDTH",
    "CAP_PROP_POS_FRAMES",
    "CAP_PROP_POS_MSEC",
    "VideoCapture",
    "VideoWriter",
]

# OpenCV's numbers for the properties get() knows (cv2.CAP_PROP_*): the same
# whether or not OpenCV is installed, so cap.get(cv2.CAP_PROP_FPS) and
# cap.get(shmlane.CAP_PROP_FPS) are one call.
CAP_PROP_POS_MSEC = 0
CAP_PROP_POS_FRAMES = 1
CAP_PROP_FRAME_WIDTH = 3
CAP_PROP_FRAME_HEIGHT = 4
CAP_PROP_FPS = 5
CAP_PROP_FRAME_COUNT = 7
CAP_PROP_CONVERT_RGB = 16
CAP_PROP_BUFFERSIZE = 38

# How often read() looks again for a writer to take over a stream whose
# writer is gone (the library tells a gone writer at once, not when one comes).
_GONE_POLL = 0.02
# The frame rate is measured over the last this many frames received.
_RATE_FRAMES = 32


def _stream_of(source: Union[str, int]) -> str:
    """The stream a capture reads: `source` itself, or for a camera index
    N (cv2.VideoCapture(0)) camN, the stream shmlane-camera publishes
    camera N as."""
    if isinstance(source, str):
        return source
    if isinstance(source, numbers.Integral) and not isinstance(source, bool):
        if source < 0:
            raise ValueError(
                f"shmlane.VideoCapture: camera index {source} (OpenCV's any camera): give the "
                "camera's index, VideoCapture(0) reads stream cam0, or a stream's name"
            )
        return f"cam{int(source)}"
    raise TypeError(
        f"shmlane.VideoCapture takes a stream's name (VideoCapture('cam0')) or a camera index "
        f"(VideoCapture(0) reads cam0, as shmlane-camera --device 0 publishes it), not {source!r}"
    )


def _is_gray(frame: np.ndarray) -> bool:
    """An 8-bit one-channel image: what OpenCV converts to BGR on reading."""
    return frame.dtype == np.uint8 and (frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1))


class VideoCapture:
    """Frames of stream `name` with the reading surface of cv2.VideoCapture:
    isOpened(), read(), grab()/retrieve(), get(), release(), a context manager
    and iteration (frames until read() fails).

    read() gives the newest frame (policy "latest"; "all" gives every one) as
    an array of the caller's own, a copy it may draw on; copy=False (here or
    per read) gives the zero-copy read-only view instead, valid for as long
    as it is referenced and pinning its slot meanwhile. timeout: seconds
    read() waits for a frame, also across a writer's absence (a writer that
    takes over within it is waited for), and the constructor for the stream
    to appear; then read() returns (False, None) and isOpened() is False,
    like an unplugged camera, until a writer is back. meta: the ctypes type
    (or dtype) of the stream's metadata records, for `meta` (see Reader);
    a stream replaced by one without them makes read() raise LayoutChanged.
    owner: whose streams to read, as for Reader (None: this user's or
    root's; a user name or uid; "any"). name: a stream's, or a camera
    index N for stream camN (the camera service's); apiPreference is
    ignored, params are (property, value) pairs for set(). Gray frames
    (8-bit, one channel) come as 3-channel BGR, as OpenCV's do while
    CAP_PROP_CONVERT_RGB is on (the default; set() it to 0 for them as
    published)."""

    def __init__(
        self,
        name: Union[str, int, None] = None,
        apiPreference: int = 0,
        params: Optional[Sequence[int]] = None,
        *,
        copy: bool = True,
        timeout: Optional[float] = 2.0,
        policy: str = "latest",
        meta: Any = None,
        owner: OwnerLike = None,
    ) -> None:
        self.copy = copy
        self.timeout = timeout
        self._policy, self._meta_type, self._owner = policy, meta, owner
        self._reader: Optional[Reader] = None
        self._sample: Optional[Sample] = None
        self._rates: Deque[Tuple[int, int]] = collections.deque(maxlen=_RATE_FRAMES)
        self.name = ""
        self._released = True  # without a name, as cv2.VideoCapture(): open() later
        if name is not None:
            self._start(name, apiPreference, params)

    def _start(self, source: Union[str, int], api: int, params: Optional[Sequence[int]]) -> None:
        """Read `source` from now on, with cv2's apiPreference (ignored: one
        backend) and params (property, value pairs, as set() takes them)."""
        if not isinstance(api, numbers.Integral) or isinstance(api, bool):
            raise TypeError(
                f"shmlane.VideoCapture: apiPreference is OpenCV's backend number (cv2.CAP_ANY), "
                f"not {api!r}; copy=, timeout= and the others are keywords"
            )
        self.name = _stream_of(source)
        self._seq = self._timestamp_ns = self._lost = 0
        self._meta: Any = None
        self._rates.clear()
        self._gone = self._released = False
        self._convert_rgb = True
        pairs = list(params or ())
        if len(pairs) % 2 or any(not self.set(p, v) for p, v in zip(pairs[::2], pairs[1::2])):
            raise ValueError(
                f"shmlane.VideoCapture: params {pairs}: pairs of a property and its value, and "
                "only CAP_PROP_CONVERT_RGB is one a capture sets (the writer decides the others)"
            )
        if self._connect(self.timeout) is None and not isinstance(source, str):
            warnings.warn(
                f"shmlane.VideoCapture({source}): no stream {self.name} yet: is "
                f"`shmlane-camera --device {source}` running?", RuntimeWarning, stacklevel=3
            )

    def _connect(self, timeout: Optional[float]) -> Optional[Reader]:
        """The reader, opened if there is none yet; None without one (also
        once another thread's release() has closed it)."""
        if self._reader is None:
            try:
                reader = Reader(
                    self.name, self._policy, timeout, meta=self._meta_type, owner=self._owner
                )
            except FileNotFoundError:
                return None
            if self._released:  # released by another thread while this one waited
                reader.close()
                return None
            self._reader = reader
        return self._reader

    def _info(self) -> Optional[StreamInfo]:
        """The stream's info; None without a reader, or with one another
        thread's release() closed meanwhile."""
        reader = self._reader
        if reader is None:
            return None
        try:
            return reader.info()
        except ValueError:
            if reader.closed:
                return None
            raise

    def open(
        self, name: Union[str, int], apiPreference: int = 0, params: Optional[Sequence[int]] = None
    ) -> bool:
        """Read stream `name` (or camera index N's, camN) from now on, as
        cv2's open(); isOpened()."""
        self.release()
        self._start(name, apiPreference, params)
        return self.isOpened()

    def isOpened(self) -> bool:
        """True while the stream has a live writer (after release(): False)."""
        info = None if self._released or self._connect(0) is None else self._info()
        return info is not None and info.writer_pid != 0 and info.writer_alive is not False

    # ------------------------------------------------------------ frames

    def grab(self) -> bool:
        """Take the next frame (the newest one, with policy "latest"), waiting
        up to `timeout`; retrieve() then gives it. False if none came, or
        once the capture is released (also by another thread meanwhile)."""
        self._drop_sample()
        if self._released:
            return False
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        reader = self._connect(self.timeout)
        if reader is None:
            return False
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                sample = reader.receive(left)
                break
            except TimeoutError:
                return False
            except LayoutChanged:  # a WriterGone, but for good: no writer makes it readable again
                raise
            except ValueError:
                if reader.closed:  # another thread's release()
                    return False
                raise
            except WriterGone:
                if not self._gone:
                    self._gone = True
                    self._rates.clear()  # a writer that takes over has its own rate
                if left is not None and left <= 0:
                    return False
                time.sleep(_GONE_POLL if left is None else min(_GONE_POLL, left))
        if self._released:  # released by another thread meanwhile: nobody retrieves it
            sample.release()
            return False
        self._gone = False
        if sample.new_stream:
            self._rates.clear()
        self._sample = sample
        self._seq, self._timestamp_ns = sample.seq, sample.timestamp_ns
        self._lost += sample.lost
        self._meta = sample.meta
        self._rates.append((sample.seq, sample.timestamp_ns))
        return True

    def retrieve(
        self, image: Optional[np.ndarray] = None, flag: int = 0, *, copy: Optional[bool] = None
    ) -> Tuple[bool, Optional[np.ndarray]]:
        """The frame grab() took: copied into `image` when it is an array of
        the frame's shape and dtype (a new array otherwise), else a copy of
        its own, or with copy=False the read-only zero-copy view. (False,
        None) without one. `flag` is accepted for OpenCV's signature."""
        sample = self._sample
        if sample is None:
            return False, None
        try:
            view = sample.array
        except ValueError:  # released by another thread's release() meanwhile
            return False, None
        shape = view.shape
        if self._convert_rgb and _is_gray(view):  # OpenCV's gray to BGR: broadcast as copied
            shape, view = shape[:2] + (3,), view.reshape(shape[:2] + (1,))
        if (
            isinstance(image, np.ndarray)
            and image.shape == shape
            and image.dtype == view.dtype
            and image.flags.writeable
        ):
            np.copyto(image, view)
            return True, image
        if shape == view.shape and not (self.copy if copy is None else copy):
            return True, view
        frame = np.empty(shape, view.dtype)  # C-contiguous, as OpenCV's frames
        np.copyto(frame, view)
        return True, frame

    def read(
        self, image: Optional[np.ndarray] = None, *, copy: Optional[bool] = None
    ) -> Tuple[bool, Optional[np.ndarray]]:
        """grab() and retrieve(): (True, frame), or (False, None) when no frame
        came within `timeout` (the writer is gone, or stalled)."""
        if not self.grab():
            return False, None
        try:
            return self.retrieve(image, copy=copy)
        finally:
            self._drop_sample()  # a zero-copy view keeps the slot until it goes

    def _drop_sample(self) -> None:
        if self._sample is not None:
            self._sample.release()  # views handed out keep the slot until they go
            self._sample = None

    def __iter__(self) -> Iterator[np.ndarray]:
        """Frames as read() gives them, until it fails."""
        while True:
            ok, frame = self.read()
            if not ok:
                return
            yield frame  # type: ignore[misc]

    # ------------------------------------------------------------ properties

    @property
    def meta(self) -> Any:
        """The metadata record of the last frame grabbed (Sample.meta), or None."""
        return self._meta

    @property
    def seq(self) -> int:
        """The stream's number of the last frame grabbed (0 before any)."""
        return self._seq

    @property
    def timestamp_ns(self) -> int:
        """When the last frame grabbed was published: time.monotonic_ns()."""
        return self._timestamp_ns

    @property
    def lost(self) -> int:
        """Frames published since the first one grabbed that this capture
        never got (skipped as older than the newest, with policy "latest")."""
        return self._lost

    def fps(self) -> float:
        """The writer's frame rate: measured from the publish times of the
        last frames received (up to 32) once there are two, before that the
        rate the writer declared (Writer(fps=), VideoWriter's fps), 0.0 if
        it declared none."""
        if len(self._rates) >= 2:
            (seq0, t0), (seq1, t1) = self._rates[0], self._rates[-1]
            if t1 > t0:
                return (seq1 - seq0) * 1e9 / (t1 - t0)
        info = self._info()
        return 0.0 if info is None else info.fps

    def get(self, prop: int) -> float:
        """A property, by OpenCV's number (cv2.CAP_PROP_* or shmlane's): frame
        width and height, FPS (declared by the writer, then measured), POS_FRAMES (the last frame's number
        in the stream), POS_MSEC (its publish time in ms of CLOCK_MONOTONIC,
        comparable with time.monotonic() * 1000), BUFFERSIZE (the stream's
        slots), CONVERT_RGB. 0.0 for any other, and for every one after
        release(), as OpenCV 4 answers (OpenCV 5: -1.0)."""
        prop = int(prop)
        if self._released:
            return 0.0  # as OpenCV 4 after release() (OpenCV 5: -1.0)
        if prop == CAP_PROP_CONVERT_RGB:
            return float(self._convert_rgb)
        reader = self._reader
        shape = reader.shape if reader is not None and not reader.closed else ()
        if prop == CAP_PROP_FRAME_WIDTH:
            return float(shape[1]) if len(shape) >= 2 else 0.0
        if prop == CAP_PROP_FRAME_HEIGHT:
            return float(shape[0]) if len(shape) >= 1 else 0.0
        if prop == CAP_PROP_FPS:
            return self.fps()
        if prop == CAP_PROP_POS_FRAMES:
            return float(self._seq)
        if prop == CAP_PROP_POS_MSEC:
            return self._timestamp_ns / 1e6
        if prop == CAP_PROP_BUFFERSIZE:
            info = self._info()
            return 0.0 if info is None else float(info.slots)
        if prop == CAP_PROP_FRAME_COUNT:
            return -1.0  # as for a camera: frames keep coming
        return 0.0

    def set(self, prop: int, value: float) -> bool:
        """CAP_PROP_CONVERT_RGB (gray frames as BGR, on by default, as in
        OpenCV): True. False for any other property (the writer decides
        them) and after release()."""
        if int(prop) != CAP_PROP_CONVERT_RGB or self._released:
            return False
        self._convert_rgb = bool(value)
        return True

    def getBackendName(self) -> str:
        return "shmlane"

    # ------------------------------------------------------------ lifetime

    def release(self) -> None:
        """Leave the stream (idempotent). Zero-copy frames still referenced
        stay valid, and pin their slots, until they go."""
        self._drop_sample()
        self._released = True
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def __enter__(self) -> VideoCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "released" if self._released else ("open" if self.isOpened() else "no writer")
        return f"<shmlane.VideoCapture '{self.name}' {state}>"


# OpenCV's keywords for VideoWriter's arguments (cv2.VideoWriter(filename,
# [apiPreference,] fourcc, fps, frameSize[, isColor])), and this class's own.
_SIZE_KEYS = ("frame_size", "frameSize")
_COLOR_KEYS = ("is_color", "isColor")
_IGNORED_KEYS = ("fourcc", "apiPreference", "params")  # no codec, no backend: frames are raw


def _writer_args(args: Tuple[Any, ...], keywords: Dict[str, Any]) -> Tuple[float, Tuple[int, int], bool]:
    """(fps, (width, height), is_color) from VideoWriter's arguments after
    the name, in either form: (fps, frame_size, is_color=True), or OpenCV's
    ([apiPreference,] fourcc, fps, frameSize, isColor=True), told apart by
    where the frame size (a pair) comes; keywords of either spelling."""
    usage = (
        "VideoWriter(name, fps, frame_size, is_color=True) or, as OpenCV's, "
        "VideoWriter(name, fourcc, fps, frameSize, isColor=True)"
    )
    unknown = set(keywords) - {"fps", *_SIZE_KEYS, *_COLOR_KEYS, *_IGNORED_KEYS}
    if unknown:
        raise TypeError(f"{usage}: unexpected keyword {sorted(unknown)[0]!r}")
    where = next((i for i, a in enumerate(args) if isinstance(a, (tuple, list))), None)
    values: Dict[str, Any] = {}
    if where is not None:
        if where > 3 or len(args) > where + 2:
            raise TypeError(f"{usage}: got {len(args) + 1} positional arguments")
        if where >= 1:
            values["fps"] = args[where - 1]
        values["frame_size"] = args[where]
        if len(args) > where + 1 and not isinstance(args[where + 1], (tuple, list)):
            values["is_color"] = args[where + 1]  # not OpenCV's `params` list
    elif len(args) > 3:
        raise TypeError(f"{usage}: no frame size (width, height) among the arguments")
    elif args:
        values["fps"] = args[-1]  # ([apiPreference,] [fourcc,] fps), the size a keyword
    for key in ("fps", *_SIZE_KEYS, *_COLOR_KEYS):
        if key in keywords:
            plain = {"frameSize": "frame_size", "isColor": "is_color"}.get(key, key)
            if plain in values:
                raise TypeError(f"{usage}: {key} given twice")
            values[plain] = keywords[key]
    if "fps" not in values or "frame_size" not in values:
        raise TypeError(f"{usage}: fps and the frame size are needed")
    size = tuple(int(n) for n in values["frame_size"])
    if len(size) != 2:
        raise TypeError(f"{usage}: the frame size is (width, height), not {values['frame_size']!r}")
    return float(values["fps"]), (size[0], size[1]), bool(values.get("is_color", True))


class VideoWriter:
    """Publishes frames on stream `name` with the writing surface of
    cv2.VideoWriter: write(frame) copies each frame into a loaned slot and
    publishes it. Arguments as VideoWriter(name, fps, frame_size,
    is_color=True), or in OpenCV's order, VideoWriter(name, fourcc, fps,
    frameSize, isColor=True) (fourcc, and apiPreference before it, are
    accepted and ignored: frames go raw, without a codec). frame_size is
    (width, height) as in OpenCV; frames are (height, width, 3) of `dtype`
    (uint8: OpenCV's BGR images), or (height, width) with is_color=False.
    fps is the nominal rate, stored with the stream for readers (a capture's
    CAP_PROP_FPS gives it from the start), 0 for unknown (ValueError for NaN
    or less than 0): write() publishes at once, the caller sets the pace.
    Without copying: `with out.loan() as slot: cap.read(slot)` (an OpenCV
    capture fills the slot in place). meta,
    slots, block and mode as for Writer. As OpenCV overwrites a file, a
    stream left with another layout (frame size, metadata, slots) is
    replaced, its readers following (replace=False: LayoutMismatch
    instead); one of the same layout is taken over. StreamBusy while
    another writer lives."""

    def __init__(
        self,
        name: str,
        *args: Any,
        dtype: Any = np.uint8,
        meta: Any = None,
        slots: Optional[int] = None,
        block: bool = False,
        replace: bool = True,
        mode: int = 0o600,
        timeout: Optional[float] = LOAN_TIMEOUT,
        **opencv: Any,
    ) -> None:
        fps, (width, height), is_color = _writer_args(args, opencv)
        shape = (height, width, 3) if is_color else (height, width)
        self.name = name
        self.fps = fps
        self.timeout = timeout
        self._writer: Optional[Writer] = Writer(
            name, shape, dtype, slots=slots, block=block, replace=replace, mode=mode, meta=meta,
            fps=fps if fps != 0 else None,  # 0: unknown; NaN or less than 0 refused
        )

    @property
    def writer(self) -> Writer:
        """The stream's Writer (ValueError after release())."""
        if self._writer is None:
            raise ValueError(f"VideoWriter '{self.name}' is released")
        return self._writer

    @property
    def meta(self) -> Any:
        """The metadata record published with each frame (Writer.meta)."""
        return self.writer.meta

    def isOpened(self) -> bool:
        return self._writer is not None

    def write(self, image: Any) -> None:
        """Copy `image` into a free slot and publish it. A frame of another
        shape raises ValueError (OpenCV drops it silently; nothing is
        broadcast), one of a dtype that does not cast safely into the
        stream's (uint16 into uint8) TypeError; waits for a slot up to
        `timeout` as Writer.publish() does."""
        writer = self.writer
        shape, dtype = np.shape(image), getattr(image, "dtype", None)
        if shape != writer.shape:
            raise ValueError(
                f"VideoWriter '{self.name}': a frame of shape {shape} for frames of shape "
                f"{writer.shape} (frame size {writer.shape[1::-1]}, as (width, height))"
            )
        if dtype is not None and not np.can_cast(dtype, writer.dtype, "safe"):
            raise TypeError(f"VideoWriter '{self.name}': a frame of {dtype} for frames of {writer.dtype}")
        writer.publish(image, self.timeout)

    def loan(self) -> Loan:
        """A free slot to fill in place (Writer.loan): `with out.loan() as
        slot: cap.read(slot)` publishes what the capture wrote there."""
        return self.writer.loan(self.timeout)

    def get(self, prop: int) -> float:
        """CAP_PROP_FPS, CAP_PROP_FRAME_WIDTH and CAP_PROP_FRAME_HEIGHT; 0.0
        otherwise, and for every one after release() (as a capture's)."""
        if self._writer is None:
            return 0.0
        shape = self._writer.shape
        return {
            CAP_PROP_FPS: self.fps,
            CAP_PROP_FRAME_WIDTH: float(shape[1]),
            CAP_PROP_FRAME_HEIGHT: float(shape[0]),
        }.get(int(prop), 0.0)

    def set(self, prop: int, value: float) -> bool:
        return False

    def release(self) -> None:
        """Stop writing (idempotent): readers learn that the writer is gone;
        the stream stays for a writer that takes over."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "" if self._writer is not None else " released"
        return f"<shmlane.VideoWriter '{self.name}' {self.fps:g} fps{state}>"
