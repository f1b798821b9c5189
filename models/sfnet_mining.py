"""SF-Net's action-frame mining: Algorithm 1 on one video (:func:`mine_action_frames`) and the :class:`ActionMiner`
that applies it during training and keeps what it mined.

The miner proposes labels without changing anything (:meth:`ActionMiner.propose`, what the losses read, in
training and validation alike); only :meth:`ActionMiner.after_step`, which the trainer reaches after an optimiser
step and never on a validation pass, and the one-time mining of the training videos (:meth:`ActionMiner.mine_videos`,
from the training hook) change the labels it keeps; the trainer checkpoints them through the model's
``training_state``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Literal, Sequence

import numpy as np
import torch
from torch import nn

from .base import LocalizerOutput
from .sfnet_config import MiningConfig

if TYPE_CHECKING:
    from clicktal.pipeline.data.datasets import Batch, VideoItem


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


@dataclass
class MinedLabels:
    """A batch's labels for the losses: ``labelled [B, T]`` bool (clicked or mined, valid snippets),
    ``targets [B, T, Nc]`` (rows normalised to sum 1 where a snippet holds several classes), ``mined [B, T]`` bool
    (the snippets mining added, from this batch's Algorithm 1 or the kept labels) and ``found [B, T, Nc]`` bool or
    None: what Algorithm 1 found on this batch (online mining), which :meth:`ActionMiner.after_step` keeps."""

    labelled: torch.Tensor
    targets: torch.Tensor
    mined: torch.Tensor
    found: torch.Tensor | None = None


# video id -> [[snippet of the whole video, class column of the scores], ...]
Kept = dict[str, list[list[int]]]


class ActionMiner:
    """Algorithm 1 as SF-Net trains with it (``config``: :class:`MiningConfig`), and the labels it keeps.

    ``offset``: the column of the first action class in the class scores (1 with a background column). ``kept``
    holds labels in native snippets of the whole video, as ``[snippet, class column]`` pairs; they apply to
    contiguous crops of that video only (a resized or segment-sampled sample has no snippet map). Mode ``once``
    fills them from every training video at ``start_iteration``; mode ``online`` with ``keep`` adds what each
    training batch mines."""

    def __init__(self, config: MiningConfig, *, offset: int):
        self.config = config
        self.offset = offset
        self.kept: Kept = {}

    def active(self, iteration: int) -> bool:
        return self.config.enabled and iteration >= self.config.start_iteration

    def mine(self, scores: np.ndarray, anchors: list[tuple[int, int]], blocked: np.ndarray) -> list[tuple[int, int]]:
        """Algorithm 1 under this miner's config on one video's ``scores [T, K]`` (see :func:`mine_action_frames`)."""
        cfg = self.config
        return mine_action_frames(scores, anchors, radius=cfg.radius, xi=cfg.xi, blocked=blocked,
                                  argmax_from=self.offset if cfg.argmax_over == "actions" else 0,
                                  stop_at_failure=cfg.stop_at_failure, past=cfg.past,
                                  blocked_by_mined=cfg.blocked_by_mined)

    def _comparable(self, class_scores: torch.Tensor) -> np.ndarray:
        """Class scores ``[..., K]`` (logits) as Algorithm 1 compares them (``config.score``), in numpy."""
        scores = class_scores.softmax(-1) if self.config.score == "probability" else class_scores
        return scores.cpu().numpy()

    def propose(self, model: nn.Module, output: LocalizerOutput, batch: "Batch", labelled: torch.Tensor, *,
                iteration: int) -> MinedLabels:
        """The labels of ``batch`` for the losses: its ``labelled [B, T]`` snippets (clicked, valid) with the action
        snippets mining adds when it is active. Changes no state: nothing is kept here.

        Online mining runs Algorithm 1 on each sample, on ``output`` (``scores_from: training_pass``) or on an
        eval-mode pass of ``model`` over the batch (``eval_pass``). Kept labels (mode ``once``, or ``keep``) apply
        to the contiguous crops of their video; in training (``model.training``), with ``keep``, what this batch
        mined counts as kept already, so another crop of the same video in the batch receives it too (as when the
        labels were kept while the batch was read); :meth:`after_step` then keeps it."""
        cfg = self.config
        targets = batch.targets["actions"]
        if not self.active(iteration):
            return MinedLabels(labelled, targets, torch.zeros_like(labelled))
        extra = torch.zeros_like(targets)
        found = None
        fresh: Kept = {}  # this batch's labels that count as kept within this call
        if cfg.mode == "online":
            found = torch.zeros_like(targets, dtype=torch.bool)
            for b, t, y in self._mine_batch(model, output, batch, labelled):
                extra[b, t, y - self.offset] = 1.0
                found[b, t, y - self.offset] = True
                start = int(batch.offsets[b])
                if cfg.keep and model.training and start >= 0:
                    fresh.setdefault(batch.video_ids[b], []).append([start + t, y])
        if cfg.mode == "once" or cfg.keep:
            for b, vid in enumerate(batch.video_ids):
                start, T = int(batch.offsets[b]), int(batch.lengths[b])
                if start < 0:  # not a contiguous crop of the video (resized or segment-sampled): no snippet map
                    continue
                for t, y in [*self.kept.get(vid, ()), *fresh.get(vid, ())]:
                    if start <= t < start + T and not bool(labelled[b, t - start]):
                        extra[b, t - start, y - self.offset] = 1.0
        mined = extra.sum(-1) > 0
        if mined.any():
            targets = targets + extra
            targets = targets / targets.sum(-1, keepdim=True).clamp_min(1e-12)
            labelled = labelled | mined
        return MinedLabels(labelled, targets, mined, found)

    def _mine_batch(self, model: nn.Module, output: LocalizerOutput, batch: "Batch", labelled: torch.Tensor
                    ) -> list[tuple[int, int, int]]:
        """Algorithm 1 on every sample of the batch: ``(sample, snippet, class column)`` of each mined snippet."""
        if self.config.scores_from == "eval_pass":
            was_training = model.training
            model.eval()
            with torch.no_grad():
                scores = model(batch.features, batch.mask).class_scores
            model.train(was_training)
        else:
            scores = output.class_scores.detach()
        scores = self._comparable(scores)
        anchors_all = batch.targets["anchors"].cpu().numpy()
        tg = batch.targets["actions"].cpu().numpy()
        blocked_all = labelled.cpu().numpy()
        found = []
        for b in range(scores.shape[0]):
            T = int(batch.lengths[b])
            anchors = [(int(t), int(y) + self.offset) for t in np.flatnonzero(anchors_all[b, :T])
                       for y in np.flatnonzero(tg[b, t] > 0)]
            found += [(b, t, y) for t, y in self.mine(scores[b, :T], anchors, blocked_all[b, :T])]
        return found

    def after_step(self, batch: "Batch", found: torch.Tensor) -> None:
        """With ``keep``: keep the labels Algorithm 1 found on a training ``batch`` (``found [B, T, Nc]`` bool, from
        :meth:`propose`), those of contiguous crops, in their video's snippets."""
        if not self.config.keep:
            return
        for b, t, c in found.nonzero().tolist():
            start = int(batch.offsets[b])
            if start < 0:
                continue
            kept = self.kept.setdefault(batch.video_ids[b], [])
            if [start + t, c + self.offset] not in kept:
                kept.append([start + t, c + self.offset])

    def mine_videos(self, videos: Iterable["VideoItem"], class_scores: Callable[["VideoItem"], torch.Tensor]) -> None:
        """Mode ``once``: Algorithm 1 on every whole video of ``videos``, on ``class_scores(video) [T, K]`` (the
        model's logits); the result replaces the kept labels. The video's labelled snippets block the expansion."""
        kept: Kept = {}
        for item in videos:
            actions = item.targets["actions"]
            anchors = [(int(t), int(y) + self.offset) for t in np.flatnonzero(item.targets["anchors"])
                       for y in np.flatnonzero(actions[t] > 0)]
            scores = self._comparable(class_scores(item))
            kept[item.video_id] = [[t, y] for t, y in self.mine(scores, anchors, actions.sum(-1) > 0)]
        self.kept = kept

    def state_dict(self) -> dict:
        """The kept labels, as plain values (what a checkpoint holds)."""
        return {"mined": self.kept}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (an empty dict keeps nothing)."""
        self.kept = {str(k): [list(map(int, p)) for p in v] for k, v in (state or {}).get("mined", {}).items()}
