"""Readers for the per-video feature layouts other projects release, and an exporter to ActionFormer's layout.

Each reader is a :class:`FeatureSource` (``ids()``, ``load(video) -> ([T, D] float32, FeatureMeta)``, ``meta(video)``
without opening the array) with a ``root``, a class attribute ``per_video_geometry`` (True when each video has its own
:class:`FeatureGeometry`) and ``problems()``: one line per file or video left out of ``ids()``, naming it and why.
``is_<layout>(root)`` recognises each folder (a clicktal cache, whose ``<video>.npy`` have ``<video>.json`` sidecars,
and the synthesizer's ``features/*.npy`` + ``annotations.json`` match none of them).

* :class:`BasnetSource`, BaS-Net / BackTAL family: ``root/features/<split>/{rgb,flow}/<video>.npy``, ``[T, 1024]``
  each; THUMOS14: 25 fps, 16-frame snippets, stride 16, i.e. ``FeatureGeometry(25, 16, 16)``, element ``i`` centred
  at ``(16 i + 8) / 25`` s. One geometry for every video (``per_video_geometry`` False).
* :class:`BacktalNpzSource`, BackTAL's ``root/<split>/<anything>.npz`` (``feat_spa`` RGB and ``feat_tem`` flow,
  ``[750, 1024]`` each, ``vid_name``, ``frame_num``, ``fps``, ``duration``). The 750 rows are the whole video resized:
  BackTAL resizes a 750-long score sequence to ``frame_num`` (linear interpolation) and puts frame ``p`` at ``p /
  frame_num * duration`` seconds, so element ``j`` spans ``[j, j + 1) * duration / 750`` seconds and stands for its
  centre ``(j + 0.5) * duration / 750``. As a per-video geometry: ``FeatureGeometry(fps, window=s, stride=s,
  origin=0)`` with ``s = fps * duration / 750`` frames (fps cancels out; it only sets the frame unit).
* :class:`ActionFormerSource`, ActionFormer / OpenTAD: ``root/<prefix><video>.npy`` ``[T, C]`` (THUMOS14: 2048 = I3D
  RGB + flow, 30 fps, 16-frame windows, stride 4) with the annotation JSON carrying each video's ``fps``. ActionFormer
  puts feature ``i`` at ``(i * feat_stride + 0.5 * num_frames) / fps`` seconds (its ``feat_offset = 0.5 * num_frames
  / feat_stride``): ``FeatureGeometry(fps, window=num_frames, stride=feat_stride, origin=0)``, per video (fps may
  differ; THUMOS14 has 24, 25 and 30 fps videos).

Arrays are memory-mapped (``.npy`` stored as float32) or read per video on ``load`` (an ``.npz`` member, a float16 or
float64 array as some projects release them: converted to float32, one copy); never all at once. An array that is
truncated, not a 2-D float array, empty, or holds NaN/inf is refused naming its file; nothing is unpickled.

:func:`export_actionformer` writes any source with one fixed integer geometry (a clicktal cache) in ActionFormer's
layout, with its annotation JSON and the config values to use (``export.json``).
"""
from __future__ import annotations

import json
import math
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Mapping, Sequence

import numpy as np

from clicktal.pipeline.core.files import atomic_write, atomic_write_text
from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.data.annotations import AnnotationError, GroundTruth, read_database
from clicktal.pipeline.data.cache import CacheError, FeatureMeta, FeatureSource, bad_video_id, check_finite, npy_problem

BASNET_GEOMETRY = FeatureGeometry(fps=25, window=16, stride=16)  # THUMOS14 as BaS-Net / BackTAL released it
BASNET_STREAMS = ("rgb", "flow")
BACKTAL_MEMBERS = {"rgb": "feat_spa", "flow": "feat_tem"}  # stream -> npz member (RGB, then flow)


class LayoutError(CacheError):
    """A feature folder or file that does not hold what its layout says; the message names it."""


# ---- arrays ------------------------------------------------------------------------------------------------------

def _check_shape(shape: tuple, dtype: np.dtype, where: str) -> None:
    """Refuse (naming ``where``) anything but a non-empty 2-D float16/32/64 array."""
    if len(shape) != 2 or dtype.kind != "f" or dtype.itemsize not in (2, 4, 8):
        raise LayoutError(f"{where}: holds a {dtype} array of shape {tuple(shape)}, not a float [T, D] feature array")
    if shape[0] == 0 or shape[1] == 0:
        raise LayoutError(f"{where}: holds an empty array of shape {tuple(shape)} (no snippets)")


def _header_shape(f: BinaryIO, where: str) -> tuple[int, int]:
    """``(T, D)`` from the header of the ``.npy`` data ``f`` (no data is read); refused naming ``where``."""
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:  # 3.0 is only written for arrays with unicode field names
            raise LayoutError(f"{where}: a .npy array of version {version}, not a feature array")
    except (ValueError, SyntaxError, EOFError) as e:
        raise LayoutError(f"{where}: not a readable .npy array ({e})") from None
    _check_shape(shape, dtype, where)
    return int(shape[0]), int(shape[1])


def _npy_shape(path: Path) -> tuple[int, int]:
    """``(T, D)`` the header of the ``.npy`` file ``path`` states."""
    try:
        with open(path, "rb") as f:
            return _header_shape(f, str(path))
    except OSError as e:
        raise LayoutError(f"{path}: cannot read it ({e.strerror or e})") from None


def _as_float32(arr: np.ndarray) -> np.ndarray:
    """``arr`` itself when it is C-ordered float32 (a memory map stays one), else a float32 copy (float64 values
    beyond float32's range become inf, which the finite check then names)."""
    if arr.dtype == np.float32 and arr.flags.c_contiguous:
        return arr
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(arr, dtype=np.float32)


def _read_feature_npy(path: Path, streams: dict[str, tuple[int, int]] | None = None) -> np.ndarray:
    """The ``[T, D]`` float32 array of the ``.npy`` file ``path`` (memory-mapped when stored as float32), checked to be
    whole, a non-empty 2-D float array and finite; :class:`LayoutError` / ``NonFiniteFeatures`` naming ``path``."""
    _npy_shape(path)  # what is not a 2-D float array is refused from its header
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:  # a truncated file cannot be mapped; say by how much
        raise LayoutError(f"{path}: {npy_problem(path) or f'unreadable feature file ({e})'}") from None
    if path.stat().st_size != arr.offset + arr.nbytes:
        raise LayoutError(f"{path}: {npy_problem(path)}")
    arr = _as_float32(arr)
    check_finite(arr, path, streams)
    return arr


def _streams(widths: Iterable[tuple[str, int]]) -> dict[str, tuple[int, int]]:
    """Consecutive column ranges of the named streams, in order."""
    out, start = {}, 0
    for name, width in widths:
        out[name] = (start, start + width)
        start += width
    return out


def _check_rgb_dim(rgb_dim: int | None, width: int, where: str) -> None:
    """Refuse RGB arrays of another width than the ``rgb_dim`` a caller states (it is read from the arrays)."""
    if rgb_dim is not None and width != rgb_dim:
        raise LayoutError(f"{where}: RGB features {width} wide where rgb_dim {rgb_dim} is stated")


def _video_id(name: str, where: str, problems: list[str]) -> str | None:
    """``name`` when it can name a video, else ``None`` with the reason appended to ``problems``."""
    why = bad_video_id(name)
    if why:
        problems.append(f"{where}: left out: {why}")
        return None
    return name


def _split_folders(parent: Path, splits: Sequence[str] | None, holds: Callable[[Path], bool], what: str
                   ) -> list[Path]:
    """The split folders of ``parent`` (all visible ones ``holds`` is true of, or those named in ``splits``)."""
    if splits is None:
        return sorted(p for p in parent.iterdir() if p.is_dir() and not p.name.startswith(".") and holds(p))
    missing = [s for s in splits if not (parent / s).is_dir()]
    if missing:
        raise LayoutError(f"{parent}: no split folder {', '.join(missing)} ({what})")
    return [parent / s for s in splits]


def _first(names: Sequence[str], n: int = 3) -> str:
    names = sorted(names)
    return ", ".join(names[:n]) + (", ..." if len(names) > n else "")


# ---- detection ---------------------------------------------------------------------------------------------------

def _visible(paths: Iterable[Path]) -> list[Path]:
    return [p for p in paths if not p.name.startswith(".")]


def _is_cache(root: Path) -> bool:
    """A clicktal cache: some ``<video>.npy`` has its ``<video>.json`` sidecar beside it."""
    return any(p.with_suffix(".json").is_file() for p in root.glob("*.npy"))


def is_basnet(root: str | os.PathLike) -> bool:
    """``root/features/<split>/rgb/<video>.npy`` (BaS-Net / BackTAL family)."""
    return any(_visible(Path(root).glob("features/*/rgb/*.npy")))


def is_backtal_npz(root: str | os.PathLike) -> bool:
    """``root/<split>/*.npz`` (BackTAL), and no ``.npy`` at the top (neither a cache nor ActionFormer's layout)."""
    root = Path(root)
    return (root.is_dir() and not any(root.glob("*.npy"))
            and any(_visible(p.parent for p in root.glob("*/*.npz"))))


def is_actionformer(root: str | os.PathLike) -> bool:
    """``root/<video>.npy`` without ``<video>.json`` sidecars (ActionFormer / OpenTAD)."""
    root = Path(root)
    return root.is_dir() and any(_visible(root.glob("*.npy"))) and not _is_cache(root)


class _IndexedSource(FeatureSource):
    """A layout indexed once when opened: ``_videos`` maps each whole video to where it lies, ``_problems`` names
    what was left out."""

    root: Path
    _videos: dict
    _problems: list[str]

    def ids(self) -> list[str]:
        return sorted(self._videos)

    def problems(self) -> list[str]:
        """One line per file or video left out of :meth:`ids`, naming it and why."""
        return list(self._problems)

    def _video(self, video_id: str):
        try:
            return self._videos[video_id]
        except KeyError:
            raise LayoutError(f"{self.root}: no features for video {video_id!r}") from None


# ---- BaS-Net -----------------------------------------------------------------------------------------------------

class BasnetSource(_IndexedSource):
    """BaS-Net / BackTAL-family per-video npy: ``root/features/<split>/{rgb,flow}/<video>.npy``.

    A video's features are its RGB columns, then its flow columns (a folder without any ``flow/`` is read as RGB
    only). The two arrays of a video must have the same number of rows, else the video is refused naming both files:
    BaS-Net draws its sample indices from the RGB length and indexes both streams with them, which silently cuts a
    longer flow array and fails on a shorter one; a length mismatch means the streams were not extracted alike, so
    neither truncation is trusted here. A video with one stream only is left out of :meth:`ids` and named in
    :meth:`problems`. ``geometry`` defaults to THUMOS14's as released (25 fps, 16-frame snippets, stride 16);
    ``splits`` restricts the split folders read (default: every one holding ``rgb/`` or ``flow/``). Stream widths
    are read from the arrays; ``rgb_dim``, when given, is checked against them.
    """

    per_video_geometry = False

    def __init__(self, root: str | os.PathLike, *, geometry: FeatureGeometry | None = None,
                 splits: Sequence[str] | None = None, rgb_dim: int | None = None):
        self.root = Path(root)
        self.rgb_dim = rgb_dim
        base = self.root / "features"
        if not base.is_dir():
            raise LayoutError(f"{self.root}: no features/ folder (BaS-Net layout: features/<split>/rgb/<video>.npy)")
        self.geometry = geometry or BASNET_GEOMETRY
        self._geometry_from = ("the geometry argument" if geometry else
                               "default: THUMOS14 as BaS-Net released it (25 fps, 16-frame snippets, stride 16)")
        folders = _split_folders(base, splits, lambda p: any((p / s).is_dir() for s in BASNET_STREAMS),
                                 "BaS-Net layout: features/<split>/rgb/<video>.npy")
        self.streams = tuple(s for s in BASNET_STREAMS if any((f / s).is_dir() for f in folders))
        self._problems: list[str] = []
        self._videos: dict[str, dict[str, Path]] = {}  # video -> stream -> file
        self._split: dict[str, str] = {}
        for folder in folders:
            found: dict[str, dict[str, Path]] = {}
            for stream in self.streams:
                for path in sorted((folder / stream).glob("*.npy")):
                    vid = _video_id(path.stem, str(path), self._problems)
                    if vid is not None:
                        found.setdefault(vid, {})[stream] = path
            for vid, files in found.items():
                if len(files) < len(self.streams):
                    absent = [s for s in self.streams if s not in files]
                    self._problems.append(
                        f"video {vid}: left out: no {' or '.join(absent)} features "
                        f"({', '.join(str(folder / s / f'{vid}.npy') for s in absent)} missing)")
                    continue
                if vid in self._split:
                    raise LayoutError(f"{base}: video {vid} is in two splits ({self._split[vid]} and {folder.name})")
                self._videos[vid], self._split[vid] = files, folder.name

    def meta(self, video_id: str) -> FeatureMeta:
        paths = self._video(video_id)
        return self._meta(video_id, {s: _npy_shape(p)[1] for s, p in paths.items()})

    def _meta(self, video_id: str, widths: dict[str, int]) -> FeatureMeta:
        paths = self._video(video_id)
        if "rgb" in paths:
            _check_rgb_dim(self.rgb_dim, widths["rgb"], str(paths["rgb"]))
        return FeatureMeta(
            geometry=self.geometry, streams=_streams((s, widths[s]) for s in self.streams), extractor="basnet-i3d",
            source={"path": str(paths[self.streams[0]]), "subset": self._split[video_id]},
            options={"layout": "basnet", "geometry_from": self._geometry_from,
                     "files": {s: str(p) for s, p in paths.items()}})

    def load(self, video_id: str) -> tuple[np.ndarray, FeatureMeta]:
        paths = self._video(video_id)
        arrays = {s: _read_feature_npy(p) for s, p in paths.items()}  # each file names its stream
        lengths = {s: a.shape[0] for s, a in arrays.items()}
        if len(set(lengths.values())) > 1:
            raise LayoutError(f"video {video_id}: its streams differ in length ("
                              + ", ".join(f"{s} {n} rows in {paths[s]}" for s, n in lengths.items())
                              + "); re-extract it so that both have one row per snippet")
        meta = self._meta(video_id, {s: a.shape[1] for s, a in arrays.items()})
        parts = [arrays[s] for s in self.streams]
        return (parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)), meta


# ---- BackTAL npz -------------------------------------------------------------------------------------------------

def _positive(value: float, where: str, what: str) -> float:
    if not (math.isfinite(value) and value > 0):
        raise LayoutError(f"{where}: {what} {value!r} is not a positive number")
    return value


@dataclass(frozen=True)
class _NpzEntry:
    path: Path
    split: str
    rows: int
    widths: dict[str, int]
    fps: float
    duration_s: float
    frame_num: int | None
    geometry_from: str


class _Npz:
    """One ``.npz`` file opened as a zip archive; members are read on demand, never unpickled."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.zip = zipfile.ZipFile(path)
        except (OSError, zipfile.BadZipFile) as e:
            raise LayoutError(f"{path}: not a readable .npz file ({e})") from None
        self.members = {n[:-4] for n in self.zip.namelist() if n.endswith(".npy")}

    def __enter__(self) -> "_Npz":
        return self

    def __exit__(self, *exc) -> None:
        self.zip.close()

    def _open(self, name: str) -> BinaryIO:
        if name not in self.members:
            raise LayoutError(f"{self.path}: no member {name!r} (has {', '.join(sorted(self.members))})")
        return self.zip.open(f"{name}.npy")

    def array(self, name: str) -> np.ndarray:
        try:
            with self._open(name) as f:
                return np.lib.format.read_array(f, allow_pickle=False)
        except ValueError as e:
            if "allow_pickle" in str(e):
                raise LayoutError(f"{self.path}: member {name!r} holds Python objects, which would need unpickling; "
                                  f"refused (save it as a plain array)") from None
            raise LayoutError(f"{self.path}: member {name!r} is not a readable array ({e})") from None
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            raise LayoutError(f"{self.path}: member {name!r} is not readable (truncated file? {e})") from None

    def shape(self, name: str) -> tuple[int, int]:
        try:
            with self._open(name) as f:
                return _header_shape(f, f"{self.path}: member {name!r}")
        except (OSError, zipfile.BadZipFile, zlib.error) as e:
            raise LayoutError(f"{self.path}: member {name!r} is not readable (truncated file? {e})") from None

    def scalar(self, name: str) -> np.generic | None:
        """The single value of member ``name`` (``None`` when absent); refused when it holds several."""
        if name not in self.members:
            return None
        value = self.array(name)
        if value.size != 1:
            raise LayoutError(f"{self.path}: member {name!r} holds {value.size} values of shape {value.shape}, not one")
        return value.reshape(-1)[0]


class BacktalNpzSource(_IndexedSource):
    """BackTAL's ``root/<split>/<anything>.npz``: ``feat_spa`` (RGB) and ``feat_tem`` (flow), ``[750, 1024]`` each.

    The folder is indexed once: each file's ``vid_name`` (its stem when absent), ``fps``, ``duration``,
    ``frame_num`` and the arrays' headers are read; the features are read on :meth:`load`. Each video's geometry
    maps its elements onto the whole video (module docstring). Training files that lack ``fps`` / ``duration`` take
    them from ``durations`` (video -> seconds, e.g. the ground truth's) and ``default_fps``; without them such a file
    is refused, naming it. ``splits`` restricts the split folders read (default: every one holding ``.npz`` files).
    ``rgb_dim``, when given, is checked against ``feat_spa``'s width.
    """

    per_video_geometry = True

    def __init__(self, root: str | os.PathLike, *, durations: Mapping[str, float] | None = None,
                 default_fps: float | None = None, splits: Sequence[str] | None = None, rgb_dim: int | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise LayoutError(f"{self.root}: no such feature folder")
        self._problems: list[str] = []
        self._videos: dict[str, _NpzEntry] = {}
        for folder in _split_folders(self.root, splits, lambda p: any(p.glob("*.npz")),
                                     "BackTAL layout: <split>/<video>.npz"):
            for path in sorted(folder.glob("*.npz")):
                if path.name.startswith("."):
                    self._problems.append(f"{path}: left out: a hidden file")
                    continue
                with _Npz(path) as npz:
                    vid, entry = self._index(npz, folder.name, durations or {}, default_fps)
                _check_rgb_dim(rgb_dim, entry.widths["rgb"], f"{path}: member 'feat_spa'")
                if _video_id(vid, f"{path}: video {vid!r}", self._problems) is None:
                    continue
                if vid in self._videos:
                    raise LayoutError(f"{path}: video {vid} is also in {self._videos[vid].path}")
                self._videos[vid] = entry

    @staticmethod
    def _index(npz: _Npz, split: str, durations: Mapping[str, float], default_fps: float | None
               ) -> tuple[str, _NpzEntry]:
        path = npz.path
        name = npz.scalar("vid_name")
        vid = path.stem if name is None else (name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name))
        (rows, rgb), (rows_tem, flow) = npz.shape(BACKTAL_MEMBERS["rgb"]), npz.shape(BACKTAL_MEMBERS["flow"])
        if rows != rows_tem:
            raise LayoutError(f"{path}: feat_spa has {rows} rows and feat_tem {rows_tem}; one row per element expected")
        fps, duration, frame_num = (npz.scalar(k) for k in ("fps", "duration", "frame_num"))
        sources = []
        if duration is None:
            if vid not in durations:
                raise LayoutError(f"{path}: no 'duration' member and video {vid} is not in the durations given; pass "
                                  f"durations (e.g. from the ground truth) to map its elements to seconds")
            duration = durations[vid]
            sources.append("duration from the durations argument")
        if fps is None:
            if default_fps is None:
                raise LayoutError(f"{path}: no 'fps' member and no default_fps given")
            fps = default_fps
            sources.append("fps default_fps")
        fps = _positive(float(fps), str(path), "fps")
        duration = _positive(float(duration), str(path), "duration")
        return vid, _NpzEntry(path, split, rows, {"rgb": rgb, "flow": flow}, fps, duration,
                              None if frame_num is None else int(frame_num),
                              "; ".join(sources) or f"fps and duration stored in {path.name}")

    def meta(self, video_id: str) -> FeatureMeta:
        e = self._video(video_id)
        s = e.fps * e.duration_s / e.rows  # frames per element: the rows tile the whole video
        source = {"path": str(e.path), "subset": e.split, "duration_s": e.duration_s, "native_fps": e.fps}
        if e.frame_num is not None:
            source["frame_num"] = e.frame_num
        return FeatureMeta(
            geometry=FeatureGeometry(fps=e.fps, window=s, stride=s, origin=0), streams=_streams(e.widths.items()),
            extractor="backtal-npz", source=source,
            options={"layout": "backtal-npz", "geometry_from": f"{e.rows} elements resized over the whole video; "
                                                                f"{e.geometry_from}"})

    def load(self, video_id: str) -> tuple[np.ndarray, FeatureMeta]:
        e, meta = self._video(video_id), self.meta(video_id)
        with _Npz(e.path) as npz:
            parts = []
            for stream, member in BACKTAL_MEMBERS.items():
                arr = npz.array(member)
                _check_shape(arr.shape, arr.dtype, f"{e.path}: member {member!r}")
                if arr.shape != (e.rows, e.widths[stream]):
                    raise LayoutError(f"{e.path}: member {member!r} changed since the folder was indexed")
                parts.append(_as_float32(arr))
        features = np.concatenate(parts, axis=1)
        check_finite(features, e.path, meta.streams)
        return features, meta


# ---- ActionFormer ------------------------------------------------------------------------------------------------

def _plain_number(value) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) and x > 0 else None


class ActionFormerSource(_IndexedSource):
    """ActionFormer / OpenTAD: ``root/<prefix><video><file_ext>`` (``[T, C]``) and an ActivityNet-like annotation JSON
    (``{"database": {video: {"subset", "duration", "fps", "annotations"}}}``), with the parameters of ActionFormer's
    dataset config (``feat_stride``, ``num_frames``, ``default_fps``, ``file_prefix``, ``file_ext``).

    Each video's fps is the JSON's unless ``default_fps`` is given (as in ActionFormer); a video of the JSON without
    one is refused, naming it. As ActionFormer, only videos both in the JSON (when given) and in the folder are read;
    the others are named in :meth:`problems`. ``rgb_dim`` names the streams: ``{"rgb": (0, rgb_dim), "flow":
    (rgb_dim, C)}`` (``rgb_dim == C``: RGB only); without it the columns are one stream ``"features"``.

    A folder written by :func:`export_actionformer` holds ``export.json``: its ``feat_stride``, ``num_frames``,
    ``default_fps``, streams, extractor and weights are used where the arguments leave them ``None``, so that exported features keep
    the feature contract of the cache they came from (a run trained on the cache reads them). Otherwise the defaults
    are ActionFormer's THUMOS14 config: ``feat_stride`` 4, ``num_frames`` 16.
    """

    per_video_geometry = True

    def __init__(self, root: str | os.PathLike, *, annotations: str | os.PathLike | None,
                 feat_stride: float | None = None, num_frames: float | None = None, default_fps: float | None = None,
                 rgb_dim: int | None = None, file_ext: str = ".npy", prefix: str = ""):
        self.root = Path(root)
        if not self.root.is_dir():
            raise LayoutError(f"{self.root}: no such feature folder")
        export = self._export()
        self.exported = export is not None
        export = export or {}
        config = export.get("actionformer", {})
        feat_stride = feat_stride if feat_stride is not None else config.get("feat_stride", 4)
        num_frames = num_frames if num_frames is not None else config.get("num_frames", 16)
        default_fps = default_fps if default_fps is not None else config.get("default_fps")
        self.extractor = str(export.get("extractor", "actionformer"))
        self.weights_sha256 = dict(export.get("weights_sha256") or {})
        self.exported_streams = ({k: (int(a), int(b)) for k, (a, b) in export["streams"].items()}
                                 if rgb_dim is None and export.get("streams") else None)
        if annotations is None and default_fps is None:
            raise LayoutError(f"{self.root}: ActionFormer features need the annotation JSON (each video's fps) or a "
                              f"default_fps")
        for name, value in (("feat_stride", feat_stride), ("num_frames", num_frames), ("default_fps", default_fps)):
            if value is not None:
                _positive(float(value), str(self.root), name)
        self.feat_stride, self.num_frames, self.rgb_dim = feat_stride, num_frames, rgb_dim
        self.file_ext, self.prefix = file_ext, prefix
        self.annotations = None if annotations is None else Path(annotations)
        self._problems: list[str] = []
        files = {}
        for path in sorted(self.root.glob(f"{prefix}*{file_ext}")):
            vid = _video_id(path.name[len(prefix):len(path.name) - len(file_ext)], str(path), self._problems)
            if vid is not None:
                files[vid] = path
        self._videos: dict[str, tuple[Path, float, dict]] = {}  # video -> (file, fps, source)
        database = self._database()
        if database is None:
            self._videos = {v: (p, float(default_fps), {"path": str(p)}) for v, p in files.items()}
        else:
            self._index(files, database, default_fps)
        self._geometry_from = "default_fps" if default_fps is not None else f"fps of {self.annotations}"

    def _export(self) -> dict | None:
        """``export.json`` of a folder written by :func:`export_actionformer` (None when there is none)."""
        path = self.root / "export.json"
        if not path.is_file():
            return None
        try:
            d = json.loads(path.read_text())
            if not isinstance(d, dict) or d.get("layout") != "actionformer":
                raise ValueError("not an export record")
            return d
        except (OSError, ValueError) as e:
            raise LayoutError(f"{path}: unreadable export record ({e})") from None

    def _database(self) -> dict | None:
        if self.annotations is None:
            return None
        try:
            return read_database(self.annotations, "annotation")
        except AnnotationError as e:
            raise LayoutError(str(e)) from None

    def _index(self, files: dict[str, Path], database: dict, default_fps: float | None) -> None:
        no_fps = []
        for vid, path in files.items():
            entry = database.get(vid)
            if not isinstance(entry, dict):
                self._problems.append(f"{path}: left out: video {vid} is not in {self.annotations}")
                continue
            fps = default_fps if default_fps is not None else _plain_number(entry.get("fps"))
            if fps is None:
                no_fps.append(vid)
                continue
            source = {"path": str(path), "subset": str(entry.get("subset", ""))}
            duration = _plain_number(entry.get("duration"))
            if duration is not None:
                source["duration_s"] = duration
            self._videos[vid] = (path, float(fps), source)
        if no_fps:
            raise LayoutError(f"{self.annotations}: {len(no_fps)} videos with features have no valid 'fps' "
                              f"({_first(no_fps)}) and no default_fps was given")
        absent = sorted(set(database) - set(files))
        if absent:
            self._problems.append(f"{self.annotations}: {len(absent)} videos have no feature file in {self.root} "
                                  f"({_first(absent)})")

    def _streams(self, path: Path, width: int) -> dict[str, tuple[int, int]]:
        if self.exported_streams is not None:
            if max(b for _, b in self.exported_streams.values()) != width:
                raise LayoutError(f"{path}: {width} columns where {self.root / 'export.json'} records streams "
                                  f"{self.exported_streams}")
            return dict(self.exported_streams)
        if self.rgb_dim is None:
            return {"features": (0, width)}
        if not 0 < self.rgb_dim <= width:
            raise LayoutError(f"{path}: {width} columns, fewer than rgb_dim {self.rgb_dim}")
        return _streams([("rgb", self.rgb_dim)] + ([("flow", width - self.rgb_dim)] if width > self.rgb_dim else []))

    def _meta(self, video_id: str, width: int) -> FeatureMeta:
        path, fps, source = self._video(video_id)
        return FeatureMeta(
            geometry=FeatureGeometry(fps=fps, window=self.num_frames, stride=self.feat_stride, origin=0),
            streams=self._streams(path, width), extractor=self.extractor, weights_sha256=dict(self.weights_sha256),
            source=dict(source),
            options={"layout": "actionformer", "geometry_from": f"feat_stride {self.feat_stride}, num_frames "
                                                                 f"{self.num_frames}, {self._geometry_from}"})

    def meta(self, video_id: str) -> FeatureMeta:
        return self._meta(video_id, _npy_shape(self._video(video_id)[0])[1])

    def load(self, video_id: str) -> tuple[np.ndarray, FeatureMeta]:
        path = self._video(video_id)[0]
        width = _npy_shape(path)[1]
        meta = self._meta(video_id, width)
        return _read_feature_npy(path, meta.streams), meta


# ---- export to ActionFormer's layout -----------------------------------------------------------------------------

EXPORT_SUBSET = "Test"  # a video's subset when neither the ground truth nor its metadata gives one
FEATURE_OFFSET = ("feature i is centred at (i * feat_stride + 0.5 * num_frames) / fps seconds: ActionFormer's "
                  "feat_offset = 0.5 * num_frames / feat_stride, OpenTAD's offset_frames = num_frames / 2")


class ExportError(ValueError):
    """Features that cannot be exported as asked; the message names the folder, file or video."""


@dataclass
class ExportReport:
    """What :func:`export_actionformer` wrote and skipped."""

    out: Path
    videos: int = 0
    written: int = 0  # feature files written
    skipped: int = 0  # feature files already there, identical
    json_written: list[str] = field(default_factory=list)
    duration_from: dict[str, int] = field(default_factory=dict)  # "ground truth" / "metadata" / "feature length"
    subset_defaulted: int = 0  # videos given EXPORT_SUBSET
    not_in_ground_truth: list[str] = field(default_factory=list)  # exported without annotations
    ground_truth_without_features: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{self.out}: {self.videos} videos: wrote {self.written}, skipped {self.skipped} already written "
                 f"identically; durations from " + ", ".join(f"{k} {n}" for k, n in self.duration_from.items())]
        if self.subset_defaulted:
            parts.append(f"{self.subset_defaulted} videos without a subset given subset {EXPORT_SUBSET!r}")
        if self.not_in_ground_truth:
            parts.append(f"{len(self.not_in_ground_truth)} videos absent from the ground truth exported without "
                         f"annotations ({_first(self.not_in_ground_truth)})")
        if self.ground_truth_without_features:
            parts.append(f"{len(self.ground_truth_without_features)} ground-truth videos have no features "
                         f"({_first(self.ground_truth_without_features)})")
        return "; ".join(parts)


def _one_geometry(source: FeatureSource, ids: list[str]) -> tuple[FeatureGeometry, FeatureMeta, dict[str, FeatureMeta]]:
    """The geometry and first metadata shared by every video; :class:`ExportError` saying why otherwise."""
    root = getattr(source, "root", source)
    why = ("the exported config holds one feat_stride, num_frames (whole frames) and default_fps for every video, "
           "and ActionFormer puts feature i at (i * feat_stride + num_frames / 2) / fps")
    if getattr(source, "per_video_geometry", False):
        raise ExportError(f"{root}: not exportable to ActionFormer's layout: its videos each have their own "
                          f"geometry, and {why}")
    metas = {vid: source.meta(vid) for vid in ids}
    first = metas[ids[0]]
    for vid, meta in metas.items():
        if meta.geometry != first.geometry or meta.streams != first.streams:
            raise ExportError(f"{root}: not exportable to ActionFormer's layout: video {vid} has geometry "
                              f"{meta.geometry.to_dict()} and streams {meta.streams}, video {ids[0]} "
                              f"{first.geometry.to_dict()} and {first.streams}; {why}")
    g = first.geometry
    if g.origin or not (float(g.window).is_integer() and float(g.stride).is_integer()):
        raise ExportError(f"{root}: not exportable to ActionFormer's layout: geometry {g.to_dict()} is not whole "
                          f"frames from frame 0, and {why}")
    return g, first, metas


def _same_npy(path: Path, arr: np.ndarray) -> bool:
    """Whether ``path`` holds ``arr`` as a whole float32 ``.npy`` array."""
    if npy_problem(path, *arr.shape) is not None:
        return False
    return bool(np.array_equal(np.load(path, mmap_mode="r", allow_pickle=False), arr))


def _annotation_database(ids: list[str], metas: dict[str, FeatureMeta], lengths: dict[str, int], g: FeatureGeometry,
                         gt: GroundTruth | None, report: ExportReport) -> dict:
    """ActionFormer's annotation JSON (ActivityNet schema plus ``fps``, ``label_id`` and ``segment(frames)``): label
    ids are the ground truth's classes in sorted order (THUMOS14: CliffDiving is 4, which ActionFormer masks)."""
    label_id = {c: i for i, c in enumerate(gt.classes())} if gt else {}
    database, duration_from = {}, {}
    for vid in ids:
        video = gt.videos.get(vid) if gt else None
        meta_duration = _plain_number(metas[vid].source.get("duration_s"))
        if video is not None:
            duration, origin, subset = video.duration_s, "ground truth", video.subset
        elif meta_duration is not None:
            duration, origin, subset = meta_duration, "metadata", metas[vid].source.get("subset")
        else:
            duration, origin = lengths[vid] * g.stride / g.fps, "feature length"
            subset = metas[vid].source.get("subset")
        if gt is not None and video is None:
            report.not_in_ground_truth.append(vid)
        if not subset:
            subset = EXPORT_SUBSET
            report.subset_defaulted += 1
        duration_from[origin] = duration_from.get(origin, 0) + 1
        database[vid] = {"subset": subset, "duration": duration, "fps": g.fps, "annotations": [
            {"label": s.label, "segment": [s.start_s, s.end_s], "segment(frames)": [s.start_s * g.fps, s.end_s * g.fps],
             "label_id": label_id[s.label]} for s in (video.segments if video else ())]}
    report.duration_from = duration_from
    if gt is not None:
        report.ground_truth_without_features = sorted(set(gt.videos) - set(ids))
    return database


def _export_config(source: FeatureSource, first: FeatureMeta, g: FeatureGeometry, n: int, classes: list[str]) -> dict:
    """``export.json``: where the features came from and the ActionFormer / OpenTAD config values to use."""
    return {
        "layout": "actionformer", "source": str(getattr(source, "root", "")), "extractor": first.extractor,
        "weights_sha256": dict(first.weights_sha256),
        "videos": n, "geometry": g.to_dict(), "streams": {k: list(v) for k, v in first.streams.items()},
        "feature_offset": FEATURE_OFFSET,
        "actionformer": {"json_file": "annotations.json", "file_prefix": None, "file_ext": ".npy",
                         "feat_stride": int(g.stride), "num_frames": int(g.window), "default_fps": g.fps,
                         "input_dim": first.dim, "num_classes": len(classes)},
        "opentad": {"feature_stride": int(g.stride), "sample_stride": 1, "offset_frames": g.window / 2,
                    "fps": g.fps},
        "label_ids": {c: i for i, c in enumerate(classes)},
    }


def export_actionformer(source: FeatureSource, out: str | os.PathLike, *, ground_truth: GroundTruth | None = None,
                        overwrite: bool = False, progress: bool = False) -> ExportReport:
    """Write every video of ``source`` as ``<out>/<video>.npy`` (float32 ``[T, D]``, as stored), with
    ``<out>/annotations.json`` (ActionFormer's annotation JSON: each video's ``fps``, ``duration``, ``subset`` and
    ground-truth ``annotations``) and ``<out>/export.json`` (the geometry and the config values to use).

    Durations come from ``ground_truth``, else the features' metadata (``source["duration_s"]``), else ``T * stride /
    fps``. Only a source with one geometry of whole frames from frame 0 can be exported (ActionFormer's config has
    one ``feat_stride`` and ``num_frames``). Every video is read and compared first: existing files that differ
    from the export are refused (:class:`ExportError`, nothing written) unless ``overwrite``; identical ones are
    skipped and counted, so an interrupted export resumes. Writes are atomic; a full disk raises ``DiskFullError``.
    """
    from tqdm import tqdm  # only for the progress bar

    out = Path(out)
    root = getattr(source, "root", None)
    ids = source.ids()
    if not ids:
        raise ExportError(f"{root}: no video's features to export")
    if root is not None and out.resolve() == Path(root).resolve():
        raise ExportError(f"{out}: is the source folder itself; export to another folder")
    g, first, metas = _one_geometry(source, ids)
    report = ExportReport(out, videos=len(ids))
    lengths, to_write, conflicts = {}, [], []
    for vid in tqdm(ids, desc="check", disable=not progress, leave=False):
        features = source.load(vid)[0]
        lengths[vid] = features.shape[0]
        target = out / f"{vid}.npy"
        if not target.exists():
            to_write.append(vid)
        elif _same_npy(target, features):
            report.skipped += 1
        else:
            to_write.append(vid)
            conflicts.append(target.name)
    classes = ground_truth.classes() if ground_truth else []
    texts = {"annotations.json": {"version": f"clicktal-export of {root}",
                                  "database": _annotation_database(ids, metas, lengths, g, ground_truth, report)},
             "export.json": _export_config(source, first, g, len(ids), classes)}
    texts = {name: json.dumps(d, indent=1) + "\n" for name, d in texts.items()}
    texts = {name: text for name, text in texts.items()
             if not ((out / name).is_file() and (out / name).read_bytes() == text.encode())}
    conflicts += [name for name in texts if (out / name).exists()]
    if conflicts and not overwrite:
        raise ExportError(f"{out}: {len(conflicts)} existing files differ from this export ({_first(conflicts)}); "
                          f"--overwrite replaces them")
    for vid in tqdm(to_write, desc="export", disable=not progress, leave=False):
        features = source.load(vid)[0]
        atomic_write(out / f"{vid}.npy", lambda f: np.save(f, _as_float32(features)))
        report.written += 1
    for name, text in texts.items():  # export.json last: it marks a finished export
        atomic_write_text(out / name, text)
        report.json_written.append(name)
    return report
