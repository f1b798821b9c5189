import av
import numpy as np

from clicktal.pipeline.annotations import load_ground_truth
from clicktal.pipeline.synthetic import random_ground_truth, synthesize_features, write_demo_videos


def test_demo_videos_decode_with_their_ground_truth(tmp_path):
    gt = write_demo_videos(tmp_path, n_videos=2, duration_s=3.0, size=(160, 120))
    loaded = load_ground_truth(tmp_path / "groundtruth.json")
    assert sorted(loaded.videos) == ["demo_00", "demo_01"] and len(loaded.videos["demo_00"].segments) == 2
    with av.open(str(tmp_path / "demo_00.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 75 and frames[0].shape == (120, 160, 3)
    seg = gt["database"]["demo_00"]["annotations"][0]["segment"]
    # the square moves inside an instance and rests before it
    first = int(np.ceil(seg[0] * 25))
    moving = np.abs(frames[first].astype(int) - frames[first + 10]).mean()
    resting = np.abs(frames[0].astype(int) - frames[5]).mean()
    assert moving > 5 * max(resting, 0.1)


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
