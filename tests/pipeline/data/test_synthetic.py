import numpy as np

from clicktal.pipeline.data.annotations import load_ground_truth
from clicktal.pipeline.data.synthetic import random_ground_truth, synthesize_features


def test_synthetic_features_follow_the_geometry_and_separate_actions(tmp_path):
    gt = random_ground_truth(n_videos=6, seed=1)
    gt.write(tmp_path / "gt.json")
    assert load_ground_truth(tmp_path / "gt.json").videos.keys() == gt.videos.keys()
    cache = synthesize_features(gt, tmp_path / "cache", dim=32, seed=1)
    inside, outside = [], []
    for vid, video in gt.videos.items():
        x, meta = cache.read(vid)
        assert x.shape == (meta.geometry.snippet_count(video.duration_s), 32)
        t = meta.geometry.centre_s(np.arange(len(x)))
        mask = np.zeros(len(x), bool)
        for s in video.segments:
            mask |= (t >= s.start_s) & (t <= s.end_s)
        flow = np.asarray(x[:, 16:]).mean(axis=1)
        inside.append(flow[mask].mean())
        outside.append(flow[~mask].mean())
    assert np.mean(inside) > np.mean(outside)  # motion is higher in actions


def test_random_ground_truth_is_valid_for_short_videos():
    gt = random_ground_truth(n_videos=40, duration_range=(5.0, 20.0), seed=3)
    for video in gt.videos.values():
        ends = [s.end_s for s in video.segments]
        assert all(0 <= s.start_s < s.end_s <= video.duration_s for s in video.segments)
        assert ends == sorted(ends)
