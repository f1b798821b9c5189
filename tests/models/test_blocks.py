"""The building blocks (clicktal.models.blocks): masked temporal convolutions, top-k pooling, masked softmax,
stream splitting and fusion."""
import math

import pytest
import torch
from torch import nn

from clicktal.models.blocks import (StreamFusion, TemporalConvStack, TopK, masked_mean, masked_softmax,
                                    receptive_field, split_streams, stream_ranges, topk_pool)


def padded(lengths, D, seed=0, pad_value=0.0):
    """Random ``[B, max(lengths), D]`` features with ``pad_value`` on padding, and the mask."""
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    x = torch.randn(len(lengths), T, D, generator=g)
    mask = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]
    x[~mask] = pad_value
    return x, mask


# ------------------------------------------------------------------------------------------------ conv stack


@pytest.mark.parametrize("kernel,dilations", [(3, [1, 1]), (3, [1, 2, 4]), (5, [2, 3]), (1, [1]), (7, [1, 1, 2])])
def test_conv_stack_keeps_length_and_zero_padding(kernel, dilations):
    torch.manual_seed(0)
    stack = TemporalConvStack(in_dim=6, widths=[8] * (len(dilations) - 1) + [5], kernel_size=kernel,
                              dilations=dilations).eval()
    x, mask = padded([23, 11, 4], 6, pad_value=7.0)  # padding that is not zero must not leak either
    out = stack(x, mask)
    assert out.shape == (3, 23, 5) and stack.out_dim == 5
    assert out[~mask].abs().sum() == 0
    # batching never changes a video's output
    for b, n in enumerate([23, 11, 4]):
        alone = stack(x[b:b + 1, :n], torch.ones(1, n, dtype=torch.bool))
        assert torch.allclose(out[b, :n], alone[0], atol=1e-6)


@pytest.mark.parametrize("kernel,dilations,holes", [(3, [1, 1], 0), (3, [1, 2, 4], 0), (3, [1], 0), (7, [1, 1, 2], 0),
                                                   (5, [2, 3], 2)])
def test_receptive_field_is_the_impulse_response_width(kernel, dilations, holes):
    torch.manual_seed(1)
    rf = receptive_field(kernel, dilations)
    assert rf == 1 + sum((kernel - 1) * d for d in dilations)
    stack = TemporalConvStack(in_dim=4, widths=[16] * len(dilations), kernel_size=kernel, dilations=dilations,
                              activation=nn.Tanh)  # strictly monotonic: every change propagates
    assert stack.receptive_field == rf
    T = 2 * rf + 20
    x = torch.randn(1, T, 4)
    mask = torch.ones(1, T, dtype=torch.bool)
    bumped = x.clone()
    bumped[0, T // 2] += 1.0
    with torch.no_grad():
        changed = (stack(bumped, mask) - stack(x, mask)).abs().amax(-1)[0] > 0
    idx = changed.nonzero().flatten()
    # one input snippet reaches the rf output snippets centred on it (all of them unless the dilations grid: with
    # k = 5, d = 2 then 3 the offsets +-9 are no sum of a tap of each layer)
    assert int(idx[0]) == T // 2 - (rf - 1) // 2 and int(idx[-1]) == T // 2 + (rf - 1) // 2
    assert int(changed.sum()) == rf - holes


def test_conv_stack_layers_activation_dropout_and_errors():
    stack = TemporalConvStack(in_dim=3, widths=[4, 6], dilations=[1, 2], dropout=0.5)
    assert [c.dilation for c in stack.convs] == [(1,), (2,)] and [c.padding for c in stack.convs] == [(1,), (2,)]
    assert stack.conv1.in_channels == 3 and stack.conv2.out_channels == 6
    x, mask = padded([9, 5], 3)
    stack.train()
    assert stack(x, mask)[~mask].abs().sum() == 0  # dropout never un-zeroes padding
    stack.eval()
    assert torch.equal(stack(x, mask), stack(x, mask))
    with pytest.raises(ValueError, match="odd"):
        TemporalConvStack(in_dim=3, widths=[4], kernel_size=4)
    with pytest.raises(ValueError, match="dilations"):
        TemporalConvStack(in_dim=3, widths=[4, 4], dilations=[1, 2, 3])


class GatedConv(nn.Module):
    """A stand-in for BackTAL's affinity convolution: a Conv1d whose input is scaled by a per-snippet gate."""

    def __init__(self, *, in_channels, out_channels, kernel_size, dilation, padding):
        super().__init__()
        self.args = (in_channels, out_channels, kernel_size, dilation, padding)
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation, padding=padding)

    def forward(self, x, gate=None):
        return self.conv(x if gate is None else x * gate[:, None, :])


def test_the_convolution_is_injectable_and_gets_forward_arguments():
    torch.manual_seed(0)
    stack = TemporalConvStack(in_dim=3, widths=[4, 5], kernel_size=5, dilations=[1, 3], conv=GatedConv)
    assert [c.args for c in stack.convs] == [(3, 4, 5, 1, 2), (4, 5, 5, 3, 6)]
    x, mask = padded([12, 7], 3)
    plain = stack(x, mask)
    gate = torch.ones(2, 12)
    assert torch.allclose(stack(x, mask, gate=gate), plain)
    gate[:, 3] = 0.0
    gated = stack(x, mask, gate=gate)
    assert not torch.allclose(gated, plain) and gated[~mask].abs().sum() == 0


# ------------------------------------------------------------------------------------------------ top-k


@pytest.mark.parametrize("topk,expected", [
    (TopK("ceil", 8), [1, 1, 2, 13]),
    (TopK("floor", 8), [1, 1, 1, 12]),  # floor(7 / 8) = 0 -> at least 1
    (TopK("int", 8), [1, 1, 1, 12]),
    (TopK("int", 12), [1, 1, 1, 8]),  # SF-Net's code at evaluation: T // 12
    (TopK("fixed", k=3), [3, 3, 3, 3]),
    (TopK("fixed", k=8), [7, 8, 8, 8]),  # never more than the video has
])
def test_topk_rules_on_hand_made_lengths(topk, expected):
    lengths = [7, 8, 9, 100]
    assert [topk.count(T) for T in lengths] == expected
    assert topk.counts(torch.tensor(lengths)).tolist() == expected
    assert topk.count(0) == 0 and topk.counts(torch.tensor([0])).tolist() == [0]


def test_topk_rule_arithmetic_matches_python_over_many_lengths():
    lengths = torch.arange(0, 2000)
    for topk in (TopK("ceil", 8), TopK("ceil", 2.5), TopK("floor", 8), TopK("int", 12), TopK("floor", 7.3)):
        expected = [0 if T == 0 else min(T, max(1, (math.ceil(T / topk.r) if topk.rule == "ceil"
                                                    else int(T / topk.r)))) for T in lengths.tolist()]
        assert topk.counts(lengths).tolist() == expected == [topk.count(T) for T in lengths.tolist()]


def test_topk_rejects_bad_rules():
    with pytest.raises(ValueError, match="rule"):
        TopK("median")
    with pytest.raises(ValueError):
        TopK("ceil", r=0)
    with pytest.raises(ValueError):
        TopK("fixed", k=0)


@pytest.mark.parametrize("topk", [TopK("ceil", 8), TopK("floor", 8), TopK("int", 12), TopK("fixed", k=5),
                                  TopK("ceil", 3)])
def test_topk_pool_masks_padding_and_follows_the_k_rule(topk):
    lengths = [7, 8, 9, 100, 1]
    scores, mask = padded(lengths, 6, seed=2, pad_value=1e4)  # padding scores highest: must never be selected
    scores.requires_grad_(True)
    pooled = topk_pool(scores, mask, topk)
    assert pooled.shape == (5, 6)
    loop = torch.stack([scores[b][mask[b]].topk(topk.count(n), dim=0).values.mean(0) for b, n in enumerate(lengths)])
    assert torch.equal(pooled, loop)
    (g,) = torch.autograd.grad(pooled.sum(), scores)
    assert g[~mask].abs().sum() == 0
    for b, n in enumerate(lengths):  # each column's gradient is 1/k on exactly k valid snippets
        k = topk.count(n)
        assert ((g[b] != 0).sum(0) == k).all() and torch.allclose(g[b].sum(0), torch.ones(6))


def test_topk_pool_gives_zeros_for_an_empty_video():
    scores, mask = padded([4, 0], 3)
    pooled = topk_pool(scores, mask, TopK())
    assert pooled[1].abs().sum() == 0 and torch.allclose(pooled[0], scores[0, :4].max(0).values)
    assert topk_pool(scores[1:], mask[1:]).abs().sum() == 0


# ------------------------------------------------------------------------------------------------ softmax, mean


def test_masked_softmax_is_a_distribution_over_valid_snippets():
    scores, mask = padded([6, 3, 10], 4, pad_value=30.0)
    p = masked_softmax(scores, mask)
    assert p.shape == scores.shape
    assert torch.allclose(p.sum(1), torch.ones(3, 4))
    assert torch.all(p[~mask] == 0)
    for b, n in enumerate([6, 3, 10]):
        assert torch.allclose(p[b, :n], scores[b, :n].softmax(0), atol=1e-7)
    p2 = masked_softmax(scores[..., 0], mask)  # [B, T] too
    assert torch.allclose(p2, p[..., 0])


def test_masked_softmax_of_an_empty_video_is_zero_without_nan():
    scores, mask = padded([5, 0], 2)
    scores.requires_grad_(True)
    p = masked_softmax(scores, mask)
    assert torch.all(p[1] == 0) and torch.isfinite(p).all()
    (g,) = torch.autograd.grad((p * torch.randn_like(p)).sum(), scores)
    assert torch.isfinite(g).all() and g[1].abs().sum() == 0


def test_masked_mean():
    v = torch.tensor([[1.0, 2.0, 30.0]], requires_grad=True)
    assert masked_mean(v, torch.tensor([[True, True, False]])).item() == 1.5
    none = masked_mean(v, torch.zeros(1, 3, dtype=torch.bool))
    assert none.item() == 0 and none.requires_grad


# ------------------------------------------------------------------------------------------------ streams


def test_stream_ranges_and_split():
    streams = {"rgb": (0, 4), "flow": (4, 10)}
    assert stream_ranges(streams, 10) == streams
    assert stream_ranges(streams, 10, split=False) == {"joint": (0, 10)}
    assert stream_ranges({"rgb": (0, 10)}, 10) == {"joint": (0, 10)} and stream_ranges(None, 7) == {"joint": (0, 7)}
    with pytest.raises(ValueError, match="do not fit"):
        stream_ranges({"rgb": (0, 4), "flow": (4, 12)}, 10)
    x = torch.arange(2 * 3 * 10, dtype=torch.float32).view(2, 3, 10)
    parts = split_streams(x, streams)
    assert list(parts) == ["rgb", "flow"] and parts["rgb"].shape == (2, 3, 4) and parts["flow"].shape == (2, 3, 6)
    assert torch.equal(torch.cat([parts["rgb"], parts["flow"]], -1), x)


def test_fusion_variants_shapes_and_values():
    g = torch.Generator().manual_seed(0)
    outs = {"rgb": torch.randn(2, 7, 5, generator=g), "flow": torch.randn(2, 7, 5, generator=g)}
    weighted = StreamFusion(streams=["rgb", "flow"], mode="weighted", size=5, init=1.0)
    assert [n for n, _ in weighted.named_parameters()] == ["flow", "rgb"]  # sorted, as a ParameterDict
    with torch.no_grad():
        weighted.weight("rgb").copy_(torch.arange(5.0))
    w = weighted(outs)
    assert w.shape == (2, 7, 5) and torch.allclose(w, torch.arange(5.0) * outs["rgb"] + outs["flow"])
    weighted.reset_parameters()
    assert torch.allclose(weighted(outs), outs["rgb"] + outs["flow"])
    scalar = StreamFusion(streams=["rgb", "flow"], size=1, init=0.5)
    acts = {k: v[..., 0] for k, v in outs.items()}  # [B, T] outputs with one weight per stream
    assert scalar(acts).shape == (2, 7) and torch.allclose(scalar(acts), 0.5 * (acts["rgb"] + acts["flow"]))
    mean = StreamFusion(streams=["rgb", "flow"], mode="mean")
    total = StreamFusion(streams=["rgb", "flow"], mode="sum")
    assert not list(mean.parameters()) and torch.allclose(mean(outs), (outs["rgb"] + outs["flow"]) / 2)
    assert torch.allclose(total(outs), outs["rgb"] + outs["flow"])
    early = StreamFusion(streams=["rgb", "flow"], mode="concat")
    feats = {"rgb": torch.zeros(2, 7, 3), "flow": torch.ones(2, 7, 4)}
    cat = early(feats)
    assert cat.shape == (2, 7, 7) and cat[..., :3].sum() == 0 and torch.all(cat[..., 3:] == 1)


def test_fusion_errors_are_named():
    with pytest.raises(ValueError, match="mode"):
        StreamFusion(streams=["rgb"], mode="max")
    with pytest.raises(ValueError, match="stream name"):
        StreamFusion(streams=["training"], mode="weighted")
    with pytest.raises(KeyError):
        StreamFusion(streams=["rgb", "flow"], mode="sum")({"rgb": torch.zeros(1)})


def test_upsample_to_frames_is_the_torch_twin_of_geometry_interpolate():
    import numpy as np

    from clicktal.models.blocks import upsample_to_frames
    from clicktal.pipeline.core.geometry import FeatureGeometry, interpolate

    g = FeatureGeometry(fps=30, window=24, stride=8)  # overlapping snippets
    x = torch.randn(2, 6, 3, dtype=torch.float64)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    up = upsample_to_frames(x, mask, g)
    for b, valid in enumerate((6, 4)):
        ref = interpolate(x[b].numpy(), g, g.frames(), 6 * 8, valid=valid)
        assert np.allclose(up[b, :valid * 8].numpy(), ref[:valid * 8], atol=1e-12)
        assert not up[b, valid * 8:].any()  # frames of padded snippets are zero
