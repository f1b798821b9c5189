"""The feature cache: the only state shared between extraction and everything downstream.

A cache is a folder of ``<video_id>.npy`` (float32, T x D, RGB columns then flow columns) with a sidecar
``<video_id>.json`` (:class:`FeatureMeta`). Writes are atomic (temp file + ``os.replace``); the sidecar is written
last, so a video is complete when its sidecar exists and its array is whole: the ``.npy`` file's size matches its
header, and the header's shape matches the sidecar's ``num_snippets`` and width (a file cut short by a copy or a
full disk outside this code is not complete; checked from the header alone, :meth:`FeatureCache.incomplete`).
Readers memory-map, and refuse a truncated array (:class:`CacheError` naming the file and its size) and an array
holding NaN or inf (:class:`NonFiniteFeatures`, naming the file, rows and columns): one such row would otherwise
silently remove every detection of its video.

Video ids name files directly inside the cache, so :func:`bad_video_id` refuses the ones that would not: empty,
``.`` and ``..``, a path separator or NUL, and a leading dot (names beginning with a dot are the cache's own: temp
files, ``.locks/``, the extraction run's ``.clicktal/``).

The synthesizer layout (``features/<video>.npy`` + ``annotations.json`` holding ``feature_meta``) is read here too
(:class:`SynthSource`); :func:`clicktal.pipeline.data.formats.open_features` picks the reader of a folder.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from clicktal.pipeline.core.files import atomic_write
from clicktal.pipeline.core.geometry import FeatureGeometry

META_VERSION = 1


@dataclass(frozen=True)
class FeatureMeta:
    """What travels with every feature array."""

    geometry: FeatureGeometry
    streams: dict[str, tuple[int, int]]  # stream name -> [first, last) column
    extractor: str = "unknown"
    weights_sha256: dict[str, str] = field(default_factory=dict)  # stream -> sha256, or "untrained"
    source: dict = field(default_factory=dict)  # path, size_bytes, duration_s, native_fps, ...
    versions: dict[str, str] = field(default_factory=dict)
    options: dict = field(default_factory=dict)  # every extraction choice (crop, flow clip, ...)

    @property
    def dim(self) -> int:
        return max(stop for _, stop in self.streams.values()) if self.streams else 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["geometry"] = self.geometry.to_dict()
        d["streams"] = {k: list(v) for k, v in self.streams.items()}
        d["meta_version"] = META_VERSION
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureMeta":
        return cls(
            geometry=FeatureGeometry.from_dict(d["geometry"]),
            streams={k: (int(v[0]), int(v[1])) for k, v in d["streams"].items()},
            extractor=d.get("extractor", "unknown"),
            weights_sha256=dict(d.get("weights_sha256", {})),
            source=dict(d.get("source", {})),
            versions=dict(d.get("versions", {})),
            options=dict(d.get("options", {})),
        )


class CacheError(RuntimeError):
    pass


def bad_video_id(video_id: str) -> str | None:
    """Why ``video_id`` cannot name a video in a cache (``None`` when it can): it must be one plain file name that
    none of the cache's own files (all beginning with a dot) can have."""
    if not video_id:
        return "the video id is empty"
    if video_id in (".", ".."):
        return f"the video id {video_id!r} names a folder, not a file"
    if "\0" in video_id or os.sep in video_id or (os.altsep and os.altsep in video_id):
        return f"the video id {video_id!r} holds a path separator or NUL"
    if video_id.startswith("."):
        return f"the video id {video_id!r} begins with a dot (names beginning with a dot are the cache's own files)"
    return None


def npy_problem(path: Path, rows: int | None = None, dim: int | None = None) -> str | None:
    """Why the ``.npy`` file at ``path`` is not a whole float32 ``[rows, dim]`` array (``None`` when it is), from
    its header and its size alone (no data is read). ``rows`` / ``dim`` ``None``: not checked."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:  # 3.0 is only written for arrays with unicode field names
                return f"a .npy file of version {version}, not a feature array"
            shape, fortran, dtype = read_header(f)
            offset = f.tell()
    except (OSError, ValueError, SyntaxError) as e:
        return f"not a readable .npy file ({e})"
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size != expected:
        return f"truncated feature file ({size} of {expected} bytes)" if size < expected else (
            f"{size} bytes where its header says {expected}")
    if dtype != np.float32 or len(shape) != 2 or fortran:
        return f"holds a {'Fortran-order ' if fortran else ''}{dtype} array of shape {shape}, not float32 [T, D]"
    if (rows is not None and shape[0] != rows) or (dim is not None and shape[1] != dim):
        return f"holds shape {shape} where its sidecar says ({rows}, {dim})"
    return None


class NonFiniteFeatures(CacheError):
    """A feature file holding NaN or inf; the message names the file, the rows and the columns (first few of each,
    with counts)."""


# rows of this many bytes are checked at a time (the boolean mask of a chunk is a quarter of it for float32)
CHECK_CHUNK_BYTES = 1 << 25
# (path, where) -> (inode, size, mtime_ns) of files (or videos of a file) found finite here
_checked: dict[tuple[Path, str | None], tuple[int, int, int]] = {}


def _listed(indices: np.ndarray, n: int = 5) -> str:
    return ", ".join(str(int(i)) for i in indices[:n]) + (", ..." if len(indices) > n else "")


def check_finite(arr: np.ndarray, path: Path, streams: dict[str, tuple[int, int]] | None = None, *,
                 where: str | None = None) -> None:
    """Raise :class:`NonFiniteFeatures` when ``arr`` ``[T, D]`` holds a NaN or inf, naming ``path`` (or ``where``:
    one video of a file holding many), the first rows and columns that do (with counts) and the streams of those
    columns.

    Cost: one pass over the array in chunks of :data:`CHECK_CHUNK_BYTES` (32 MiB of rows): a memory-mapped file is
    read once (into the page cache, not the heap), with at most one 8 MiB mask allocated at a time and no copy of
    the array (docs/engine.md has its measured speed). A file found finite is not checked again in the same process while its
    inode, size and modification time stay the same, so a dataset that reopens its memory-mapped videos for every
    batch pays once per video.
    """
    try:
        st = path.stat()
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
    except OSError:
        stamp = None
    key = (path, where)
    if stamp is not None and _checked.get(key) == stamp:
        return
    rows_per_chunk = max(1, CHECK_CHUNK_BYTES // max(1, arr.shape[1] * arr.itemsize))
    bad_rows, bad_cols = [], np.zeros(arr.shape[1], bool)
    n_nan = n_inf = 0
    for start in range(0, arr.shape[0], rows_per_chunk):
        chunk = arr[start:start + rows_per_chunk]
        finite = np.isfinite(chunk)
        if finite.all():
            continue
        rows = np.flatnonzero(~finite.all(axis=1))
        bad_rows.append(rows + start)
        bad_cols |= ~finite.all(axis=0)
        nan = np.isnan(chunk[rows])
        n_nan += int(nan.sum())
        n_inf += int((~finite[rows]).sum()) - int(nan.sum())
    if not bad_rows:
        if stamp is not None:
            _checked[key] = stamp
        return
    rows, cols = np.concatenate(bad_rows), np.flatnonzero(bad_cols)
    in_streams = ""
    if streams:
        names = [name for name, (lo, hi) in streams.items() if ((cols >= lo) & (cols < hi)).any()]
        in_streams = f" (stream{'s' if len(names) > 1 else ''} {', '.join(names)})"
    raise NonFiniteFeatures(
        f"{where or path}: {n_nan + n_inf} non-finite feature values ({n_nan} NaN, {n_inf} inf) in {len(rows)} of "
        f"{arr.shape[0]} rows (snippets) and {len(cols)} of {arr.shape[1]} columns: rows {_listed(rows)}; columns "
        f"{_listed(cols)}{in_streams}. Re-extract this video (a NaN row would remove all of its detections)")


class FeatureCache:
    """A folder of ``<video_id>.npy`` + ``<video_id>.json``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def feature_path(self, video_id: str) -> Path:
        return self.root / f"{video_id}.npy"

    def meta_path(self, video_id: str) -> Path:
        return self.root / f"{video_id}.json"

    def has(self, video_id: str) -> bool:
        """True when the video is complete: its sidecar (written last) and a whole array (:meth:`incomplete`)."""
        return self.meta_path(video_id).is_file() and self.incomplete(video_id) is None

    def incomplete(self, video_id: str) -> str | None:
        """Why a video whose sidecar exists is not complete, naming the file (``"<path>: truncated feature file (x of
        y bytes)"``), or ``None`` (complete, or no sidecar: not in the cache). Reads the sidecar and the array's
        header only; an unreadable sidecar is not judged here (:meth:`read_meta` says what is wrong with it)."""
        meta_path, path = self.meta_path(video_id), self.feature_path(video_id)
        if not meta_path.is_file():
            return None
        if not path.is_file():
            return f"{path}: missing (its sidecar {meta_path.name} is there)"
        try:
            meta, rows = self._read_sidecar(video_id)
            dim = meta.dim
        except (CacheError, OSError):
            rows = dim = None
        problem = npy_problem(path, rows, dim)
        return f"{path}: {problem}" if problem else None

    def write(self, video_id: str, features: np.ndarray, meta: FeatureMeta) -> None:
        why = bad_video_id(video_id)
        if why:
            raise CacheError(f"{self.root}: cannot write features: {why}")
        features = np.ascontiguousarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[1] != meta.dim:
            raise CacheError(f"{video_id}: features of shape {features.shape} do not match the streams {meta.streams}")
        self.root.mkdir(parents=True, exist_ok=True)
        # A stale sidecar must not vouch for the new array while it is being replaced.
        self.meta_path(video_id).unlink(missing_ok=True)
        atomic_write(self.feature_path(video_id), lambda f: np.save(f, features))
        meta_dict = dict(meta.to_dict(), num_snippets=int(features.shape[0]))
        atomic_write(self.meta_path(video_id), lambda f: f.write(json.dumps(meta_dict, indent=1).encode()))

    def read_meta(self, video_id: str) -> FeatureMeta:
        return self._read_sidecar(video_id)[0]

    def _read_sidecar(self, video_id: str) -> tuple[FeatureMeta, int | None]:
        """The sidecar's metadata and ``num_snippets`` (``None`` in sidecars that lack it)."""
        path = self.meta_path(video_id)
        try:
            d = json.loads(path.read_text())
            rows = d.get("num_snippets")
            return FeatureMeta.from_dict(d), int(rows) if rows is not None else None
        except FileNotFoundError:
            raise CacheError(f"{path}: no cached features for video {video_id!r}") from None
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise CacheError(f"{path}: malformed feature metadata ({e})") from None

    def read(self, video_id: str) -> tuple[np.ndarray, FeatureMeta]:
        """Memory-mapped ``[T, D]`` features and their metadata; :class:`CacheError` naming the file when it is
        truncated or does not match its sidecar, :class:`NonFiniteFeatures` when it holds a NaN or inf (checked by
        :func:`check_finite`)."""
        meta, rows = self._read_sidecar(video_id)
        return _load_npy(self.feature_path(video_id), meta, rows), meta

    def video_ids(self) -> list[str]:
        return sorted(p.stem for p in self.root.glob("*.json") if self.feature_path(p.stem).is_file())


def _load_npy(path: Path, meta: FeatureMeta, rows: int | None = None) -> np.ndarray:
    """The memory-mapped ``[T, meta.dim]`` array of ``path`` (``T == rows`` when given), checked to be whole and
    finite."""
    if path.is_file():  # a missing file is said by np.load below
        problem = npy_problem(path, rows, meta.dim)
        if problem:
            raise CacheError(f"{path}: {problem}; re-extract it (rerunning the extraction redoes incomplete "
                             "entries)")
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise CacheError(f"{path}: unreadable feature file ({e})") from None
    if arr.ndim != 2 or arr.shape[1] != meta.dim:
        raise CacheError(f"{path}: expected a [T, {meta.dim}] array, found shape {arr.shape}")
    check_finite(arr, path, meta.streams)
    return arr


class FeatureSource:
    """Read-only view over any feature layout: ``ids()``, ``load(video_id) -> (features, meta)``.
    ``per_video_geometry``: each video has its own grid (its meta says which), not one grid for the set."""

    per_video_geometry = False

    def ids(self) -> list[str]:
        raise NotImplementedError

    def load(self, video_id: str) -> tuple[np.ndarray, FeatureMeta]:
        raise NotImplementedError

    def meta(self, video_id: str) -> FeatureMeta:
        """The metadata alone (no array is opened)."""
        raise NotImplementedError

    def problems(self) -> list[str]:
        """One line per file or video the reader left out of :meth:`ids`, naming it and why."""
        return []

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids())


class CacheSource(FeatureSource):
    def __init__(self, root: str | os.PathLike):
        self.cache = FeatureCache(root)
        self.root = self.cache.root

    def ids(self) -> list[str]:
        return self.cache.video_ids()

    def load(self, video_id: str) -> tuple[np.ndarray, FeatureMeta]:
        return self.cache.read(video_id)

    def meta(self, video_id: str) -> FeatureMeta:
        return self.cache.read_meta(video_id)


class SynthSource(FeatureSource):
    """``features/<video>.npy`` + ``annotations.json`` with ``feature_meta`` (the feature synthesizer's layout)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        ann = self.root / "annotations.json"
        try:
            fm = json.loads(ann.read_text())["feature_meta"]
            window = int(fm["snippet_frames"])
            rgb = int(fm["rgb_dim"])
            dim = int(fm["dim"])
            self._meta = FeatureMeta(
                geometry=FeatureGeometry(fps=float(fm["fps"]), window=window, stride=window),
                streams={"rgb": (0, rgb), "flow": (rgb, dim)},
                extractor="synthetic",
                options={k: fm[k] for k in ("seed", "difficulty") if k in fm},
            )
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CacheError(f"{ann}: not a synthesized feature set ({e!r})") from None

    @property
    def annotations_path(self) -> Path:
        return self.root / "annotations.json"

    def ids(self) -> list[str]:
        return sorted(p.stem for p in (self.root / "features").glob("*.npy"))

    def load(self, video_id: str) -> tuple[np.ndarray, FeatureMeta]:
        """As :meth:`FeatureCache.read`: memory-mapped, checked to be finite."""
        return _load_npy(self.root / "features" / f"{video_id}.npy", self._meta), self._meta

    def meta(self, video_id: str) -> FeatureMeta:
        if not (self.root / "features" / f"{video_id}.npy").is_file():
            raise CacheError(f"{self.root / 'features' / video_id}.npy: no features for video {video_id!r}")
        return self._meta
