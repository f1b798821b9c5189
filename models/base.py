"""The localizer interface every model family implements, and the typed values that cross it.

A localizer takes features ``[B, T, D]`` and a mask ``[B, T]`` and returns a :class:`LocalizerOutput`; it computes
its own loss dict from that output and a :class:`~clicktal.pipeline.data.datasets.Batch` of supervision; and it says, in
:meth:`Localizer.frame_scores`, how its output for one video becomes the :class:`FrameScores` that post-processing
groups into segments. Time here is in snippets; the dataset and post-processing convert to and from seconds with the
features' :class:`~clicktal.pipeline.core.geometry.FeatureGeometry`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from clicktal.pipeline.data.datasets import TrainingContext

if TYPE_CHECKING:
    from clicktal.pipeline.data.datasets import Batch


@dataclass
class LocalizerOutput:
    """What a forward pass returns.

    ``class_scores``: ``[B, T, K]`` class activations (logits) per snippet; ``K`` is the number of action classes,
    plus one when the model has a background class (then column 0 is background, as in SF-Net).
    ``actionness``: ``[B, T]`` actionness logits, or None for a model without one.
    ``mask``: ``[B, T]`` bool, True on real (not padded) snippets.
    ``aux``: further named outputs (for SF-Net the per-stream class scores and actionness), same shapes.
    """

    class_scores: torch.Tensor
    actionness: torch.Tensor | None
    mask: torch.Tensor
    aux: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class FrameScores:
    """One video's per-snippet scores, ready for post-processing (numpy, snippet time).

    ``scores``: ``[T, C]`` the per-class sequence that post-processing thresholds and groups (C action classes, no
    background column); ``video_scores``: ``[C]`` video-level class scores; ``class_probs``: ``[T, C]`` per-class
    probabilities alone and ``actionness``: ``[T]`` (probabilities) or None, for segment scorers that want the parts.
    """

    scores: np.ndarray
    video_scores: np.ndarray
    class_probs: np.ndarray
    actionness: np.ndarray | None = None


class Localizer(nn.Module):
    """Base class. Subclasses set ``num_classes`` (action classes) and ``has_background``, and
    ``output_resolution``: ``"snippet"`` when :meth:`frame_scores` gives one row per input snippet, ``"frame"`` when
    it gives one per frame (``frames_per_snippet`` rows per snippet of the features' geometry); inference maps
    either back onto the video's native grid."""

    num_classes: int
    has_background: bool = False
    output_resolution: Literal["snippet", "frame"] = "snippet"

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> LocalizerOutput:  # pragma: no cover
        """``features [B, T, D]`` float, ``mask [B, T]`` bool -> :class:`LocalizerOutput`."""
        raise NotImplementedError

    def losses(self, output: LocalizerOutput, batch: "Batch", *, iteration: int) -> dict[str, torch.Tensor]:
        """Named scalar loss terms; ``"total"`` is what the optimiser minimises. Every term is logged."""
        raise NotImplementedError  # pragma: no cover

    def frame_scores(self, output: LocalizerOutput, index: int = 0) -> FrameScores:
        """Video ``index`` of ``output`` (its valid snippets only) as :class:`FrameScores`."""
        raise NotImplementedError  # pragma: no cover

    def training_hook(self, iteration: int, context: TrainingContext) -> bool:
        """Called by the engine before each training iteration. Returns True when the model re-initialised its
        weights (the engine then rebuilds the optimiser). The default does nothing."""
        return False

    def after_step(self, output: LocalizerOutput, batch: "Batch", *, iteration: int) -> None:
        """Called by the trainer after each optimiser step, training only (never on a validation pass), with the
        step's ``output`` and ``batch`` (after :meth:`losses` saw them) and the iteration that step trained: where a
        method updates state it keeps across iterations, so that no held-out pass can change it. The default does
        nothing."""

    def training_state(self) -> dict:
        """State the method keeps across iterations besides its weights and buffers, as plain values (dicts, lists,
        numbers, strings): the trainer checkpoints it beside the weights and restores it on resume
        (:meth:`load_training_state`); inference does not need it. The default keeps none."""
        return {}

    def load_training_state(self, state: dict) -> None:
        """Restore what :meth:`training_state` returned. The default has nothing to restore."""

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


def describe(model: nn.Module) -> dict[str, Any]:
    """Parameter count and module tree, for run logs."""
    return {"parameters": int(sum(p.numel() for p in model.parameters())), "modules": str(model)}
