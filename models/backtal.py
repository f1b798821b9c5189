"""BackTAL (Yang et al., "Background-Click Supervision for Temporal Action Localization", TPAMI 2021).

The BaS-Net baseline (filtering module, two passes, Eq. 1-2), BackTAL's L_frame, L_sep and L_aff (Eq. 3-13) and the
affinity-weighted convolutions (Eq. 14-16, :class:`AffinityConv1d`). Every choice the paper leaves open is a field
of :class:`BackTALConfig`; what each piece implements: docs/backtal.md, "What is implemented".
"""
from __future__ import annotations

from functools import partial
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from clicktal.pipeline.core.geometry import FeatureGeometry

from .backtal_config import BackTALConfig, BackTALInferenceConfig
from .base import FrameScores, Localizer, LocalizerOutput
from .blocks import TemporalConvStack, TopK, topk_pool

# ------------------------------------------------------------------------------------------- affinity conv


def local_affinity(embedding: torch.Tensor, mask: torch.Tensor, h: int = 3) -> torch.Tensor:
    """Eq. 9 on local neighbourhoods: ``embedding [B, T, E]`` (L2-normalised), ``mask [B, T]`` -> ``a [B, h, T]``
    with ``a[:, i, t] = cos(e_t, e_{t - h//2 + i})``; 0 where the neighbour is outside the video or padding (its
    features are zero there anyway)."""
    B, T, _ = embedding.shape
    p = h // 2
    e = embedding * mask[..., None].to(embedding.dtype)
    padded = F.pad(e, (0, 0, p, p))  # [B, T + 2p, E]
    return torch.stack([(e * padded[:, i:i + T]).sum(-1) for i in range(h)], dim=1)


class AffinityConv1d(nn.Conv1d):
    """A temporal convolution whose input neighbours are re-weighted per output position (Eq. 15-16):
    ``f_t = sum_i H[i] . (X[t - h//2 + i] * a[i, t])``. ``forward(x, affinity=None)``: ``x [B, C_in, T]``,
    ``affinity [B, h, T]`` or None (then a plain convolution, Eq. 14). Stride 1, dilation 1, length-preserving
    padding ``h // 2``; a :data:`~clicktal.models.blocks.ConvFactory` (same constructor as :class:`torch.nn.Conv1d`).

    Computed as ``sum_i a[i, t] * (H[i] X)[t - h//2 + i]``: one 1x1 convolution per tap, so the ``[B, C_in, T, h]``
    modulated copies of Eq. 15 are never materialised (the same sum, reordered). ``layout="channel_thirds"`` is the
    authors' tile instead (:class:`BackTALConfig` ``affinity_tile``): ``sum_g a[g, t] * (conv with the weights of
    the (channel, tap) entries of block g)[t]``, one convolution over each block's channels."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1, padding: int = 0,
                 bias: bool = True, layout: Literal["per_tap", "channel_thirds"] = "per_tap"):
        if dilation != 1 or padding != kernel_size // 2:
            raise ValueError("AffinityConv1d supports dilation 1 with padding kernel_size // 2 only")
        super().__init__(in_channels, out_channels, kernel_size, dilation=1, padding=padding, bias=bias)
        self.layout = layout
        if layout == "channel_thirds":
            # entry (c, k) sits at row c * h + k of nn.Unfold's output; the code's tile scales row j by a[j // C_in]
            rows = torch.arange(in_channels)[:, None] * kernel_size + torch.arange(kernel_size)[None]
            self.register_buffer("block", rows // in_channels, persistent=False)  # [C_in, h]
        elif layout != "per_tap":
            raise ValueError(f"layout must be per_tap or channel_thirds, got {layout!r}")

    def forward(self, x: torch.Tensor, affinity: torch.Tensor | None = None) -> torch.Tensor:
        if affinity is None:
            return super().forward(x)
        h, T, p = self.kernel_size[0], x.shape[-1], self.padding[0]
        if affinity.shape[1] != h or affinity.shape[-1] != T:
            raise ValueError(f"affinity must be [B, {h}, {T}], got {tuple(affinity.shape)}")
        if self.layout == "channel_thirds":
            out = 0
            for g in range(h):
                sel = self.block == g  # [C_in, h]; its channels are one contiguous range
                channels = sel.any(1).nonzero().squeeze(1)
                lo, hi = int(channels[0]), int(channels[-1]) + 1
                w = self.weight[:, lo:hi] * sel[lo:hi].to(self.weight.dtype)
                out = out + affinity[:, g, None, :] * F.conv1d(x[:, lo:hi], w, padding=p)
            return out + self.bias[None, :, None] if self.bias is not None else out
        taps = torch.einsum("oik,bit->bkot", self.weight, x)  # [B, h, C_out, T]: H[i] X
        taps = F.pad(taps, (p, p))
        out = sum(affinity[:, i, None, :] * taps[:, i, :, i:i + T] for i in range(h))
        return out + self.bias[None, :, None] if self.bias is not None else out


# ------------------------------------------------------------------------------------------------ losses


def pooled_video_loss(scores: torch.Tensor, mask: torch.Tensor, video_labels: torch.Tensor, *, background: float,
                      topk: TopK) -> torch.Tensor:
    """Eq. 1-2 for one pass: top-k pooled ``scores [B, T, C + 1]`` (column 0 background), softmax, cross-entropy
    with the label ``[background, y]`` normalised to sum 1. Videos without a valid snippet or with an all-zero
    label are left out (0 when none is left)."""
    r = topk_pool(scores, mask, topk)
    y = torch.cat([video_labels.new_full((video_labels.shape[0], 1), float(background)), video_labels.float()], 1)
    q = y / y.sum(1, keepdim=True).clamp_min(1e-12)
    per_video = -(q * r.log_softmax(-1)).sum(-1)
    keep = (mask.sum(1) > 0) & (y.sum(1) > 0)
    return per_video[keep].mean() if bool(keep.any()) else scores.sum() * 0.0


def frame_click_loss(scores: torch.Tensor, targets: torch.Tensor, *,
                     average: Literal["video", "click"] = "video") -> torch.Tensor:
    """Eq. 3 on every clicked snippet: ``-sum_j q_tj log softmax(S[:, t])_j`` with ``targets [B, T, C + 1]`` the
    clicks per snippet and column (column 0 background clicks, column c + 1 action clicks of class c), ``q`` their
    normalisation; snippets without a click are left out. ``average="video"``: 1 / N_frame within each video, then
    over the videos with a click (Eq. 3); ``"click"``: one mean over the batch's clicked snippets. 0 when none."""
    clicked = targets.sum(-1)
    nll = -(targets * scores.log_softmax(-1)).sum(-1) / clicked.clamp_min(1e-12)  # [B, T]
    has = (clicked > 0).to(nll.dtype)
    if average == "click":
        return (nll * has).sum() / has.sum() if bool(has.any()) else scores.sum() * 0.0
    n = has.sum(1)
    per_video = (nll * has).sum(1) / n.clamp_min(1)
    keep = n > 0
    return per_video[keep].mean() if bool(keep.any()) else scores.sum() * 0.0


def separation_loss(scores: torch.Tensor, mask: torch.Tensor, background: torch.Tensor,
                    video_labels: torch.Tensor, *, topk: TopK,
                    form: Literal["eq8", "act"] = "eq8") -> torch.Tensor:
    """Eq. 5-8 for every (video b, labelled class c) whose video has a background click: ``p_act`` = mean of the
    ``k`` highest ``S[b, :, c]`` over the valid snippets (Eq. 5), ``p_bg`` = mean of ``S[b, :, c]`` on the clicks
    (Eq. 6), ``p_hat = softmax([p_act, p_bg])`` (Eq. 7); ``form="eq8"``: ``-log p_hat_act - log(1 - p_hat_bg)``
    (Eq. 8; the terms are equal, both computed as ``log_softmax`` for stability), ``"act"``: ``-log p_hat_act``
    once (the authors' loss.py). Averaged over each video's labelled classes, then over the videos (0 when none).
    ``scores [B, T, C + 1]`` with column 0 background, ``video_labels [B, C]``."""
    act = topk_pool(scores[..., 1:], mask, topk)  # [B, C]
    bg = (background & mask).to(scores.dtype)
    n = bg.sum(1, keepdim=True)
    p_bg = (scores[..., 1:] * bg[..., None]).sum(1) / n.clamp_min(1)  # [B, C]
    log_p_act = torch.stack([act, p_bg], -1).log_softmax(-1)[..., 0]
    per = -log_p_act if form == "act" else -log_p_act - log_p_act  # log(1 - p_bg_hat) = log p_act_hat
    pairs = ((video_labels > 0) & (n > 0) & (mask.sum(1, keepdim=True) > 0)).to(per.dtype)
    per_video = (per * pairs).sum(1) / pairs.sum(1).clamp_min(1)
    keep = pairs.sum(1) > 0
    return per_video[keep].mean() if bool(keep.any()) else scores.sum() * 0.0


def pseudo_action_frames(scores: torch.Tensor, mask: torch.Tensor, video_labels: torch.Tensor,
                         background: torch.Tensor, *, topk: TopK,
                         kind: Literal["union", "list"] = "union") -> list[torch.Tensor]:
    """Per video, the snippet indices of the pseudo action frames (footnote 3: pseudo label ``b = 0``): the ``k``
    snippets with the highest ``scores[..., c + 1]`` among the valid ones, for each labelled class c. ``union``:
    their union, sorted, clicked snippets (``background [B, T]``) removed; ``list``: the authors' list, class after
    class, duplicates and clicked snippets kept. ``scores`` is not differentiated."""
    out = []
    k = topk.counts(mask.sum(1))
    for b in range(scores.shape[0]):
        valid = mask[b].nonzero().squeeze(1)
        picks = [valid[scores[b, valid, c + 1].detach().topk(int(k[b])).indices]
                 for c in video_labels[b].nonzero().squeeze(1).tolist()] if int(k[b]) else []
        idx = torch.cat(picks) if picks else valid.new_zeros(0)
        if kind == "union":
            idx = idx.unique()
            idx = idx[~background[b, idx]]
        out.append(idx)
    return out


def affinity_losses(embedding: torch.Tensor, background: torch.Tensor, action: list[torch.Tensor], *,
                    tau_same: float = 0.5, tau_diff: float = 0.1,
                    mining: Literal["hardest_pair", "per_anchor"] = "hardest_pair") -> dict[str, torch.Tensor]:
    """Eq. 10-12: ``embedding [B, T, E]`` L2-normalised (so ``e_u . e_v`` is Eq. 9's cosine), ``background [B, T]``
    bool, ``action`` each video's pseudo action indices (:func:`pseudo_action_frames`). ``mining="hardest_pair"``:
    per video the one hardest pair of each kind (``max [tau_same - A]_+`` over background pairs u != v, the same
    over action pairs, ``max [A - tau_diff]_+`` over background-action pairs); each term averaged over the videos
    that have a pair of its kind. ``"per_anchor"``: the authors' ``EmbeddingLoss``: each frame's hardest partner
    (self included), the hinge averaged over the frames; ``diff`` is the sum of the action->background and
    background->action directions; only videos with a background click count (the code skips the others). 0 when
    no video has a pair. Returns ``{"bg", "act", "diff"}``."""
    terms: dict[str, list[torch.Tensor]] = {"bg": [], "act": [], "diff": []}
    for b in range(embedding.shape[0]):
        e_bg, e_act = embedding[b, background[b]], embedding[b, action[b]]  # [N_bg, E], [N_act, E]
        if mining == "per_anchor":
            if not len(e_bg):
                continue
            for name, e in (("bg", e_bg), ("act", e_act)):
                if len(e):
                    terms[name].append(F.relu(tau_same - (e @ e.T).amin(1)).mean())
            if len(e_act):
                cross = e_act @ e_bg.T
                terms["diff"].append(F.relu(cross.amax(1) - tau_diff).mean() + F.relu(cross.amax(0) - tau_diff).mean())
            continue
        for name, e in (("bg", e_bg), ("act", e_act)):
            if len(e) > 1:
                sim = (e @ e.T).masked_fill(torch.eye(len(e), dtype=torch.bool, device=e.device), float("inf"))
                terms[name].append(F.relu(tau_same - sim.min()))  # the hinge is monotone: its max is at min A
        if len(e_bg) and len(e_act):
            terms["diff"].append(F.relu((e_bg @ e_act.T).max() - tau_diff))
    zero = embedding.sum() * 0.0
    return {k: torch.stack(v).mean() if v else zero for k, v in terms.items()}


# ------------------------------------------------------------------------------------------------ model


class BackTAL(Localizer):
    has_background = True

    def __init__(self, *, config: BackTALConfig, input_dim: int, num_classes: int):
        super().__init__()
        self.config, self.num_classes, self.offset = config, int(num_classes), 1
        cfg, H = config, config.hidden_dim
        self.topk = TopK("floor", cfg.topk_divisor)
        self.attention = nn.Sequential(nn.Conv1d(input_dim, cfg.attention_hidden, 1), nn.LeakyReLU(),
                                       nn.Conv1d(cfg.attention_hidden, 1, 1))
        conv = partial(AffinityConv1d, bias=cfg.conv_bias, layout=cfg.affinity_tile)
        k = cfg.affinity_kernel
        self.layer1 = TemporalConvStack(in_dim=input_dim, widths=[H], kernel_size=k, conv=conv,
                                        activation=nn.LeakyReLU)
        self.layer2 = TemporalConvStack(in_dim=H, widths=[H], kernel_size=k, conv=conv, activation=nn.LeakyReLU)
        self.drop = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.classifier = nn.Conv1d(H, self.num_classes + 1, 1, bias=False)
        self.embedding = self._embedding(input_dim) if cfg.affinity else None

    def _embedding(self, input_dim: int) -> nn.Module:
        cfg, k = self.config, self.config.affinity_kernel
        if not cfg.embed_hidden:
            return nn.Conv1d(input_dim, cfg.embed_dim, k, padding=k // 2)
        return nn.Sequential(nn.Conv1d(input_dim, cfg.embed_hidden, k, padding=k // 2), nn.LeakyReLU(),
                             nn.Conv1d(cfg.embed_hidden, cfg.embed_dim, k, padding=k // 2))

    def _cas(self, x: torch.Tensor, mask: torch.Tensor, affinity: torch.Tensor | None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        h1 = self.layer1(x, mask, affinity=affinity)
        h2 = self.drop(self.layer2(h1, mask, affinity=affinity))
        cas = self.classifier(h2.transpose(1, 2)).transpose(1, 2) * mask[..., None].to(x.dtype)
        return cas, h1

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> LocalizerOutput:
        mask = mask.bool()
        m = mask.to(features.dtype)
        x = features * m[..., None]
        att = torch.sigmoid(self.attention(x.transpose(1, 2)))[:, 0] * m  # [B, T]
        aux: dict[str, torch.Tensor] = {"attention": att}
        affinity = None
        if self.embedding is not None:
            emb = F.normalize(self.embedding(x.transpose(1, 2)).transpose(1, 2), dim=-1) * m[..., None]
            aux["embedding"] = emb
            if self.config.affinity_mask:
                src = emb.detach() if self.config.detach_affinity else emb
                affinity = local_affinity(src, mask, self.config.affinity_kernel)
        cas_base, _ = self._cas(x, mask, affinity)
        cas_supp, feat_supp = self._cas(x * att[..., None], mask, affinity)
        aux["cas_base"] = cas_base
        aux["magnitude"] = feat_supp.norm(dim=-1) * m
        return LocalizerOutput(class_scores=cas_supp, actionness=None, mask=mask, aux=aux)

    def _cas_of(self, output: LocalizerOutput, name: str) -> torch.Tensor:
        return output.aux["cas_base"] if name == "base" else output.class_scores

    def losses(self, output: LocalizerOutput, batch, *, iteration: int) -> dict[str, torch.Tensor]:
        cfg, mask = self.config, output.mask
        labels = batch.targets["video_labels"].to(output.class_scores.device).float()
        bg = batch.targets["background"].to(mask.device).bool() & mask
        zero = output.class_scores.sum() * 0.0
        cls = (pooled_video_loss(output.aux["cas_base"], mask, labels, background=1.0, topk=self.topk)
               + pooled_video_loss(output.class_scores, mask, labels, background=0.0, topk=self.topk))
        frame = sep = zero
        if cfg.frame_loss:
            targets = torch.cat([bg.float()[..., None], batch.targets["clicks"].to(bg.device).float()], -1)
            frame = sum(frame_click_loss(self._cas_of(output, p), targets, average=cfg.frame_average)
                        for p in cfg.passes)
        if cfg.separation:
            sep = sum(separation_loss(self._cas_of(output, p), mask, bg, labels, topk=self.topk,
                                      form=cfg.separation_form) for p in cfg.passes)
        aff = {"bg": zero, "act": zero, "diff": zero}
        if cfg.affinity:
            act = pseudo_action_frames(self._cas_of(output, cfg.pseudo_pass), mask, labels, bg, topk=self.topk,
                                       kind=cfg.pseudo_action_set)
            aff = affinity_losses(output.aux["embedding"], bg, act, tau_same=cfg.tau_same, tau_diff=cfg.tau_diff,
                                  mining=cfg.affinity_mining)
        l_aff = aff["bg"] + aff["act"] + aff["diff"]
        total = cls + frame + cfg.lambda_sep * sep + cfg.beta * l_aff
        out = {"cls": cls, "frame": frame, "sep": sep, "aff": l_aff, "aff_bg": aff["bg"], "aff_act": aff["act"],
               "aff_diff": aff["diff"]}
        # logged, not trained: a filtering attention near 0 everywhere is the collapse docs/backtal.md measures
        out["attention_mean"] = (output.aux["attention"].detach().sum() / mask.sum().clamp_min(1)).to(total.dtype)
        if cfg.attention_l1 > 0:
            l1 = output.aux["attention"].sum(1).mean()  # [B, T] >= 0, zero on padding: the L1 norm over time
            out["attention_l1"] = l1
            total = total + cfg.attention_l1 * l1
        out["total"] = total
        return out

    def frame_scores(self, output: LocalizerOutput, index: int = 0) -> FrameScores:
        """Video scores: softmax over the C + 1 columns of the top-k pooled suppressed CAS, action columns (BaS-Net's
        test score, thresholded by the preset's ``class_threshold`` = tau_cls = 0.25). Per-snippet scores: the
        suppressed CAS normalised per class (:class:`BackTALInferenceConfig` ``cas``); actionness: the normalised
        feature magnitude."""
        icfg = self.config.inference
        T = int(output.mask[index].sum())
        C = output.class_scores[index, :T].detach().float()
        probs = C.softmax(-1)[:, 1:]
        valid = torch.ones(1, T, dtype=torch.bool, device=C.device)
        video = topk_pool(C[None], valid, self.topk)[0].softmax(-1)[1:]
        seq = _relu_minmax(C[:, 1:]) if icfg.cas == "logits" else _minmax(probs)
        act = None
        if icfg.actionness == "feature_magnitude":
            act = _minmax(output.aux["magnitude"][index, :T].detach().float()[:, None])[:, 0].cpu().numpy()
        return FrameScores(scores=seq.cpu().numpy(), video_scores=video.cpu().numpy(),
                           class_probs=probs.cpu().numpy(), actionness=act)


def _relu_minmax(x: torch.Tensor) -> torch.Tensor:
    """BaS-Net's ``utils.minmax_norm`` per column of ``x [T, C]``: ``(x - relu(min)) / (relu(max) - relu(min))``,
    the denominator 1 where it is not positive; not clipped."""
    lo, hi = x.amin(0, keepdim=True).clamp_min(0), x.amax(0, keepdim=True).clamp_min(0)
    delta = hi - lo
    return (x - lo) / torch.where(delta > 0, delta, torch.ones_like(delta)) if x.shape[0] else x


def _minmax(x: torch.Tensor) -> torch.Tensor:
    """Per column of ``x [T, C]``: ``(x - min) / (max - min)`` over time; 0 for a constant column."""
    lo, hi = x.amin(0, keepdim=True), x.amax(0, keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(1e-12) if x.shape[0] else x


def build_backtal(*, config: BackTALConfig, input_dim: int, num_classes: int,
                  streams: dict[str, tuple[int, int]] | None = None,
                  geometry: FeatureGeometry | None = None) -> BackTAL:
    """BackTAL over all ``input_dim`` feature columns (BaS-Net concatenates RGB and flow: early fusion, so
    ``streams`` is not used), per snippet whatever the ``geometry``."""
    return BackTAL(config=config, input_dim=input_dim, num_classes=num_classes)


__all__ = ["AffinityConv1d", "BackTAL", "BackTALConfig", "BackTALInferenceConfig", "affinity_losses",
           "build_backtal", "frame_click_loss", "local_affinity", "pooled_video_loss", "pseudo_action_frames",
           "separation_loss"]
