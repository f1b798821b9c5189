"""The proxy world: deterministic per seed and per video, synth.py's layout, annotations past a video's duration
covered and reported, actions that replace content, and feature statistics measured as documented."""
import json

import numpy as np
import pytest

from clicktal.pipeline.data.annotations import Segment, load_ground_truth
from clicktal.pipeline.data.cache import SynthSource
from clicktal.pipeline.data.feature_stats import action_mask, feature_statistics, video_statistics
from clicktal.pipeline.data.world import WORLD_VERSION, World, WorldParams, video_extent, write_world


def test_the_world_is_deterministic_per_seed_and_per_video(benchkit, tmp_path):
    gt = benchkit / "thumos14/groundtruth.json"
    write_world(gt, tmp_path / "a", seed=3, dim=16, max_videos=3)
    write_world(gt, tmp_path / "b", seed=3, dim=16, max_videos=3)
    write_world(gt, tmp_path / "c", seed=4, dim=16, max_videos=3)
    write_world(gt, tmp_path / "d", seed=3, dim=16, max_videos=5)
    names = sorted(p.name for p in (tmp_path / "a" / "features").glob("*.npy"))
    assert len(names) == 6  # 3 validation + 3 test
    for name in names:
        a = np.load(tmp_path / "a" / "features" / name)
        assert np.array_equal(a, np.load(tmp_path / "b" / "features" / name))
        assert not np.array_equal(a, np.load(tmp_path / "c" / "features" / name))
        # a video's features do not depend on which other videos were generated beside it
        assert np.array_equal(a, np.load(tmp_path / "d" / "features" / name))
    meta = json.loads((tmp_path / "a" / "meta.json").read_text())
    assert meta["world_version"] == WORLD_VERSION and meta["params"]["replace"] == WorldParams().replace


def test_the_layout_is_synth_pys_and_opens_as_a_feature_set(benchkit, tmp_path):
    write_world(benchkit / "gtea/groundtruth.json", tmp_path / "w", seed=0, dim=12, max_videos=2,
                snippet_frames=5, fps=15)
    source = SynthSource(tmp_path / "w")
    vid = source.ids()[0]
    x, meta = source.load(vid)
    gt = load_ground_truth(tmp_path / "w" / "annotations.json")
    assert x.dtype == np.float32 and x.shape[1] == 12 and meta.streams == {"rgb": (0, 6), "flow": (6, 12)}
    assert meta.geometry.window == 5 and meta.geometry.fps == 15
    assert len(x) == int(np.ceil(gt.videos[vid].duration_s * 15 / 5))
    assert (x >= 0).all()


def test_annotations_past_the_duration_are_covered_and_reported(benchkit, tmp_path):
    db = json.loads((benchkit / "thumos14/groundtruth.json").read_text())["database"]
    late = sorted(v for v, e in db.items() if video_extent(e) > float(e["duration"]))
    # the SF-Net release's file: 9 test and 8 validation videos (video_test_0000270: 176.1 s, an instance ends at 713.7)
    assert "video_test_0000270" in late and len(late) == 17
    small = {"version": "x", "database": {v: db[v] for v in late[:2] + ["video_validation_0000051"]}}
    (tmp_path / "gt.json").write_text(json.dumps(small))
    meta = write_world(tmp_path / "gt.json", tmp_path / "w", dim=8)
    assert sorted(meta["extended_videos"]) == late[:2]
    for vid in late[:2]:
        x = np.load(tmp_path / "w" / "features" / f"{vid}.npy")
        last_end = max(a["segment"][1] for a in db[vid]["annotations"])
        assert len(x) * 16 / 25 >= last_end > float(db[vid]["duration"])


def test_an_action_replaces_part_of_its_scene():
    """With replacement the action moves a snippet against its background's direction (as real I3D features do);
    added on top without replacement it does not."""
    seg = [{"label": "A", "segment": [20.0, 40.0]}]
    truth = [Segment(20.0, 40.0, "A")]
    along = {}
    for replace in (0.0, 0.9):
        params = WorldParams(replace=replace, boundary_jitter_s=0.0, run_up_prob=0.0, near_miss_rate=0.0)
        world = World(["A", "B"], 256, 0, params=params)
        x = world.video(seg, 60.0, np.random.default_rng(0))[:, :128]
        along[replace] = video_statistics(x, action_mask(truth, (np.arange(len(x)) + 0.5) * 0.64))["shift_along_bg"]
    assert along[0.9] < 0 and along[0.9] < along[0.0] - 0.03


def test_feature_statistics_by_hand():
    x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0], [0.0, 2.0]])
    action = np.array([False, False, True, True])
    s = video_statistics(x, action)
    assert s["act_bg_cosine"] == pytest.approx(0.0)
    assert s["shift_ratio"] == pytest.approx(np.sqrt(5.0))  # |(-1, 2)| / |(1, 0)|
    assert s["shift_along_bg"] == pytest.approx(-1.0)
    assert s["near_zero"] == pytest.approx(0.5)
    assert s["lag1_autocorr"] == pytest.approx(1 / 4)  # centred rows a, a, -a, -a: (1 - 1 + 1) / 4


def test_feature_statistics_of_a_feature_set(benchkit, tmp_path):
    write_world(benchkit / "thumos14/groundtruth.json", tmp_path / "w", dim=16, max_videos=2)
    source = SynthSource(tmp_path / "w")
    gt = load_ground_truth(tmp_path / "w" / "annotations.json")
    stats = feature_statistics(source, gt, stream="flow", max_videos=3)
    assert len(stats.per_video) == 3 and all(np.isfinite(v) for v in stats.median.values())


def test_the_command_line_says_how_many_videos_were_extended(benchkit, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    tool = Path(__file__).resolve().parents[3] / "benchmarks" / "world.py"
    done = subprocess.run([sys.executable, str(tool), "--gt", str(benchkit / "thumos14/groundtruth.json"), "--out",
                           str(tmp_path / "w"), "--dim", "8", "--max-videos", "400"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "wrote 412 videos, 20 classes, dim 8, world v" in done.stdout
    assert "17 video(s) extended to cover annotations past their duration (video_test_0000270" in done.stdout
