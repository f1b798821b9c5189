"""SF-Net's outputs, frame scores, loss terms and one optimiser step, pinned to values measured on the monolithic
implementation (before it was rebuilt on :mod:`clicktal.models.blocks` and :mod:`clicktal.models.losses`).

A refactor of SF-Net must leave every number here unchanged: sums to abs 1e-4 / rel 1e-5, counts exactly.
"""
import numpy as np
import pytest
import torch

from clicktal.models import build_localizer
from clicktal.pipeline.data.datasets import Batch


def inputs():
    g = torch.Generator().manual_seed(1)
    B, T, D, C = 2, 40, 64, 5
    feats = torch.randn(B, T, D, generator=g)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[1, 30:] = False
    feats[1, 30:] = 0
    targets = torch.zeros(B, T, C)
    amask = torch.zeros(B, T, dtype=torch.bool)
    for b, t, c in [(0, 5, 1), (0, 20, 3), (1, 8, 0), (1, 25, 4), (0, 33, 1)]:
        targets[b, t, c] = 1
        amask[b, t] = True
    bg = torch.zeros(B, T, dtype=torch.bool)
    bg[0, 12] = True
    bg[1, 2] = True
    vl = torch.zeros(B, C)
    vl[0, [1, 3]] = 1
    vl[1, [0, 4]] = 1
    return dict(video_ids=["a", "b"], features=feats, mask=mask, video_labels=vl, action_targets=targets,
                action_mask=amask, anchor_mask=amask.clone(), background_mask=bg,
                offsets=torch.zeros(B, dtype=torch.long), lengths=mask.sum(1))


COUNTS = ("n_labelled", "n_mined", "n_background")

EVAL_TERMS = {"frame_action": 5.915719032287598, "frame_background": 3.5422515869140625, "video": 5.848038673400879,
              "actionness": 4.072188854217529, "frame": 6.62416934967041, "total": 16.544397354125977,
              "n_labelled": 6.0, "n_mined": 1.0, "n_background": 30.0}
TRAIN_TERMS = {"frame_action": 6.803293704986572, "frame_background": 3.6084747314453125,
               "video": 6.0444111824035645, "actionness": 4.3075175285339355, "frame": 7.524988651275635,
               "total": 17.876916885375977, "n_labelled": 5.0, "n_mined": 0.0, "n_background": 25.0}


def close(value, expected):
    return float(torch.as_tensor(value).detach()) == pytest.approx(expected, rel=1e-5, abs=1e-4)


def check_terms(terms, expected):
    assert set(expected) <= set(terms)
    for k, v in expected.items():
        if k in COUNTS:
            assert float(terms[k].detach()) == v, k
        else:
            assert close(terms[k], v), (k, float(terms[k].detach()), v)


@pytest.fixture()
def setup():
    torch.manual_seed(0)
    # mining on the training pass: the behaviour these numbers were measured with (now the named option)
    model, _ = build_localizer("sfnet", {"mining": {"start_iteration": 0, "scores_from": "training_pass"}},
                               input_dim=64, num_classes=5,
                               streams={"rgb": (0, 32), "flow": (32, 64)})
    return model, Batch(**inputs())


def test_eval_outputs_frame_scores_and_losses_are_pinned(setup):
    model, batch = setup
    model.eval()
    with torch.no_grad():
        o = model(batch.features, batch.mask)
        assert close(o.class_scores.double().sum(), 132.92451057583094)
        assert close(o.actionness.double().sum(), 1.0612772479653358)
        assert close(o.class_scores.double().abs().sum(), 300.747994184494)
        fs = model.frame_scores(o, 1)
        assert fs.scores.shape[0] == 30
        assert close(fs.scores.sum(), 94.61589652299881)
        np.testing.assert_allclose(fs.video_scores, [0.4095116853713989, 0.14168287813663483, 0.09811115264892578,
                                                     0.2382667362689972, 0.11242753267288208], rtol=1e-5, atol=1e-6)
        check_terms(model.losses(o, batch, iteration=10), EVAL_TERMS)


def test_one_training_step_is_pinned(setup):
    model, batch = setup
    model.train()
    torch.manual_seed(5)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    o = model(batch.features, batch.mask)
    terms = model.losses(o, batch, iteration=10)
    check_terms(terms, TRAIN_TERMS)
    opt.zero_grad()
    terms["total"].backward()
    opt.step()
    model.eval()
    with torch.no_grad():
        assert close(model(batch.features, batch.mask).class_scores.double().sum(), 130.58123951824382)
