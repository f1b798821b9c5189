"""The shared loss terms (clicktal.models.losses) on hand-made tensors: values, terms that must be zero, and where
gradients flow."""
import math

import pytest
import torch

from clicktal.models.blocks import TopK
from clicktal.models.losses import (actionness_loss, background_loss, soft_cross_entropy, top_mask, video_loss,
                                    video_targets)


def grad_of(loss, x):
    (g,) = torch.autograd.grad(loss, x, allow_unused=True)
    return torch.zeros_like(x) if g is None else g


# ------------------------------------------------------------------------------------------------ Eq. 1


def test_soft_cross_entropy_is_the_mean_over_labelled_snippets():
    # 1 video, 4 snippets, background + 2 classes; snippets 1 (class 0) and 3 (class 1) are labelled
    C = torch.tensor([[[0.0, 1.0, 2.0], [0.5, 3.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 2.0]]], requires_grad=True)
    labelled = torch.tensor([[False, True, False, True]])
    targets = torch.zeros(1, 4, 2)
    targets[0, 1, 0] = targets[0, 3, 1] = 1.0
    loss = soft_cross_entropy(C, labelled, targets, offset=1)
    logp = C.detach().log_softmax(-1)
    expected = -(logp[0, 1, 1] + logp[0, 3, 2]) / 2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    g = grad_of(loss, C)
    assert g[0, 0].abs().sum() == 0 and g[0, 2].abs().sum() == 0  # unlabelled snippets get no gradient
    assert g[0, 1].abs().sum() > 0 and g[0, 3].abs().sum() > 0


def test_soft_cross_entropy_with_soft_targets_and_no_background_column():
    C = torch.tensor([[[1.0, 2.0, 0.0]]])
    targets = torch.tensor([[[0.5, 0.5, 0.0]]])  # two clicks of different classes on one snippet
    loss = soft_cross_entropy(C, torch.ones(1, 1, dtype=torch.bool), targets)
    logp = C.log_softmax(-1)[0, 0]
    assert loss.item() == pytest.approx(-(0.5 * logp[0] + 0.5 * logp[1]).item(), rel=1e-6)


def test_soft_cross_entropy_is_zero_when_confidently_right_and_without_labels():
    C = torch.tensor([[[-50.0, 50.0, -50.0], [-50.0, -50.0, 50.0]]])
    targets = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    assert soft_cross_entropy(C, torch.ones(1, 2, dtype=torch.bool), targets, offset=1).item() == pytest.approx(
        0, abs=1e-6)
    C.requires_grad_(True)
    none = soft_cross_entropy(C, torch.zeros(1, 2, dtype=torch.bool), targets, offset=1)
    assert none.item() == 0 and grad_of(none, C).abs().sum() == 0


# ------------------------------------------------------------------------------------------------ background


def test_background_loss_on_selected_snippets_and_other_columns():
    C = torch.randn(2, 5, 4, requires_grad=True)
    sel = torch.zeros(2, 5, dtype=torch.bool)
    sel[0, 1] = sel[1, 4] = True
    loss = background_loss(C, sel)
    expected = -C.detach().log_softmax(-1)[..., 0][sel].mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert (grad_of(loss, C).abs().sum(-1) > 0).tolist() == sel.tolist()
    last = background_loss(C, sel, column=3)
    assert last.item() == pytest.approx(-C.detach().log_softmax(-1)[..., 3][sel].mean().item(), rel=1e-6)
    empty = background_loss(C, torch.zeros_like(sel))
    assert empty.item() == 0 and grad_of(empty, C).abs().sum() == 0


def test_top_mask_picks_the_largest_allowed_over_the_batch():
    values = torch.tensor([[1.0, 9.0, 2.0], [5.0, 0.0, 3.0]])
    allowed = torch.tensor([[True, False, True], [True, True, True]])
    assert top_mask(values, allowed, 2).tolist() == [[False, False, False], [True, False, True]]
    assert top_mask(values, allowed, 5).tolist() == allowed.tolist()  # fewer candidates than n: all of them
    assert not top_mask(values, allowed, 0).any() and not top_mask(values, allowed, -3).any()


# ------------------------------------------------------------------------------------------------ Eq. 4


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


# ------------------------------------------------------------------------------------------------ Eq. 5


def test_video_loss_matches_topk_pooling_by_hand():
    T = 9  # k = ceil(9 / 8) = 2
    C = torch.randn(1, T + 3, 3)
    C[0, T:] = 100.0  # padding must not be pooled
    C.requires_grad_(True)
    mask = torch.zeros(1, T + 3, dtype=torch.bool)
    mask[0, :T] = True
    q = torch.tensor([[0.25, 0.75]])
    loss = video_loss(C, mask, q, topk=TopK("ceil", 8), offset=1)
    r = C.detach()[0, :T].topk(2, dim=0).values.mean(0)
    expected = -(q[0] * r.log_softmax(-1)[1:]).sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    g = grad_of(loss, C)[0]
    assert g[T:].abs().sum() == 0  # nothing flows into padding
    for col in range(3):  # per column, exactly the top-2 valid snippets receive gradient
        top = set(C.detach()[0, :T, col].topk(2).indices.tolist())
        assert {i for i in range(T) if g[i, col] != 0} == top


@pytest.mark.parametrize("topk", [TopK("ceil", 8), TopK("floor", 8), TopK("int", 12), TopK("fixed", k=3)])
def test_video_loss_equals_the_per_video_loop(topk):
    g = torch.Generator().manual_seed(3)
    lengths = [7, 30, 0, 19, 25]
    B, T, K = len(lengths), max(lengths), 4
    C = torch.randn(B, T, K, generator=g)
    mask = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]
    C[~mask] = 50.0
    q = torch.rand(B, K - 1, generator=g)
    q[3] = 0  # a video without targets is left out
    losses = []
    for b, n in enumerate(lengths):
        if n == 0 or q[b].sum() == 0:
            continue
        r = C[b, :n].topk(topk.count(n), dim=0).values.mean(0)
        losses.append(-(q[b] * r.log_softmax(-1)[1:]).sum())
    expected = torch.stack(losses).mean()
    assert video_loss(C, mask, q, topk=topk, offset=1).item() == pytest.approx(expected.item(), rel=1e-6)


def test_video_loss_is_zero_without_any_target():
    C = torch.randn(2, 4, 3, requires_grad=True)
    loss = video_loss(C, torch.ones(2, 4, dtype=torch.bool), torch.zeros(2, 3))
    assert loss.item() == 0 and grad_of(loss, C).abs().sum() == 0


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
    assert video_targets(torch.zeros(1, 2, dtype=torch.bool), torch.zeros(1, 2, 3), torch.zeros(1, 3)).sum() == 0
