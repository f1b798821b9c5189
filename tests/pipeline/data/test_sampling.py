"""The temporal sampling stage: lengths, masks, targets that move with the features, exact maps back, seeding."""
import numpy as np
import pytest
import torch

from clicktal.pipeline.core.config import ConfigError, config_from_dict
from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.data.annotations import ActionClick, Segment
from clicktal.pipeline.data.datasets import batch_rng, collate, make_item, sample_batch
from clicktal.pipeline.data.sampling import SampleGrid, Sampler, SamplerConfig, SamplingConfig, to_native
from clicktal.pipeline.data.supervision import Supervision

G = FeatureGeometry(fps=25, window=16, stride=16)
CLASSES = ["A", "B"]


def item(T=100, vid="v", boundaries=((10.0, 20.0, "A"), (40.0, 44.0, "B")), clicks=((15.0, "A"),),
         background=(2.0,), frames=False):
    segs = tuple(Segment(s, e, c) for s, e, c in boundaries)
    sup = Supervision(vid, T * 0.64, frozenset(c for _, _, c in boundaries),
                      action_clicks=tuple(ActionClick(t, c) for t, c in clicks), background_clicks=background,
                      boundaries=segs)
    feats = np.arange(T, dtype=np.float32)[:, None] * np.ones((1, 4), np.float32)  # row t holds t
    return make_item(vid, feats, G, sup, CLASSES, with_frame_labels=frames)


class Data:
    """A minimal dataset: what the sampler and ``sample_batch`` read."""

    def __init__(self, items):
        self.items = {it.video_id: it for it in items}
        self.ids = sorted(self.items)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return self.items[self.ids[i]]

    def item(self, vid):
        return self.items[vid]

    def __iter__(self):
        return iter(self.items[v] for v in self.ids)


def sampler(train=None, inference=None):
    return Sampler(SamplingConfig(train=train or SamplerConfig(), inference=inference or SamplerConfig()))


def test_config_rejects_what_its_kind_does_not_read():
    with pytest.raises(ConfigError, match="does not use count"):
        config_from_dict(SamplerConfig, {"kind": "crop", "length": 5, "count": 3})
    with pytest.raises(ConfigError, match="needs length"):
        config_from_dict(SamplerConfig, {"kind": "resize"})
    with pytest.raises(ConfigError, match="uniform"):
        config_from_dict(SamplingConfig, {"inference": {"kind": "segments", "count": 4}})
    with pytest.raises(ConfigError, match="expected one of"):
        config_from_dict(SamplerConfig, {"kind": "shuffle"})


def test_crop_length_mask_and_targets_move_with_the_features():
    it = item()
    s = sampler(SamplerConfig(kind="crop", length=30)).train_sample(it, np.random.default_rng(0))
    start = int(s.features[0, 0])
    assert s.length == 30 and s.grid.offset == start
    assert np.array_equal(s.features[:, 0], np.arange(start, start + 30))
    assert np.array_equal(s.targets["boundaries"], it.targets["boundaries"][start:start + 30])
    assert s.grid.geometry.centre_s(0) == pytest.approx(G.centre_s(start))
    batch = collate([s, it])
    assert batch.features.shape == (2, 100, 4) and batch.mask[0].sum() == 30 and not batch.mask[0, 30:].any()
    assert batch.offsets.tolist() == [start, 0]


def test_resize_keeps_every_click_and_maps_a_step_back_within_one_snippet():
    it = item(T=1500, boundaries=((100.0, 300.0, "A"),), clicks=((200.0, "A"), (700.0, "B")), background=(5.0,))
    s = sampler(SamplerConfig(kind="resize", length=750)).train_sample(it, None)
    assert s.length == 750 and s.grid.geometry.stride == pytest.approx(16 * 1499 / 749)
    assert s.targets["anchors"].sum() == 2 and s.targets["background"].sum() == 1  # no click lost by downsampling
    assert s.targets["clicks"].sum() == 2
    # element centres are the centres of the native positions they stand for
    assert s.grid.geometry.centre_s(np.arange(750)) == pytest.approx(G.centre_s(s.grid.positions))
    # a step function through resize and back: its edges stay within one native snippet
    step = (np.arange(1500) >= 433).astype(np.float64)
    back = to_native([s.grid], [np.interp(s.grid.positions, np.arange(1500), step)])
    edge = np.flatnonzero(back >= 0.5)[0]
    assert abs(edge - 433) <= 1 and back.shape == (1500,)
    # upsampling a short video: a labelled span stays dense
    short = sampler(SamplerConfig(kind="resize", length=40)).train_sample(item(T=10, boundaries=((1.0, 4.0, "A"),),
                                                                              clicks=()), None)
    rows = np.flatnonzero(short.targets["boundaries"][:, 0])
    assert rows.size and np.array_equal(rows, np.arange(rows[0], rows[-1] + 1))


def test_resize_upsampling_marks_each_click_on_one_element_and_segments_densely():
    # 100 native snippets resized to 750 (BackTAL's sampler on a short video): 7.5 elements per snippet
    it = item(T=100, boundaries=((10.0, 20.0, "A"),), clicks=((15.0, "A"), (40.0, "B")), background=(30.0,))
    s = sampler(SamplerConfig(kind="resize", length=750)).train_sample(it, None)
    assert s.targets["anchors"].sum() == 2 and s.targets["background"].sum() == 1 and s.targets["clicks"].sum() == 2
    b = np.flatnonzero(s.targets["clicks"][:, 1])
    assert b.size == 1 and abs(s.grid.positions[b[0]] - G.index_of(40.0)) <= 0.5 * 99 / 749 + 1e-9
    # the click on B alone labels one element; the span of A (boundaries) stays dense and keeps its click inside
    only_b = np.flatnonzero(s.targets["actions"][:, 1] > 0)
    assert np.array_equal(only_b, b) and (s.targets["actions"].sum(1) > 0).sum() == (s.targets["boundaries"][:, 0] > 0).sum() + 1
    assert np.allclose(s.targets["actions"][s.targets["actions"].sum(1) > 0].sum(axis=1), 1.0)


def test_overlapping_instances_give_every_class_its_frame_targets():
    # B lies inside A (as THUMOS14's CliffDiving inside Diving): both are targets there, shared as a distribution
    it = item(T=10, boundaries=((0.64, 5.12, "A"), (1.28, 2.56, "B")), clicks=(), background=(), frames=True)
    labels = it.targets["frames"]  # [T * 16, 3]: background, A, B
    inner = (np.arange(160) + 0.5) / 25
    inside_b = (inner >= 1.28) & (inner <= 2.56)
    assert labels[inside_b, 1].all() and labels[inside_b, 2].all() and not labels[inside_b, 0].any()
    assert labels[:, 2].sum() == inside_b.sum() and labels[~inside_b & (inner >= 0.64) & (inner <= 5.12), 1].all()
    assert (labels[:, 0] == (labels[:, 1:].sum(axis=1) == 0)).all()
    batch = collate([it])
    assert torch.allclose(batch.targets["frames"][0, inside_b], torch.tensor([0.0, 0.5, 0.5]))
    assert torch.allclose(batch.targets["frames"][0].sum(-1), torch.ones(160)) and batch.masks["frames"].all()


def test_segments_one_snippet_per_equal_part_seeded():
    it = item(T=1000)
    smp = sampler(SamplerConfig(kind="segments", count=100))
    a = smp.train_sample(it, np.random.default_rng(1))
    b = smp.train_sample(it, np.random.default_rng(1))
    c = smp.train_sample(it, np.random.default_rng(2))
    pos = a.grid.positions
    assert a.length == 100 and np.array_equal(pos, b.grid.positions) and not np.array_equal(pos, c.grid.positions)
    assert np.array_equal(pos // 10, np.arange(100))  # one from each part
    assert np.array_equal(a.features[:, 0], pos) and a.grid.geometry is None  # irregular grid
    uniform = sampler(inference=SamplerConfig(kind="segments", count=10, mode="uniform")).inference_samples(it)[0]
    assert np.array_equal(uniform.grid.positions, np.arange(10) * 100 + 50)


def test_windows_keep_action_and_balance_classes():
    # class A fills many windows, class B few: balancing draws both about equally often
    vids = [item(T=70, vid=f"a{i}", boundaries=((0.0, 44.0, "A"),), clicks=(), frames=True) for i in range(5)]
    vids.append(item(T=70, vid="b", boundaries=((0.0, 8.0, "B"),), clicks=(), frames=True))
    data = Data(vids)
    cfg = SamplerConfig(kind="windows", length=7, min_action_fraction=5 / 35, balance=True)
    smp = sampler(cfg)
    windows, prob = smp.window_index(data)
    for vid, start in windows:  # every kept window has at least 5 action frames of 35
        frames = data.item(vid).targets["frames"][start * 16:(start + 7) * 16]
        assert (frames > 0).sum() >= 5 / 35 * frames.size
    assert len(windows) < 6 * 10  # background-only windows were dropped
    batch = sample_batch(data, 2000, np.random.default_rng(0), smp)
    majority = [int(np.argmax(t[m].sum(0))) for t, m in zip(batch.targets["boundaries"].numpy(),
                                                             batch.mask.numpy())]
    share_b = np.mean(np.array(majority) == 1)
    assert 0.4 < share_b < 0.6
    assert batch.targets["frames"].shape == (2000, 7 * 16, 3)
    # frame targets move with the window
    s = data.item("b").sample(np.arange(0, 7, dtype=np.float64))
    assert np.array_equal(s.targets["frames"], data.item("b").targets["frames"][:112])


def test_inference_tiles_cover_the_video_and_map_back_exactly():
    it = item(T=23)
    values = np.random.default_rng(0).random((23, 2))
    for cfg in (SamplerConfig(kind="crop", length=10), SamplerConfig(kind="windows", length=7),
                SamplerConfig(kind="windows", length=8, stride=3), SamplerConfig()):
        samples = sampler(inference=cfg).inference_samples(it)
        outs = [values[s.grid.positions.astype(int)] for s in samples]
        assert np.allclose(to_native([s.grid for s in samples], outs), values)
    # per-frame outputs map back onto the native frames
    samples = sampler(inference=SamplerConfig(kind="windows", length=7)).inference_samples(it)
    frames = np.arange(23 * 16, dtype=np.float64)
    outs = [frames[s.grid.frame_positions(16)] for s in samples]
    assert np.array_equal(to_native([s.grid for s in samples], outs, frames_per_snippet=16), frames)


def test_resize_refuses_frame_targets_with_a_clear_message():
    it = item(T=30, frames=True)
    with pytest.raises(ValueError, match="not resize"):
        it.sample(np.linspace(0, 29, 12))


def test_crop_alternates_its_length_at_even_iterations_after_the_first():
    # SF-Net's main.py: t_max 750, and t_max_ctc 2800 when itr % 2 == 0 and itr > 0
    data = Data([item(T=100, vid=f"v{i}") for i in range(3)])
    smp = sampler(SamplerConfig(kind="crop", length=20, alternate_length=50))
    lengths = [sample_batch(data, 3, batch_rng(0, it), smp, iteration=it).features.shape[1] for it in range(6)]
    assert lengths == [20, 20, 50, 20, 50, 20]
    with pytest.raises(ConfigError, match="does not use alternate_length"):
        config_from_dict(SamplerConfig, {"kind": "resize", "length": 5, "alternate_length": 9})
    with pytest.raises(ConfigError, match="alternate_length >= 1"):
        config_from_dict(SamplerConfig, {"kind": "crop", "length": 5, "alternate_length": 0})


def test_training_batches_are_a_pure_function_of_seed_and_iteration():
    data = Data([item(T=50 + 10 * i, vid=f"v{i}") for i in range(6)])
    smp = sampler(SamplerConfig(kind="crop", length=20))
    a = sample_batch(data, 3, batch_rng(4, 17), smp)
    b = sample_batch(data, 3, batch_rng(4, 17), sampler(SamplerConfig(kind="crop", length=20)))  # a fresh sampler
    c = sample_batch(data, 3, batch_rng(4, 18), smp)
    assert a.video_ids == b.video_ids and a.offsets.tolist() == b.offsets.tolist()
    assert (a.video_ids, a.offsets.tolist()) != (c.video_ids, c.offsets.tolist())


def test_sample_grid_geometry_of_a_single_element_and_of_irregular_positions():
    g = SampleGrid(G, np.array([3.0]), 10)
    assert g.geometry.centre_s(0) == pytest.approx(G.centre_s(3))
    assert SampleGrid(G, np.array([0.0, 1.0, 3.0]), 10).geometry is None
    assert SampleGrid(G, np.array([0.0, 1.0, 3.0]), 10).offset == -1
