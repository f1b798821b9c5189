"""Model -> frame scores -> detections. The model says how its output becomes frame scores
(:meth:`~clicktal.models.base.Localizer.frame_scores`); post-processing (:mod:`clicktal.pipeline.postprocess.grouping`)
groups them with a named preset; this module runs the two over whole videos (no crop) and maps back to seconds
through the features' geometry.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from clicktal.models import FrameScores, Localizer, build_localizer

from clicktal.pipeline.data.cache import FeatureSource
from clicktal.pipeline.core.config import ConfigError, config_from_dict
from clicktal.pipeline.data.detections import Detection
from clicktal.pipeline.runs.engine import load_checkpoint, resolve_device
from clicktal.pipeline.runs.schema import ExperimentConfig, PostprocessSpec
from clicktal.pipeline.postprocess.grouping import PRESETS, PostprocessConfig, detect_segments


def postprocess_config(spec: PostprocessSpec) -> PostprocessConfig:
    """The preset ``spec.preset`` with ``spec.params`` replacing its fields (lists become tuples)."""
    base = PRESETS.get(spec.preset)
    fields = {f.name for f in dataclasses.fields(base)}
    unknown = sorted(set(spec.params) - fields)
    if unknown:
        raise ConfigError(f"postprocess.params: unknown key(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(fields))}")
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.params.items()}
    try:
        return dataclasses.replace(base, **params)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"postprocess.params: {e}") from None


@torch.no_grad()
def predict_scores(model: Localizer, features: np.ndarray, device: torch.device | str = "cpu") -> FrameScores:
    """Frame scores of one whole video, ``features [T, D]``, in eval mode."""
    model.eval()
    x = torch.tensor(np.asarray(features, dtype=np.float32))[None].to(device)  # a copy: features may be read-only
    mask = torch.ones(x.shape[:2], dtype=torch.bool, device=device)
    return model.frame_scores(model(x, mask), 0)


def detect_video(model: Localizer, features: np.ndarray, geometry, classes: Sequence[str], video_id: str,
                 post: PostprocessConfig, *, duration_s: float | None = None,
                 device: torch.device | str = "cpu") -> list[Detection]:
    """Detections of one video (seconds), best first."""
    fs = predict_scores(model, features, device)
    return detect_segments(fs.scores, geometry, classes, video_id, post, video_scores=fs.video_scores,
                           actionness=fs.actionness, duration_s=duration_s)


def infer_videos(model: Localizer, source: FeatureSource, video_ids: Iterable[str], classes: Sequence[str],
                 post: PostprocessConfig, *, durations: dict[str, float] | None = None,
                 device: torch.device | str = "cpu") -> list[Detection]:
    """Detections of every video in ``video_ids`` (features from ``source``), video after video."""
    out: list[Detection] = []
    for vid in video_ids:
        feats, meta = source.load(vid)
        out.extend(detect_video(model, feats, meta.geometry, classes, vid, post,
                                duration_s=(durations or {}).get(vid), device=device))
    return out


@dataclass
class LoadedRun:
    """A trained run: its model (eval mode), resolved config, classes and checkpoint."""

    model: Localizer
    config: ExperimentConfig
    classes: list[str]
    checkpoint: Path
    device: torch.device
    input_dim: int  # feature width the model was trained on

    def detect(self, source: FeatureSource, video_ids: Iterable[str], *, preset: str | None = None,
               overrides: dict | None = None) -> list[Detection]:
        """Detections (seconds) of ``video_ids`` from ``source`` with the run's post-processing, or ``preset``,
        with ``overrides`` replacing fields. Each video's segments are clipped to its duration when its features
        record one."""
        spec = self.config.postprocess
        if preset:
            spec = dataclasses.replace(spec, preset=preset, params={})
        post = postprocess_config(dataclasses.replace(spec, params={**spec.params, **(overrides or {})}))
        ids = list(video_ids)
        durations = {}
        for vid in ids:
            feats, meta = source.load(vid)
            if feats.shape[1] != self.input_dim:
                raise ValueError(f"video {vid}: features are {feats.shape[1]}-d but the run {self.checkpoint} was "
                                 f"trained on {self.input_dim}-d features (extract them the same way)")
            if meta.source.get("duration_s"):
                durations[vid] = float(meta.source["duration_s"])
        return infer_videos(self.model, source, ids, self.classes, post, durations=durations, device=self.device)


def load_run(run_dir: str | os.PathLike, *, checkpoint: str | os.PathLike | None = None,
             device: str = "auto") -> LoadedRun:
    """Rebuild the model of a run folder from the config and metadata stored in its checkpoint.

    ``checkpoint`` defaults to the run's selected weights (``checkpoint_best.pt`` when the run selected on
    validation, else ``checkpoint_last.pt``)."""
    run_dir = Path(run_dir)
    if checkpoint is None:
        best, last = run_dir / "checkpoint_best.pt", run_dir / "checkpoint_last.pt"
        checkpoint = best if best.exists() else last
    checkpoint = Path(checkpoint)
    dev = resolve_device(device)
    ck = load_checkpoint(checkpoint, dev)
    cfg_dict, meta = ck.get("config"), ck.get("meta") or {}
    if not cfg_dict or "classes" not in meta:
        raise ValueError(f"{checkpoint}: no config or run metadata (written by clicktal's run_experiment?)")
    cfg = config_from_dict(ExperimentConfig, cfg_dict, str(checkpoint))
    streams = {k: tuple(v) for k, v in meta["streams"].items()} if meta.get("streams") else None
    model, _ = build_localizer(cfg.model.name, cfg.model.params, input_dim=int(meta["input_dim"]),
                               num_classes=len(meta["classes"]), streams=streams)
    model.load_state_dict(ck["model"])
    model.to(dev).eval()
    return LoadedRun(model, cfg, list(meta["classes"]), checkpoint, dev, int(meta["input_dim"]))


__all__ = ["postprocess_config", "predict_scores", "detect_video", "infer_videos", "LoadedRun", "load_run"]
