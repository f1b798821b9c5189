"""Streaming video decoding, resampled to a target frame rate by presentation time.

One interface over two decoders: PyAV (default) and decord (``backend="decord"``). Frames come out in bounded chunks
(``[n, H, W, 3]`` uint8 RGB), never a whole video in memory.

Resampling. Output frame ``k`` is the source frame being displayed at time ``k / fps`` of the player's clock: the
last source frame whose presentation time is ``<= k / fps``. The player's clock starts at the container's start
(the earliest stream), so a video stream that starts later than the container (``start_offset_s``, e.g. video
0.4 s after the audio) keeps that offset: output frames before the first video frame hold the first frame (so
they have zero motion), and snippet times are player times. The last source frame is displayed for
as long as the interval before it (a single-frame video: ``1 / native_fps``), so the video's duration in the
player is ``duration_s = start_offset_s + last_pts - first_pts + last_interval`` and the output has
``N = ceil(duration_s * fps)`` frames, which gives exactly ``FeatureGeometry.snippet_count(duration_s)`` snippets.
Odd (981/50) and variable frame rates work the same way; the rule only reads timestamps, so both decoders give the
same frames.

Timestamps are trusted only so far: a frame more than ``max_gap_s`` (:data:`MAX_FRAME_GAP_S`, 60 s, by default)
after the previous one (or, for the first frame, after the container's start), or more than ``max_gap_s`` past the
stream's declared duration, fails the video as ``bad_timestamps`` naming the timestamp, the gap and the limit. A
damaged or hostile file of a few frames with a last timestamp at 10 hours would otherwise be held for 900 000
output frames (hours of TV-L1 on one still frame) before anything is written.

Orientation. Rotation metadata (the display matrix, read through PyAV for both decoders) is honoured: frames come
out as a player shows them.

Resizing. With ``short_side`` each kept frame is resized (shorter side to ``short_side``, aspect kept) right after
decoding; frames dropped by the resampler are never converted.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp",
                    ".ts", ".mts", ".ogv")
BACKENDS = ("pyav", "decord")

# Failure reasons written to failures.json.
UNREADABLE = "unreadable"
NO_VIDEO_STREAM = "no_video_stream"
ZERO_FRAMES = "zero_frames"
TRUNCATED = "truncated"
MISSING = "missing"
EMPTY = "empty"
BAD_TIMESTAMPS = "bad_timestamps"

# Default bound (seconds) on the gap between consecutive frames' timestamps, and on how far the decoded stream may
# run past its declared duration; beyond it the video fails as bad_timestamps (ExtractionConfig.max_frame_gap_s,
# --max-frame-gap). A minute is far more than any real frame interval, even of a time lapse.
MAX_FRAME_GAP_S = 60.0

# A target time that equals a frame's timestamp up to this many seconds belongs to that frame.
_PTS_TOLERANCE_S = 1e-6
# A stream that decodes to less than this fraction of its declared duration (and > 1 s less) is truncated.
_TRUNCATED_FRACTION = 0.9


class VideoError(RuntimeError):
    """A video that cannot be extracted; ``reason`` is one of the names above."""

    def __init__(self, path: str | os.PathLike, reason: str, detail: str):
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        super().__init__(f"{self.path}: {reason}: {detail}")


@dataclass
class VideoInfo:
    """What the container says before decoding (``declared_duration_s`` may be ``None``)."""

    path: str
    size_bytes: int
    width: int
    height: int
    native_fps: float | None
    rotation: int  # degrees counter-clockwise to display upright
    declared_duration_s: float | None  # the video stream's, when the container states it
    codec: str
    backend: str
    container_start_s: float | None = None  # where the player's clock starts (the earliest stream)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class DecodeStats:
    """Known once a video has been read to the end."""

    decoded_frames: int = 0  # source frames decoded
    output_frames: int = 0  # frames after resampling
    duration_s: float = 0.0  # from timestamps, in the player's clock (start offset included), see the docstring
    start_offset_s: float = 0.0  # first video frame's time after the container's start


def output_frame_count(duration_s: float, fps: float, stride: int = 16) -> int:
    """``ceil(duration_s * fps)`` with the same float tolerance as :meth:`FeatureGeometry.snippet_count`
    (``stride * 1e-9`` frames), so that ``ceil(N / stride)`` equals the geometry's snippet count exactly."""
    return max(1, math.ceil(duration_s * fps - stride * 1e-9))


def resize_short_side(frame: np.ndarray, short_side: int) -> np.ndarray:
    """Shorter side to ``short_side``, aspect kept (longer side rounded); area filter down, bilinear up."""
    h, w = frame.shape[:2]
    if min(h, w) == short_side:
        return frame
    scale = short_side / min(h, w)
    size = (max(short_side, round(w * scale)), max(short_side, round(h * scale)))  # cv2 wants (w, h)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(frame, size, interpolation=interp)


def rotate_upright(frame: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a display-matrix rotation (degrees counter-clockwise, multiples of 90)."""
    k = int(round(rotation / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(frame, k)) if k else frame


def _isobmff_truncated(path: Path) -> bool:
    """True for an MP4/MOV-family file (``ftyp`` first) whose top-level boxes run past the end of the file or that
    has no ``moov`` box: a download or copy that stopped early."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        offset, names = 0, []
        while offset + 8 <= size:
            f.seek(offset)
            head = f.read(16)
            box_size, name = int.from_bytes(head[:4], "big"), head[4:8]
            if box_size == 1 and len(head) >= 16:
                box_size = int.from_bytes(head[8:16], "big")
            elif box_size == 0:
                box_size = size - offset
            if box_size < 8 or not name.isascii():
                return False
            names.append(name)
            if offset + box_size > size:
                return names[0] == b"ftyp"
            offset += box_size
    return bool(names) and names[0] == b"ftyp" and b"moov" not in names


def _declared_duration(stream) -> float | None:
    """The video stream's own declared duration (stream header, or Matroska's per-track ``DURATION`` tag); never
    the container's, which may be an audio track's."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    tag = (stream.metadata or {}).get("DURATION")
    if tag:
        try:
            h, m, sec = tag.split(":")
            return int(h) * 3600 + int(m) * 60 + float(sec)
        except ValueError:
            return None
    return None


def _probe(path: Path, backend: str):
    """Open with PyAV and return ``(container, stream, info)``; errors become :class:`VideoError`."""
    import av

    if not path.exists():
        raise VideoError(path, MISSING, "no such file")
    if path.is_file() and path.stat().st_size == 0:
        raise VideoError(path, EMPTY, "empty file (0 bytes)")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as e:
        if _isobmff_truncated(path):
            raise VideoError(path, TRUNCATED,
                             f"the MP4/MOV box structure runs past the end of the file ({e})") from None
        raise VideoError(path, UNREADABLE, f"cannot open ({e})") from None
    except (OSError, ValueError) as e:
        raise VideoError(path, UNREADABLE, f"cannot open ({e})") from None
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        container.close()
        raise VideoError(path, NO_VIDEO_STREAM, f"the file has no video stream (streams: {', '.join(kinds)})")
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    declared = _declared_duration(stream)
    info = VideoInfo(
        path=str(path),
        size_bytes=path.stat().st_size,
        width=int(stream.codec_context.width or 0),
        height=int(stream.codec_context.height or 0),
        native_fps=float(rate) if rate else None,
        rotation=0,  # read from the first decoded frame's display matrix
        declared_duration_s=declared,
        codec=stream.codec_context.name,
        backend=backend,
        container_start_s=float(container.start_time) / 1e6 if container.start_time is not None else None,
    )
    return container, stream, info


class _Resampler:
    """Pick, for each output time ``k / fps``, the source frame displayed then (see the module docstring).

    A timestamp gap over ``max_gap_s`` (or a frame over ``max_gap_s`` past ``declared_s``) raises
    :class:`VideoError` (``bad_timestamps``) for ``path`` before any of the frames it would add is emitted."""

    def __init__(self, fps: float, stride: int, native_fps: float | None, origin: float | None = None, *,
                 path: str | os.PathLike = "", max_gap_s: float = MAX_FRAME_GAP_S, declared_s: float | None = None):
        self.fps = fps
        self.stride = stride
        self.native_fps = native_fps
        self.origin = origin  # the player's time 0 in stream seconds (None: the first frame)
        self.path = path
        self.max_gap_s = max_gap_s
        self.declared_s = declared_s
        self.k = 0
        self.t0: float | None = None  # stream time of the player's time 0
        self.start_offset_s = 0.0
        self.prev_t: float | None = None
        self.prev_interval: float | None = None
        self.prev_get: Callable[[], np.ndarray] | None = None
        self._prev_arr: np.ndarray | None = None
        self.decoded = 0
        self.duration_s = 0.0

    def _emit_prev_until(self, limit_k: float) -> Iterator[np.ndarray]:
        while self.k < limit_k:
            if self._prev_arr is None:
                self._prev_arr = self.prev_get()
            self.k += 1
            yield self._prev_arr

    def push(self, t: float | None, get: Callable[[], np.ndarray]) -> Iterator[np.ndarray]:
        """Feed the next source frame (presentation time ``t`` in seconds); yields finished output frames."""
        if t is None:  # no timestamp: assume the nominal frame interval
            t = (self.prev_t + self.t0 + (self.prev_interval or 1.0 / (self.native_fps or self.fps))
                 if self.prev_t is not None else (self.origin or 0.0))
        if self.t0 is None:
            offset = t - self.origin if self.origin is not None else 0.0
            self.start_offset_s = offset if offset > _PTS_TOLERANCE_S else 0.0
            self.t0 = t - self.start_offset_s
            if self.start_offset_s > self.max_gap_s:
                self._refuse(f"the first frame's timestamp {t:.3f} s is {self.start_offset_s:.3f} s after the "
                             f"container's start {self.origin:.3f} s")
        rel = t - self.t0
        if self.prev_t is not None and rel <= self.prev_t:
            return  # a repeated or backwards timestamp: keep the frame already on screen
        if self.prev_t is not None and rel - self.prev_t > self.max_gap_s:
            self._refuse(f"frame {self.decoded} has timestamp {t:.3f} s, {rel - self.prev_t:.3f} s after the "
                         f"previous frame's {self.prev_t + self.t0:.3f} s")
        past = rel - self.start_offset_s - (self.declared_s or 0.0)
        if self.declared_s and past > self.max_gap_s:
            self._refuse(f"frame {self.decoded} has timestamp {t:.3f} s, {past:.3f} s past the stream's declared "
                         f"duration of {self.declared_s:.3f} s")
        self.decoded += 1
        if self.prev_t is not None:
            yield from self._emit_prev_until(rel * self.fps - _PTS_TOLERANCE_S * self.fps)
            self.prev_interval = rel - self.prev_t
        self.prev_t, self.prev_get, self._prev_arr = rel, get, None

    def _refuse(self, what: str) -> None:
        raise VideoError(self.path, BAD_TIMESTAMPS, f"{what}: more than the limit of {self.max_gap_s:g} s "
                                                    "(--max-frame-gap); the file's timestamps are damaged")

    def finish(self) -> Iterator[np.ndarray]:
        if self.prev_t is None:
            return
        last = self.prev_interval or 1.0 / (self.native_fps or self.fps)
        self.duration_s = self.prev_t + last
        yield from self._emit_prev_until(output_frame_count(self.duration_s, self.fps, self.stride))


class Video:
    """A video opened for streaming. Use as a context manager; iterate :meth:`chunks`; read :attr:`stats` after.

    ``stride`` only sets the float tolerance of the frame count (see :func:`output_frame_count`).
    """

    def __init__(self, path: str | os.PathLike, backend: str = "pyav"):
        if backend not in BACKENDS:
            raise ValueError(f"unknown decoder backend {backend!r}; choose from {BACKENDS}")
        self.path = Path(path)
        self.backend = backend
        self._container, self._stream, self.info = _probe(self.path, backend)
        self.stats = DecodeStats()

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self) -> "Video":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- frames ------------------------------------------------------------------------------------------------
    def frames(self, fps: float = 25.0, *, short_side: int | None = None, stride: int = 16,
               max_gap_s: float = MAX_FRAME_GAP_S) -> Iterator[np.ndarray]:
        """Resampled, upright, optionally resized RGB frames ``[H, W, 3]`` uint8, one at a time; damaged timestamps
        (a gap over ``max_gap_s``, see the module docstring) raise :class:`VideoError` ``bad_timestamps``."""
        size: list[tuple[int, int]] = []  # the first frame's output (h, w): mid-stream resolution changes follow it

        def convert(arr: np.ndarray) -> np.ndarray:
            arr = rotate_upright(arr, self.info.rotation)
            if short_side:
                arr = resize_short_side(arr, short_side)
            if not size:
                size.append(arr.shape[:2])
            elif arr.shape[:2] != size[0]:
                arr = cv2.resize(arr, size[0][::-1], interpolation=cv2.INTER_AREA)
            return arr

        resampler = _Resampler(fps, stride, self.info.native_fps, self.info.container_start_s, path=self.path,
                               max_gap_s=max_gap_s, declared_s=self.info.declared_duration_s)
        source = self._pyav_frames if self.backend == "pyav" else self._decord_frames
        for t, get in source(convert):
            yield from resampler.push(t, get)
        yield from resampler.finish()
        self.stats = DecodeStats(resampler.decoded, resampler.k, resampler.duration_s, resampler.start_offset_s)
        if resampler.decoded == 0:
            raise VideoError(self.path, ZERO_FRAMES, "the video stream decodes to no frames")
        declared = self.info.declared_duration_s
        decoded_s = self.stats.duration_s - self.stats.start_offset_s
        if declared and decoded_s < _TRUNCATED_FRACTION * declared and declared - decoded_s > 1:
            raise VideoError(self.path, TRUNCATED, f"decoded {decoded_s:.2f} s of a declared {declared:.2f} s")

    def chunks(self, fps: float = 25.0, chunk_frames: int = 64, *, short_side: int | None = None,
               stride: int = 16, max_gap_s: float = MAX_FRAME_GAP_S) -> Iterator[np.ndarray]:
        """:meth:`frames` grouped into arrays of at most ``chunk_frames`` frames ``[n, H, W, 3]``."""
        buf: list[np.ndarray] = []
        for frame in self.frames(fps, short_side=short_side, stride=stride, max_gap_s=max_gap_s):
            buf.append(frame)
            if len(buf) == chunk_frames:
                yield np.stack(buf)
                buf = []
        if buf:
            yield np.stack(buf)

    def _pyav_frames(self, convert):
        import av

        stream = self._stream
        stream.thread_type = "AUTO"
        decoded = 0
        try:
            for frame in self._container.decode(stream):
                if decoded == 0:
                    self.info.rotation = int(round(frame.rotation or 0))
                decoded += 1
                t = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else None
                yield t, (lambda f=frame: convert(f.to_ndarray(format="rgb24")))
        except av.error.FFmpegError as e:
            reason = TRUNCATED if decoded else UNREADABLE
            raise VideoError(self.path, reason, f"decoding failed after {decoded} frames ({e})") from None

    def _decord_frames(self, convert, batch: int = 32):
        try:
            import decord
        except ImportError as e:
            raise RuntimeError(f"decoder backend 'decord' asked for but decord does not import ({e}); "
                               "pip install 'clicktal[decord]' or use --decoder pyav") from None
        import av

        # PyAV reads what decord does not give exactly: the display matrix (on the first decoded frame) and the
        # presentation timestamps (packets only, no decoding; decord's own are float32 seconds).
        pts = []
        try:
            first = next(self._container.decode(self._stream), None)
            self.info.rotation = int(round(first.rotation or 0)) if first is not None else 0
            self._container.seek(0)
            for packet in self._container.demux(self._stream):
                if packet.pts is not None and packet.size:
                    pts.append(float(packet.pts * packet.time_base))
        except av.error.FFmpegError:
            pts = []  # decord reports the error below, or its own timestamps are used
        self.close()
        try:
            vr = decord.VideoReader(str(self.path), ctx=decord.cpu(0))
            n = len(vr)
            if len(pts) == n:
                starts = np.sort(np.asarray(pts, np.float64))
            else:
                starts = vr.get_frame_timestamp(np.arange(n))[:, 0].astype(np.float64) if n else np.zeros(0)
        except decord.DECORDError as e:
            raise VideoError(self.path, UNREADABLE, f"decord cannot read it ({e})") from None
        for first in range(0, n, batch):
            idx = list(range(first, min(n, first + batch)))
            try:
                arrs = vr.get_batch(idx).asnumpy()
            except decord.DECORDError as e:
                raise VideoError(self.path, TRUNCATED, f"decoding failed after {first} frames ({e})") from None
            for i, arr in zip(idx, arrs):
                yield float(starts[i]), (lambda a=arr: convert(a))


def _walk_files(root: Path) -> Iterator[Path]:
    """Every file under ``root``, following symlinked folders; a folder reached again (a link loop, or a second link
    to one folder) is entered only the first time, in sorted order, so the result does not depend on the file
    system's listing order."""
    def key(folder: str) -> tuple[int, int] | None:
        try:
            st = os.stat(folder)
        except OSError:  # a dangling link or an unreadable entry: nothing to enter
            return None
        return st.st_dev, st.st_ino

    seen = {key(str(root))}
    for folder, dirs, files in os.walk(root, followlinks=True):
        kept = []
        for d in sorted(dirs):
            k = key(os.path.join(folder, d))
            if k is not None and k not in seen:
                seen.add(k)
                kept.append(d)
        dirs[:] = kept
        for f in files:
            yield Path(folder, f)


def find_videos(root: str | os.PathLike) -> list[Path]:
    """Videos under a folder (recursively, by extension, symlinked sub-folders followed once each), or listed in a
    text file (one path a line, relative to the file's folder; blank lines and ``#`` comments skipped). Sorted, so
    every run sees the same order."""
    root = Path(root)
    if root.is_dir():
        return sorted(p for p in _walk_files(root) if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
    if root.is_file():
        if root.suffix.lower() in VIDEO_EXTENSIONS:
            return [root]
        paths = []
        for line in root.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                p = Path(line)
                paths.append(p if p.is_absolute() else root.parent / p)
        return sorted(paths)
    raise FileNotFoundError(f"{root}: neither a folder of videos nor a list file")
