"""BackTAL (models/backtal.py): each loss term on hand-made tensors, the affinity-masked convolution against a direct
per-position sum, the two passes' labels, padding invariance, and a short run through the engine."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from clicktal.models import build_localizer
from clicktal.models.backtal import (AffinityConv1d, affinity_losses, frame_click_loss, local_affinity,
                                     pooled_video_loss, pseudo_action_frames, separation_loss)
from clicktal.models.blocks import TemporalConvStack, TopK

LN2, LN3, LN5 = math.log(2), math.log(3), math.log(5)
FLOOR8 = TopK("floor", 8)


# ------------------------------------------------------------------------------------------------ Eq. 1-2


def test_video_loss_hand_worked_both_passes():
    # T = 8 -> k = floor(8 / 8) = 1: pooled = per-column max = [0, ln 2, 0] -> softmax [1/4, 1/2, 1/4]
    s = torch.zeros(1, 8, 3)
    s[0, 3, 1] = LN2
    mask = torch.ones(1, 8, dtype=torch.bool)
    y = torch.tensor([[1.0, 0.0]])
    # base pass: label [1, 1, 0] / 2 -> -(0.5 ln 1/4 + 0.5 ln 1/2) = 1.5 ln 2
    assert float(pooled_video_loss(s, mask, y, background=1.0, topk=FLOOR8)) == pytest.approx(1.5 * LN2)
    # suppressed pass: label [0, 1, 0] -> -ln 1/2
    assert float(pooled_video_loss(s, mask, y, background=0.0, topk=FLOOR8)) == pytest.approx(LN2)


def test_video_loss_floor_k_and_skips_unlabelled_videos():
    # T = 23 -> k = floor(23 / 8) = 2: column 1's top two are ln 4 and 0 -> mean ln 2; others 0
    s = torch.full((2, 23, 3), -5.0)
    s[:, :, 0] = 0.0
    s[:, :, 2] = 0.0
    s[:, 0, 1], s[:, 1, 1] = 2 * LN2, 0.0
    mask = torch.ones(2, 23, dtype=torch.bool)
    y = torch.tensor([[1.0, 0.0], [0.0, 0.0]])  # the second video has no label: left out of the suppressed mean
    assert float(pooled_video_loss(s, mask, y, background=0.0, topk=FLOOR8)) == pytest.approx(LN2)


# ------------------------------------------------------------------------------------------------ Eq. 3


def _targets(bg: torch.Tensor, num_classes: int = 2) -> torch.Tensor:
    return torch.cat([bg.float()[..., None], torch.zeros(*bg.shape, num_classes)], -1)


def test_frame_loss_per_video_then_over_videos():
    s = torch.zeros(3, 6, 3)
    s[0, 2] = torch.tensor([LN2, 0.0, 0.0])  # p_bg = 2 / 4
    s[1, 4] = torch.tensor([0.0, LN3, 0.0])  # p_bg = 1 / 5
    bg = torch.zeros(3, 6, dtype=torch.bool)
    bg[0, [1, 2]] = True   # ln 3 and ln 2
    bg[1, 4] = True        # ln 5; video 2 has no click and is left out
    expected = ((LN3 + LN2) / 2 + LN5) / 2
    assert float(frame_click_loss(s, _targets(bg))) == pytest.approx(expected)
    # the code's average: one mean over the three clicked snippets of the batch
    assert float(frame_click_loss(s, _targets(bg), average="click")) == pytest.approx((LN3 + LN2 + LN5) / 3)
    assert float(frame_click_loss(s, _targets(torch.zeros_like(bg)))) == 0.0


def test_frame_loss_takes_action_clicks_in_their_class_column():
    # Table 6's "action & background click" row: one background click (column 0), one action click of class 1
    s = torch.zeros(1, 4, 3)
    s[0, 1] = torch.tensor([0.0, 0.0, LN2])  # softmax [1/4, 1/4, 1/2]
    targets = torch.zeros(1, 4, 3)
    targets[0, 0, 0] = 1.0  # background at t = 0: -log 1/3
    targets[0, 1, 2] = 1.0  # class 1 at t = 1: -log 1/2
    assert float(frame_click_loss(s, targets)) == pytest.approx((LN3 + LN2) / 2)


# ------------------------------------------------------------------------------------------------ Eq. 5-8


def test_separation_loss_multi_class_video():
    # C = 3, the video has classes 0 and 1 (columns 1, 2); column 3 is high but unlabelled and must not count
    T = 8  # k = 1
    s = torch.zeros(2, T, 4)
    s[0, :, 1] = torch.tensor([2.0, 0, 0, 0, 0, 0, 0, 0])       # p_act = 2, p_bg = mean(s[5], s[6]) = 0
    s[0, :, 2] = torch.tensor([0, 0, 1.0, 0, 0, 1.0, -1.0, 0])  # p_act = 1, p_bg = (1 - 1) / 2 = 0
    s[0, :, 3] = 9.0
    mask = torch.ones(2, T, dtype=torch.bool)
    bg = torch.zeros(2, T, dtype=torch.bool)
    bg[0, [5, 6]] = True  # video 1 has no click: no pair
    y = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    # per pair: -log p_act_hat - log(1 - p_bg_hat) = 2 log(1 + exp(p_bg - p_act)); mean over the two pairs
    expected = (2 * math.log1p(math.exp(-2)) + 2 * math.log1p(math.exp(-1))) / 2
    assert float(separation_loss(s, mask, bg, y, topk=FLOOR8)) == pytest.approx(expected)
    # the authors' loss.py keeps -log p_act_hat once: half of Eq. 8
    assert float(separation_loss(s, mask, bg, y, topk=FLOOR8, form="act")) == pytest.approx(expected / 2)


def test_separation_loss_averages_classes_within_a_video_first():
    T = 8
    s = torch.zeros(2, T, 3)
    s[0, 0, 1], s[0, 0, 2], s[1, 0, 1] = 1.0, 2.0, 3.0  # p_bg = 0 everywhere (the clicks are at t = 7)
    bg = torch.zeros(2, T, dtype=torch.bool)
    bg[:, 7] = True
    y = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    per = [2 * math.log1p(math.exp(-v)) for v in (1.0, 2.0, 3.0)]
    expected = ((per[0] + per[1]) / 2 + per[2]) / 2
    got = separation_loss(s, torch.ones(2, T, dtype=torch.bool), bg, y, topk=FLOOR8)
    assert float(got) == pytest.approx(expected)


def test_separation_loss_literal_equation():
    p_act, p_bg = 0.7, -0.4
    s = torch.full((1, 8, 2), -3.0)
    s[0, 0, 1], s[0, 4, 1] = p_act, p_bg
    bg = torch.zeros(1, 8, dtype=torch.bool)
    bg[0, 4] = True
    ea, eb = math.exp(p_act), math.exp(p_bg)
    expected = -math.log(ea / (ea + eb)) - math.log(1 - eb / (ea + eb))
    got = separation_loss(s, torch.ones(1, 8, dtype=torch.bool), bg, torch.tensor([[1.0]]), topk=FLOOR8)
    assert float(got) == pytest.approx(expected)


def test_pseudo_action_frames_union_of_classes_valid_only():
    s = torch.zeros(1, 10, 3)
    s[0, :, 1] = torch.arange(10.0)           # top-1 among valid (0..7): 7 (8, 9 are padding)
    s[0, :, 2] = -torch.arange(10.0)          # top-1: 0
    mask = torch.zeros(1, 10, dtype=torch.bool)
    mask[0, :8] = True                        # T = 8 -> k = 1
    none = torch.zeros(1, 10, dtype=torch.bool)
    got = pseudo_action_frames(s, mask, torch.tensor([[1.0, 1.0]]), none, topk=FLOOR8)
    assert got[0].tolist() == [0, 7]
    got = pseudo_action_frames(s, mask, torch.tensor([[1.0, 0.0]]), none, topk=FLOOR8)
    assert got[0].tolist() == [7]


def test_pseudo_action_list_keeps_duplicates_and_clicks_as_the_authors_code():
    # T = 16 -> k = 2; class 0 peaks at 5, 6; class 1 at 6, 3; snippet 6 is a background click
    s = torch.zeros(1, 16, 3)
    s[0, [5, 6], 1] = torch.tensor([2.0, 1.0])
    s[0, [6, 3], 2] = torch.tensor([2.0, 1.0])
    mask, labels = torch.ones(1, 16, dtype=torch.bool), torch.tensor([[1.0, 1.0]])
    bg = torch.zeros(1, 16, dtype=torch.bool)
    bg[0, 6] = True
    # loss.py: mask_list.extend(topk(cas_supp[b][c], k)[1]) for each labelled class c, in order
    assert pseudo_action_frames(s, mask, labels, bg, topk=TopK("floor", 8), kind="list")[0].tolist() == [5, 6, 6, 3]
    assert pseudo_action_frames(s, mask, labels, bg, topk=TopK("floor", 8), kind="union")[0].tolist() == [3, 5]


# ------------------------------------------------------------------------------------------------ Eq. 9-13


def test_affinity_losses_hardest_pairs():
    r = math.sqrt(0.91)
    e = torch.zeros(2, 4, 2)
    e[0] = torch.tensor([[1.0, 0.0], [0.3, r], [0.0, 1.0], [-1.0, 0.0]])
    e[1] = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    bg = torch.tensor([[True, True, False, False], [True, False, False, False]])
    act = [torch.tensor([2, 3]), torch.tensor([], dtype=torch.long)]
    out = affinity_losses(e, bg, act, tau_same=0.5, tau_diff=0.1)
    assert float(out["bg"]) == pytest.approx(0.5 - 0.3)      # only video 0 has a background pair: A = 0.3
    assert float(out["act"]) == pytest.approx(0.5 - 0.0)     # e2 . e3 = 0
    assert float(out["diff"]) == pytest.approx(r - 0.1)      # hardest of {0, -1, r, -0.3}
    none = affinity_losses(e, torch.zeros_like(bg), act)
    assert float(none["bg"]) == 0.0 and float(none["diff"]) == 0.0


def test_affinity_losses_per_anchor_as_the_authors_code():
    r = math.sqrt(0.91)
    e = torch.tensor([[[1.0, 0.0], [0.3, r], [0.0, 1.0], [-1.0, 0.0]]])
    bg = torch.tensor([[True, True, False, False]])
    act = [torch.tensor([2, 3])]
    out = affinity_losses(e, bg, act, mining="per_anchor")
    # each background frame's least similar partner (itself included) is the other one, A = 0.3
    assert float(out["bg"]) == pytest.approx(0.5 - 0.3)
    # action frames 2, 3: A(2, 3) = 0 for both anchors
    assert float(out["act"]) == pytest.approx(0.5)
    # act -> bg: frame 2's most similar background is e1 (r), frame 3's is e1 (-0.3): hinges r - 0.1, 0
    # bg -> act: e0's most similar action is e2 (0), e1's is e2 (r): hinges 0, r - 0.1
    assert float(out["diff"]) == pytest.approx((r - 0.1) / 2 + (r - 0.1) / 2)
    # the code skips a video without a background click, even for its action term
    assert float(affinity_losses(e, torch.zeros_like(bg), act, mining="per_anchor")["act"]) == 0.0
    # the code's list [2, 3, 3, 1]: a duplicate counts twice, the clicked snippet 1 pairs with itself (A = 1)
    dup = affinity_losses(e, bg, [torch.tensor([2, 3, 3, 1])], mining="per_anchor")
    # act -> bg row maxima r, -0.3, -0.3, 1; bg -> act column maxima 0.3, 1
    assert float(dup["diff"]) == pytest.approx((r - 0.1 + 0.9) / 4 + (0.2 + 0.9) / 2)
    # each action entry's least similar entry: e2 -> e3 (0), e3 -> e1 (-0.3) twice, e1 -> e3 (-0.3)
    assert float(dup["act"]) == pytest.approx((0.5 + 3 * 0.8) / 4)


def test_affinity_loss_is_zero_when_the_margins_hold():
    e = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]])
    bg = torch.tensor([[True, True, False, False]])
    out = affinity_losses(e, bg, [torch.tensor([2, 3])])
    assert all(float(v) == 0.0 for v in out.values())


# ------------------------------------------------------------------------------------------------ Eq. 14-16


def test_local_affinity_is_the_neighbour_cosine():
    torch.manual_seed(0)
    e = torch.nn.functional.normalize(torch.randn(2, 7, 5), dim=-1)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 5:] = False
    a = local_affinity(e, mask, 3)
    for b in range(2):
        for t in range(7):
            for i in range(3):
                u = t - 1 + i
                ok = bool(mask[b, t]) and 0 <= u < 7 and bool(mask[b, u])
                want = float(e[b, t] @ e[b, u]) if ok else 0.0
                if bool(mask[b, t]) or not ok:
                    assert float(a[b, i, t]) == pytest.approx(want, abs=1e-6)


def test_affinity_conv_matches_direct_per_position_sum():
    torch.manual_seed(1)
    conv = AffinityConv1d(in_channels=4, out_channels=3, kernel_size=3, dilation=1, padding=1)
    x, a = torch.randn(2, 4, 6), torch.randn(2, 3, 6)
    got = conv(x, affinity=a)
    W, bias = conv.weight.detach(), conv.bias.detach()
    want = torch.zeros(2, 3, 6)
    for b in range(2):
        for t in range(6):
            for m in range(3):
                acc = float(bias[m])
                for i in range(3):
                    u = t - 1 + i
                    if 0 <= u < 6:  # Eq. 15 then 16: modulate neighbour u by a[i, t], then the kernel's tap i
                        acc += float(W[m, :, i] @ (x[b, :, u] * a[b, i, t]))
                want[b, m, t] = acc
    assert torch.allclose(got, want, atol=1e-5)
    # no affinity (or all ones) is the vanilla convolution, Eq. 14
    plain = torch.nn.functional.conv1d(x, conv.weight, conv.bias, padding=1)
    assert torch.allclose(conv(x), plain, atol=1e-6)
    assert torch.allclose(conv(x, affinity=torch.ones(2, 3, 6)), plain, atol=1e-5)


@pytest.mark.parametrize("c_in", [4, 6, 7])
def test_affinity_conv_channel_thirds_is_the_authors_tile(c_in):
    # network.py: the tile's block i (rows i*C_in .. (i+1)*C_in) holds a[i], and it multiplies nn.Unfold's rows,
    # where row c*3 + k is channel c at tap k: so (c, k) is scaled by a[(3c + k) // C_in]
    torch.manual_seed(2)
    conv = AffinityConv1d(in_channels=c_in, out_channels=3, kernel_size=3, dilation=1, padding=1, bias=False,
                          layout="channel_thirds")
    x, a = torch.randn(2, c_in, 6), torch.randn(2, 3, 6)
    got = conv(x, affinity=a)
    W = conv.weight.detach()
    want = torch.zeros(2, 3, 6)
    for b in range(2):
        for t in range(6):
            for c in range(c_in):
                for k in range(3):
                    u = t - 1 + k
                    if 0 <= u < 6:
                        want[b, :, t] += W[:, c, k] * x[b, c, u] * a[b, (3 * c + k) // c_in, t]
    assert torch.allclose(got, want, atol=1e-5)
    per_tap = AffinityConv1d(in_channels=c_in, out_channels=3, kernel_size=3, dilation=1, padding=1, bias=False)
    per_tap.weight.data.copy_(conv.weight.data)
    assert not torch.allclose(per_tap(x, affinity=a), got, atol=1e-3)
    # with every similarity 1 both layouts are the plain convolution
    ones = torch.ones(2, 3, 6)
    assert torch.allclose(conv(x, affinity=ones), torch.nn.functional.conv1d(x, W, padding=1), atol=1e-5)


def test_code_preset_builds_the_code_tile_and_list():
    model = _model(affinity_tile="channel_thirds", pseudo_action_set="list")
    assert model.layer1.conv1.layout == model.layer2.conv1.layout == "channel_thirds"
    x, mask, batch = _batch()
    L = model.losses(model(x, mask), batch, iteration=0)
    L["total"].backward()
    assert model.embedding.weight.grad.abs().sum() > 0


def test_affinity_conv_plugs_into_temporal_conv_stack():
    stack = TemporalConvStack(in_dim=4, widths=[5, 5], kernel_size=3, conv=AffinityConv1d)
    x, mask = torch.randn(2, 9, 4), torch.ones(2, 9, dtype=torch.bool)
    assert stack(x, mask, affinity=torch.rand(2, 3, 9)).shape == (2, 9, 5)
    with pytest.raises(ValueError):
        AffinityConv1d(in_channels=4, out_channels=5, kernel_size=3, dilation=2, padding=2)


# ------------------------------------------------------------------------------------------------ model


def _model(**params):
    torch.manual_seed(0)
    model, _ = build_localizer("backtal", {"hidden_dim": 16, "attention_hidden": 8, **params}, input_dim=6,
                               num_classes=3)
    return model


def _batch(B=2, T=24):
    torch.manual_seed(3)
    x = torch.randn(B, T, 6)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[1, 17:] = False
    bg = torch.zeros(B, T, dtype=torch.bool)
    bg[0, [2, 10, 20]] = True
    bg[1, [1, 8]] = True
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    return x, mask, SimpleNamespace(targets={"video_labels": labels, "background": bg, "clicks": torch.zeros(B, T, 3)})


def test_total_is_eq4_and_cls_uses_the_two_passes_labels():
    model = _model()
    x, mask, batch = _batch()
    out = model(x, mask)
    L = model.losses(out, batch, iteration=0)
    L["total"].backward()
    assert model.embedding.weight.grad is not None and model.attention[0].weight.grad is not None
    L = {k: v.detach() for k, v in L.items()}
    topk = TopK("floor", 8)
    with torch.no_grad():
        labels = batch.targets["video_labels"]
        cls = (pooled_video_loss(out.aux["cas_base"], mask, labels, background=1.0, topk=topk)
               + pooled_video_loss(out.class_scores, mask, labels, background=0.0, topk=topk))
    assert float(L["cls"]) == pytest.approx(float(cls), rel=1e-6)
    assert float(L["total"]) == pytest.approx(float(L["cls"] + L["frame"] + 1.0 * L["sep"] + 0.8 * L["aff"]), rel=1e-6)
    assert float(L["aff"]) == pytest.approx(float(L["aff_bg"] + L["aff_act"] + L["aff_diff"]), rel=1e-6)
    # the logged attention mean (the collapse diagnostic) covers the valid snippets only
    assert float(L["attention_mean"]) == pytest.approx(float(out.aux["attention"].detach()[mask].mean()), rel=1e-6)


def test_base_and_suppressed_passes_differ_by_the_attention():
    model = _model().eval()
    x, mask, _ = _batch()
    out = model(x, mask)
    base, _ = model._cas(x * mask[..., None], mask, local_affinity(out.aux["embedding"], mask))
    assert torch.allclose(base, out.aux["cas_base"], atol=1e-6)
    supp, _ = model._cas(x * out.aux["attention"][..., None], mask, local_affinity(out.aux["embedding"], mask))
    assert torch.allclose(supp, out.class_scores, atol=1e-6)


def test_ablation_rows_switch_terms_off():
    x, mask, batch = _batch()
    base = _model(frame_loss=False, separation=False, affinity=False)
    assert base.embedding is None
    L = {k: v.detach() for k, v in base.losses(base(x, mask), batch, iteration=0).items()}
    assert float(L["frame"]) == float(L["sep"]) == float(L["aff"]) == 0.0
    assert float(L["total"]) == pytest.approx(float(L["cls"]))
    click = _model(separation=False, affinity=False)
    L = {k: v.detach() for k, v in click.losses(click(x, mask), batch, iteration=0).items()}
    assert float(L["frame"]) > 0 and float(L["sep"]) == 0.0


def test_padding_never_changes_a_videos_scores():
    model = _model().eval()
    x, mask, _ = _batch()
    with torch.no_grad():
        batched = model(x, mask)
        alone = model(x[1:, :17], mask[1:, :17])
    assert torch.allclose(batched.class_scores[1, :17], alone.class_scores[0], atol=1e-5)
    assert torch.allclose(batched.aux["cas_base"][1, :17], alone.aux["cas_base"][0], atol=1e-5)
    fb, fa = model.frame_scores(batched, 1), model.frame_scores(alone, 0)
    assert fb.scores.shape == (17, 3)
    for name in ("scores", "video_scores", "class_probs", "actionness"):
        np.testing.assert_allclose(getattr(fb, name), getattr(fa, name), atol=1e-5)
    # padded snippets hold no score
    assert float(batched.class_scores[1, 17:].abs().max()) == 0.0


def test_frame_scores_are_normalised_for_the_preset():
    model = _model().eval()
    x, mask, _ = _batch()
    with torch.no_grad():
        out = model(x, mask)
        fs = model.frame_scores(out, 0)
    # BaS-Net's utils.minmax_norm of the suppressed logits: (x - relu(min)) / (relu(max) - relu(min)), not clipped
    logits = out.class_scores[0, :24, 1:].numpy()
    lo, hi = np.maximum(logits.min(0), 0), np.maximum(logits.max(0), 0)
    delta = np.where(hi - lo > 0, hi - lo, 1.0)
    np.testing.assert_allclose(fs.scores, (logits - lo) / delta, rtol=1e-5, atol=1e-6)
    assert np.allclose(fs.scores.max(0)[hi > 0], 1.0)
    assert fs.actionness.shape == (24,) and fs.actionness.min() == pytest.approx(0.0)
    assert 0 < fs.video_scores.sum() < 1  # softmax over C + 1, action columns only
    soft = _model(inference={"actionness": "none", "cas": "softmax"}).eval()
    with torch.no_grad():
        fs = soft.frame_scores(soft(x, mask), 0)
    assert fs.actionness is None
    assert np.allclose(fs.scores.min(0), 0.0) and np.allclose(fs.scores.max(0), 1.0)


def test_end_to_end_short_run_produces_detections(tiny_run):
    res, rows = tiny_run({
        "data": {"labels": {"background_clicks": {"source": "simulated"}, "video_labels": True},
                 "sampling": {"train": {"kind": "resize", "length": 48},
                              "inference": {"kind": "resize", "length": 48}}},
        "train": {"iterations": 6},
        "model": {"name": "backtal", "params": {"hidden_dim": 32, "attention_hidden": 16, "embed_dim": 8}},
        "postprocess": {"preset": "backtal", "params": {"class_threshold": 0.0}}})
    assert len(rows) == 6 and all(math.isfinite(r["total"]) for r in rows)
    assert any(r["frame"] > 0 for r in rows) and any(r["aff"] > 0 for r in rows)
    assert res.extra["n_detections"] > 0


def test_attention_l1_is_the_norm_over_time_and_losses_follow_loss_passes():
    x, mask, batch = _batch()
    mask[1, 17:] = False
    model = _model(attention_l1=1e-4, separation=False, affinity=False)
    out = model(x, mask)
    L = model.losses(out, batch, iteration=0)
    att = out.aux["attention"].detach()
    expected_l1 = (att[0].sum() + att[1, :17].sum()) / 2  # BaS-Net: mean over videos of sum_t |w_t|
    L = {k: v.detach() for k, v in L.items()}
    assert float(L["attention_l1"]) == pytest.approx(float(expected_l1), rel=1e-6)
    assert float(L["total"]) == pytest.approx(float(L["cls"] + L["frame"] + 1e-4 * expected_l1), rel=1e-6)
    targets = torch.cat([(batch.targets["background"] & mask).float()[..., None], torch.zeros(2, 24, 3)], -1)
    base = frame_click_loss(out.aux["cas_base"].detach(), targets)
    supp = frame_click_loss(out.class_scores.detach(), targets)
    assert float(L["frame"]) == pytest.approx(float(base), rel=1e-6)  # the default: the base pass only
    both = _model(attention_l1=1e-4, separation=False, affinity=False, loss_passes="both")
    L = {k: v.detach() for k, v in both.losses(both(x, mask), batch, iteration=0).items()}
    assert float(L["frame"]) == pytest.approx(float(base + supp), rel=1e-6)


def test_the_frame_loss_reads_the_batch_s_action_clicks_in_their_class_column():
    x, mask, batch = _batch()
    batch.targets["clicks"][0, 5, 1] = 1.0  # an action click of class 1 on snippet 5 of video 0
    model = _model(separation=False, affinity=False)
    out = model(x, mask)
    frame = float(model.losses(out, batch, iteration=0)["frame"].detach())
    bg = (batch.targets["background"] & mask).float()[..., None]
    with_click = frame_click_loss(out.aux["cas_base"].detach(), torch.cat([bg, batch.targets["clicks"]], -1))
    without = frame_click_loss(out.aux["cas_base"].detach(), torch.cat([bg, torch.zeros(2, 24, 3)], -1))
    assert frame == pytest.approx(float(with_click), rel=1e-6) and frame != pytest.approx(float(without), rel=1e-3)
