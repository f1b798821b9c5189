"""SF-Net's action-frame mining (without dropout, kept across iterations, its yield) and the authors'-code preset,
item by item against hand-computed cases of the code's rules (github Flowerfan/SF-Net)."""
from pathlib import Path

import numpy as np
import pytest
import torch

from clicktal.models import build_localizer
from clicktal.models.losses import video_targets
from clicktal.models.sfnet_mining import mine_action_frames
from clicktal.pipeline.data.datasets import Batch
from clicktal.pipeline.core.config import load_config
from clicktal.pipeline.runs.schema import ExperimentConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
STREAMS = {"rgb": (0, 16), "flow": (16, 32)}


def block_batch(seed: int = 0, B: int = 4, T: int = 60, C: int = 3) -> Batch:
    """Videos of constant-feature action blocks (14 snippets each) with one click at each block's centre; the
    ground truth is the blocks themselves."""
    rng = np.random.default_rng(seed)
    protos = rng.normal(0, 1, (C, 32)).astype(np.float32)
    feats = rng.normal(0, 0.3, (B, T, 32)).astype(np.float32)
    targets, truth = np.zeros((B, T, C), np.float32), np.zeros((B, T, C), np.float32)
    for b in range(B):
        for start, c in ((3, b % C), (24, (b + 1) % C), (44, (b + 2) % C)):
            feats[b, start:start + 14] = protos[c]
            truth[b, start:start + 14, c] = 1
            targets[b, start + 7, c] = 1
    mask = torch.ones(B, T, dtype=torch.bool)
    amask = torch.from_numpy(targets.sum(-1) > 0)
    return Batch(video_ids=[f"v{b}" for b in range(B)], features=torch.from_numpy(feats), mask=mask,
                 offsets=torch.zeros(B, dtype=torch.long), lengths=mask.sum(1),
                 targets={"video_labels": torch.from_numpy((targets.sum(1) > 0).astype(np.float32)),
                          "actions": torch.from_numpy(targets), "anchors": amask.clone(),
                          "background": torch.zeros(B, T, dtype=torch.bool), "truth": torch.from_numpy(truth)},
                 masks={"actions": amask})


def sfnet(**params):
    torch.manual_seed(0)
    model, _ = build_localizer("sfnet", params, input_dim=32, num_classes=3, streams=STREAMS)
    return model


def test_mining_without_dropout_yields_at_least_as_much_on_the_same_weights():
    batch = block_batch()
    per_click = {}
    for source in ("eval_pass", "training_pass"):
        model = sfnet(mining={"start_iteration": 0, "scores_from": source})
        model.train()
        counts = []
        for draw in range(5):  # dropout draws on the training pass
            torch.manual_seed(draw)
            terms = model.losses(model(batch.features, batch.mask), batch, iteration=0)
            counts.append(float(terms["n_mined"] / terms["n_clicks"]))
            assert 0 <= terms["n_mined_true"] <= terms["n_mined"]
        per_click[source] = np.mean(counts)
    assert per_click["eval_pass"] >= per_click["training_pass"]
    assert per_click["eval_pass"] > 0


def test_the_yield_is_logged_with_its_precision_against_the_ground_truth():
    batch = block_batch()
    model = sfnet(mining={"start_iteration": 0})
    model.train()
    terms = model.losses(model(batch.features, batch.mask), batch, iteration=0)
    assert terms["n_clicks"] == 12  # 3 clicks in each of 4 videos
    # constant blocks: every mined snippet that stays inside its block is right; ones past the edge are not
    assert 0 < terms["n_mined_true"] <= terms["n_mined"]


def test_kept_mining_applies_earlier_labels_to_later_batches():
    batch = block_batch()
    model = sfnet(mining={"start_iteration": 0, "keep": True})
    model.train()
    labels = model.miner.propose(model, model(batch.features, batch.mask), batch, batch.masks["actions"],
                                 iteration=0)
    first = labels.mined
    model.miner.after_step(batch, labels.found)  # what the model's after_step does after a training step
    assert first.any() and sum(len(v) for v in model.miner.kept.values()) == int(first.sum())
    noisy = Batch(**{**vars(batch), "features": torch.randn_like(batch.features) * 5})
    out = model(noisy.features, noisy.mask)
    kept = model.miner.propose(model, out, noisy, noisy.masks["actions"], iteration=1).mined
    assert bool((kept >= first).all())  # every earlier label is still there, whatever the new scores say


def test_code_anchor_expand_compares_with_the_fixed_first_step():
    # predicted classes [0 0 0 0 1 0 0 0 0 0], anchor at 2 (class 0), radius 3, no stop at a failure.
    # The code (train.py anchor_expand, v = +1): s_idx is always idx + v = 3; step 0: (3, 3, 4) -> 0 0 1 fails;
    # step 1: (3, 4, 5) fails; step 2: (3, 5, 6) -> 0 0 0 passes: snippet 5 is mined. Algorithm 1 compares
    # (t + j - 1, t + j, t + j + 1): (2, 3, 4), (3, 4, 5), (4, 5, 6) all fail. v = -1: (1, 1, 0) passes -> 1;
    # then (1, 0, -1) leaves the video.
    scores = np.zeros((10, 2))
    scores[:, 0] = 1.0
    scores[4] = [0.0, 1.0]
    kw = dict(radius=3, xi=0.95, stop_at_failure=False)
    assert sorted(mine_action_frames(scores, [(2, 0)], past="first_step", **kw)) == [(1, 0), (5, 0)]
    assert sorted(mine_action_frames(scores, [(2, 0)], past="previous", **kw)) == [(1, 0)]


def test_code_anchor_expand_stops_at_snippets_mined_for_earlier_anchors():
    # every snippet predicts class 0; anchors at 2 and 8, radius 3. Anchor 2 mines 1 (then leaves the video) and
    # 3, 4, 5; anchor 8 mines 7, 6 and stops at 5, labelled by anchor 2 (the code's frame_label is updated as it
    # goes, `if len(frame_label[cur_idx]) > 0: break`); going right, 9's successor is outside the video.
    scores = np.tile([1.0, 0.0], (10, 1))
    blocked = np.zeros(10, bool)
    blocked[[2, 8]] = True
    kw = dict(radius=3, xi=0.95, stop_at_failure=False, past="first_step", blocked=blocked)
    assert mine_action_frames(scores, [(2, 0), (8, 0)], blocked_by_mined=True, **kw) == [
        (1, 0), (3, 0), (4, 0), (5, 0), (7, 0), (6, 0)]
    assert mine_action_frames(scores, [(2, 0), (8, 0)], blocked_by_mined=False, **kw)[-1] == (5, 0)


def test_code_video_target_is_the_set_of_clicked_classes():
    # clicks A, A, B in a crop: the code's target (video_label = count_label > 0, normalised) is [1/2, 1/2];
    # the paper's average of the frame labels is [2/3, 1/3]
    labelled = torch.tensor([[True, True, True, False]])
    targets = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]])
    weak = torch.tensor([[1.0, 1.0]])
    assert video_targets(labelled, targets, weak, presence=True).tolist() == [[0.5, 0.5]]
    assert video_targets(labelled, targets, weak)[0].tolist() == pytest.approx([2 / 3, 1 / 3])


def test_code_actionness_stream_weights_start_at_zero():
    model = sfnet(actionness_fusion_init=0.0)
    assert all(float(model.act_mul.weight(s).detach()) == 0 for s in STREAMS)
    out = model(torch.randn(1, 8, 32), torch.ones(1, 8, dtype=torch.bool))
    assert not out.actionness.any()  # sum_s 0 * A_s
    assert float(sfnet().act_mul.weight("rgb").detach()) == 0.5  # the paper-silent default: 1 / n_streams


def test_code_video_score_averages_the_top_int_t_over_12():
    # T = 30: the code's k = max(int(30 / 12), 1) = 2; ceil(30 / 12) would be 3
    model = sfnet(background=False, actionness=False,
                  inference={"video_topk_divisor": 12.0, "video_topk_rule": "int", "video_score": "pooled_activation"})
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(1, 30, 32), torch.ones(1, 30, dtype=torch.bool))
    C = out.class_scores[0]
    expected = C.topk(2, dim=0).values.mean(0)
    np.testing.assert_allclose(model.frame_scores(out).video_scores, expected.numpy(), rtol=1e-6)


def click_batch(lengths: list[int], T: int = 6, seed: int = 0) -> Batch:
    """One click of class b % 2 at snippet 1 of sample b; sample b has ``lengths[b]`` valid snippets."""
    B = len(lengths)
    feats = torch.from_numpy(np.random.default_rng(seed).normal(0, 1, (B, T, 32)).astype(np.float32))
    mask = torch.arange(T)[None] < torch.tensor(lengths)[:, None]
    targets = torch.zeros(B, T, 3)
    for b in range(B):
        targets[b, 1, b % 2] = 1
    amask = targets.sum(-1) > 0
    return Batch(video_ids=[f"v{b}" for b in range(B)], features=feats * mask[..., None], mask=mask,
                 offsets=torch.zeros(B, dtype=torch.long), lengths=mask.sum(1),
                 targets={"video_labels": (targets.sum(1) > 0).float(), "actions": targets,
                          "anchors": amask.clone(), "background": torch.zeros(B, T, dtype=torch.bool)},
                 masks={"actions": amask})


def test_code_video_loss_leaves_out_crops_shorter_than_5_snippets():
    # crops of 4 and 6 snippets: the code's video_loss skips seq_len < 5, so L_video is the 6-snippet crop's alone
    both, long_only = click_batch([4, 6]), click_batch([6])
    long_only.features[0] = both.features[1]
    long_only.targets["actions"][0] = both.targets["actions"][1]  # a click at snippet 1 in both: masks agree
    long_only.targets["video_labels"][0] = both.targets["video_labels"][1]
    plain = dict(background=False, actionness=False, mining={"enabled": False})

    def video(model, batch):
        model.eval()
        with torch.no_grad():
            return float(model.losses(model(batch.features, batch.mask), batch, iteration=0)["video"])

    skipping = video(sfnet(video_min_length=5, **plain), both)
    assert skipping == pytest.approx(video(sfnet(**plain), long_only), rel=1e-6)
    assert skipping != pytest.approx(video(sfnet(**plain), both), rel=1e-3)
    assert video(sfnet(video_min_length=7, **plain), both) == 0.0  # nothing left


def test_code_config_carries_every_code_rule():
    cfg = load_config(ExperimentConfig, CONFIGS / "sfnet_code_thumos14.yaml")
    params = cfg.model.params
    assert cfg.evaluation.use_ambiguous is False and not cfg.data.ambiguous  # main.py -> eval.py: no filter
    assert params["video_target"] == "click_classes" and params["actionness_fusion_init"] == 0.0
    assert params["mining"]["past"] == "first_step" and params["mining"]["blocked_by_mined"] is True
    assert params["inference"]["video_topk_rule"] == "int" and params["inference"]["video_topk_divisor"] == 12.0
    assert params["video_min_length"] == 5  # train.py video_loss
    crop = cfg.data.sampling.train
    assert (crop.kind, crop.length, crop.alternate_length) == ("crop", 750, 2800)  # main.py t_max, t_max_ctc


def test_class_attention_and_centre_update_by_hand():
    from clicktal.models.losses import centre_loss, class_attention_features, update_centres

    # class 0's scores [0, 0, ln 3, ln 3]: attention [1/8, 1/8, 3/8, 3/8], mean 1/4 -> the first two set to 0, so
    # the aggregate is the mean of snippets 2 and 3; class 1 is not present
    feats = torch.tensor([[[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.0, 4.0]]])
    scores = torch.zeros(1, 4, 2)
    scores[0, 2:, 0] = np.log(3.0)
    agg, cls = class_attention_features(feats, scores, torch.ones(1, 4, dtype=torch.bool),
                                        torch.tensor([[True, False]]))
    assert cls.tolist() == [0] and agg[0].tolist() == pytest.approx([0.0, 3.0])
    centres = torch.zeros(2, 2)
    assert float(centre_loss(agg, cls, centres)) == pytest.approx(0.5 * 9.0)
    update_centres(centres, agg, cls, rate=0.5)  # c0 -= 0.5 * (c0 - f) / (1 + 1) = f / 4
    assert centres.tolist() == [[0.0, 0.75], [0.0, 0.0]]


def test_weak_3cnet_row_trains_the_centres():
    batch = block_batch()
    model = sfnet(frame_loss=False, background=False, actionness=False, mining={"enabled": False},
                  centre_loss=True, video_target="click_classes", centre_multi_class_from=0)
    model.train()
    terms = {k: v.detach() for k, v in model.losses(model(batch.features, batch.mask), batch, iteration=0).items()}
    assert float(terms["centre"]) > 0 and float(terms["frame_action"]) == 0
    assert float(terms["total"]) == pytest.approx(float(terms["video"] + 0.1 * terms["centre"]), rel=1e-5)
    assert model.centres_rgb.abs().sum() > 0  # moved towards the aggregated features
    single = sfnet(frame_loss=False, background=False, actionness=False, mining={"enabled": False},
                   centre_loss=True, video_target="click_classes")
    single.train()
    # every block video holds 3 clicked classes: before iteration 500 no video takes part
    assert float(single.losses(single(batch.features, batch.mask), batch, iteration=0)["centre"].detach()) == 0


def test_code_centre_loss_and_its_sgd_step_match_the_codes_autograd():
    from clicktal.models.losses import centre_loss, sgd_step_centres

    rng = np.random.default_rng(0)
    feats, labels = torch.tensor(rng.normal(0, 1, (5, 3)), dtype=torch.float64), torch.tensor([0, 2, 2, 1, 2])
    start = torch.tensor(rng.normal(0, 1, (4, 3)), dtype=torch.float64)
    gamma, beta = 0.1, 2.0
    # the code: CenterLoss (center_loss.py: distmat masked by class, summed, / batch) / N (train.py center_loss),
    # times gamma; centre grads scaled by 1 / beta; optim.SGD(lr=0.1)
    centres = torch.nn.Parameter(start.clone())
    dist = (feats[:, None] - centres[None]).square().sum(-1) * (labels[:, None] == torch.arange(4)).double()
    code_loss = dist.clamp(min=1e-12, max=1e12).sum() / 5 / 5
    (gamma * code_loss).backward()
    centres.grad *= 1 / beta
    torch.optim.SGD([centres], lr=0.1).step()
    ours = start.clone()
    assert float(centre_loss(feats, labels, ours, form="code")) == pytest.approx(float(code_loss), rel=1e-9)
    sgd_step_centres(ours, feats, labels, 0.1, gamma / beta)
    torch.testing.assert_close(ours, centres.detach(), rtol=1e-12, atol=1e-12)


def test_code_centre_variant_in_the_model_steps_from_the_second_iteration():
    batch = block_batch()
    model = sfnet(frame_loss=False, background=False, actionness=False, mining={"enabled": False},
                  centre_loss=True, video_target="click_classes", centre_multi_class_from=0,
                  centre_update="code_sgd")
    before = model.centres_rgb.clone()
    assert before.abs().sum() > 0  # drawn from N(0, 1), as center_loss.py's torch.randn
    model.train()
    model.losses(model(batch.features, batch.mask), batch, iteration=0)
    assert torch.equal(model.centres_rgb, before)  # main.py: `if itr > centloss_itr` (0)
    model.losses(model(batch.features, batch.mask), batch, iteration=1)
    assert not torch.equal(model.centres_rgb, before)
