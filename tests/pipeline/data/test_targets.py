"""The target-kind registry: every kind built from supervision, moved with a sample's grid (whole, crop, resize) and
collated; only the kinds asked for are built; a kind registered by a user reaches the batch."""
import dataclasses

import numpy as np
import pytest
import torch

from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.data import targets as registry
from clicktal.pipeline.data.annotations import ActionClick, Segment
from clicktal.pipeline.data.cache import FeatureMeta
from clicktal.pipeline.data.datasets import (NAMED_MASKS, NAMED_TARGETS, Batch, VideoDataset, VideoItem,
                                             collate, make_item)
from clicktal.pipeline.data.supervision import Supervision
from clicktal.pipeline.data.targets import (DEFAULT_KINDS, TargetKind, register_target_kind, target_kind,
                                            target_kinds)

G = FeatureGeometry(fps=25, window=5, stride=5)  # 0.2 s per snippet, 5 frames each
CLASSES = ["A", "B"]
T = 60
POINTS, DENSE = ("clicks", "anchors", "background"), ("segments", "boundaries", "truth")


def supervision(vid="v"):
    truth = (Segment(2.0, 4.0, "A"), Segment(7.0, 9.0, "B"))
    return Supervision(vid, T * 0.2, frozenset({"A", "B"}),
                       action_clicks=(ActionClick(3.1, "A"), ActionClick(8.05, "B")), background_clicks=(0.5, 11.1),
                       labelled_segments=(Segment(2.0, 3.0, "A"),), boundaries=truth, truth=truth)


def full_item(vid="v", *, frames=True):
    """Every registered kind (frames too unless ``frames`` is False: a resized grid has no whole frames)."""
    feats = np.random.default_rng(0).random((T, 8)).astype(np.float32)
    kinds = [k for k in target_kinds() if frames or k != "frames"]
    return make_item(vid, feats, G, supervision(vid), CLASSES, kinds=kinds)


@pytest.fixture()
def own_registry(monkeypatch):
    """Kinds registered in a test stay in it."""
    monkeypatch.setattr(registry, "_KINDS", dict(registry._KINDS))


def test_today_s_kinds_are_registered_and_a_batch_holds_them_by_kind():
    assert set(DEFAULT_KINDS) | {"frames"} <= set(target_kinds())
    it = full_item()
    assert set(it.targets) == set(target_kinds())
    batch = collate([it, it.sample(np.arange(10, 40))])
    assert set(batch.targets) == set(target_kinds())
    assert set(batch.masks) == {"actions", "segments", "boundaries", "frames"}  # the kinds with a row mask
    # the named fields of before are gone: a batch is read by kind only
    assert not any(hasattr(batch, name) for name in {**NAMED_TARGETS, **NAMED_MASKS})
    assert not any(hasattr(it, name) for name in ("action_targets", "anchor_mask", "frame_labels", "action_mask"))
    assert batch.targets["frames"].shape == (2, T * 5, 3)
    frame_mask = batch.masks["frames"]
    assert frame_mask[1, :150].all() and not frame_mask[1, 150:].any()  # 30 snippets, then padding


@pytest.mark.parametrize("name", target_kinds())
def test_each_kind_round_trips_the_whole_grid_and_a_crop(name):
    it = full_item()
    assert np.array_equal(it.sample(np.arange(T, dtype=np.float64)).targets[name], it.targets[name])
    crop = it.sample(np.arange(12, 42, dtype=np.float64)).targets[name]
    kind = target_kind(name)
    expected = {"video": it.targets[name], "snippet": it.targets[name][12:42],
                "frame": it.targets[name][12 * 5:42 * 5]}[kind.per]
    assert np.array_equal(crop, expected) and crop.dtype == it.targets[name].dtype


@pytest.mark.parametrize("name", POINTS)
def test_point_kinds_mark_the_nearest_element_when_resized(name):
    it = full_item(frames=False)
    native = it.targets[name].reshape(T, -1)
    labelled = np.flatnonzero(native.any(1))
    assert labelled.size == 2
    for L in (20, 150):  # down and up
        positions = np.linspace(0, T - 1, L)
        moved = it.sample(positions).targets[name].reshape(L, -1)
        nearest = np.abs(positions[None] - labelled[:, None]).argmin(1)
        assert np.flatnonzero(moved.any(1)).tolist() == sorted(nearest.tolist())  # one element each, never lost
        assert np.array_equal(moved[nearest], native[labelled])


@pytest.mark.parametrize("name", DENSE)
def test_dense_kinds_stay_dense_when_resized(name):
    it = full_item(frames=False)
    native = it.targets[name]
    positions = np.linspace(0, T - 1, 150)
    moved = it.sample(positions).targets[name]
    nearest = np.clip(np.round(positions).astype(int), 0, T - 1)
    assert np.array_equal(moved > 0, native[nearest] > 0)  # every element of a labelled span, no more
    small = it.sample(np.linspace(0, T - 1, 20)).targets[name]
    assert (small > 0).any(0).tolist() == (native > 0).any(0).tolist()  # no class lost by downsampling


def test_actions_move_clicks_as_points_and_spans_densely_and_stay_distributions():
    it = full_item(frames=False)
    s = it.sample(np.linspace(0, T - 1, 150))
    actions = s.targets["actions"]
    labelled = s.targets["actions"].sum(1) > 0
    assert np.allclose(actions[labelled].sum(1), 1.0)
    spans = s.targets["segments"].any(1) | s.targets["boundaries"].any(1)
    assert np.array_equal(labelled, spans | s.targets["anchors"])


def test_video_and_frame_kinds():
    it = full_item()
    resized = full_item(frames=False).sample(np.linspace(0, T - 1, 20)).targets["video_labels"]
    assert np.array_equal(resized, it.targets["video_labels"])
    with pytest.raises(ValueError, match="whole native snippets"):
        it.sample(np.linspace(0, T - 1, 20))
    frames = it.sample(np.arange(0, T, 3, dtype=np.float64)).targets["frames"]  # every third snippet
    assert np.array_equal(frames.reshape(20, 5, 3), it.targets["frames"].reshape(T, 5, 3)[::3])


def test_a_kind_not_asked_for_is_not_built(own_registry, monkeypatch):
    def refuse(ctx):
        raise AssertionError("built without being asked for")

    for name in ("clicks", "boundaries", "frames", "truth", "actions", "anchors"):
        monkeypatch.setitem(registry._KINDS, name, dataclasses.replace(target_kind(name), build=refuse))
    it = make_item("v", np.zeros((T, 4), np.float32), G, supervision(), CLASSES, kinds=("video_labels", "segments"))
    assert set(it.targets) == {"video_labels", "segments"}
    batch = collate([it, it.sample(np.arange(5, 25))])
    assert set(batch.targets) == {"video_labels", "segments"} and set(batch.masks) == {"segments"}
    assert batch.targets["segments"].shape == (2, T, 2)


def test_a_kind_brings_the_kinds_it_requires():
    it = make_item("v", np.zeros((T, 4), np.float32), G, supervision(), CLASSES, kinds=("actions",))
    assert set(it.targets) == {"clicks", "segments", "boundaries", "anchors", "actions"}
    assert np.array_equal(it.targets["actions"], full_item().targets["actions"])


def test_a_user_registered_kind_reaches_the_batch_when_asked_for(own_registry, tmp_path):
    def click_distance(ctx):
        """snippets to the nearest action click (a dense per-snippet target)"""
        clicks = np.array([G.index_of(c.time_s, ctx.num_snippets) for c in ctx.supervision.action_clicks])
        return np.abs(np.arange(ctx.num_snippets)[:, None] - clicks[None]).min(1).astype(np.float32)[:, None]

    register_target_kind(TargetKind("click_distance", click_distance, "dense"))
    with pytest.raises(ValueError, match="already registered"):
        register_target_kind(TargetKind("click_distance", click_distance, "dense"))

    class Source:
        def ids(self):
            return ["v", "w"]

        def load(self, vid):
            return np.zeros((T if vid == "v" else 40, 4), np.float32), FeatureMeta(G, {"rgb": (0, 4)})

    sups = {v: supervision(v) for v in ("v", "w")}
    data = VideoDataset(Source(), sups, CLASSES, kinds=("click_distance", "video_labels"))
    batch = collate([data.item("v"), data.item("w").sample(np.arange(10, 30))])
    assert set(batch.targets) == {"click_distance", "video_labels"}
    d = batch.targets["click_distance"][:, :, 0]
    assert d[0, G.index_of(3.1)] == 0 and d[0, G.index_of(3.1) + 3] == 3 and d[0, 0] == G.index_of(3.1)
    assert d[1, 0] == abs(10 - G.index_of(3.1)) and (d[1, 20:] == 0).all()  # padding
    assert set(collate([VideoDataset(Source(), sups, CLASSES).item("v")]).targets) == set(DEFAULT_KINDS)
    with pytest.raises(ValueError, match=r"unknown target kind 'clicks_typo' \(registered: video_labels, clicks"):
        VideoDataset(Source(), sups, CLASSES, kinds=("clicks_typo",))


def test_an_unregistered_requirement_is_refused(own_registry):
    with pytest.raises(ValueError, match="requires unregistered kind"):
        register_target_kind(TargetKind("x", lambda ctx: None, "dense", requires=("nope",)))


def test_a_batch_takes_the_first_batch_s_keywords_and_stores_them_by_kind():
    ref = batch = collate([full_item()])
    named = Batch(ref.video_ids, ref.features, ref.mask, offsets=ref.offsets, lengths=ref.lengths,
                  video_labels=ref.targets["video_labels"], action_targets=ref.targets["actions"],
                  anchor_mask=ref.targets["anchors"], frame_mask=ref.masks["frames"])
    assert set(named.targets) == {"video_labels", "actions", "anchors"}
    assert torch.equal(named.masks["actions"], ref.masks["actions"])  # made from the targets, as for any kind
    assert named.masks["frames"] is ref.masks["frames"]
    with pytest.raises(TypeError, match="unexpected keyword.*anchors_mask"):
        Batch(ref.video_ids, ref.features, ref.mask, offsets=ref.offsets, lengths=ref.lengths, anchors_mask=None)
    again = Batch(**vars(batch))
    assert again.targets.keys() == batch.targets.keys() and torch.equal(again.masks["frames"], batch.masks["frames"])
    moved = batch.to("cpu")
    assert torch.equal(moved.targets["actions"], batch.targets["actions"]) and moved.grids is batch.grids
