"""SF-Net's own loss logic: Eq. 2's background mining over the batch and the combination of the terms (Eq. 3, 6).
The shared terms themselves (Eq. 1, 4, 5) are tested in test_losses.py."""
import pytest
import torch

from clicktal.models import build_localizer
from clicktal.models.sfnet_config import SFNetConfig
from clicktal.models.sfnet_losses import mined_background_loss
from clicktal.pipeline.data.datasets import Batch


def grad_of(loss, x):
    (g,) = torch.autograd.grad(loss, x, allow_unused=True)
    return torch.zeros_like(x) if g is None else g


def test_background_mining_takes_top_eta_k_over_the_whole_batch():
    # background activations of two videos; video 1 is padded after 3 snippets
    bg = torch.tensor([[0.1, 5.0, 0.2, 4.0], [3.0, 0.3, 6.0, 9.0]])
    C = torch.zeros(2, 4, 3)
    C[..., 0] = bg
    C.requires_grad_(True)
    mask = torch.tensor([[True] * 4, [True, True, True, False]])
    labelled = torch.tensor([[False, True, False, False], [False, False, False, False]])
    candidates = mask & ~labelled
    loss, sel = mined_background_loss(C, candidates, n=3)
    # labelled (0,1) and padded (1,3) are excluded although their scores are the highest
    assert sel.tolist() == [[False, False, False, True], [True, False, True, False]]
    expected = -C.detach().log_softmax(-1)[..., 0][sel].mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    g = grad_of(loss, C)
    assert (g.abs().sum(-1) > 0).tolist() == sel.tolist()  # gradient only at the mined snippets


def test_background_loss_is_zero_with_nothing_to_mine():
    C = torch.randn(1, 5, 3, requires_grad=True)
    loss, sel = mined_background_loss(C, torch.ones(1, 5, dtype=torch.bool), n=0)
    assert loss.item() == 0 and not sel.any() and grad_of(loss, C).abs().sum() == 0


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
    return Batch(video_ids=["a", "b"], features=feats, mask=mask, offsets=torch.zeros(B, dtype=torch.long),
                 lengths=mask.sum(1), targets={"video_labels": vl, "actions": targets, "anchors": amask.clone(),
                                               "background": torch.zeros(B, T, dtype=torch.bool)},
                 masks={"actions": amask})


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
