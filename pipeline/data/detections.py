"""Detections: what post-processing produces and evaluation consumes. Times in seconds.

On disk they use the ActivityNet results schema, which the official evaluator and most TAL code read::

    {"version": ..., "results": {video: [{"label": str, "score": float, "segment": [start, end]}]},
     "external_data": {}}

Order is kept both ways (videos in first-appearance order, each video's list as given): the official evaluator breaks
score ties by position, so a round trip through a file must not reorder anything.

A file is read as columns (:class:`DetectionTable`): msgspec decodes and type-checks the schema in one pass without a
Python dict per detection, and numpy checks the numbers. Only when that finds something wrong is the file parsed
again, entry by entry, to name the video and entry at fault.
"""
from __future__ import annotations

import csv
import gc
import io
import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter
from pathlib import Path

import msgspec
import numpy as np

from clicktal.pipeline.core.files import atomic_write, not_utf8


class DetectionFileError(ValueError):
    """A malformed results file; the message names the file, the video and the entry."""


@dataclass(frozen=True)
class Detection:
    video: str
    label: str
    start_s: float
    end_s: float
    score: float


def detections_to_json(detections: Iterable[Detection], version: str = "clicktal",
                       external_data: dict | None = None) -> dict:
    """The ActivityNet results mapping for ``detections``."""
    results: dict[str, list[dict]] = {}
    for d in detections:
        results.setdefault(d.video, []).append(
            {"label": d.label, "score": float(d.score), "segment": [float(d.start_s), float(d.end_s)]})
    return {"version": version, "results": results, "external_data": external_data or {}}


def write_detections(path: str | os.PathLike, detections: Iterable[Detection], version: str = "clicktal",
                     external_data: dict | None = None) -> None:
    """Write ``detections`` as ActivityNet results JSON, atomically (a killed run leaves no half file)."""
    data = json.dumps(detections_to_json(detections, version, external_data)).encode("utf-8")
    atomic_write(path, lambda f: f.write(data))


CSV_COLUMNS = ("video", "label", "start_s", "end_s", "score")


def write_detections_csv(path: str | os.PathLike, detections: Iterable[Detection]) -> None:
    """``video, label, start_s, end_s, score`` per detection (seconds; best first per video as given), atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for d in detections:
        writer.writerow([d.video, d.label, f"{d.start_s:.3f}", f"{d.end_s:.3f}", f"{d.score:.6f}"])
    data = buf.getvalue().encode("utf-8")
    atomic_write(path, lambda f: f.write(data))


def _finite(value, where: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DetectionFileError(f"{where}: {what} {value!r} is not a finite number")
    return float(value)


def detections_from_json(data: object, source: str = "<memory>") -> list[Detection]:
    """Parse an ActivityNet results mapping, keeping the file's order."""
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, dict):
        raise DetectionFileError(f"{source}: no 'results' mapping (ActivityNet results schema expected)")
    out = []
    for video, entries in results.items():
        if not isinstance(entries, list):
            raise DetectionFileError(f"{source}: video {video}: results must be a list, got {type(entries).__name__}")
        for i, entry in enumerate(entries):
            where = f"{source}: video {video}, result {i}"
            try:
                label, score, (start, end) = entry["label"], entry["score"], entry["segment"]
            except (KeyError, TypeError, ValueError):
                raise DetectionFileError(f"{where}: needs 'label', 'score' and 'segment': [start, end]") from None
            if not isinstance(label, str):
                raise DetectionFileError(f"{where}: label {label!r} is not a string")
            start, end = _finite(start, where, "start"), _finite(end, where, "end")
            if end < start:
                raise DetectionFileError(f"{where}: segment [{start}, {end}] ends before it starts")
            out.append(Detection(str(video), label, start, end, _finite(score, where, "score")))
    return out


@dataclass(frozen=True, eq=False)
class DetectionTable:
    """``N`` detections as columns, in file order: ``video`` [N] and ``label`` [N] index ``videos`` and ``labels``
    (each in first-appearance order), ``segment`` [N, 2] start and end in seconds, ``score`` [N]."""

    videos: tuple[str, ...]
    labels: tuple[str, ...]
    video: np.ndarray
    label: np.ndarray
    segment: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return self.score.shape[0]

    def __iter__(self) -> Iterator[Detection]:
        for v, c, (start, end), score in zip(self.video.tolist(), self.label.tolist(), self.segment.tolist(),
                                             self.score.tolist()):
            yield Detection(self.videos[v], self.labels[c], start, end, score)

    @classmethod
    def from_detections(cls, detections: Iterable[Detection]) -> DetectionTable:
        detections = list(detections)
        return cls._from_columns([d.video for d in detections], [d.label for d in detections],
                                 [(d.start_s, d.end_s) for d in detections], [d.score for d in detections])

    @classmethod
    def _from_columns(cls, videos: list[str], labels: list[str], segments: list[tuple[float, float]],
                      scores: list[float]) -> DetectionTable:
        video_names, video = _codes(videos)
        label_names, label = _codes(labels)
        n = len(scores)
        return cls(video_names, label_names, video, label,
                   np.fromiter(chain.from_iterable(segments), np.float64, 2 * n).reshape(n, 2),
                   np.fromiter(scores, np.float64, n))


def _codes(values: list[str]) -> tuple[tuple[str, ...], np.ndarray]:
    """The distinct values in first-appearance order, and each value's index among them."""
    names = tuple(dict.fromkeys(values))
    index = {v: i for i, v in enumerate(names)}
    return names, np.fromiter(map(index.__getitem__, values), np.int64, len(values))


class _Entry(msgspec.Struct, gc=False):
    label: str
    score: float
    segment: tuple[float, float]


class _Results(msgspec.Struct, gc=False):
    results: dict[str, list[_Entry]]


_DECODER = msgspec.json.Decoder(_Results)


def read_detection_table(path: str | os.PathLike) -> DetectionTable:
    """Read an ActivityNet results file as columns, keeping its order; :class:`DetectionFileError` names the file,
    video and entry of anything malformed."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DetectionFileError(f"{path}: no such detections file") from None
    except OSError as e:
        raise DetectionFileError(f"{path}: cannot read ({e.strerror})") from None
    raw = raw.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark, as utf-8-sig reads it
    if not raw.isascii():  # msgspec checks only the strings it keeps: bad bytes elsewhere would pass unseen
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DetectionFileError(f"{path}: {not_utf8(e)}") from None
    collecting = gc.isenabled()
    gc.disable()  # the decoded lists would trigger collections that find nothing to free
    try:
        results = _DECODER.decode(raw).results
    except (msgspec.MsgspecError, RecursionError):  # too deep for msgspec: the fallback below names it
        results = None
    finally:
        if collecting:
            gc.enable()
    if results is not None:
        entries = [e for v in results.values() for e in v]
        table = DetectionTable._from_columns([v for v, e in results.items() for _ in e],
                                             list(map(attrgetter("label"), entries)),
                                             list(map(attrgetter("segment"), entries)),
                                             list(map(attrgetter("score"), entries)))
        if (np.isfinite(table.segment).all() and np.isfinite(table.score).all()
                and (table.segment[:, 1] >= table.segment[:, 0]).all()):
            return table
    # entry by entry: raises naming the video and entry, or accepts what the strict decoder did not (NaN outside
    # the results, say, which Python's json reads)
    return DetectionTable.from_detections(detections_from_json(_parse_json(raw, path), str(path)))


def _parse_json(raw: bytes, path: Path) -> object:
    try:
        return json.loads(raw.decode("utf-8"))  # checked as UTF-8 by read_detection_table
    except json.JSONDecodeError as e:
        raise DetectionFileError(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from None
    except RecursionError:  # Python's parser recurses per level; the results schema nests 5
        raise DetectionFileError(f"{path}: JSON nested too deeply to read (the ActivityNet results schema nests 5 "
                                 f"levels)") from None


def read_detections(path: str | os.PathLike) -> list[Detection]:
    """Read an ActivityNet results file, keeping its order."""
    return list(read_detection_table(path))
