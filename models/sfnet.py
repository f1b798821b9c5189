"""SF-Net (Ma et al., ECCV 2020): single-frame supervision for temporal action localization.

The network (per-stream classification and actionness modules, fused), the losses of Eq. 1-6 (with 3C-Net's centre
loss for the Weak row), Algorithm 1 (:func:`mine_action_frames`) and the frame scores of Sec. 3.4. What each piece
implements, and where the paper and the authors' code differ: docs/sfnet.md, "SF-Net as implemented".
"""
from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import torch
from torch import nn

from clicktal.pipeline.core.geometry import FeatureGeometry

from .base import FrameScores, Localizer, LocalizerOutput, TrainingContext
from .blocks import StreamFusion, TemporalConvStack, TopK, split_streams, stream_ranges, topk_pool
from .sfnet_config import SFNetConfig
from .losses import (actionness_loss, background_loss, centre_loss, class_attention_features, soft_cross_entropy,
                     sgd_step_centres, top_mask, update_centres, video_loss, video_targets)


# ------------------------------------------------------------------------------------------------- mining


def mine_action_frames(scores: np.ndarray, anchors: Sequence[tuple[int, int]], *, radius: int = 5, xi: float = 0.9,
                       blocked: np.ndarray | None = None, argmax_from: int = 0, stop_at_failure: bool = True,
                       past: Literal["previous", "first_step"] = "previous",
                       blocked_by_mined: bool = False) -> list[tuple[int, int]]:
    """Algorithm 1 (action frame mining) on one video.

    ``scores [T, K]``: the per-snippet scores; ``anchors``: ``(t, y)`` pairs, ``y`` a column of ``scores``;
    ``blocked [T]``: snippets the expansion may not enter (other labelled snippets). Returns the mined ``(t, y)``
    pairs, anchors excluded.

    Fixes to the printed algorithm, each evident from the text around it:
    1. ``argmin`` -> ``argmax`` (lines 7-9): the "predicted class" of a snippet is its highest score;
    2. expansion stops at the first snippet that fails (Sec. 3.3: "Otherwise, we stop the expansion process"),
       whereas the printed loop would skip it and continue (``stop_at_failure=False`` restores that);
    3. each direction is a separate loop over ``j = 1..r`` (lines 6 and 13 increment ``j`` twice, by 1 and by the
       direction ``s``, which for ``s = -1`` never terminates);
    4. line 11 adds ``(t + js, y)`` to S (printed as an assignment that replaces S);
    and two edge cases the paper does not reach: a step whose ``t + (j+1)s`` falls outside the video stops (the
    future neighbour cannot be checked), and the expansion stops at a ``blocked`` snippet rather than relabel it.
    ``argmax_from`` 1 takes the argmax over the action columns only (the code). ``past="first_step"`` and
    ``blocked_by_mined`` are the authors' code's rule (see :class:`MiningConfig`).
    """
    scores = np.asarray(scores)
    T = scores.shape[0]
    pred = scores[:, argmax_from:].argmax(axis=1)
    blocked = np.zeros(T, bool) if blocked is None else np.array(blocked, bool)
    mined: list[tuple[int, int]] = []
    for t, y in anchors:
        anchor_score = scores[t, y]
        for s in (-1, 1):
            for j in range(1, radius + 1):
                ref, cur, fut = (t + (j - 1) * s if past == "previous" else t + s), t + j * s, t + (j + 1) * s
                if not (0 <= cur < T and 0 <= fut < T) or blocked[cur]:
                    break
                if pred[ref] == pred[cur] == pred[fut] and scores[cur, y] >= xi * anchor_score:
                    mined.append((cur, y))
                    if blocked_by_mined:
                        blocked[cur] = True
                elif stop_at_failure:
                    break
    return mined


# ------------------------------------------------------------------------------------------------- loss terms


def mined_background_loss(C: torch.Tensor, candidates: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 2: the ``n`` (= eta K) ``candidates [B, T]`` of the whole batch with the highest background activation
    ``C[..., 0]`` are labelled background; returns ``(-mean log p_background over them, their [B, T] mask)``.
    The selection itself is not differentiated."""
    sel = top_mask(C[..., 0].detach(), candidates, n)
    return background_loss(C, sel, column=0), sel


# ------------------------------------------------------------------------------------------------- network


class _Stream(nn.Module):
    """One stream's classification module (3 FC) and actionness module (a two-layer
    :class:`~clicktal.models.blocks.TemporalConvStack`, then FC)."""

    def __init__(self, in_dim: int, hidden: int, out_classes: int, kernel: int, dropout: float):
        super().__init__()
        self.cls = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Dropout(dropout))
        self.classifier = nn.Linear(hidden, out_classes)
        self.temporal = TemporalConvStack(in_dim=in_dim, widths=(hidden, hidden), kernel_size=kernel)
        self.action = nn.Linear(hidden, 1)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the monolithic module (before commit c22e4d5) held the actionness convolutions as conv1 / conv2 of the
        # stream itself; its checkpoints load under today's names
        for old in [k for k in state_dict if k.startswith((prefix + "conv1.", prefix + "conv2."))]:
            state_dict[prefix + "temporal." + old[len(prefix):]] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x [B, T, D_s]`` (zero on padding), ``mask [B, T]`` bool -> (``[B, T, K]``, ``[B, T]``, the
        classifier's input ``[B, T, H]``)."""
        hidden = self.cls(x)
        a = self.action(self.temporal(x, mask)).squeeze(-1)
        return self.classifier(hidden), a, hidden


class SFNet(Localizer):
    """SF-Net. ``forward(features [B, T, D], mask [B, T]) -> LocalizerOutput`` with fused ``class_scores
    [B, T, K]`` and ``actionness [B, T]``; ``aux`` holds ``class_scores/<stream>`` and ``actionness/<stream>``."""

    def __init__(self, *, config: SFNetConfig, input_dim: int, num_classes: int,
                 streams: dict[str, tuple[int, int]] | None = None):
        super().__init__()
        self.config = config
        self.num_classes = num_classes
        self.has_background = config.background
        self.offset = 1 if config.background else 0
        K = num_classes + self.offset
        self.stream_slices = stream_ranges(streams, input_dim, split=config.two_stream)
        self.streams = nn.ModuleDict({
            name: _Stream(b - a, config.hidden_dim or (b - a), K, config.conv_kernel, config.dropout)
            for name, (a, b) in self.stream_slices.items()})
        names = list(self.stream_slices)
        self.class_mul = StreamFusion(streams=names, mode="weighted", size=K, init=1.0)
        act_init = config.actionness_fusion_init
        self.act_mul = StreamFusion(streams=names, mode="weighted", size=1,
                                    init=1.0 / len(names) if act_init is None else act_init)
        self._mined: dict[str, list[list[int]]] = {}  # "once" mining: video -> [[snippet, class column], ...]
        if config.centre_loss:  # 3C-Net's class centres per stream, moved by their own update (no autograd)
            init = torch.randn if config.centre_update == "code_sgd" else torch.zeros
            for name, (a, b) in self.stream_slices.items():
                self.register_buffer(f"centres_{name}", init(num_classes, config.hidden_dim or (b - a)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform weights and zero biases (the authors' code), multipliers back to their start."""
        for mod in self.modules():
            if isinstance(mod, (nn.Linear, nn.Conv1d)):
                nn.init.xavier_uniform_(mod.weight)
                nn.init.zeros_(mod.bias)
        self.class_mul.reset_parameters()
        self.act_mul.reset_parameters()

    def get_extra_state(self):
        return {"mined": self._mined}

    def set_extra_state(self, state) -> None:
        self._mined = {k: [list(map(int, p)) for p in v] for k, v in (state or {}).get("mined", {}).items()}

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> LocalizerOutput:
        features = features * mask.to(features.dtype).unsqueeze(-1)
        cs, acts, hidden = {}, {}, {}
        for name, x in split_streams(features, self.stream_slices).items():
            cs[name], acts[name], hidden[name] = self.streams[name](x, mask)
        aux = {**{f"class_scores/{k}": v for k, v in cs.items()}, **{f"actionness/{k}": v for k, v in acts.items()},
               **{f"hidden/{k}": v for k, v in hidden.items()}}
        fused_a = self.act_mul(acts) if self.config.actionness else None
        return LocalizerOutput(self.class_mul(cs), fused_a, mask.bool(), aux)

    # ------------------------------------------------------------------------------------------- losses

    def _score_sets(self, output: LocalizerOutput) -> list[tuple[str, torch.Tensor, torch.Tensor | None]]:
        sets = [("fused", output.class_scores, output.actionness)]
        if self.config.stream_losses and len(self.stream_slices) > 1:
            for name in self.stream_slices:
                act = output.aux[f"actionness/{name}"] if self.config.actionness else None
                sets.append((name, output.aux[f"class_scores/{name}"], act))
        return sets

    def labelled_snippets(self, output: LocalizerOutput, batch, *, iteration: int
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(labelled ``[B, T]`` bool, targets ``[B, T, Nc]``, mined ``[B, T]`` bool): the batch's labelled
        snippets with the mined action snippets added (Algorithm 1) when mining is active."""
        labelled, targets = batch.action_mask & output.mask, batch.action_targets
        mined = torch.zeros_like(labelled)
        cfg = self.config.mining
        if not (cfg.enabled and iteration >= cfg.start_iteration):
            return labelled, targets, mined
        extra = torch.zeros_like(targets)
        if cfg.mode == "online":
            for b, t, y in self._mine_batch(output, batch, labelled):
                extra[b, t, y - self.offset] = 1.0
                start = int(batch.offsets[b])
                # only training batches add to the kept labels: the engine's held-out validation pass calls
                # losses() in eval mode, and labels mined on held-out videos must not enter the model or its
                # checkpoints
                if cfg.keep and self.training and start >= 0:
                    kept = self._mined.setdefault(batch.video_ids[b], [])
                    if [start + t, y] not in kept:
                        kept.append([start + t, y])
        if cfg.mode == "once" or cfg.keep:
            for b, vid in enumerate(batch.video_ids):
                start, T = int(batch.offsets[b]), int(batch.lengths[b])
                if start < 0:  # not a contiguous crop of the video (resized or segment-sampled): no snippet map
                    continue
                for t, y in self._mined.get(vid, ()):
                    if start <= t < start + T and not bool(labelled[b, t - start]):
                        extra[b, t - start, y - self.offset] = 1.0
        mined = extra.sum(-1) > 0
        if mined.any():
            targets = targets + extra
            targets = targets / targets.sum(-1, keepdim=True).clamp_min(1e-12)
            labelled = labelled | mined
        return labelled, targets, mined

    def _mine_batch(self, output: LocalizerOutput, batch, labelled: torch.Tensor) -> list[tuple[int, int, int]]:
        """Algorithm 1 on every sample of the batch: ``(sample, snippet, class column)`` of each mined snippet."""
        cfg = self.config.mining
        if cfg.scores_from == "eval_pass":
            was_training = self.training
            self.eval()
            with torch.no_grad():
                scores = self(batch.features, batch.mask).class_scores
            self.train(was_training)
        else:
            scores = output.class_scores.detach()
        if cfg.score == "probability":
            scores = scores.softmax(-1)
        scores = scores.cpu().numpy()
        anchors_all = batch.anchor_mask.cpu().numpy()
        tg = batch.action_targets.cpu().numpy()
        blocked_all = labelled.cpu().numpy()
        found = []
        for b in range(scores.shape[0]):
            T = int(batch.lengths[b])
            anchors = [(int(t), int(y) + self.offset) for t in np.flatnonzero(anchors_all[b, :T])
                       for y in np.flatnonzero(tg[b, t] > 0)]
            found += [(b, t, y) for t, y in self._mine(scores[b, :T], anchors, blocked_all[b, :T])]
        return found

    def _mine(self, scores: np.ndarray, anchors: list[tuple[int, int]], blocked: np.ndarray) -> list[tuple[int, int]]:
        cfg = self.config.mining
        return mine_action_frames(scores, anchors, radius=cfg.radius, xi=cfg.xi, blocked=blocked,
                                  argmax_from=self._argmax_from(), stop_at_failure=cfg.stop_at_failure,
                                  past=cfg.past, blocked_by_mined=cfg.blocked_by_mined)

    def _argmax_from(self) -> int:
        return self.offset if self.config.mining.argmax_over == "actions" else 0

    def losses(self, output: LocalizerOutput, batch, *, iteration: int) -> dict[str, torch.Tensor]:
        cfg = self.config
        labelled, targets, mined = self.labelled_snippets(output, batch, iteration=iteration)
        zero = output.class_scores.sum() * 0.0
        terms = {k: zero for k in ("frame_action", "frame_background", "video", "actionness")}
        q = video_targets(labelled, targets, batch.video_labels, from_clicks=cfg.video_target != "video_labels",
                          presence=cfg.video_target == "click_classes")  # Eq. 5's target, shared by every term
        centre = self._centre_loss(output, q, iteration) if cfg.centre_loss else zero
        # a zero target row leaves a sample out of L_video (the code skips crops shorter than 5 snippets)
        q_video = q * (output.mask.sum(1, keepdim=True) >= cfg.video_min_length)
        n_bg = zero.detach()
        for name, C, A in self._score_sets(output):
            t = self._losses_one(C, A, output.mask, labelled, targets, q_video)
            for k in terms:
                terms[k] = terms[k] + t[k]
            if name == "fused":
                n_bg = t["n_background"]
        norm = self.num_classes + (1 if cfg.background_norm == "num_classes_plus_one" else 0)
        frame = terms["frame_action"] + terms["frame_background"] / norm
        total = zero
        if cfg.frame_loss:
            total = total + frame
        if cfg.video_loss:
            total = total + cfg.alpha * terms["video"]
        if cfg.actionness and (cfg.actionness_gate is None or terms["actionness"].item() > cfg.actionness_gate):
            total = total + cfg.beta * terms["actionness"]
        total = total + cfg.gamma * centre
        out = dict(terms, frame=frame, centre=centre, total=total)
        out["n_labelled"] = labelled.sum().float()
        out["n_mined"] = mined.sum().float()
        out["n_clicks"] = (batch.anchor_mask & output.mask).sum().float()  # the mining yield is n_mined / n_clicks
        if batch.truth_targets is not None:  # mined snippets (never clicked ones) whose ground truth holds the class
            out["n_mined_true"] = ((batch.truth_targets > 0) & (targets > 0) & mined[..., None]).any(-1).sum().float()
        out["n_background"] = n_bg
        return out

    def _centre_loss(self, output: LocalizerOutput, q: torch.Tensor, iteration: int) -> torch.Tensor:
        """3C-Net's centre loss, summed over the streams: each stream's classifier inputs aggregated per (video,
        class of its video target) by that class's attention (:func:`~clicktal.models.losses.class_attention_features`)
        are pulled to the class centre; the centres follow in training (Wen et al.'s update, ``centre_rate``).
        Before ``centre_multi_class_from`` only single-class videos take part (the code's ``itr_th = 500``).
        ``q [B, Nc]``: the video targets (Eq. 5)."""
        cfg = self.config
        present = q > 0
        if iteration < cfg.centre_multi_class_from:
            present = present & (present.sum(1, keepdim=True) == 1)
        total = output.class_scores.sum() * 0.0
        code = cfg.centre_update == "code_sgd"
        for name in self.stream_slices:
            feats, cls = class_attention_features(output.aux[f"hidden/{name}"],
                                                  output.aux[f"class_scores/{name}"][..., self.offset:],
                                                  output.mask, present)
            centres = getattr(self, f"centres_{name}")
            total = total + centre_loss(feats, cls, centres, form="code" if code else "wen")
            if self.training and not code:
                update_centres(centres, feats, cls, cfg.centre_rate)
            elif self.training and iteration > 0:  # main.py steps the centres from itr 1 on
                sgd_step_centres(centres, feats, cls, cfg.centre_lr, cfg.gamma / cfg.beta)
        return total

    def _losses_one(self, C: torch.Tensor, A: torch.Tensor | None, mask: torch.Tensor, labelled: torch.Tensor,
                    targets: torch.Tensor, q: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss terms of one score set: ``C [B, T, K]``, ``A [B, T]`` or None; ``q [B, Nc]`` the video
        targets."""
        cfg, off = self.config, self.offset
        zero = C.sum() * 0.0
        out = {"frame_action": zero, "frame_background": zero, "video": zero, "actionness": zero,
               "n_background": zero.detach()}
        K_lab = int(labelled.sum())
        if cfg.frame_loss:
            out["frame_action"] = soft_cross_entropy(C, labelled, targets, offset=off)
        candidates = mask & ~labelled
        n = min(int(cfg.eta * K_lab), int(candidates.sum()))
        bg_sel = torch.zeros_like(mask)
        if cfg.background and cfg.frame_loss:
            out["frame_background"], bg_sel = mined_background_loss(C, candidates, n)
            out["n_background"] = bg_sel.sum().float()
        if cfg.actionness and A is not None and K_lab:
            if cfg.actionness_negatives == "mined_background":
                neg = bg_sel
            else:  # the authors' code: the eta*K unlabelled snippets of highest actionness
                neg = top_mask(A.detach(), candidates, n)
            out["actionness"] = actionness_loss(A, labelled, neg)
        if cfg.video_loss:
            out["video"] = video_loss(C, mask, q, topk=TopK("ceil", cfg.topk_divisor), offset=off)
        return out

    # ------------------------------------------------------------------------------------------- training hook

    def training_hook(self, iteration: int, context: TrainingContext) -> bool:
        """``mining.mode = "once"``: at ``start_iteration`` mine every training video (whole, eval mode) and keep
        the result; optionally re-initialise the network (the authors' code)."""
        cfg = self.config.mining
        if not (cfg.enabled and cfg.mode == "once" and iteration == cfg.start_iteration):
            return False
        was_training = self.training
        self.eval()
        mined: dict[str, list[list[int]]] = {}
        with torch.no_grad():
            for item in context.iter_videos():
                feats = torch.from_numpy(np.asarray(item.features, np.float32))[None].to(context.device)
                mask = torch.ones(feats.shape[:2], dtype=torch.bool, device=context.device)
                C = self(feats, mask).class_scores[0]
                scores = (C.softmax(-1) if cfg.score == "probability" else C).cpu().numpy()
                anchors = [(int(t), int(y) + self.offset) for t in np.flatnonzero(item.anchor_mask)
                           for y in np.flatnonzero(item.action_targets[t] > 0)]
                mined[item.video_id] = [[t, y] for t, y in self._mine(scores, anchors, item.action_mask)]
        self._mined = mined
        self.train(was_training)
        if cfg.reinit_after:
            self.reset_parameters()
            return True
        return False

    # ------------------------------------------------------------------------------------------- inference

    def frame_scores(self, output: LocalizerOutput, index: int = 0) -> FrameScores:
        """``P(c) + w sigma(A)`` (or ``C_c + w A``) over the video's valid snippets; video scores from top-k
        pooling (see :class:`SFNetInferenceConfig`)."""
        icfg, off = self.config.inference, self.offset
        T = int(output.mask[index].sum())
        C = output.class_scores[index, :T].detach().float()
        probs = C.softmax(-1)[:, off:]
        valid = torch.ones(1, T, dtype=torch.bool, device=C.device)
        pooled = topk_pool(C[None], valid, TopK(icfg.video_topk_rule, icfg.video_topk_divisor))[0, off:]
        video = {"softmax": pooled.softmax(-1), "sigmoid": torch.sigmoid(pooled)}.get(icfg.video_score, pooled)
        A = act = None
        if output.actionness is not None:
            A = output.actionness[index, :T].detach().float()
            act = torch.sigmoid(A)
        w = icfg.actionness_weight
        if icfg.score_space == "probability":
            seq = probs + (w * act[:, None] if act is not None else 0.0)
        else:
            seq = C[:, off:] + (w * A[:, None] if A is not None else 0.0)
        return FrameScores(scores=seq.cpu().numpy(), video_scores=video.cpu().numpy(),
                           class_probs=probs.cpu().numpy(), actionness=None if act is None else act.cpu().numpy())


def build_sfnet(*, config: SFNetConfig, input_dim: int, num_classes: int,
                streams: dict[str, tuple[int, int]] | None = None, geometry: FeatureGeometry | None = None) -> SFNet:
    """SF-Net for ``input_dim``-d features (``streams``: column ranges, e.g. ``{"rgb": (0, 1024), "flow": (1024,
    2048)}``) and ``num_classes`` action classes. SF-Net works on snippets whatever their ``geometry``."""
    return SFNet(config=config, input_dim=input_dim, num_classes=num_classes, streams=streams)
