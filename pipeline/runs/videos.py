"""Detection on new video files with a trained run: extract features as the run's were made, then localize.

What ``clicktal-detect`` and the demo call: :func:`extraction_config` rebuilds the run's extraction options (from the
signature recorded with its training features), :func:`detect_files` checks the features those options will make
against the run's contract before any video is decoded, extracts into a resumable cache and returns a
:class:`DetectionReport` (detections, native-grid scores, durations) for the caller to write or draw.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from clicktal.extractors.decode import find_videos
from clicktal.extractors.extract import ExtractionConfig, planned_contract
from clicktal.extractors.runner import Summary, extract_folder
from clicktal.pipeline.data.cache import CacheSource
from clicktal.pipeline.data.detections import Detection
from clicktal.pipeline.runs.inference import LoadedRun


def extraction_config(run: LoadedRun, **given) -> ExtractionConfig:
    """The run's extraction options with the non-``None`` ``given`` :class:`ExtractionConfig` fields on top; a run
    trained on features clicktal did not extract needs ``features`` given."""
    if run.extraction is None and given.get("features") is None:
        raise ValueError(f"the run {run.checkpoint.parent} was trained on features not extracted by clicktal "
                         f"({run.contract.extractor}); say how to extract new videos (--features ...)")
    return ExtractionConfig.from_signature(run.extraction or {}, **given)


@dataclass
class DetectionReport:
    """What :func:`detect_files` found: the extraction's summary, the videos detected on (extracted now or before),
    their detections (seconds, best first per video), native-grid scores and durations."""

    extraction: Summary
    video_ids: list[str]
    detections: list[Detection] = field(default_factory=list)
    scores: dict = field(default_factory=dict)  # video -> (FrameScores, grid)
    durations: dict[str, float | None] = field(default_factory=dict)

    def of(self, video_id: str) -> list[Detection]:
        return [d for d in self.detections if d.video == video_id]


def detect_files(run: LoadedRun, videos: Iterable[str | os.PathLike], *, cache: str | os.PathLike,
                 config: ExtractionConfig, workers: int = 1, progress: bool = True) -> DetectionReport:
    """Extract ``videos`` (files or folders, searched recursively) into ``cache`` with ``config`` and detect on every
    video that has features. The planned features are checked against the run's contract first
    (:class:`~clicktal.pipeline.data.contract.ContractError` naming the fields)."""
    run.contract.check(planned_contract(config), "extraction options " + str(config.signature()),
                       expected=f"the run {run.checkpoint.parent}")
    paths = [p for v in videos for p in find_videos(v)]
    summary = extract_folder(paths, cache, config=config, workers=workers, progress=progress)
    ids = [r.video_id for r in summary.results if r.status in ("done", "skipped")]
    source = CacheSource(Path(cache))
    scores: dict = {}
    detections = run.detect(source, ids, scores_out=scores)
    durations = {vid: source.meta(vid).source.get("duration_s") for vid in ids}
    return DetectionReport(summary, ids, detections, scores, durations)


__all__ = ["DetectionReport", "detect_files", "extraction_config"]
