"""Small building blocks that localizers are assembled from (SF-Net today; BackTAL, Ding et al., FSN/WFSN next).

Every block works on padded batches: features ``[B, T, D]`` with a mask ``[B, T]`` (True on real snippets), and
keeps padding out of its result, so that batching never changes a video's output.

* :class:`TemporalConvStack`: masked 1-d temporal convolutions with per-layer width and dilation and an injectable
  convolution (BackTAL plugs in one whose neighbours are re-weighted by an affinity mask);
  :func:`receptive_field` is how many snippets one output snippet sees;
* :class:`TopK` and :func:`topk_pool`: top-k temporal pooling over the valid snippets of each video, with the
  papers' rules for k (``ceil(T/r)``, ``floor(T/r)``, the code's ``int(T/r)``, a fixed k);
* :func:`masked_softmax`: softmax over time restricted to the valid snippets;
* :func:`stream_ranges`, :func:`split_streams` and :class:`StreamFusion`: split features into streams (RGB, flow) by
  column ranges and fuse the per-stream outputs (learnable per-class multipliers, mean, sum, concatenation);
* :func:`masked_mean`: the mean over selected elements, the reduction every loss term uses;
* :func:`upsample_to_frames`: per-snippet outputs linearly interpolated to one row per frame of the snippets' grid
  (FSN's parameter-free "bilinear 1-D" upsampling).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal, Mapping, Sequence

import torch
from torch import nn

from clicktal.pipeline.core.geometry import FeatureGeometry

# ------------------------------------------------------------------------------------------------ reductions


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` (same shape, bool) is True; 0 (with a gradient path) when nothing is
    selected."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over time (dim 1) of ``scores [B, T, C]`` (or ``[B, T]``) over the valid snippets of ``mask [B, T]``
    only. Padded positions are exactly 0; a video without any valid snippet gives all zeros (no NaN, in the
    forward pass nor in the gradient)."""
    m = mask.bool() if scores.dim() == 2 else mask.bool().unsqueeze(-1)
    s = scores.masked_fill(~m, float("-inf"))
    top = s.detach().amax(dim=1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))  # empty videos: any finite shift
    e = (s - top).exp()
    # the largest valid element contributes exp(0) = 1, so clamping at 1 only touches empty videos (0 / 1 = 0)
    return e / e.sum(dim=1, keepdim=True).clamp_min(1.0)


# ------------------------------------------------------------------------------------------------ temporal convs

ConvFactory = Callable[..., nn.Module]
"""Builds one layer of a :class:`TemporalConvStack`. It is called with the keyword arguments ``in_channels,
out_channels, kernel_size, dilation, padding`` (those of :class:`torch.nn.Conv1d`, the default) and returns a module
mapping ``[B, in_channels, T]`` to ``[B, out_channels, T]`` (it may take further keyword arguments in its forward,
passed through :meth:`TemporalConvStack.forward`)."""


def receptive_field(kernel_size: int, dilations: Sequence[int]) -> int:
    """Snippets one output snippet of a stack of stride-1 convolutions spans: ``1 + sum((k - 1) * d)``. Every one
    of them is reached when each dilation is at most the span of the layers below it (e.g. 1, 2, 4 with k = 3);
    otherwise (gridding, e.g. k = 5 with dilations 2 then 3) some snippets inside the span are skipped."""
    return 1 + sum((int(kernel_size) - 1) * int(d) for d in dilations)


class TemporalConvStack(nn.Module):
    """Temporal convolutions over ``[B, T, D]`` features, each followed by ``activation`` and ``dropout``.

    ``widths``: the output width of each layer (``in_dim -> widths[0] -> widths[1] ...``); ``kernel_size``: odd;
    ``dilations``: one per layer (or one for all). Padding ``dilation * (kernel_size // 2)`` keeps the length, and
    the input and every layer's output are multiplied by the mask, so padded snippets stay zero and a video's output
    does not depend on what it is batched with. ``conv`` builds each layer (see :data:`ConvFactory`).
    The layers are the children ``conv1 .. convN`` (1-based, as papers number them).
    """

    def __init__(self, *, in_dim: int, widths: Sequence[int], kernel_size: int = 3,
                 dilations: Sequence[int] | int = 1, activation: Callable[[], nn.Module] | None = nn.ReLU,
                 dropout: float = 0.0, conv: ConvFactory = nn.Conv1d):
        super().__init__()
        widths = [int(w) for w in widths]
        dilations = [int(dilations)] * len(widths) if isinstance(dilations, int) else [int(d) for d in dilations]
        if not widths or len(dilations) != len(widths):
            raise ValueError(f"TemporalConvStack: {len(widths)} widths need as many dilations, got {len(dilations)}")
        if kernel_size % 2 != 1 or min(dilations) < 1:
            raise ValueError(f"TemporalConvStack: kernel_size must be odd ({kernel_size}) and dilations >= 1 "
                             f"({dilations}), or the length would change")
        self.kernel_size, self.dilations, self.widths = int(kernel_size), dilations, widths
        self.out_dim = widths[-1]
        for i, (c_in, c_out, d) in enumerate(zip([int(in_dim)] + widths[:-1], widths, dilations), start=1):
            self.add_module(f"conv{i}", conv(in_channels=c_in, out_channels=c_out, kernel_size=self.kernel_size,
                                             dilation=d, padding=d * (self.kernel_size // 2)))
        self.activations = nn.ModuleList([activation() if activation else nn.Identity() for _ in widths])
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    @property
    def convs(self) -> list[nn.Module]:
        return [getattr(self, f"conv{i}") for i in range(1, len(self.widths) + 1)]

    @property
    def receptive_field(self) -> int:
        return receptive_field(self.kernel_size, self.dilations)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, **conv_kwargs) -> torch.Tensor:
        """``x [B, T, in_dim]``, ``mask [B, T]`` bool -> ``[B, T, out_dim]``, zero on padding. ``conv_kwargs`` are
        passed to every layer (none for :class:`torch.nn.Conv1d`)."""
        m = mask.to(x.dtype).unsqueeze(1)  # [B, 1, T]
        h = x.transpose(1, 2) * m
        for conv, act in zip(self.convs, self.activations):
            h = self.dropout(act(conv(h, **conv_kwargs))) * m
        return h.transpose(1, 2)


# ------------------------------------------------------------------------------------------------ top-k pooling

TopKRule = Literal["ceil", "floor", "int", "fixed"]


@dataclass(frozen=True)
class TopK:
    """How many of a video's ``T`` valid snippets top-k pooling averages.

    * ``ceil``: ``ceil(T / r)`` (SF-Net Eq. 5, ``r = 8``);
    * ``floor``: ``max(floor(T / r), 1)`` (BackTAL, BaS-Net: ``k = floor(T / 8)``);
    * ``int``: ``max(int(T / r), 1)`` (SF-Net's code, ``T // 12`` at evaluation); for ``T >= 0`` and ``r > 0`` the
      same number as ``floor``, kept as its own name so a config can say which source it follows;
    * ``fixed``: ``k``.

    Whatever the rule, k is at least 1 and at most ``T`` (0 for an empty video).
    """

    rule: TopKRule = "ceil"
    r: float = 8.0
    k: int = 1

    def __post_init__(self) -> None:
        if self.rule not in ("ceil", "floor", "int", "fixed"):
            raise ValueError(f"TopK: unknown rule {self.rule!r} (ceil, floor, int, fixed)")
        if (self.rule == "fixed" and self.k < 1) or (self.rule != "fixed" and not self.r > 0):
            raise ValueError(f"TopK: rule {self.rule!r} needs k >= 1 (fixed) or r > 0 (got k={self.k}, r={self.r})")

    def count(self, T: int) -> int:
        """k for a video of ``T`` valid snippets."""
        T = int(T)
        if T <= 0:
            return 0
        if self.rule == "ceil":
            k = math.ceil(T / self.r)
        elif self.rule == "fixed":
            k = self.k
        else:  # floor and int
            k = int(T / self.r)
        return min(max(k, 1), T)

    def counts(self, lengths: torch.Tensor) -> torch.Tensor:
        """``[B]`` long: k for each of ``lengths [B]`` (as :meth:`count`, on the lengths' device)."""
        T = lengths.long()
        if self.rule == "fixed":
            k = torch.full_like(T, int(self.k))
        else:  # float64, as Python's T / r
            q = T.double() / float(self.r)
            k = (torch.ceil(q) if self.rule == "ceil" else torch.floor(q)).long()
        return torch.minimum(k.clamp_min(1), T.clamp_min(0))


def topk_pool(scores: torch.Tensor, mask: torch.Tensor, topk: TopK = TopK(),
              counts: torch.Tensor | None = None) -> torch.Tensor:
    """Top-k temporal pooling: ``scores [B, T, C]``, ``mask [B, T]`` -> ``[B, C]``, per video and column the mean
    of its ``topk.count(T_b)`` highest scores among its valid snippets (padding is never selected; an empty video
    gives zeros); ``counts [B]`` gives each video's k instead (clipped to ``[1, T_b]``). One ``topk`` per video: a batched version (padding at -inf, the first ``k_b`` of the top
    ``max_b k_b``) agrees to float precision but not bit for bit, and through SF-Net's mining those last bits grow
    into a different training run (the pinned runs in the tests would move)."""
    mask = mask.bool()
    lengths = mask.sum(1)
    k = topk.counts(lengths) if counts is None else torch.minimum(counts.clamp_min(1), lengths)
    rows = [scores[b][mask[b]].topk(int(k[b]), dim=0).values.mean(0) if int(k[b]) else scores.new_zeros(scores.shape[2])
            for b in range(scores.shape[0])]
    return torch.stack(rows) if rows else scores.new_zeros(0, scores.shape[2])


# ------------------------------------------------------------------------------------------------ streams


def stream_ranges(streams: Mapping[str, tuple[int, int]] | None, input_dim: int, *, split: bool = True
                  ) -> dict[str, tuple[int, int]]:
    """The column range of each stream: ``streams`` (e.g. ``{"rgb": (0, 1024), "flow": (1024, 2048)}``) when
    ``split`` and there are at least two, else one stream ``{"joint": (0, input_dim)}``."""
    if not (split and streams and len(streams) > 1):
        return {"joint": (0, int(input_dim))}
    out = {str(k): (int(a), int(b)) for k, (a, b) in streams.items()}
    bad = {k: r for k, r in out.items() if not 0 <= r[0] < r[1] <= int(input_dim)}
    if bad:
        raise ValueError(f"stream column ranges {bad} do not fit {input_dim}-d features")
    return out


def split_streams(features: torch.Tensor, streams: Mapping[str, tuple[int, int]]) -> dict[str, torch.Tensor]:
    """``features [B, T, D]`` -> ``{name: features[..., a:b]}`` for each stream's column range ``(a, b)``."""
    return {name: features[..., a:b] for name, (a, b) in streams.items()}


FusionMode = Literal["weighted", "mean", "sum", "concat"]


class StreamFusion(nn.Module):
    """Fuses per-stream outputs (a mapping ``{stream: [..., F]}``, same shapes) into one.

    * ``weighted``: ``sum_s m_s * x_s`` with a learnable multiplier ``m_s [size]`` per stream, broadcast over the
      last dimension (``size`` = number of classes: the per-class multipliers of 3C-Net and SF-Net; ``size`` 1: one
      weight per stream), all initialised to ``init``. The multipliers are the module's parameters, named after the
      streams and registered in sorted name order (as :class:`torch.nn.ParameterDict` keeps a plain dict);
    * ``mean`` / ``sum``: the plain mean or sum over the streams;
    * ``concat``: concatenation along the last dimension in stream order (early fusion: ``[..., sum_s F_s]``).

    Streams are added in the order of ``streams``; an output missing a stream is an error.
    """

    def __init__(self, *, streams: Sequence[str], mode: FusionMode = "weighted", size: int = 1, init: float = 1.0):
        super().__init__()
        if mode not in ("weighted", "mean", "sum", "concat"):
            raise ValueError(f"StreamFusion: unknown mode {mode!r} (weighted, mean, sum, concat)")
        self._streams, self._mode, self._init = [str(s) for s in streams], mode, float(init)
        if not self._streams:
            raise ValueError("StreamFusion needs at least one stream")
        if mode == "weighted":
            for name in sorted(self._streams):
                if not name.isidentifier() or hasattr(self, name):
                    raise ValueError(f"StreamFusion: stream name {name!r} cannot name a parameter")
                self.register_parameter(name, nn.Parameter(torch.full((int(size),), self._init)))

    @property
    def mode(self) -> str:
        return self._mode

    def weight(self, stream: str) -> nn.Parameter:
        """The multiplier of ``stream`` (``weighted`` mode)."""
        return self._parameters[stream]

    def reset_parameters(self) -> None:
        with torch.no_grad():
            for p in self._parameters.values():
                p.fill_(self._init)

    def forward(self, outputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        xs = [outputs[name] for name in self._streams]
        if self._mode == "concat":
            return torch.cat(xs, dim=-1)
        if self._mode == "weighted":
            xs = [self._parameters[name] * x for name, x in zip(self._streams, xs)]
        fused = 0
        for x in xs:
            fused = fused + x
        return fused / len(xs) if self._mode == "mean" else fused

    def extra_repr(self) -> str:
        return f"mode={self._mode}, streams={self._streams}"


# ------------------------------------------------------------------------------------------------ upsampling


def upsample_to_frames(x: torch.Tensor, mask: torch.Tensor, geometry: FeatureGeometry) -> torch.Tensor:
    """``x [B, T, C]`` per snippet -> ``[B, T * f, C]`` per frame, ``f = geometry.frames_per_snippet``.

    The torch twin of :func:`clicktal.pipeline.core.geometry.interpolate` (differentiable, per sample): frame
    ``n`` takes the linear interpolation of the snippets around its centre (position
    ``geometry.positions_of(geometry.frames(), ...)``: ``(n + 0.5 - window / 2) / stride``), clamped to the
    sample's first and last valid snippet, so that the snippet's own score lands on the frame at its centre and
    frames past the outer centres repeat the end value. With ``window == stride`` this is
    ``F.interpolate(mode="linear", align_corners=False)``; it stays right for overlapping snippets
    (``window > stride``) and never mixes a video's last snippet with padding. Frames of padded snippets are zero."""
    f = geometry.frames_per_snippet
    B, T, C = x.shape
    lengths = mask.bool().sum(1)  # [B]
    pos = torch.from_numpy(geometry.positions_of(geometry.frames(), T * f)).to(x.device)  # [F] float64
    last = (lengths - 1).clamp_min(0).to(torch.float64)[:, None]  # [B, 1]
    pos = torch.minimum(pos[None].clamp_min(0.0), last)  # [B, F]
    lo = pos.floor().long()
    hi = torch.minimum(lo + 1, last.long())
    w = (pos - lo).to(x.dtype)[..., None]
    gather = lambda idx: torch.gather(x, 1, idx[..., None].expand(B, T * f, C))
    out = gather(lo) * (1 - w) + gather(hi) * w
    frame_mask = mask.bool().repeat_interleave(f, dim=1)
    return out * frame_mask[..., None].to(x.dtype)


__all__ = ["ConvFactory", "FusionMode", "StreamFusion", "TemporalConvStack", "TopK", "TopKRule", "masked_mean",
           "masked_softmax", "receptive_field", "split_streams", "stream_ranges", "topk_pool",
           "upsample_to_frames"]
