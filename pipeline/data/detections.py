"""Detections: what post-processing produces and evaluation consumes. Times in seconds.

On disk they use the ActivityNet results schema, which the official evaluator and most TAL code read::

    {"version": ..., "results": {video: [{"label": str, "score": float, "segment": [start, end]}]},
     "external_data": {}}

Order is kept both ways (videos in first-appearance order, each video's list as given): the official evaluator breaks
score ties by position, so a round trip through a file must not reorder anything.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from clicktal.pipeline.core.files import atomic_write


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


def read_detections(path: str | os.PathLike) -> list[Detection]:
    """Read an ActivityNet results file, keeping its order."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise DetectionFileError(f"{path}: no such detections file") from None
    except OSError as e:
        raise DetectionFileError(f"{path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise DetectionFileError(f"{path}: not UTF-8 text ({e})") from None
    except json.JSONDecodeError as e:
        raise DetectionFileError(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from None
    return detections_from_json(data, str(path))
