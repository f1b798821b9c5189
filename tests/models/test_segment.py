"""Segment-level supervision (models/segment.py): each loss on hand-made tensors, the sphere loss against the plain
softmax loss at m = 1, the propagation loss on constant scores, the top-k readings, and a short engine run."""
import math

import pytest
import torch
import torch.nn.functional as F

from clicktal.models import LOCALIZERS, build_localizer
from clicktal.models.segment import (classification_loss, partial_segment_loss, propagation_loss, sphere_loss,
                                     sphere_psi, topk_counts)


def test_topk_counts_both_readings_of_r_2q():
    mask = torch.ones(2, 40, dtype=torch.bool)
    labelled = torch.zeros(2, 40, dtype=torch.bool)
    labelled[0, [3, 4, 20]] = True  # Q = 3; video 1 has no labelled snippet
    assert topk_counts(mask, labelled, rule="ratio").tolist() == [40 // 6, 40 // 8]
    assert topk_counts(mask, labelled, rule="count").tolist() == [6, 40 // 8]
    assert topk_counts(mask, labelled, rule="fixed").tolist() == [40 // 8, 40 // 8]  # the labels change nothing
    assert topk_counts(mask, labelled, rule="fixed", fallback_r=4).tolist() == [10, 10]


def test_fixed_topk_cl_reads_no_segment_label():
    """Table 1's CL is the same for one and two segments: with ``topk: fixed`` and no partial segment loss, the
    loss is the same whatever the labelled snippets (with ``ratio`` it is not), and the method declares no segment
    targets, so that its datasets build none."""
    from types import SimpleNamespace

    torch.manual_seed(0)
    x, mask = torch.randn(1, 40, 6), torch.ones(1, 40, dtype=torch.bool)
    one, two = torch.zeros(1, 40, 3), torch.zeros(1, 40, 3)
    one[0, 5, 1] = 1.0
    two[0, 5:20, 1] = 1.0  # two labelled segments and everything between them
    y = torch.tensor([[0.0, 1.0, 0.0]])
    for topk, same in (("fixed", True), ("ratio", False)):
        model, _ = build_localizer("segment", {"hidden_dim": 8, "dropout": 0.0, "topk": topk, "segment_loss": False},
                                   input_dim=6, num_classes=3)
        kinds = LOCALIZERS.get("segment").target_kinds(model.config)
        assert kinds == (("video_labels",) if same else ("video_labels", "segments"))
        out = model(x, mask)
        batches = [SimpleNamespace(targets={"video_labels": y, "segments": u}) for u in (one, two)]
        if same:  # what the label-free CL's datasets build
            batches.append(SimpleNamespace(targets={"video_labels": y}))
        totals = [model.losses(out, batch, iteration=0)["total"].item() for batch in batches]
        assert all(t == pytest.approx(totals[0], rel=1e-6) for t in totals[1:]) is same


def test_classification_loss_hand_worked():
    s = torch.zeros(1, 4, 2)
    s[0, 0, 0] = 2 * math.log(3)  # k = 2: pooled [ln 3, 0] -> p = [3/4, 1/4]
    mask = torch.ones(1, 4, dtype=torch.bool)
    got = classification_loss(s, mask, torch.tensor([[1.0, 0.0]]), torch.tensor([2]))
    assert float(got) == pytest.approx(-math.log(3 / 4) / 2)  # 1/N with N = 2


def test_partial_segment_loss_sees_only_labelled_pairs():
    loc = torch.zeros(1, 4, 2)
    mask = torch.ones(1, 4, dtype=torch.bool)
    u = torch.zeros(1, 4, 2)
    u[0, 1, 0] = 1.0
    assert float(partial_segment_loss(loc, mask, u)) == pytest.approx(math.log(4))  # a = 1/4 over time
    changed = loc.clone()
    changed[0, :, 1] = torch.tensor([5.0, -3.0, 2.0, 0.0])  # class 1 has no label: no effect
    assert float(partial_segment_loss(changed, mask, u)) == pytest.approx(math.log(4))
    mask[0, 3] = False  # padding is outside the softmax: a = 1/3
    assert float(partial_segment_loss(loc, mask, u)) == pytest.approx(math.log(3))
    assert float(partial_segment_loss(loc, mask, torch.zeros_like(u))) == 0.0


def test_sphere_loss_is_the_plain_softmax_loss_at_m_1():
    torch.manual_seed(0)
    f = torch.rand(1, 6, 5)
    a = torch.rand(1, 6, 3).softmax(1)
    w = torch.randn(3, 5)
    mask = torch.ones(1, 6, dtype=torch.bool)
    y = torch.tensor([[0.0, 1.0, 1.0]])
    expected = 0.0
    for n in (1, 2):
        att = torch.where(a[0, :, n] >= a[0, :, n].median(), a[0, :, n], torch.zeros(6))
        Fn = f[0].T @ att
        logits = Fn.norm() * F.normalize(w, dim=1) @ F.normalize(Fn, dim=0)
        expected += float(F.cross_entropy(logits[None], torch.tensor([n])))
    got = sphere_loss(f, a, mask, y, w, m=1)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    assert float(sphere_loss(f, a, mask, y, w, m=4)) > float(got)  # the margin makes the target harder


def test_sphereface_psi_is_monotone_and_the_printed_one_is_not():
    theta = torch.linspace(0, math.pi, 200)
    sf = sphere_psi(theta, 4, "sphereface")
    assert bool((sf[1:] <= sf[:-1] + 1e-5).all())
    assert float(sf[0]) == pytest.approx(1.0) and float(sf[-1]) == pytest.approx(-7.0, abs=1e-4)  # -1 - 2 x 3
    printed = sphere_psi(theta, 4, "printed")
    assert not bool((printed[1:] <= printed[:-1] + 1e-5).all())


def test_propagation_loss_zero_for_constant_scores_and_hand_worked():
    torch.manual_seed(1)
    f = torch.rand(1, 5, 3)
    mask = torch.ones(1, 5, dtype=torch.bool)
    y = torch.tensor([[1.0, 0.0]])
    assert float(propagation_loss(torch.full((1, 5, 2), 0.7), f, mask, y)) == pytest.approx(0.0, abs=1e-6)
    f2 = torch.tensor([[[1.0, 0.0], [0.6, 0.8]]])  # cosine 0.6
    c = torch.tensor([[[0.0, 0.0], [1.0, 0.0]]])   # class 0 differs by 1 between the two snippets
    m2 = torch.ones(1, 2, dtype=torch.bool)
    # sum_{i,j} S_ij (c_i - c_j)^2 = 2 x 0.6; mean over 4 pairs
    assert float(propagation_loss(c, f2, m2, y)) == pytest.approx(1.2 / 4)
    assert float(propagation_loss(c, f2, m2, y, reduction="sum")) == pytest.approx(1.2)
    assert float(propagation_loss(c, f2, m2, y, similarity="dot")) == pytest.approx(2 * 0.6 / 4)
    c[0, 1, 1] = 5.0  # class 1 is not in the video
    assert float(propagation_loss(c, f2, m2, y, classes="labelled")) == pytest.approx(1.2 / 4)


def test_total_is_eq1_and_padding_does_not_change_scores():
    from types import SimpleNamespace

    torch.manual_seed(0)
    model, _ = build_localizer("segment", {"hidden_dim": 8}, input_dim=6, num_classes=3)
    x = torch.randn(2, 10, 6)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 7:] = False
    u = torch.zeros(2, 10, 3)
    u[0, 2, 1] = u[1, 4, 0] = 1.0
    batch = SimpleNamespace(targets={"video_labels": torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]), "segments": u})
    model.train()
    L = model.losses(model(x, mask), batch, iteration=0)
    L["total"].backward()
    L = {k: float(v.detach()) for k, v in L.items()}
    assert L["total"] == pytest.approx(L["cls"] + 0.1 * L["segment"] + 1e-4 * L["sphere"] + 0.02 * L["prop"],
                                       rel=1e-6)
    assert all(L[k] > 0 for k in ("cls", "segment", "sphere", "prop"))
    model.eval()
    with torch.no_grad():
        both, alone = model(x, mask), model(x[1:, :7], mask[1:, :7])
    assert torch.allclose(both.class_scores[1, :7], alone.class_scores[0], atol=1e-6)
    fs = model.frame_scores(both, 1)
    assert fs.scores.shape == (7, 3) and fs.video_scores.shape == (3,)


def test_short_run_through_the_engine_with_simulated_segments(tiny_run):
    res, rows = tiny_run({
        "data": {"labels": {"segments": {"source": "simulated", "per_instance": 2}, "video_labels": True}},
        "train": {"iterations": 5},
        "model": {"name": "segment", "params": {"hidden_dim": 16}},
        "postprocess": {"preset": "segment"}})
    assert len(rows) == 5 and all(r["segment"] > 0 and r["prop"] > 0 for r in rows)
    assert res.extra["n_detections"] > 0
