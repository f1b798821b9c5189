"""SF-Net's loss terms as functions of (config, network output, batch, the batch's labels with the mined ones):
Eq. 1-6 and the counts the training log records. They change nothing; the centre loss's class centres move in
:class:`~clicktal.models.sfnet.SFNet`, which owns them, and the mining lives in :mod:`.sfnet_mining`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

import torch

from .base import LocalizerOutput
from .blocks import TopK
from .losses import (actionness_loss, background_loss, centre_loss, class_attention_features, soft_cross_entropy,
                     top_mask, video_loss, video_targets)
from .sfnet_config import SFNetConfig
from .sfnet_mining import MinedLabels

if TYPE_CHECKING:
    from clicktal.pipeline.data.datasets import Batch


def mined_background_loss(C: torch.Tensor, candidates: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 2: the ``n`` (= eta K) ``candidates [B, T]`` of the whole batch with the highest background activation
    ``C[..., 0]`` are labelled background; returns ``(-mean log p_background over them, their [B, T] mask)``.
    The selection itself is not differentiated."""
    sel = top_mask(C[..., 0].detach(), candidates, n)
    return background_loss(C, sel, column=0), sel


def video_target(config: SFNetConfig, batch: "Batch", labels: MinedLabels) -> torch.Tensor:
    """Eq. 5's target ``q [B, Nc]``, which every term that needs a video's classes shares (``video_target``)."""
    return video_targets(labels.labelled, labels.targets, batch.targets["video_labels"],
                         from_clicks=config.video_target != "video_labels",
                         presence=config.video_target == "click_classes")


def centre_terms(config: SFNetConfig, output: LocalizerOutput, q: torch.Tensor, centres: Mapping[str, torch.Tensor],
                 *, offset: int, iteration: int) -> tuple[torch.Tensor, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """3C-Net's centre loss, summed over the streams (``centres``: stream -> ``[Nc, H]``): each stream's classifier
    inputs aggregated per (video, class of its video target ``q [B, Nc]``) by that class's attention
    (:func:`~clicktal.models.losses.class_attention_features`) are pulled to the class centre. Before
    ``centre_multi_class_from`` only single-class videos take part (the code's ``itr_th = 500``). Returns the loss
    and, per stream, the aggregates ``[N, H]`` and their classes ``[N]`` (what moves the centres)."""
    present = q > 0
    if iteration < config.centre_multi_class_from:
        present = present & (present.sum(1, keepdim=True) == 1)
    form = "code" if config.centre_update == "code_sgd" else "wen"
    total = output.class_scores.sum() * 0.0
    aggregates = {}
    for name, stream_centres in centres.items():
        feats, cls = class_attention_features(output.aux[f"hidden/{name}"],
                                              output.aux[f"class_scores/{name}"][..., offset:], output.mask, present)
        total = total + centre_loss(feats, cls, stream_centres, form=form)
        aggregates[name] = (feats, cls)
    return total, aggregates


def score_sets(config: SFNetConfig, output: LocalizerOutput, streams: list[str]
               ) -> list[tuple[str, torch.Tensor, torch.Tensor | None]]:
    """The ``(name, C [B, T, K], A [B, T] or None)`` sets the losses apply to: the fused scores, and each stream's
    when ``stream_losses`` (3C-Net and the code sum the losses over them)."""
    sets = [("fused", output.class_scores, output.actionness)]
    if config.stream_losses and len(streams) > 1:
        for name in streams:
            act = output.aux[f"actionness/{name}"] if config.actionness else None
            sets.append((name, output.aux[f"class_scores/{name}"], act))
    return sets


def score_set_losses(config: SFNetConfig, C: torch.Tensor, A: torch.Tensor | None, mask: torch.Tensor,
                     labelled: torch.Tensor, targets: torch.Tensor, q: torch.Tensor, *, offset: int
                     ) -> dict[str, torch.Tensor]:
    """The loss terms of one score set: ``C [B, T, K]``, ``A [B, T]`` or None, ``mask`` / ``labelled [B, T]``,
    ``targets [B, T, Nc]``, ``q [B, Nc]`` the video targets (a zero row leaves a sample out of Eq. 5)."""
    zero = C.sum() * 0.0
    out = {"frame_action": zero, "frame_background": zero, "video": zero, "actionness": zero,
           "n_background": zero.detach()}
    K_lab = int(labelled.sum())
    if config.frame_loss:
        out["frame_action"] = soft_cross_entropy(C, labelled, targets, offset=offset)
    candidates = mask & ~labelled
    n = min(int(config.eta * K_lab), int(candidates.sum()))
    bg_sel = torch.zeros_like(mask)
    if config.background and config.frame_loss:
        out["frame_background"], bg_sel = mined_background_loss(C, candidates, n)
        out["n_background"] = bg_sel.sum().float()
    if config.actionness and A is not None and K_lab:
        if config.actionness_negatives == "mined_background":
            neg = bg_sel
        else:  # the authors' code: the eta*K unlabelled snippets of highest actionness
            neg = top_mask(A.detach(), candidates, n)
        out["actionness"] = actionness_loss(A, labelled, neg)
    if config.video_loss:
        out["video"] = video_loss(C, mask, q, topk=TopK("ceil", config.topk_divisor), offset=offset)
    return out


def sfnet_losses(config: SFNetConfig, output: LocalizerOutput, batch: "Batch", labels: MinedLabels, *,
                 q: torch.Tensor, centre: torch.Tensor, streams: list[str], num_classes: int, offset: int
                 ) -> dict[str, torch.Tensor]:
    """Eq. 6 and its terms on ``output`` for ``batch`` with its ``labels``; ``q [B, Nc]`` from :func:`video_target`
    and the ``centre`` loss (zero without it) from :func:`centre_terms`. Besides the terms, the counts the log
    records: ``n_labelled``, ``n_mined``, ``n_clicks`` (the mining yield is ``n_mined / n_clicks``), ``n_mined_true``
    (with ground truth in the batch) and ``n_background``."""
    labelled, targets, mined = labels.labelled, labels.targets, labels.mined
    zero = output.class_scores.sum() * 0.0
    terms = {k: zero for k in ("frame_action", "frame_background", "video", "actionness")}
    # a zero target row leaves a sample out of L_video (the code skips crops shorter than 5 snippets)
    q_video = q * (output.mask.sum(1, keepdim=True) >= config.video_min_length)
    n_bg = zero.detach()
    for name, C, A in score_sets(config, output, streams):
        t = score_set_losses(config, C, A, output.mask, labelled, targets, q_video, offset=offset)
        for k in terms:
            terms[k] = terms[k] + t[k]
        if name == "fused":
            n_bg = t["n_background"]
    norm = num_classes + (1 if config.background_norm == "num_classes_plus_one" else 0)
    frame = terms["frame_action"] + terms["frame_background"] / norm
    total = zero
    if config.frame_loss:
        total = total + frame
    if config.video_loss:
        total = total + config.alpha * terms["video"]
    if config.actionness and (config.actionness_gate is None or terms["actionness"].item() > config.actionness_gate):
        total = total + config.beta * terms["actionness"]
    total = total + config.gamma * centre
    out = dict(terms, frame=frame, centre=centre, total=total)
    out["n_labelled"] = labelled.sum().float()
    out["n_mined"] = mined.sum().float()
    out["n_clicks"] = (batch.targets["anchors"] & output.mask).sum().float()
    truth = batch.targets.get("truth")
    if truth is not None:  # mined snippets (never clicked ones) whose ground truth holds the class
        out["n_mined_true"] = ((truth > 0) & (targets > 0) & mined[..., None]).any(-1).sum().float()
    out["n_background"] = n_bg
    return out
