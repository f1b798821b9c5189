"""The W-TALC / 3C-Net / SF-Net feature release: one joint feature file and its annotation arrays.

Layout (SF-Net's ``video_dataset.py``: ``<feature-path>/<Dataset>-I3D-JOINTFeatures.npy`` and
``<feature-path>/<Dataset>-Annotations/``):

* ``<Dataset>-I3D-JOINTFeatures.npy``: a 1-d object array, row ``i`` the ``[T_i, 2048]`` features of video ``i``
  (1024 RGB then 1024 flow, one row per 16-frame snippet);
* ``<Dataset>-Annotations/``: ``videoname.npy``, ``subset.npy``, ``classlist.npy`` (byte strings; THUMOS14 adds
  ``classlist_20classes.npy``), ``duration.npy`` (seconds, ``[N, 1]``), ``segments.npy`` and ``labels.npy`` (object
  arrays: per video a list of ``[start_s, end_s]`` and their class names), row ``i`` for video ``i``.

The joint file (about 7 GB for THUMOS14) is opened through :class:`~clicktal.pipeline.core.safe_pickle.
LazyObjectArray`: one pass indexes where each video's bytes lie, a video is memory-mapped when read, and the index
is shared by every reader of the same file in the process. Object arrays are read by the numpy-only unpickler.

Geometry: the release states none; SF-Net's ``main.py`` sets ``fps`` 25 (THUMOS14), 15 (GTEA), 30 (BEOID) and
``options.py`` ``--stride 16``; those are the defaults here (:data:`RELEASE_GEOMETRY`), and a dataset not listed
needs the geometry from the config (``data.feature_geometry``).

Ground truth: SF-Net trains on the rows of the training subset with at least one segment (``train_test_idx``);
the release also lists videos without temporal annotations (2,584 THUMOS14 rows: 412 with segments). Only rows
with segments enter the ground truth built here; the others are counted in :attr:`WtalcRelease.unannotated`.
THUMOS14's classes are ``classlist_20classes.npy`` (SF-Net's ``get_classlist``).
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.core.safe_pickle import LazyObjectArray, read_object_npy
from clicktal.pipeline.data.annotations import GroundTruth, Segment, VideoAnnotation
from clicktal.pipeline.data.cache import CacheError, FeatureMeta, FeatureSource, bad_video_id, check_finite

JOINT_SUFFIX = "-I3D-JOINTFeatures.npy"
# SF-Net main.py (fps per dataset) and options.py (--stride 16); snippets are 16 frames (I3D's input)
RELEASE_GEOMETRY = {"Thumos14": FeatureGeometry(25, 16, 16), "Thumos14reduced": FeatureGeometry(25, 16, 16),
                    "GTEA": FeatureGeometry(15, 16, 16), "BEOID": FeatureGeometry(30, 16, 16)}


def joint_files(root: Path) -> list[Path]:
    return sorted(root.glob(f"*{JOINT_SUFFIX}")) if root.is_dir() else []


def is_wtalc(root: Path) -> bool:
    """Whether ``root`` holds a W-TALC joint feature file."""
    return bool(joint_files(Path(root)))


def _text(values) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


@dataclass
class WtalcRelease:
    """The annotation arrays of a release, row by row, and the ground truth they give."""

    folder: Path
    names: list[str]
    subsets: list[str]
    durations: list[float]
    classes: list[str]
    ground_truth: GroundTruth
    unannotated: dict[str, int]  # subset -> rows without any segment (left out of the ground truth)


def read_release_annotations(folder: str | os.PathLike) -> WtalcRelease:
    """The ``<Dataset>-Annotations`` arrays as they are, and their ground truth (ActivityNet schema, in memory)."""
    folder = Path(folder)

    def load(name: str) -> np.ndarray:
        path = folder / f"{name}.npy"
        if not path.is_file():
            raise CacheError(f"{path}: missing (a W-TALC annotation folder holds videoname, subset, classlist, "
                             "duration, segments and labels .npy files)")
        return read_object_npy(path)

    names, subsets = _text(load("videoname")), _text(load("subset"))
    durations = [float(np.asarray(d, np.float64).reshape(-1)[0]) for d in load("duration")]
    segments, labels = load("segments"), load("labels")
    twenty = folder / "classlist_20classes.npy"
    classes = _text(read_object_npy(twenty) if twenty.is_file() else load("classlist"))
    n = len(names)
    for what, arr in (("subset", subsets), ("duration", durations), ("segments", segments), ("labels", labels)):
        if len(arr) != n:
            raise CacheError(f"{folder}: {what}.npy has {len(arr)} rows, videoname.npy {n}")
    videos, unannotated, known = {}, {}, set(classes)
    for i, vid in enumerate(names):
        where = f"{folder}: row {i} (video {vid})"
        why = bad_video_id(vid)
        if why:
            raise CacheError(f"{where}: {why}")
        if vid in videos:
            raise CacheError(f"{where}: listed twice")
        segs, labs = list(segments[i]), _text(labels[i])
        if len(segs) != len(labs):
            raise CacheError(f"{where}: {len(segs)} segments but {len(labs)} labels")
        if not segs:
            unannotated[subsets[i]] = unannotated.get(subsets[i], 0) + 1
            continue
        unknown = sorted(set(labs) - known)
        if unknown:
            raise CacheError(f"{where}: labels {unknown} are not in the class list")
        try:
            parsed = tuple(Segment(float(s), float(e), lab) for (s, e), lab in zip(segs, labs))
        except (TypeError, ValueError):
            raise CacheError(f"{where}: segments are not [start, end] pairs of seconds") from None
        videos[vid] = VideoAnnotation(vid, subsets[i], durations[i], parsed)
    return WtalcRelease(folder, names, subsets, durations, classes, GroundTruth(videos, str(folder)), unannotated)


@functools.lru_cache(maxsize=4)
def _joint(path: str, size: int, mtime_ns: int) -> LazyObjectArray:
    """One index per joint file and version in a process (the file is walked once, never loaded)."""
    return LazyObjectArray(path)


class WtalcSource(FeatureSource):
    """Features of a W-TALC joint file, by video name (its ``<Dataset>-Annotations/videoname.npy``).

    ``geometry``: the snippet grid (default: :data:`RELEASE_GEOMETRY` of the dataset named by the file);
    ``rgb_dim``: width of the RGB stream (default: half the width, W-TALC's RGB-then-flow concatenation). Videos with
    no rows are left out of :meth:`ids` and counted in :attr:`empty`."""

    per_video_geometry = False

    def __init__(self, root: str | os.PathLike, *, geometry: FeatureGeometry | None = None,
                 rgb_dim: int | None = None):
        self.root = Path(root)
        files = joint_files(self.root)
        if len(files) != 1:
            raise CacheError(f"{self.root}: expected one *{JOINT_SUFFIX} file, found "
                             f"{', '.join(p.name for p in files) or 'none'}")
        self.path = files[0]
        self.dataset = self.path.name[:-len(JOINT_SUFFIX)]
        self.annotations_dir = self.root / f"{self.dataset}-Annotations"
        self.release = read_release_annotations(self.annotations_dir)
        if geometry is None:
            if self.dataset not in RELEASE_GEOMETRY:
                raise CacheError(f"{self.path}: no known geometry for dataset {self.dataset!r} (known: "
                                 f"{', '.join(RELEASE_GEOMETRY)}); give data.feature_geometry (fps, window, stride)")
            geometry = RELEASE_GEOMETRY[self.dataset]
        st = self.path.stat()
        self.joint = _joint(str(self.path), st.st_size, st.st_mtime_ns)
        if len(self.joint) != len(self.release.names):
            raise CacheError(f"{self.path}: {len(self.joint)} videos, but {self.annotations_dir}/videoname.npy lists "
                             f"{len(self.release.names)}")
        shapes = [self.joint.shape(i) for i in range(len(self.joint))]
        widths = {s[1] for s in shapes if len(s) == 2 and s[0] > 0}
        bad = [self.release.names[i] for i, s in enumerate(shapes) if len(s) != 2]
        if bad or len(widths) != 1:
            raise CacheError(f"{self.path}: videos must be [T, D] arrays of one width D (found widths "
                             f"{sorted(widths)}; not 2-d: {', '.join(bad[:5]) or 'none'})")
        dim = widths.pop()
        rgb = dim // 2 if rgb_dim is None else int(rgb_dim)
        if not 0 < rgb <= dim:
            raise CacheError(f"{self.path}: an RGB width of {rgb} does not fit features {dim} wide")
        self._row = {name: i for i, name in enumerate(self.release.names) if shapes[i][0] > 0}
        self.empty: list[str] = [name for i, name in enumerate(self.release.names) if shapes[i][0] == 0]
        self._meta = FeatureMeta(
            geometry=geometry, streams={"rgb": (0, rgb), "flow": (rgb, dim)} if rgb < dim else {"rgb": (0, dim)},
            extractor="wtalc-i3d",
            options={"layout": "wtalc", "file": self.path.name,
                     "geometry_from": "config" if geometry != RELEASE_GEOMETRY.get(self.dataset) else
                     f"SF-Net main.py / options.py for {self.dataset}"})

    @property
    def annotations_path(self) -> Path:
        return self.annotations_dir

    def ground_truth(self) -> GroundTruth:
        return self.release.ground_truth

    def ids(self) -> list[str]:
        return sorted(self._row)

    def problems(self) -> list[str]:
        out = [f"{len(self.empty)} videos left out: their rows of {self.path.name} hold 0 snippets ("
               f"{', '.join(self.empty[:3])}{', ...' if len(self.empty) > 3 else ''})"] if self.empty else []
        out += [f"{n} {subset!r} rows of {self.annotations_dir.name} have no segment: not in its ground truth (SF-Net "
                f"trains only on annotated rows)" for subset, n in sorted(self.release.unannotated.items())]
        return out

    def meta(self, video_id: str) -> FeatureMeta:
        if video_id not in self._row:
            why = "its row holds 0 snippets" if video_id in self.empty else "not listed in videoname.npy"
            raise CacheError(f"{self.path}: no features for video {video_id!r} ({why})")
        return self._meta

    def load(self, video_id: str) -> tuple[np.ndarray, FeatureMeta]:
        """The video's rows (memory-mapped when stored whole), float32, checked to be finite."""
        meta = self.meta(video_id)
        arr = self.joint[self._row[video_id]]
        if arr.dtype != np.float32:
            arr = arr.astype(np.float32)
        check_finite(arr, self.path, meta.streams, where=f"{self.path} (video {video_id})")
        return arr, meta


__all__ = ["RELEASE_GEOMETRY", "WtalcRelease", "WtalcSource", "is_wtalc", "read_release_annotations"]
