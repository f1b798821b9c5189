"""Every label kind, from the real benchkit files and from the simulators, arrives in the batch on the right
snippets (and frames), through the sampling stage too."""
import numpy as np
import pytest

from clicktal.pipeline.core.config import config_from_dict
from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.data.annotations import load_ground_truth, read_action_clicks, read_background_clicks
from clicktal.pipeline.data.datasets import VideoItem, collate, make_item, segment_snippets
from clicktal.pipeline.data.labels import LabelConfig, training_supervision

GEO = FeatureGeometry()
VIDEO = "video_validation_0000051"


@pytest.fixture(scope="module")
def real(benchkit):
    gt = load_ground_truth(benchkit / "thumos14/groundtruth.json")
    cfg = config_from_dict(LabelConfig, {
        "action_clicks": {"source": "annotator", "annotator": 0,
                          "files": [str(benchkit / "thumos14/action_clicks_A1.txt")]},
        "background_clicks": {"source": "annotator", "files": [str(benchkit / "thumos14/background_clicks_A1.csv")]},
        "segments": {"source": "simulated", "per_instance": 2}, "boundaries": True, "frame_targets": True})
    labels = training_supervision(gt, "validation", cfg, seed=0, geometry=GEO)
    classes = gt.classes()
    sup = labels.supervision[VIDEO]
    T = GEO.snippet_count(gt.videos[VIDEO].extent_s)
    item = make_item(VIDEO, np.zeros((T, 4), np.float32), GEO, sup, classes, with_frame_labels=True)
    return gt, classes, sup, item, benchkit


def test_real_action_and_background_clicks_land_on_their_snippets(real):
    gt, classes, sup, item, benchkit = real
    clicks = read_action_clicks(benchkit / "thumos14/action_clicks_A1.txt", gt)[0][VIDEO]
    background = read_background_clicks(benchkit / "thumos14/background_clicks_A1.csv", gt)[0][VIDEO]
    assert clicks and background
    batch = collate([item])
    expected = np.zeros_like(item.targets["clicks"])
    for c in clicks:
        expected[GEO.index_of(c.time_s, item.length), classes.index(c.label)] += 1
    assert np.array_equal(batch.targets["clicks"][0].numpy(), expected)
    assert np.array_equal(np.flatnonzero(batch.targets["anchors"][0].numpy()), np.flatnonzero(expected.sum(1)))
    assert sorted(np.flatnonzero(batch.targets["background"][0].numpy())) == sorted(
        {GEO.index_of(t, item.length) for t in background})  # 21.5 s -> snippet 33, ...
    assert batch.targets["background"][0, 33]


def test_segments_boundaries_and_frame_targets(real):
    gt, classes, sup, item, _ = real
    batch = collate([item])
    for kind, segments in (("segments", sup.labelled_segments), ("boundaries", sup.boundaries)):
        expected = np.zeros_like(item.targets["boundaries"])
        for s in segments:
            expected[segment_snippets(GEO, s.start_s, s.end_s, item.length), classes.index(s.label)] = 1
        assert np.array_equal(batch.targets[kind][0].numpy(), expected), kind
        assert np.array_equal(batch.masks[kind][0].numpy(), expected.any(1))
    # segments are labels inside the boundaries
    assert not (batch.masks["segments"] & ~batch.masks["boundaries"]).any()
    # frame targets: one-hot per frame, background in column 0, an instance's frames carry its class
    ft = batch.targets["frames"][0].numpy()
    assert ft.shape == (item.length * 16, len(classes) + 1) and np.all(ft.sum(1) == 1)
    seg = sup.boundaries[0]
    middle = int((seg.start_s + seg.end_s) / 2 * 25)
    before = int(seg.start_s * 25) - 2
    assert ft[middle, classes.index(seg.label) + 1] == 1
    assert seg.start_s > 1 and ft[before, 0] == 1  # the first instance starts after some background
    # the union for SF-Net: every labelled snippet of any kind, rows normalised
    union = sum(batch.targets[kind][0].sum(1) for kind in ("clicks", "segments", "boundaries"))
    assert np.array_equal(batch.masks["actions"][0].numpy(), union.numpy() > 0)
    assert np.allclose(batch.targets["actions"][0][batch.masks["actions"][0]].sum(1).numpy(), 1)


def test_labels_move_with_a_crop_and_a_resize(real):
    item = real[3]
    start = int(np.flatnonzero(item.targets["anchors"])[0]) - 3
    crop = item.sample(np.arange(start, start + 40, dtype=np.float64))
    assert np.array_equal(crop.targets["clicks"], item.targets["clicks"][start:start + 40])
    assert np.array_equal(crop.targets["frames"], item.targets["frames"][start * 16:(start + 40) * 16])
    with pytest.raises(ValueError, match="not resize"):  # frame targets need whole snippets
        item.sample(np.linspace(0, item.length - 1, 50))
    no_frames = VideoItem(item.video_id, item.features, geometry=item.geometry,
                          targets={k: v for k, v in item.targets.items() if k != "frames"})
    small = no_frames.sample(np.linspace(0, item.length - 1, 50))
    assert small.length == 50
    # every click survives a 5x downsampling, on the element nearest to it, with its class
    for t_native, c in zip(*np.nonzero(item.targets["clicks"])):
        j = int(np.abs(small.grid.positions - t_native).argmin())
        assert small.targets["anchors"][j] and small.targets["clicks"][j, c] > 0
    assert small.targets["background"].any() and small.targets["segments"].any()
