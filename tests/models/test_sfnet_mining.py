"""Algorithm 1 (action frame mining) on a hand-made score sequence, and its use inside training."""
import numpy as np
import torch

from clicktal.models import TrainingContext, build_localizer
from clicktal.models.sfnet_mining import mine_action_frames
from clicktal.pipeline.data.datasets import VideoItem, collate
from clicktal.pipeline.core.geometry import FeatureGeometry

# columns: background, class A, class B. Anchor: snippet 4, class A (column 1); threshold 0.9 * 0.9 = 0.81
SCORES = np.array([
    [0.80, 0.10, 0.10],  # 0 predicted background
    [0.10, 0.80, 0.10],  # 1
    [0.10, 0.85, 0.05],  # 2
    [0.10, 0.82, 0.08],  # 3
    [0.10, 0.90, 0.00],  # 4 anchor
    [0.10, 0.85, 0.05],  # 5
    [0.10, 0.82, 0.08],  # 6
    [0.15, 0.75, 0.10],  # 7 still A, but below 0.81
    [0.10, 0.85, 0.05],  # 8
    [0.10, 0.85, 0.05],  # 9 last snippet
])


def mined(**kw):
    return sorted(t for t, _ in mine_action_frames(SCORES, [(4, 1)], **kw))


def test_expands_each_direction_until_the_first_failure():
    # left: 3 and 2 pass; at 1 the future neighbour (0) is predicted background -> stop
    # right: 5 and 6 pass; 7 scores 0.75 < 0.81 -> stop, so 8 is never reached
    assert mined(radius=5, xi=0.9) == [2, 3, 5, 6]
    assert all(y == 1 for _, y in mine_action_frames(SCORES, [(4, 1)]))


def test_without_stopping_the_printed_loop_skips_failures():
    # 8 passes (7, 8, 9 all predicted A); 9 has no future neighbour -> stop
    assert mined(radius=5, xi=0.9, stop_at_failure=False) == [2, 3, 5, 6, 8]


def test_radius_threshold_and_blocked_snippets():
    assert mined(radius=1, xi=0.9) == [3, 5]
    assert mined(radius=5, xi=0.99) == []  # 0.99 * 0.9 = 0.891: no neighbour is that confident
    blocked = np.zeros(10, bool)
    blocked[5] = True  # another click: the expansion does not enter it
    assert mined(radius=5, xi=0.9, blocked=blocked) == [2, 3]


def test_argmax_is_a_max_not_the_printed_min():
    # every snippet predicts A; the argmin alternates between background and B, so with the printed argmin no
    # three neighbours would agree and nothing would be mined. Snippets 0 and 5 have no outer neighbour: not mined.
    scores = np.array([[0.05, 0.8, 0.15], [0.15, 0.8, 0.05]] * 3)
    assert sorted(t for t, _ in mine_action_frames(scores, [(2, 1)], radius=5, xi=0.9)) == [1, 3, 4]


def test_argmax_over_actions_ignores_the_background_column():
    scores = SCORES.copy()
    scores[0] = [0.9, 0.08, 0.02]  # background wins over all columns, A wins among actions
    assert mined(radius=5, xi=0.0) == [2, 3, 5, 6, 7, 8]
    got = sorted(t for t, _ in mine_action_frames(scores, [(4, 1)], radius=5, xi=0.0, argmax_from=1))
    assert got == [1, 2, 3, 5, 6, 7, 8]  # snippet 0 has no left neighbour beyond it: mining stops at 1


def _model(**mining):
    torch.manual_seed(0)
    params = {"mining": {"radius": 2, "xi": 0.0, **mining}}
    model, _ = build_localizer("sfnet", params, input_dim=6, num_classes=2, streams={"rgb": (0, 3), "flow": (3, 6)})
    return model


def _item(vid="v", T=12, click=5):
    feats = np.tile(np.linspace(0.5, 1.0, 6, dtype=np.float32), (T, 1))  # constant in time: one prediction
    targets = np.zeros((T, 2), np.float32)
    targets[click, 0] = 1
    return VideoItem(vid, feats, geometry=FeatureGeometry(), targets={
        "video_labels": np.array([1.0, 0.0], np.float32), "actions": targets, "anchors": targets.sum(1) > 0,
        "background": np.zeros(T, bool)})


def propose(model, batch, iteration):
    """The miner's labels for ``batch`` under ``model``'s output (labelled, targets, mined)."""
    out = model(batch.features, batch.mask)
    labels = model.miner.propose(model, out, batch, batch.masks["actions"] & out.mask, iteration=iteration)
    return labels.labelled, labels.targets, labels.mined


def test_online_mining_labels_the_neighbours_of_each_click():
    model = _model(start_iteration=3).eval()
    batch = collate([_item()])
    lab, targets, mined_mask = propose(model, batch, iteration=2)
    assert not mined_mask.any()  # before start_iteration
    lab, targets, mined_mask = propose(model, batch, iteration=3)
    assert mined_mask[0].nonzero().flatten().tolist() == [3, 4, 6, 7]
    assert torch.equal(targets[0, 3], torch.tensor([1.0, 0.0])) and lab[0, 3:8].all()


def test_once_mining_is_kept_in_the_training_state_and_applied_to_crops():
    model = _model(mode="once", start_iteration=0, reinit_after=True)
    items = [_item("v")]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    assert model.training_hook(0, TrainingContext(lambda: iter(items), torch.device("cpu"))) is True
    # re-initialised: zero biases and unit class multipliers again
    assert all(p.abs().sum() == 0 for n, p in model.named_parameters() if n.endswith("bias"))
    assert all(torch.equal(p, torch.ones_like(p)) for p in model.class_mul.parameters())
    assert sorted(t for t, _ in model.training_state()["mined"]["v"]) == [3, 4, 6, 7]
    clone = _model(mode="once", start_iteration=0)
    clone.load_state_dict(model.state_dict())
    clone.load_training_state(model.training_state())
    assert clone.miner.kept == model.miner.kept
    crop = collate([items[0].sample(np.arange(6))])  # snippets 0..5 of the video: 3 and 4 are inside
    _, _, mined_mask = propose(clone, crop, iteration=1)
    assert mined_mask[0].nonzero().flatten().tolist() == [3, 4]


def test_once_mining_is_not_applied_to_samples_without_a_snippet_map():
    model = _model(mode="once", start_iteration=0)
    items = [_item("v")]
    model.training_hook(0, TrainingContext(lambda: iter(items), torch.device("cpu")))
    assert model.miner.kept["v"]
    resized = collate([items[0].sample(np.linspace(0, 11, 6))])  # offset -1: not a contiguous crop
    assert int(resized.offsets[0]) == -1
    _, _, mined_mask = propose(model, resized, iteration=1)
    assert not mined_mask.any()
