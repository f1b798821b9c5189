"""Segment-level supervision (Ding et al., "Weakly Supervised Temporal Action Localization with Segment-Level
Labels"): partial segment, sphere and propagation losses on a W-TALC-style network. No public code exists, so this
is the reference implementation; what each piece implements: docs/segment.md, "What is implemented"; the paper's
open points are fields of :class:`SegmentConfig`.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from clicktal.pipeline.core.geometry import FeatureGeometry

from .base import FrameScores, Localizer, LocalizerOutput
from .blocks import masked_softmax, topk_pool
from .segment_config import SegmentConfig


# ------------------------------------------------------------------------------------------------ losses


def topk_counts(mask: torch.Tensor, labelled: torch.Tensor, *, rule: Literal["ratio", "count", "fixed"],
                fallback_r: float = 8.0) -> torch.Tensor:
    """``[B]`` k per video from ``mask [B, T]`` and ``labelled [B, T]`` (snippets with a segment label):
    ``ratio`` ``floor(T / (2Q))``, ``count`` ``2Q``; ``floor(T / fallback_r)`` where Q = 0, and everywhere with
    ``fixed``; at least 1."""
    T = mask.sum(1).double()
    Q = (labelled & mask).sum(1).double()
    k = torch.floor(T / (2 * Q).clamp_min(1)) if rule == "ratio" else 2 * Q
    k = torch.where((Q > 0) & (rule != "fixed"), k, torch.floor(T / fallback_r))
    return k.long().clamp_min(1)


def classification_loss(scores: torch.Tensor, mask: torch.Tensor, video_labels: torch.Tensor,
                        counts: torch.Tensor) -> torch.Tensor:
    """Eq. 2-4: ``scores [B, T, N]``, per video the top-``counts[b]`` mean per class, softmax over the classes,
    ``1/N sum_n -y_n log p_n`` (``y`` as given, multi-hot); mean over the videos with a valid snippet."""
    logp = topk_pool(scores, mask, counts=counts).log_softmax(-1)
    per_video = -(video_labels.float() * logp).sum(-1) / scores.shape[-1]
    keep = mask.sum(1) > 0
    return per_video[keep].mean() if bool(keep.any()) else scores.sum() * 0.0


def partial_segment_loss(loc: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Eq. 5-6: ``a = softmax over time of loc [B, T, N]`` (valid snippets only), per video
    ``-sum_{(t,n): u(t,n) > 0} u(t,n) log a(t,n)`` with ``targets`` = u ``[B, T, N]``; snippets without a label
    are not seen. Mean over the videos with a label (0 when none)."""
    a = masked_softmax(loc, mask)
    u = targets.float() * mask[..., None].float()
    per_video = -(u * a.clamp_min(1e-30).log()).flatten(1).sum(1)
    keep = u.flatten(1).sum(1) > 0
    return per_video[keep].mean() if bool(keep.any()) else loc.sum() * 0.0


def sphere_psi(theta: torch.Tensor, m: int, form: Literal["sphereface", "printed"] = "sphereface") -> torch.Tensor:
    """SphereFace's ``psi(theta) = (-1)^k cos(m theta) - 2k`` for ``theta in [k pi / m, (k + 1) pi / m]``, or with
    ``- 2`` in place of ``- 2k`` (``printed``, Eq. 9 as the paper prints it)."""
    k = torch.clamp(torch.floor(m * theta / math.pi), 0, m - 1).detach()
    sign = 1.0 - 2.0 * torch.remainder(k, 2)
    offset = 2.0 * k if form == "sphereface" else torch.full_like(k, 2.0)
    return sign * torch.cos(m * theta) - offset


def sphere_loss(features: torch.Tensor, a: torch.Tensor, mask: torch.Tensor, video_labels: torch.Tensor,
                weight: torch.Tensor, *, m: int = 4,
                psi: Literal["sphereface", "printed"] = "sphereface") -> torch.Tensor:
    """Eq. 7-10. ``features`` f ``[B, T, D]``, ``a [B, T, N]`` the normalised localisation CAS (Eq. 5),
    ``weight`` W ``[N, D]``. Per video and labelled class n: ``A(:, n)`` keeps ``a(t, n) >= median_t a(:, n)``
    (valid snippets), ``F^n = f^T A(:, n)``, ``cos theta_j = W_j . F^n / (|W_j| |F^n|)``, logits
    ``|F^n| cos theta_j`` with ``|F^n| psi(theta_n)`` for the target, cross-entropy with target n. Summed over the
    video's classes (Eq. 10), mean over the videos with a class (0 when none)."""
    w = F.normalize(weight, dim=1)
    per_video = []
    for b in range(features.shape[0]):
        valid = mask[b].bool()
        classes = video_labels[b].nonzero().flatten().tolist()
        if not classes or not bool(valid.any()):
            continue
        ab, fb = a[b, valid], features[b, valid]  # [T_b, N], [T_b, D]
        total = features.new_zeros(())
        for n in classes:
            att = torch.where(ab[:, n] >= ab[:, n].median(), ab[:, n], torch.zeros_like(ab[:, n]))  # Eq. 7
            Fn = fb.T @ att  # Eq. 8: [D]
            norm = Fn.norm().clamp_min(1e-12)
            cos = (w @ Fn) / norm  # [N]
            theta = torch.acos(cos[n].clamp(-1 + 1e-7, 1 - 1e-7))
            logits = norm * cos
            logits = torch.cat([logits[:n], (norm * sphere_psi(theta, m, psi))[None], logits[n + 1:]])
            total = total + F.cross_entropy(logits[None], torch.tensor([n], device=logits.device))
        per_video.append(total)
    return torch.stack(per_video).mean() if per_video else features.sum() * 0.0


def propagation_loss(loc: torch.Tensor, features: torch.Tensor, mask: torch.Tensor, video_labels: torch.Tensor,
                     *, similarity: Literal["cosine", "dot"] = "cosine", detach_similarity: bool = True,
                     classes: Literal["all", "labelled"] = "all",
                     reduction: Literal["mean", "sum"] = "mean") -> torch.Tensor:
    """Eq. 13 per video: ``sum_n sum_{i,j} S_ij (C_loc(i, n) - C_loc(j, n))^2`` over its valid snippets, with
    ``S`` from ``features [B, T, D]`` (``cosine`` or ``dot``), over ``all`` classes or the ``labelled`` ones;
    ``mean`` divides by the ``T_b^2`` pairs. Computed as ``2 sum_i d_i c_i^2 - 2 c^T S c`` (``d_i = sum_j S_ij``,
    S symmetric). Mean over the videos (0 when none)."""
    per_video = []
    for b in range(loc.shape[0]):
        valid = mask[b].bool()
        T = int(valid.sum())
        if T == 0:
            continue
        f = features[b, valid]
        if similarity == "cosine":
            f = F.normalize(f, dim=1)
        S = f @ f.T
        if detach_similarity:
            S = S.detach()
        c = loc[b, valid]  # [T, N]
        if classes == "labelled":
            c = c[:, video_labels[b] > 0]
        value = 2 * (S.sum(1)[:, None] * c.pow(2)).sum() - 2 * (c * (S @ c)).sum()
        per_video.append(value / (T * T) if reduction == "mean" else value)
    return torch.stack(per_video).mean() if per_video else loc.sum() * 0.0


# ------------------------------------------------------------------------------------------------ model


class SegmentLocalizer(Localizer):
    has_background = False

    def __init__(self, *, config: SegmentConfig, input_dim: int, num_classes: int):
        super().__init__()
        self.config, self.num_classes = config, int(num_classes)
        hidden = config.hidden_dim or int(input_dim)
        self.embed = nn.Linear(input_dim, hidden)
        self.drop = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.cls_head = nn.Linear(hidden, self.num_classes)
        self.loc_head = nn.Linear(hidden, self.num_classes)
        self.sphere_weight = nn.Parameter(torch.empty(self.num_classes, hidden))
        nn.init.xavier_uniform_(self.sphere_weight)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> LocalizerOutput:
        """``features [B, T, D]``, ``mask [B, T]`` -> ``class_scores`` = C_a ``[B, T, N]``; ``aux``: ``cas_cls``,
        ``cas_loc`` ``[B, T, N]`` and ``features`` f ``[B, T, H]``, all zero on padding."""
        mask = mask.bool()
        m = mask[..., None].to(features.dtype)
        f = self.drop(F.relu(self.embed(features * m))) * m
        cas_cls, cas_loc = self.cls_head(f) * m, self.loc_head(f) * m
        return LocalizerOutput(class_scores=(cas_cls + cas_loc) / 2, actionness=None, mask=mask,
                               aux={"cas_cls": cas_cls, "cas_loc": cas_loc, "features": f})

    def _counts(self, mask: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
        return topk_counts(mask, labelled, rule=self.config.topk, fallback_r=self.config.fallback_r)

    def losses(self, output: LocalizerOutput, batch, *, iteration: int) -> dict[str, torch.Tensor]:
        cfg, mask = self.config, output.mask
        labels = batch.targets["video_labels"].to(mask.device).float()
        cas_loc, f = output.aux["cas_loc"], output.aux["features"]
        zero = cas_loc.sum() * 0.0
        # absent only where nothing reads it (SEGMENT's targets: topk fixed and no segment loss)
        segments = batch.targets.get("segments")
        labelled = torch.zeros_like(mask) if segments is None else segments.to(mask.device).sum(-1) > 0
        counts = self._counts(mask, labelled)
        out = {"cls": classification_loss(output.aux["cas_cls"], mask, labels, counts),
               "segment": zero, "sphere": zero, "prop": zero}
        if cfg.segment_loss:
            out["segment"] = partial_segment_loss(cas_loc, mask, segments.to(mask.device).float())
        if cfg.sphere_loss:
            out["sphere"] = sphere_loss(f, masked_softmax(cas_loc, mask), mask, labels, self.sphere_weight,
                                        m=cfg.sphere_margin, psi=cfg.sphere_psi)
        if cfg.propagation_loss:
            out["prop"] = propagation_loss(cas_loc, f, mask, labels, similarity=cfg.propagation_similarity,
                                           detach_similarity=cfg.detach_similarity,
                                           classes=cfg.propagation_classes, reduction=cfg.propagation_reduction)
        out["total"] = out["cls"] + cfg.alpha * out["segment"] + cfg.beta * out["sphere"] + cfg.gamma * out["prop"]
        return out

    def frame_scores(self, output: LocalizerOutput, index: int = 0) -> FrameScores:
        """Sec. 4.7: ``scores`` = C_a of the valid snippets, ``video_scores`` = s_a (top-k mean of C_a with the
        video's k; at inference no segment is labelled, so ``floor(T / fallback_r)``), ``class_probs`` = p_a
        broadcast over time. Classes with ``s_a < 0`` are dropped by the preset's ``class_threshold`` 0."""
        T = int(output.mask[index].sum())
        Ca = output.class_scores[index, :T].detach().float()
        valid = torch.ones(1, T, dtype=torch.bool, device=Ca.device)
        s_a = topk_pool(Ca[None], valid, counts=self._counts(valid, torch.zeros_like(valid)))[0]
        p_a = s_a.softmax(-1)
        return FrameScores(scores=Ca.cpu().numpy(), video_scores=s_a.cpu().numpy(),
                           class_probs=p_a.expand(T, -1).cpu().numpy())


def build_segment(*, config: SegmentConfig, input_dim: int, num_classes: int,
                  streams: dict[str, tuple[int, int]] | None = None,
                  geometry: FeatureGeometry | None = None) -> SegmentLocalizer:
    """The segment-level model over all ``input_dim`` columns (the paper feeds the fused RGB + flow feature)."""
    return SegmentLocalizer(config=config, input_dim=input_dim, num_classes=num_classes)


__all__ = ["SegmentConfig", "SegmentLocalizer", "build_segment", "classification_loss", "partial_segment_loss",
           "propagation_loss", "sphere_loss", "sphere_psi", "topk_counts"]
