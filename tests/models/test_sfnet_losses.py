"""SF-Net's loss terms (Eq. 1-6) on hand-made tensors: values, terms that must be zero, and where gradients flow."""
import math

import pytest
import torch

from clicktal.models import build_localizer
from clicktal.models.sfnet import (SFNetConfig, actionness_loss, background_loss, frame_action_loss, top_mask,
                                   video_loss, video_targets)
from clicktal.pipeline.data.datasets import Batch


def grad_of(loss, x):
    (g,) = torch.autograd.grad(loss, x, allow_unused=True)
    return torch.zeros_like(x) if g is None else g


def test_frame_action_loss_is_mean_cross_entropy_over_labelled_snippets():
    # 1 video, 4 snippets, background + 2 classes; snippets 1 (class 0) and 3 (class 1) are labelled
    C = torch.tensor([[[0.0, 1.0, 2.0], [0.5, 3.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 2.0]]], requires_grad=True)
    labelled = torch.tensor([[False, True, False, True]])
    targets = torch.zeros(1, 4, 2)
    targets[0, 1, 0] = targets[0, 3, 1] = 1.0
    loss = frame_action_loss(C, labelled, targets, offset=1)
    logp = C.detach().log_softmax(-1)
    expected = -(logp[0, 1, 1] + logp[0, 3, 2]) / 2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    g = grad_of(loss, C)
    assert g[0, 0].abs().sum() == 0 and g[0, 2].abs().sum() == 0  # unlabelled snippets get no gradient
    assert g[0, 1].abs().sum() > 0 and g[0, 3].abs().sum() > 0


def test_frame_action_loss_is_zero_when_confidently_right_and_without_labels():
    C = torch.tensor([[[-50.0, 50.0, -50.0], [-50.0, -50.0, 50.0]]])
    targets = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    assert frame_action_loss(C, torch.ones(1, 2, dtype=torch.bool), targets, 1).item() == pytest.approx(0, abs=1e-6)
    C.requires_grad_(True)
    none = frame_action_loss(C, torch.zeros(1, 2, dtype=torch.bool), targets, 1)
    assert none.item() == 0 and grad_of(none, C).abs().sum() == 0


def test_background_mining_takes_top_eta_k_over_the_whole_batch():
    # background activations of two videos; video 1 is padded after 3 snippets
    bg = torch.tensor([[0.1, 5.0, 0.2, 4.0], [3.0, 0.3, 6.0, 9.0]])
    C = torch.zeros(2, 4, 3)
    C[..., 0] = bg
    C.requires_grad_(True)
    mask = torch.tensor([[True] * 4, [True, True, True, False]])
    labelled = torch.tensor([[False, True, False, False], [False, False, False, False]])
    candidates = mask & ~labelled
    loss, sel = background_loss(C, candidates, n=3)
    # labelled (0,1) and padded (1,3) are excluded although their scores are the highest
    assert sel.tolist() == [[False, False, False, True], [True, False, True, False]]
    expected = -C.detach().log_softmax(-1)[..., 0][sel].mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    g = grad_of(loss, C)
    assert (g.abs().sum(-1) > 0).tolist() == sel.tolist()  # gradient only at the mined snippets


def test_background_loss_is_zero_with_nothing_to_mine():
    C = torch.randn(1, 5, 3, requires_grad=True)
    loss, sel = background_loss(C, torch.ones(1, 5, dtype=torch.bool), n=0)
    assert loss.item() == 0 and not sel.any() and grad_of(loss, C).abs().sum() == 0


def test_actionness_loss_values_and_gradient_support():
    A = torch.tensor([[2.0, -1.0, 0.5, 3.0, 0.0]], requires_grad=True)
    pos = torch.tensor([[True, False, False, True, False]])
    neg = torch.tensor([[False, True, False, False, False]])
    loss = actionness_loss(A, pos, neg)
    s = torch.sigmoid(A.detach())[0]
    expected = -(math.log(s[0]) + math.log(s[3])) / 2 - math.log(1 - s[1])
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    g = grad_of(loss, A)[0]
    assert g[2] == 0 and g[4] == 0 and g[0] < 0 and g[3] < 0 and g[1] > 0  # positives pushed up, negatives down
    # zero when the actionness is saturated the right way
    sat = torch.tensor([[60.0, -60.0]])
    assert actionness_loss(sat, torch.tensor([[True, False]]), torch.tensor([[False, True]])).item() < 1e-12


def test_video_loss_matches_topk_pooling_by_hand():
    T = 9  # k = ceil(9 / 8) = 2
    C = torch.randn(1, T + 3, 3)
    C[0, T:] = 100.0  # padding must not be pooled
    C.requires_grad_(True)
    mask = torch.zeros(1, T + 3, dtype=torch.bool)
    mask[0, :T] = True
    q = torch.tensor([[0.25, 0.75]])
    loss = video_loss(C, mask, q, topk_divisor=8, offset=1)
    r = C.detach()[0, :T].topk(2, dim=0).values.mean(0)
    expected = -(q[0] * r.log_softmax(-1)[1:]).sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    g = grad_of(loss, C)[0]
    assert g[T:].abs().sum() == 0  # nothing flows into padding
    for col in range(3):  # per column, exactly the top-2 valid snippets receive gradient
        top = set(C.detach()[0, :T, col].topk(2).indices.tolist())
        assert {i for i in range(T) if g[i, col] != 0} == top


def test_video_targets_average_click_labels_and_fall_back_to_video_labels():
    labelled = torch.tensor([[True, True, True, False], [False] * 4])
    targets = torch.zeros(2, 4, 3)
    targets[0, 0, 0] = targets[0, 1, 0] = targets[0, 2, 2] = 1
    video_labels = torch.tensor([[1.0, 0, 1], [0, 1, 1]])
    q = video_targets(labelled, targets, video_labels)
    assert torch.allclose(q[0], torch.tensor([2 / 3, 0, 1 / 3]))
    assert torch.allclose(q[1], torch.tensor([0, 0.5, 0.5]))
    q2 = video_targets(labelled, targets, video_labels, from_clicks=False)
    assert torch.allclose(q2[0], torch.tensor([0.5, 0, 0.5]))


def test_top_mask_handles_too_few_candidates():
    allowed = torch.tensor([[True, False, True]])
    assert top_mask(torch.tensor([[1.0, 9.0, 2.0]]), allowed, 5).tolist() == [[True, False, True]]


def _batch(B=2, T=12, C=3, D=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.rand(B, T, D, generator=g)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[1, 9:] = False
    feats[~mask] = 0
    targets = torch.zeros(B, T, C)
    amask = torch.zeros(B, T, dtype=torch.bool)
    for b, t, c in [(0, 3, 0), (0, 8, 2), (1, 5, 1)]:
        targets[b, t, c] = 1
        amask[b, t] = True
    vl = (targets.sum(1) > 0).float()
    return Batch(["a", "b"], feats, mask, vl, targets, amask, amask.clone(), torch.zeros(B, T, dtype=torch.bool),
                 torch.zeros(B, dtype=torch.long), mask.sum(1))


def _model(**params):
    torch.manual_seed(0)
    model, _ = build_localizer("sfnet", params, input_dim=8, num_classes=3, streams={"rgb": (0, 4), "flow": (4, 8)})
    return model.eval()


def test_total_is_the_weighted_sum_of_eq_6():
    model = _model(alpha=0.3, beta=2.0, eta=2.0)
    b = _batch()
    terms = model.losses(model(b.features, b.mask), b, iteration=0)
    expected = terms["frame"] + 0.3 * terms["video"] + 2.0 * terms["actionness"]
    assert terms["total"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert terms["frame"].item() == pytest.approx(
        (terms["frame_action"] + terms["frame_background"] / 3).item(), rel=1e-6)  # Eq. 3: 1/Nc
    K = int(terms["n_labelled"])  # 3 clicks + whatever mining added
    assert K >= 3 and terms["n_background"].item() == min(2 * K, int(b.mask.sum()) - K)  # eta * K


def test_switched_off_terms_are_zero_and_weak_uses_only_the_video_loss():
    weak = _model(frame_loss=False, background=False, actionness=False, mining={"enabled": False})
    b = _batch()
    out = weak(b.features, b.mask)
    assert out.class_scores.shape == (2, 12, 3) and out.actionness is None  # no background column
    terms = weak.losses(out, b, iteration=0)
    assert terms["frame_action"].item() == 0 and terms["frame_background"].item() == 0
    assert terms["actionness"].item() == 0
    assert terms["total"].item() == pytest.approx(terms["video"].item())
    sfb = _model(actionness=False, mining={"enabled": False})
    t = sfb.losses(sfb(b.features, b.mask), b, iteration=0)
    assert t["actionness"].item() == 0 and t["frame_background"].item() > 0


def test_actionness_loss_never_reaches_the_classification_module():
    model = _model(frame_loss=True, video_loss=False, mining={"enabled": False})
    model.config.frame_loss = False  # leave only L_actionness in the total
    b = _batch()
    terms = model.losses(model(b.features, b.mask), b, iteration=0)
    terms["total"].backward()
    for name, p in model.named_parameters():
        touched = p.grad is not None and p.grad.abs().sum() > 0
        is_act = any(k in name for k in ("conv1", "conv2", "action", "act_mul"))
        assert touched == is_act, name


def test_mining_config_errors_are_named():
    with pytest.raises(ValueError, match="actionness"):
        SFNetConfig(background=False)
    with pytest.raises(ValueError, match="mining"):
        SFNetConfig(frame_loss=False, background=False, actionness=False)
