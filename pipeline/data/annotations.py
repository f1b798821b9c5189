"""Readers for ground truth and cheap labels. Every error names the file, the line and what is wrong.

Formats:
* ground truth in the ActivityNet schema (THUMOS14, GTEA, ActivityNet): ``{"database": {video: {"subset",
  "duration", "annotations": [{"segment": [s, e], "label"}]}}}``;
* action clicks (SF-Net): ``video,seconds,label`` per line, CRLF line ends and blank lines allowed;
* background clicks (BackTAL): CSV with a UTF-8 byte-order mark and a header; the ``Start`` column holds the second;
* THUMOS14 ambiguous segments: ``video start end`` per line, whitespace separated;
* labelled segments (a user's own, Ding et al.'s segment-level labels): the ActivityNet schema, ``subset`` and
  ``duration`` optional (the ground truth's are used).

Clicks and labelled segments on videos or classes absent from the ground truth are counted and reported in
:class:`ReadReport`, and skipped unless ``strict``. Those lying past their video's length are checked against a
:class:`LengthCheck`: kept and counted within its tolerance, refused (or, with ``on_beyond="drop"``, dropped and
counted) beyond it.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from clicktal.pipeline.core.files import not_utf8


class AnnotationError(ValueError):
    """A malformed annotation file; the message names the file and line."""


@dataclass(frozen=True)
class Segment:
    start_s: float
    end_s: float
    label: str


@dataclass(frozen=True)
class VideoAnnotation:
    """One video's ground truth; ``segments`` in file order (the official evaluator breaks tIoU ties by it)."""

    video_id: str
    subset: str
    duration_s: float
    segments: tuple[Segment, ...] = ()

    @property
    def extent_s(self) -> float:
        """The later of the stated duration and the last annotated end.

        Some released files state a wrong duration (SF-Net's THUMOS14 file gives frames/30 for a few 25 fps videos,
        so annotations and clicks run past it); times up to the extent are real and kept.
        """
        return max([self.duration_s] + [s.end_s for s in self.segments])

    @property
    def labels(self) -> frozenset[str]:
        return frozenset(s.label for s in self.segments)


@dataclass
class GroundTruth:
    videos: dict[str, VideoAnnotation]
    source: str = "<memory>"
    warnings: list[str] = field(default_factory=list)

    def classes(self, subset: str | None = None) -> list[str]:
        """Sorted labels that occur in ``subset`` (all subsets when None)."""
        return sorted({s.label for v in self.subset(subset).values() for s in v.segments})

    def classes_in_order(self, subset: str | None = None) -> list[str]:
        """Labels of ``subset`` in order of first appearance in the file (the official evaluator's class index)."""
        return list(dict.fromkeys(s.label for v in self.subset(subset).values() for s in v.segments))

    def subset(self, subset: str | None) -> dict[str, VideoAnnotation]:
        if subset is None:
            return dict(self.videos)
        return {k: v for k, v in self.videos.items() if v.subset == subset}

    def subsets(self) -> list[str]:
        return sorted({v.subset for v in self.videos.values()})

    def write(self, path: str | os.PathLike) -> Path:
        """Write in the ActivityNet schema that :func:`load_ground_truth` reads; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        database = {vid: {"subset": v.subset, "duration": v.duration_s,
                          "annotations": [{"segment": [s.start_s, s.end_s], "label": s.label} for s in v.segments]}
                    for vid, v in self.videos.items()}
        path.write_text(json.dumps({"version": self.source, "database": database}))
        return path


def _number(value, where: str, what: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise AnnotationError(f"{where}: {what} {value!r} is not a number") from None
    if not math.isfinite(x):
        raise AnnotationError(f"{where}: {what} {value!r} is not finite")
    return x


def _read_text(path: Path, what: str) -> str:
    """The UTF-8 text of ``path`` (a byte-order mark dropped); ``what`` names the file's kind in errors."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise AnnotationError(f"{path}: no such {what} file") from None
    except OSError as e:
        raise AnnotationError(f"{path}: cannot read the {what} file ({e.strerror})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise AnnotationError(f"{path}: {not_utf8(e)}") from None


def read_database(path: Path, what: str) -> dict:
    """The ``database`` mapping of an ActivityNet-schema file; ``what`` names the file's kind in errors."""
    text = _read_text(path, what)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise AnnotationError(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from None
    except RecursionError:  # Python's parser recurses per level; no ActivityNet file nests more than 6
        raise AnnotationError(f"{path}: JSON nested too deeply to read (the ActivityNet schema nests 6 "
                              f"levels)") from None
    database = data.get("database") if isinstance(data, dict) else None
    if not isinstance(database, dict):
        raise AnnotationError(f"{path}: no 'database' mapping (ActivityNet schema expected)")
    return database


def _annotations(entry, where: str) -> list[tuple[str, float, float, str]]:
    """``(where, start, end, label)`` of each of a video entry's annotations, checked: a non-negative start and an
    end no earlier than it."""
    if not isinstance(entry, dict):
        raise AnnotationError(f"{where}: entry is not a mapping")
    annotations = entry.get("annotations", [])
    if not isinstance(annotations, list):
        raise AnnotationError(f"{where}: 'annotations' is not a list")
    out = []
    for i, ann in enumerate(annotations):
        w = f"{where}, annotation {i}"
        try:
            s, e = ann["segment"]
            label = ann["label"]
        except (KeyError, TypeError, ValueError):
            raise AnnotationError(f"{w}: needs 'segment': [start, end] and 'label'") from None
        s, e = _number(s, w, "start"), _number(e, w, "end")
        if s < 0 or e < s:
            why = "negative start" if s < 0 else "end before start"
            raise AnnotationError(f"{w}: segment [{s}, {e}] is not a valid interval ({why})")
        out.append((w, s, e, str(label)))
    return out


def load_ground_truth(path: str | os.PathLike) -> GroundTruth:
    """Read an ActivityNet-schema ground-truth file."""
    path = Path(path)
    database = read_database(path, "ground-truth")
    videos, warnings = {}, []
    for vid, entry in database.items():
        where = f"{path}: video {vid}"
        segments = tuple(Segment(s, e, label) for _, s, e, label in _annotations(entry, where))
        duration = _number(entry.get("duration"), where, "duration")
        if duration <= 0:
            raise AnnotationError(f"{where}: duration {duration} is not positive")
        videos[vid] = VideoAnnotation(vid, str(entry.get("subset", "")), duration, segments)
        if videos[vid].extent_s > duration:
            warnings.append(f"{where}: annotations end at {videos[vid].extent_s} s, past the stated duration "
                            f"{duration} s")
    return GroundTruth(videos, str(path), warnings)


def read_ambiguous(path: str | os.PathLike) -> dict[str, list[tuple[float, float]]]:
    """THUMOS14's ambiguous segments: ``video start end`` per line."""
    path = Path(path)
    out: dict[str, list[tuple[float, float]]] = {}
    for lineno, line in _lines(path, "ambiguous-segment"):
        parts = line.split()
        where = f"{path}: line {lineno}"
        if len(parts) != 3:
            raise AnnotationError(f"{where}: expected 'video start end', got {line!r}")
        s, e = _number(parts[1], where, "start"), _number(parts[2], where, "end")
        if s < 0 or e < s:
            raise AnnotationError(f"{where}: segment [{s}, {e}] is not a valid interval")
        out.setdefault(parts[0], []).append((s, e))
    return out


def _lines(path: Path, what: str):
    """Non-blank lines with their 1-based numbers; BOM, CRLF and surrounding spaces removed. ``what`` names the
    file's kind in errors."""
    for lineno, line in enumerate(_read_text(path, what).splitlines(), start=1):
        line = line.strip()
        if line:
            yield lineno, line


@dataclass(frozen=True)
class ActionClick:
    time_s: float
    label: str


# The defaults of LengthCheck (its docstring gives the reasons).
DEFAULT_TOLERANCE_FRACTION = 0.2  # 30 / 25 - 1
DEFAULT_TOLERANCE_S = 1.0


@dataclass(frozen=True)
class LengthCheck:
    """How far past its video's length (:attr:`VideoAnnotation.extent_s`, the later of the stated duration and the
    last annotated end) a click or the end of a labelled segment may lie.

    Up to ``extent_s * (1 + tolerance_fraction) + tolerance_s`` a label is kept and counted in
    :attr:`ReadReport.past_duration`; beyond that it is an error naming the file, line, video, time and length
    (``on_beyond="error"``), or dropped and counted in :attr:`ReadReport.beyond_video` (``"drop"``).

    The defaults keep every released click file: the THUMOS14 ground truth released with SF-Net states frames / 30
    as the duration of 17 of its 25 fps videos, i.e. 25 / 30 of their real length, so their real clicks run up to
    20 % past it (``tolerance_fraction`` 0.2; 16 % is the most in the released click files); ``tolerance_s`` 1 s
    covers rounding at the end of a short video. A click at 99 999 s in a 63 s video is refused.
    """

    on_beyond: Literal["error", "drop"] = "error"
    tolerance_s: float = DEFAULT_TOLERANCE_S
    tolerance_fraction: float = DEFAULT_TOLERANCE_FRACTION

    def __post_init__(self) -> None:
        if self.on_beyond not in ("error", "drop"):
            raise ValueError(f"beyond_video must be 'error' or 'drop', got {self.on_beyond!r}")
        for name in ("tolerance_s", "tolerance_fraction"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"beyond_video_{name} must be a finite number >= 0, got {value!r}")

    def limit_s(self, video: VideoAnnotation) -> float:
        """The latest time a label of ``video`` may have."""
        return video.extent_s * (1 + self.tolerance_fraction) + self.tolerance_s


@dataclass
class ReadReport:
    """What a click (or labelled-segment) reader kept and skipped; ``unit`` names what was read."""

    source: str
    kept: int = 0
    unknown_videos: Counter = field(default_factory=Counter)  # video -> clicks skipped
    unknown_labels: Counter = field(default_factory=Counter)  # label -> clicks skipped
    past_duration: Counter = field(default_factory=Counter)  # video -> clicks kept past its annotated extent
    beyond_video: Counter = field(default_factory=Counter)  # video -> clicks dropped beyond its length + tolerance
    unit: str = "clicks"

    @property
    def skipped(self) -> int:
        return (sum(self.unknown_videos.values()) + sum(self.unknown_labels.values())
                + sum(self.beyond_video.values()))

    def skip_reasons(self) -> list[str]:
        """One phrase per reason labels were skipped, with their counts."""
        parts = []
        if self.unknown_videos:
            parts.append(f"skipped {sum(self.unknown_videos.values())} on {len(self.unknown_videos)} videos "
                         f"absent from the ground truth ({_first(self.unknown_videos)})")
        if self.unknown_labels:
            parts.append(f"skipped {sum(self.unknown_labels.values())} with classes absent from the ground truth "
                         f"({', '.join(sorted(self.unknown_labels))})")
        if self.beyond_video:
            parts.append(f"dropped {sum(self.beyond_video.values())} beyond the length of {len(self.beyond_video)} "
                         f"videos ({_first(self.beyond_video)})")
        return parts

    def summary(self) -> str:
        parts = [f"{self.source}: kept {self.kept} {self.unit}"] + self.skip_reasons()
        if self.past_duration:
            parts.append(f"kept {sum(self.past_duration.values())} past the end of {len(self.past_duration)} videos "
                         f"(the ground truth's durations look wrong there)")
        return "; ".join(parts)


def _first(counts: Counter, n: int = 3) -> str:
    """The first ``n`` keys of ``counts`` in sorted order, with an ellipsis when there are more."""
    keys = sorted(counts)
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")


def _check_click(gt: GroundTruth, vid: str, t: float, where: str, report: ReadReport, strict: bool,
                 length: LengthCheck) -> bool:
    """True when the click (or the labelled segment ending at ``t``) is kept. A negative time is always an error.
    A video absent from the ground truth and a time past the video's annotated extent are errors when ``strict``;
    otherwise the first is skipped and counted, and the second is kept and counted within ``length``'s tolerance
    (released THUMOS14 files state too short a duration for some videos) and refused or dropped beyond it."""
    video = gt.videos.get(vid)
    if video is None:
        if strict:
            raise AnnotationError(f"{where}: video {vid!r} is not in the ground truth {gt.source}")
        report.unknown_videos[vid] += 1
        return False
    if t < 0:
        raise AnnotationError(f"{where}: negative time {t} s in video {vid}")
    if t > video.extent_s:
        if strict:
            raise AnnotationError(f"{where}: time {t} s is past the end of video {vid} "
                                  f"(duration {video.extent_s:.3f} s)")
        if t > length.limit_s(video):
            if length.on_beyond == "error":
                raise AnnotationError(
                    f"{where}: time {t} s is beyond the end of video {vid} (length {video.extent_s:.3f} s; at most "
                    f"{length.limit_s(video):.3f} s allowed with data.labels.beyond_video_tolerance_s "
                    f"{length.tolerance_s} and beyond_video_tolerance_fraction {length.tolerance_fraction:g}); "
                    f"data.labels.beyond_video: drop drops such labels")
            report.beyond_video[vid] += 1
            return False
        report.past_duration[vid] += 1
    return True


def _check_label(gt: GroundTruth, known: set[str], label: str, where: str, report: ReadReport, strict: bool
                 ) -> bool:
    """True when ``label`` is one of ``known`` (the ground truth's classes); otherwise an error when ``strict``, else
    counted and skipped."""
    if label in known:
        return True
    if strict:
        raise AnnotationError(f"{where}: class {label!r} is not in the ground truth {gt.source}")
    report.unknown_labels[label] += 1
    return False


def read_action_clicks(path: str | os.PathLike, gt: GroundTruth, *, strict: bool = False,
                       length: LengthCheck = LengthCheck()) -> tuple[dict[str, list[ActionClick]], ReadReport]:
    """SF-Net's click files: ``video,seconds,label`` per line; ``length`` checks times past a video's end."""
    path = Path(path)
    known = set(gt.classes())
    report = ReadReport(str(path))
    clicks: dict[str, list[ActionClick]] = {}
    for lineno, line in _lines(path, "click"):
        where = f"{path}: line {lineno}"
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 3 or not parts[0] or not parts[2]:
            raise AnnotationError(f"{where}: expected 'video,seconds,label', got {line!r}")
        vid, label = parts[0], parts[2]
        t = _number(parts[1], where, "time")
        if not (_check_click(gt, vid, t, where, report, strict, length)
                and _check_label(gt, known, label, where, report, strict)):
            continue
        clicks.setdefault(vid, []).append(ActionClick(t, label))
        report.kept += 1
    for v in clicks.values():
        v.sort(key=lambda c: c.time_s)
    return clicks, report


def read_background_clicks(path: str | os.PathLike, gt: GroundTruth, *, strict: bool = False,
                           time_column: str = "Start", video_column: str = "URLID",
                           length: LengthCheck = LengthCheck()) -> tuple[dict[str, list[float]], ReadReport]:
    """BackTAL's background-click CSV (UTF-8 BOM, header row; ``Start`` holds the clicked second); ``length``
    checks times past a video's end."""
    path = Path(path)
    report = ReadReport(str(path))
    rows = list(_lines(path, "click"))
    if not rows:
        raise AnnotationError(f"{path}: empty file (a header with '{video_column}' and '{time_column}' expected)")
    header_line, header = rows[0][0], next(csv.reader([rows[0][1]]))
    header = [h.strip() for h in header]
    for col in (video_column, time_column):
        if col not in header:
            raise AnnotationError(f"{path}: line {header_line}: header has no {col!r} column ({header})")
    vi, ti = header.index(video_column), header.index(time_column)
    clicks: dict[str, list[float]] = {}
    for lineno, line in rows[1:]:
        where = f"{path}: line {lineno}"
        row = next(csv.reader(io.StringIO(line)))
        if len(row) != len(header):
            raise AnnotationError(f"{where}: expected {len(header)} fields, got {len(row)} in {line!r}")
        vid = row[vi].strip()
        t = _number(row[ti], where, time_column)
        if not _check_click(gt, vid, t, where, report, strict, length):
            continue
        clicks.setdefault(vid, []).append(t)
        report.kept += 1
    for v in clicks.values():
        v.sort()
    return clicks, report


def read_labelled_segments(path: str | os.PathLike, gt: GroundTruth, *, strict: bool = False,
                           length: LengthCheck = LengthCheck()) -> tuple[dict[str, list[Segment]], ReadReport]:
    """A user's own labelled segments in the ActivityNet schema (``{"database": {video: {"annotations":
    [{"segment": [s, e], "label"}]}}}``; ``subset`` and ``duration`` optional, the ground truth's are used).

    Errors name the file, the video and the annotation; an interval ending before it starts is refused. Segments on
    videos or classes absent from the ground truth are counted and skipped (errors when ``strict``); one ending past
    its video's annotated extent is checked by ``length`` (an error when ``strict``), as clicks are.
    """
    path = Path(path)
    known = set(gt.classes())
    report = ReadReport(str(path), unit="labelled segments")
    segments: dict[str, list[Segment]] = {}
    for vid, entry in read_database(path, "labelled-segment").items():
        for where, start, end, label in _annotations(entry, f"{path}: video {vid}"):
            if not (_check_click(gt, vid, end, where, report, strict, length)
                    and _check_label(gt, known, label, where, report, strict)):
                continue
            segments.setdefault(vid, []).append(Segment(start, end, label))
            report.kept += 1
    for v in segments.values():
        v.sort(key=lambda seg: (seg.start_s, seg.end_s))
    return segments, report
