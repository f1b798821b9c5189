"""SF-Net (Ma et al., ECCV 2020), single-frame supervision for temporal action localization: the network and how
its parts meet in training and inference.

:class:`SFNet` holds the network (per-stream classification and actionness modules, fused), the class centres of the
centre loss and an :class:`~clicktal.models.sfnet_mining.ActionMiner` (``model.miner``, Algorithm 1 and the labels
it keeps); :meth:`SFNet.losses` has the miner propose the batch's labels and computes the terms with the functions
of :mod:`.sfnet_losses`; :meth:`SFNet.frame_scores` gives the frame scores of Sec. 3.4. What each piece implements,
and where the paper and the authors' code differ: docs/sfnet.md, "SF-Net as implemented".
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from clicktal.pipeline.core.geometry import FeatureGeometry

from .base import FrameScores, Localizer, LocalizerOutput, TrainingContext
from .blocks import StreamFusion, TemporalConvStack, TopK, split_streams, stream_ranges, topk_pool
from .losses import sgd_step_centres, update_centres
from .sfnet_config import SFNetConfig
from .sfnet_losses import centre_terms, sfnet_losses, video_target
from .sfnet_mining import ActionMiner


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
    [B, T, K]`` and ``actionness [B, T]``; ``aux`` holds ``class_scores/<stream>``, ``actionness/<stream>`` and
    ``hidden/<stream>`` (the classifier's input ``[B, T, H]``), and after :meth:`losses` with online mining
    ``mined`` (``[B, T, Nc]`` bool: what Algorithm 1 found on the batch, which :meth:`after_step` keeps).

    The labels the miner keeps are training state, not weights: :meth:`training_state` (the trainer checkpoints it
    beside the weights), not the state dict. A state dict written before that split holds them as the module's
    ``_extra_state``; it still loads, strictly, into the miner."""

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
        self.miner = ActionMiner(config.mining, offset=self.offset)
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

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # state dicts written before the miner's labels became training state hold them as this module's extra
        # state ({"mined": ...}); they go to the miner, and the key is not left over as unexpected
        old = state_dict.pop(prefix + "_extra_state", None)
        if old is not None:
            self.miner.load_state_dict(old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> LocalizerOutput:
        features = features * mask.to(features.dtype).unsqueeze(-1)
        cs, acts, hidden = {}, {}, {}
        for name, x in split_streams(features, self.stream_slices).items():
            cs[name], acts[name], hidden[name] = self.streams[name](x, mask)
        aux = {**{f"class_scores/{k}": v for k, v in cs.items()}, **{f"actionness/{k}": v for k, v in acts.items()},
               **{f"hidden/{k}": v for k, v in hidden.items()}}
        fused_a = self.act_mul(acts) if self.config.actionness else None
        return LocalizerOutput(self.class_mul(cs), fused_a, mask.bool(), aux)

    # ------------------------------------------------------------------------------------------- training

    def losses(self, output: LocalizerOutput, batch, *, iteration: int) -> dict[str, torch.Tensor]:
        """The miner proposes the batch's labels (clicks and mined snippets; nothing is kept here), then the terms of
        :func:`~clicktal.models.sfnet_losses.sfnet_losses`. In training the centre loss's centres move (Wen et
        al.'s update, or the code's SGD step from iteration 1 on). With online mining, what Algorithm 1 found is
        left in ``output.aux["mined"]`` for :meth:`after_step`."""
        cfg = self.config
        labels = self.miner.propose(self, output, batch, batch.masks["actions"] & output.mask, iteration=iteration)
        if labels.found is not None:
            output.aux["mined"] = labels.found
        q = video_target(cfg, batch, labels)
        centre = output.class_scores.sum() * 0.0
        if cfg.centre_loss:
            centre, aggregates = centre_terms(cfg, output, q, self._centres(), offset=self.offset,
                                              iteration=iteration)
            if self.training:
                self._move_centres(aggregates, iteration)
        return sfnet_losses(cfg, output, batch, labels, q=q, centre=centre, streams=list(self.stream_slices),
                            num_classes=self.num_classes, offset=self.offset)

    def _centres(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, f"centres_{name}") for name in self.stream_slices}

    def _move_centres(self, aggregates: dict[str, tuple[torch.Tensor, torch.Tensor]], iteration: int) -> None:
        """The centres follow their streams' aggregates (``[N, H]``, classes ``[N]``), in place."""
        cfg = self.config
        for name, (feats, cls) in aggregates.items():
            centres = getattr(self, f"centres_{name}")
            if cfg.centre_update != "code_sgd":
                update_centres(centres, feats, cls, cfg.centre_rate)
            elif iteration > 0:  # main.py steps the centres from itr 1 on
                sgd_step_centres(centres, feats, cls, cfg.centre_lr, cfg.gamma / cfg.beta)

    def after_step(self, output: LocalizerOutput, batch, *, iteration: int) -> None:
        """After a training step: the miner keeps what Algorithm 1 found on the batch (with ``mining.keep``)."""
        found = output.aux.get("mined")
        if found is not None:
            self.miner.after_step(batch, found)

    def training_state(self) -> dict:
        """The miner's kept labels: ``{"mined": {video: [[snippet, class column], ...]}}``."""
        return self.miner.state_dict()

    def load_training_state(self, state: dict) -> None:
        self.miner.load_state_dict(state)

    def training_hook(self, iteration: int, context: TrainingContext) -> bool:
        """``mining.mode = "once"``: at ``start_iteration`` the miner mines every training video (whole, eval mode)
        and keeps the result; optionally the network is re-initialised (the authors' code)."""
        cfg = self.config.mining
        if not (cfg.enabled and cfg.mode == "once" and iteration == cfg.start_iteration):
            return False
        was_training = self.training
        self.eval()

        def class_scores(item) -> torch.Tensor:
            feats = torch.from_numpy(np.asarray(item.features, np.float32))[None].to(context.device)
            mask = torch.ones(feats.shape[:2], dtype=torch.bool, device=context.device)
            return self(feats, mask).class_scores[0]

        with torch.no_grad():
            self.miner.mine_videos(context.iter_videos(), class_scores)
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
