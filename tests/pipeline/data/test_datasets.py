"""Videos + Supervision -> per-snippet targets and padded batches (label sources: test_labels.py); a run's datasets
build the target kinds asked for."""
import dataclasses

import numpy as np

from clicktal.pipeline.data.annotations import ActionClick, Segment
from clicktal.pipeline.data.sampling import Sampler, SamplerConfig, SamplingConfig
from clicktal.pipeline.data.datasets import (DataConfig, batch_rng, collate, label_counts, load_data, make_item,
                                             sample_batch, split_holdout)
from clicktal.pipeline.data.labels import ActionClickConfig, LabelConfig
from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.data.supervision import Supervision
from clicktal.pipeline.data.synthetic import random_ground_truth, synthesize_features

CLASSES = ["A", "B"]


def test_clicks_become_snippets_through_the_geometry():
    geo = FeatureGeometry(fps=15, window=8, stride=8)  # 0.5333 s per snippet, not THUMOS's 0.64
    sup = Supervision("v", 10.0, frozenset({"A", "B"}),
                      action_clicks=(ActionClick(1.0, "A"), ActionClick(5.4, "B"), ActionClick(5.41, "A")),
                      background_clicks=(8.0,))
    item = make_item("v", np.zeros((19, 4), np.float32), geo, sup, CLASSES)
    assert item.targets["anchors"].nonzero()[0].tolist() == [geo.index_of(1.0), geo.index_of(5.4)] == [1, 10]
    assert item.targets["actions"][1].tolist() == [1, 0]
    assert item.targets["actions"][10].tolist() == [0.5, 0.5]  # two clicks of different classes share the snippet
    assert item.targets["background"].nonzero()[0].tolist() == [15]
    assert item.targets["video_labels"].tolist() == [1, 1]
    # a click past the last snippet belongs to the last one
    late = make_item("v", np.zeros((5, 4), np.float32), geo, Supervision("v", 3.0, action_clicks=(
        ActionClick(9.0, "A"),)), CLASSES)
    assert late.targets["anchors"].nonzero()[0].tolist() == [4]


def test_boundaries_label_the_snippets_whose_centre_is_inside():
    geo = FeatureGeometry(fps=25, window=16, stride=16)  # centres at 0.32 + 0.64 i
    sup = Supervision("v", 10.0, frozenset({"A"}), boundaries=(Segment(1.0, 3.0, "A"), Segment(5.0, 5.1, "B")))
    item = make_item("v", np.zeros((16, 3), np.float32), geo, sup, CLASSES)
    centres = geo.centre_s(np.arange(16))
    expected = np.flatnonzero((centres >= 1.0) & (centres <= 3.0)).tolist()
    assert expected == [2, 3, 4] and item.targets["actions"][:, 0].nonzero()[0].tolist() == expected
    # an instance shorter than a snippet still labels the snippet holding its middle
    assert item.targets["actions"][:, 1].nonzero()[0].tolist() == [geo.index_of(5.05)]
    assert not item.targets["anchors"].any()


def _item(vid, T, clicks):
    geo = FeatureGeometry()
    feats = np.arange(T * 2, dtype=np.float32).reshape(T, 2)
    sup = Supervision(vid, T * 0.64, frozenset({"A"}), action_clicks=tuple(ActionClick(t, "A") for t in clicks))
    return make_item(vid, feats, geo, sup, CLASSES)


def test_collate_pads_with_masks_and_crops_consistently():
    a, b = _item("a", 10, [0.7, 5.2]), _item("b", 4, [1.0])
    batch = collate([a, b])
    assert batch.features.shape == (2, 10, 2) and batch.mask.sum(1).tolist() == [10, 4]
    assert batch.features[1, 4:].abs().sum() == 0 and batch.lengths.tolist() == [10, 4]
    crop = collate([a.sample(np.arange(3, 8)), b])
    s = int(crop.offsets[0])
    assert s == 3
    assert crop.features.shape == (2, 5, 2) and crop.offsets[1] == 0
    assert np.array_equal(crop.features[0].numpy(), a.features[s:s + 5])
    assert np.array_equal(crop.targets["anchors"][0].numpy(), a.targets["anchors"][s:s + 5])


def test_holdout_split_is_seeded_and_disjoint():
    ids = [f"v{i}" for i in range(20)]
    tr, va = split_holdout(ids, 0.2, 1)
    assert len(va) == 4 and not set(tr) & set(va) and sorted(tr + va) == sorted(ids)
    assert split_holdout(ids, 0.2, 1) == (tr, va) and split_holdout(ids, 0.0, 1) == (sorted(ids), [])


def test_load_data_and_seeded_batches(tmp_path):
    gt = random_ground_truth(n_videos=8, seed=0)
    synthesize_features(gt, tmp_path / "feats", dim=8, seed=0)
    gt_path = gt.write(tmp_path / "gt.json")
    cfg = DataConfig(features=str(tmp_path / "feats"), ground_truth=str(gt_path), train_subset="training",
                     test_subset="test", labels=LabelConfig(ActionClickConfig(source="uniform")), val_fraction=0.25)
    bundle = load_data(cfg, seed=0)
    assert bundle.classes == gt.classes() and len(bundle.train) == 3 and len(bundle.val) == 1
    assert bundle.test_ids == sorted(gt.subset("test"))
    assert int(sum(it.targets["anchors"].sum() for it in bundle.train)) > 0
    crop = Sampler(SamplingConfig(train=SamplerConfig(kind="crop", length=50)))
    b1 = sample_batch(bundle.train, 2, batch_rng(0, 5), crop)
    b2 = sample_batch(bundle.train, 2, batch_rng(0, 5), crop)
    assert b1.video_ids == b2.video_ids and np.array_equal(b1.offsets, b2.offsets)
    assert b1.features.shape[1] <= 50


def test_load_data_builds_the_kinds_asked_for_and_what_the_data_config_reads(tmp_path):
    gt = random_ground_truth(n_videos=8, seed=0)
    synthesize_features(gt, tmp_path / "feats", dim=8, seed=0)
    cfg = DataConfig(features=str(tmp_path / "feats"), ground_truth=str(gt.write(tmp_path / "gt.json")),
                     train_subset="training", test_subset="test", val_fraction=0.25,
                     labels=LabelConfig(ActionClickConfig(source="uniform"), boundaries=True))
    bundle = load_data(cfg, seed=0, kinds=("video_labels", "background"))  # BackTAL's kinds without clicks
    assert bundle.train.kinds == bundle.val.kinds == ("video_labels", "background")
    assert all(set(it.targets) == {"video_labels", "background"} for it in bundle.train)
    counts = label_counts(bundle.train)
    assert set(counts) == {"videos", "snippets", "background_clicks"} and counts["videos"] == len(bundle.train)
    # a kind brings the kinds it requires; frame targets add frames
    framed = dataclasses.replace(cfg, labels=dataclasses.replace(cfg.labels, frame_targets=True))
    item = load_data(framed, seed=0, kinds=("anchors",)).train[0]
    assert set(item.targets) == {"clicks", "anchors", "frames"}
    # windows chosen by their action content measure it on the boundaries: built although no kind asked for them
    windows = dataclasses.replace(cfg, sampling=SamplingConfig(train=SamplerConfig(kind="windows", length=7,
                                                                                   balance=True)))
    bundle = load_data(windows, seed=0, kinds=("video_labels",))
    assert set(bundle.train[0].targets) == {"video_labels", "boundaries"}
    assert len(Sampler(windows.sampling).window_index(bundle.train)[0]) > 0
    assert load_data(windows, seed=0, kinds=()).train.kinds == ("boundaries",)
