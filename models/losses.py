"""Loss terms shared by the localizers, on padded batches (``[B, T, ...]`` with masks ``[B, T]``).

Class scores ``[B, T, K]`` are logits; when a model has a background class it is column ``offset - 1`` = 0 and the
action columns start at ``offset`` (1), as in SF-Net; targets ``[B, T, Nc]`` and ``q [B, Nc]`` cover the action
columns only.

* :func:`top_mask`: the ``n`` highest values among the allowed snippets of the whole batch (background mining);
* :func:`soft_cross_entropy`: soft-target cross-entropy over labelled snippets (SF-Net Eq. 1);
* :func:`background_loss`: cross-entropy towards the background column on selected snippets (SF-Net Eq. 2 on the
  mined snippets, BackTAL on background clicks);
* :func:`actionness_loss`: binary actionness loss on positive and negative snippets (SF-Net Eq. 4);
* :func:`video_targets` and :func:`video_loss`: the video-level multi-label loss on top-k pooled scores
  (SF-Net Eq. 5; :func:`~clicktal.models.blocks.topk_pool` does the pooling).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from .blocks import TopK, masked_mean, topk_pool


def top_mask(values: torch.Tensor, allowed: torch.Tensor, n: int) -> torch.Tensor:
    """``[B, T]`` bool: the ``n`` largest ``values [B, T]`` among ``allowed [B, T]`` over the whole batch (all the
    allowed ones when there are fewer; none when ``n <= 0``)."""
    sel = torch.zeros(allowed.numel(), dtype=torch.bool, device=allowed.device)
    n = min(int(n), int(allowed.sum()))
    if n > 0:
        sel[values.masked_fill(~allowed, float("-inf")).flatten().topk(n).indices] = True
    return sel.view_as(allowed)


def soft_cross_entropy(scores: torch.Tensor, labelled: torch.Tensor, targets: torch.Tensor, *,
                       offset: int = 0) -> torch.Tensor:
    """``-1/K sum_i sum_c y_ic log p_ic`` over the ``K`` labelled snippets (SF-Net Eq. 1). ``scores [B, T, K']``
    logits (softmax over all ``K'`` columns), ``labelled [B, T]`` bool, ``targets [B, T, Nc]`` (rows sum to 1 where
    labelled) for the columns from ``offset``. 0 without a labelled snippet."""
    ce = -(targets * scores.log_softmax(-1)[..., offset:]).sum(-1)
    return masked_mean(ce, labelled)


def background_loss(scores: torch.Tensor, selected: torch.Tensor, *, column: int = 0) -> torch.Tensor:
    """``-mean log p_background`` over the ``selected [B, T]`` snippets, ``p`` the softmax of ``scores [B, T, K']``
    and the background its column ``column``. 0 when nothing is selected."""
    return masked_mean(-scores.log_softmax(-1)[..., column], selected)


def actionness_loss(actionness: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """``-mean log sigma(A)`` over ``positive`` ``- mean log(1 - sigma(A))`` over ``negative`` (SF-Net Eq. 4);
    ``actionness [B, T]`` logits, masks ``[B, T]``. Either part is 0 when its mask is empty."""
    return masked_mean(-F.logsigmoid(actionness), positive) + masked_mean(-F.logsigmoid(-actionness), negative)


def video_targets(labelled: torch.Tensor, targets: torch.Tensor, video_labels: torch.Tensor, *,
                  from_clicks: bool = True, presence: bool = False) -> torch.Tensor:
    """``q [B, Nc]`` for :func:`video_loss`: the average label of a video's labelled snippets (SF-Net: "we average
    all the frame labels in the video"), or its video labels normalised to sum 1 when it has no labelled snippet
    (or ``from_clicks`` is False); a zero row for a video with neither (:func:`video_loss` skips it).
    ``presence``: the classes present among the labelled snippets, normalised to sum 1, whatever their counts
    (SF-Net's code, video_dataset.py ``load_frame_data``, and so the target of a crop is what the crop holds).
    ``labelled [B, T]``, ``targets [B, T, Nc]``, ``video_labels [B, Nc]`` multi-hot."""
    n = labelled.sum(1, keepdim=True).to(targets.dtype)
    clicks = (targets * labelled[..., None]).sum(1) / n.clamp_min(1)
    if presence:
        clicks = (clicks > 0).to(targets.dtype)
        clicks = clicks / clicks.sum(1, keepdim=True).clamp_min(1)
    weak = video_labels / video_labels.sum(1, keepdim=True).clamp_min(1e-12)
    use_clicks = (n > 0) if from_clicks else torch.zeros_like(n, dtype=torch.bool)
    return torch.where(use_clicks, clicks, weak)


def video_loss(scores: torch.Tensor, mask: torch.Tensor, q: torch.Tensor, *, topk: TopK = TopK(),
               offset: int = 0) -> torch.Tensor:
    """Video-level multi-label loss (SF-Net Eq. 5): ``r_b = topk_pool(scores, mask, topk) [B, K']``, then
    ``-1/N sum_b sum_c q_bc log softmax(r_b)_c`` with the softmax over all ``K'`` columns and the sum over the
    action columns (from ``offset``). ``q [B, Nc]``; videos with an all-zero ``q`` row or no valid snippet are left
    out of the mean (0 when none is left)."""
    r = topk_pool(scores, mask, topk)
    per_video = -(q * r.log_softmax(-1)[:, offset:]).sum(-1)
    keep = (mask.sum(1) > 0) & (q.sum(-1) > 0)
    return per_video[keep].mean() if bool(keep.any()) else scores.sum() * 0.0


def class_attention_features(features: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor, present: torch.Tensor
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """3C-Net's class-wise feature aggregation: for every (video, class present in it), the attention
    ``softmax_t(scores[:, c])`` over the valid snippets, set to 0 below its mean, weights the snippet features.

    ``features [B, T, H]``, ``scores [B, T, C]``, ``mask [B, T]``, ``present [B, C]`` bool -> (``[N, H]`` the
    aggregated features, ``[N]`` their classes), one row per present (video, class) whose attention is not all 0.
    """
    att = scores.masked_fill(~mask[..., None], float("-inf")).softmax(1)  # [B, T, C]
    n = mask.sum(1, keepdim=True).clamp_min(1)[..., None].to(att.dtype)
    att = torch.where(att < att.sum(1, keepdim=True) / n, torch.zeros_like(att), att)
    b, c = present.nonzero(as_tuple=True)
    w = att[b, :, c]  # [N, T]
    total = w.sum(1, keepdim=True)
    keep = total[:, 0] > 0
    agg = torch.einsum("nt,nth->nh", w[keep], features[b[keep]]) / total[keep]
    return agg, c[keep]


def centre_loss(features: torch.Tensor, labels: torch.Tensor, centres: torch.Tensor, *,
                form: Literal["wen", "code"] = "wen") -> torch.Tensor:
    """The centre loss over ``features [N, H]`` with classes ``labels [N]`` and the (not differentiated) class centres
    ``centres [C, H]``; 0 for ``N = 0``. ``wen``: Wen et al.'s ``1 / (2N) sum_i ||f_i - c_{y_i}||^2``, as 3C-Net uses
    it; ``code``: SF-Net's code, ``sum_i ||f_i - c_{y_i}||^2 / N^2`` (center_loss.py ``CenterLoss`` divides the sum by
    N, train.py ``center_loss`` by N again)."""
    if features.shape[0] == 0:
        return features.sum() * 0.0
    dist = (features - centres[labels].detach()).square().sum(1)
    return 0.5 * dist.mean() if form == "wen" else dist.sum() / features.shape[0] ** 2


@torch.no_grad()
def update_centres(centres: torch.Tensor, features: torch.Tensor, labels: torch.Tensor, rate: float) -> None:
    """Wen et al.'s centre update, in place: ``c_j -= rate * sum_{i: y_i = j} (c_j - f_i) / (1 + n_j)``."""
    if features.shape[0] == 0:
        return
    diff = torch.zeros_like(centres).index_add_(0, labels, centres[labels] - features.detach())
    count = torch.zeros(centres.shape[0], device=centres.device, dtype=centres.dtype).index_add_(
        0, labels, torch.ones_like(labels, dtype=centres.dtype))
    centres -= rate * diff / (1 + count[:, None])


@torch.no_grad()
def sgd_step_centres(centres: torch.Tensor, features: torch.Tensor, labels: torch.Tensor, lr: float,
                     weight: float) -> None:
    """One plain SGD step of ``lr``, in place, on the centres of ``weight * centre_loss(form="code")``, whose gradient
    is ``-2 weight / N^2 sum_{i: y_i = j} (f_i - c_j)`` (SF-Net's code: ``optim.SGD(centers, lr=0.1)``)."""
    n = features.shape[0]
    if n == 0:
        return
    grad = torch.zeros_like(centres).index_add_(0, labels, centres[labels] - features.detach())
    centres -= lr * (2 * weight / n ** 2) * grad


__all__ = ["actionness_loss", "background_loss", "centre_loss", "class_attention_features", "soft_cross_entropy",
           "sgd_step_centres", "top_mask", "update_centres", "video_loss", "video_targets"]
