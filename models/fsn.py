"""Frame Segmentation Networks (Yang et al., "Exploring Frame Segmentation Networks for Temporal Action
Localization"): FSN, trained on per-frame targets, and WFSN, trained on video labels; a temporal CNN over fixed
per-snippet features whose scores are upsampled to frames. What each piece implements: docs/fsn.md, "What is
implemented"; the paper's open points are fields of :class:`FSNConfig` / :class:`WFSNConfig`.
"""
from __future__ import annotations

import torch
from torch import nn

from clicktal.pipeline.core.geometry import FeatureGeometry

from .base import FrameScores, Localizer, LocalizerOutput
from .blocks import TemporalConvStack, upsample_to_frames
from .fsn_config import FSNConfig, TemporalCNNConfig, WFSNConfig

class TemporalClassifier(nn.Module):
    """One stream's FSN head: ``[B, T, in_dim]`` -> ``[B, T, outputs]`` logits, zero on padding. The temporal CNN
    (:class:`~clicktal.models.blocks.TemporalConvStack`) and a kernel-1 classification layer, or the classification
    layer alone (``temporal_cnn`` false)."""

    def __init__(self, *, config: TemporalCNNConfig, in_dim: int, outputs: int):
        super().__init__()
        self.cnn = (TemporalConvStack(in_dim=in_dim, widths=[config.hidden_dim] * len(config.dilations),
                                      kernel_size=config.kernel_size, dilations=config.dilations,
                                      dropout=config.dropout) if config.temporal_cnn else None)
        self.classifier = nn.Linear(config.hidden_dim if config.temporal_cnn else in_dim, outputs)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.cnn(x, mask) if self.cnn is not None else x
        return self.classifier(h) * mask[..., None].to(x.dtype)


class FrameSegmentationNetwork(Localizer):
    """FSN (``weak`` False, K + 1 outputs with background in column 0) or WFSN (``weak`` True, K outputs).
    ``output_resolution`` is ``"frame"``: :meth:`frame_scores` gives one row per frame of the snippets."""

    output_resolution = "frame"

    def __init__(self, *, config: TemporalCNNConfig, input_dim: int, num_classes: int,
                 streams: dict[str, tuple[int, int]] | None, geometry: FeatureGeometry, weak: bool):
        super().__init__()
        self.config, self.num_classes, self.weak, self.geometry = config, int(num_classes), weak, geometry
        self.has_background = not weak
        self.frames_per_snippet = geometry.frames_per_snippet  # a fractional stride is refused here, at build time
        self.inputs = _stream_columns(config, streams, input_dim)
        outputs = self.num_classes + (0 if weak else 1)
        self.heads = nn.ModuleDict({name: TemporalClassifier(config=config, in_dim=sum(b - a for a, b in cols),
                                                             outputs=outputs)
                                    for name, cols in self.inputs.items()})
        weights = dict(zip(("rgb", "flow"), config.fusion_weights))
        self.fusion_weights = {name: weights.get(name, 1.0) for name in self.inputs}

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> LocalizerOutput:
        """``features [B, T, D]``, ``mask [B, T]`` -> ``class_scores`` ``[B, T, K(+1)]`` per-snippet logits (the
        fused ones under late fusion); ``aux``: ``logits_<head>`` per head, same shape."""
        mask = mask.bool()
        logits = {}
        for name, cols in self.inputs.items():
            x = torch.cat([features[..., a:b] for a, b in cols], dim=-1)
            logits[name] = self.heads[name](x, mask)
        total = sum(self.fusion_weights.values())
        fused = sum(self.fusion_weights[n] * x for n, x in logits.items()) / total
        return LocalizerOutput(class_scores=fused, actionness=None, mask=mask,
                               aux={f"logits_{n}": x for n, x in logits.items()})

    def _pool(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Eq. 2 over the valid snippets: ``[B, T, K]`` -> ``[B, K]``."""
        if self.config.pooling == "max":
            return logits.masked_fill(~mask[..., None], float("-inf")).amax(1)
        m = mask[..., None].to(logits.dtype)
        return (logits * m).sum(1) / m.sum(1).clamp_min(1.0)

    def losses(self, output: LocalizerOutput, batch, *, iteration: int) -> dict[str, torch.Tensor]:
        """FSN: Eq. 4 per head on the ``frames`` targets ``[B, T * f, K + 1]``; WFSN: the pooled softmax
        cross-entropy per head on ``video_labels [B, K]``. Late fusion trains each stream by its own term; ``total``
        is their sum."""
        mask = output.mask
        out = {}
        for key, logits in output.aux.items():
            name = key[len("logits_"):]
            out[name] = self._video_loss(logits, mask, batch) if self.weak else self._frame_loss(logits, mask, batch)
        out["total"] = sum(out.values())
        return out

    def _frame_loss(self, logits: torch.Tensor, mask: torch.Tensor, batch) -> torch.Tensor:
        targets = batch.targets["frames"].to(logits.device).float()
        frame_mask = batch.masks["frames"].to(logits.device)
        per_frame = -(targets * upsample_to_frames(logits, mask, self.geometry).log_softmax(-1)).sum(-1)
        per_frame = per_frame * frame_mask.to(per_frame.dtype)
        if self.config.frame_loss == "sum":
            return per_frame.sum() / logits.shape[0]
        return per_frame.sum() / frame_mask.sum().clamp_min(1)

    def _video_loss(self, logits: torch.Tensor, mask: torch.Tensor, batch) -> torch.Tensor:
        y = batch.targets["video_labels"].to(logits.device).float()
        keep = (y.sum(1) > 0) & mask.any(1)
        if not bool(keep.any()):
            return logits.sum() * 0.0
        target = y[keep] / y[keep].sum(1, keepdim=True)
        return -(target * self._pool(logits, mask)[keep].log_softmax(-1)).sum(1).mean()

    def frame_scores(self, output: LocalizerOutput, index: int = 0) -> FrameScores:
        """One row per frame: the upsampled logits' softmax (Eq. 1) over the K + 1 (FSN) or K (WFSN) outputs;
        ``class_probs`` are the K action columns, and ``scores`` too except for WFSN with ``frame_signal: logits``
        (the upsampled logits). FSN's ``actionness`` is each frame's action probability 1 - P(background).
        ``video_scores``: WFSN's pooled softmax (Eq. 3), FSN's highest frame probability per class."""
        T = int(output.mask[index].sum())
        logits = output.class_scores[index:index + 1, :T].detach().float()
        valid = torch.ones(1, T, dtype=torch.bool, device=logits.device)
        frame_logits = upsample_to_frames(logits, valid, self.geometry)[0]
        probs = frame_logits.softmax(-1)
        actionness = None
        if self.has_background:
            actionness = (1.0 - probs[:, 0]).cpu().numpy()
            probs = probs[:, 1:]
        video = self._pool(logits, valid)[0].softmax(-1) if self.weak else probs.amax(0)
        p = probs.cpu().numpy()
        signal = frame_logits.cpu().numpy() if self.weak and self.config.frame_signal == "logits" else p
        return FrameScores(scores=signal, video_scores=video.cpu().numpy(), class_probs=p, actionness=actionness)


def _stream_columns(config: TemporalCNNConfig, streams: dict[str, tuple[int, int]] | None, input_dim: int
                    ) -> dict[str, list[tuple[int, int]]]:
    """Each head's input column ranges: ``{"rgb": [(0, 1024)]}``, ``{"rgb": ..., "flow": ...}`` (late fusion) or
    ``{"joint": [(0, 1024), (1024, 2048)]}`` (early fusion)."""
    have = {k: (int(a), int(b)) for k, (a, b) in (streams or {}).items()}
    wanted = ["rgb", "flow"] if config.streams == "both" else [config.streams]
    missing = [s for s in wanted if s not in have]
    if missing:
        raise ValueError(f"FSN streams={config.streams!r} needs the feature stream(s) {missing}; the features' layout "
                         f"is {have or 'one unnamed stream'} ({input_dim} columns)")
    if config.streams == "both" and config.fusion == "early":
        return {"joint": [have["rgb"], have["flow"]]}
    return {s: [have[s]] for s in wanted}


def build_fsn(*, config: FSNConfig, input_dim: int, num_classes: int,
              streams: dict[str, tuple[int, int]] | None = None,
              geometry: FeatureGeometry | None = None) -> FrameSegmentationNetwork:
    """FSN on ``input_dim``-d features with the ``rgb`` / ``flow`` column ranges ``streams`` on the snippet grid
    ``geometry`` (a whole number of frames per snippet: 5 for TSN's 0.2 s snippets at 25 fps)."""
    return FrameSegmentationNetwork(config=config, input_dim=input_dim, num_classes=num_classes, streams=streams,
                                    geometry=geometry or FeatureGeometry(), weak=False)


def build_wfsn(*, config: WFSNConfig, input_dim: int, num_classes: int,
               streams: dict[str, tuple[int, int]] | None = None,
               geometry: FeatureGeometry | None = None) -> FrameSegmentationNetwork:
    """WFSN, as :func:`build_fsn` with video-level supervision and K outputs."""
    return FrameSegmentationNetwork(config=config, input_dim=input_dim, num_classes=num_classes, streams=streams,
                                    geometry=geometry or FeatureGeometry(), weak=True)


__all__ = ["FSNConfig", "FrameSegmentationNetwork", "TemporalCNNConfig", "TemporalClassifier", "WFSNConfig",
           "build_fsn", "build_wfsn"]
