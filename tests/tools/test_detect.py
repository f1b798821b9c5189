"""tools/detect.py: new video files -> features -> a trained run's detections, end to end."""
import json

import pytest
import yaml

from clicktal.pipeline.data.detections import read_detections
from clicktal.extractors.testvideos import write_demo_videos
from clicktal.pipeline.data.synthetic import random_ground_truth, synthesize_features

@pytest.mark.slow
def test_detect_on_new_video_files(tmp_path, capsys, load_tool):
    # a tiny run trained on 2048-d features, the width of two-stream I3D
    gt = random_ground_truth(n_videos=6, seed=4)
    synthesize_features(gt, tmp_path / "feats", dim=2048, seed=4)
    gt_path = gt.write(tmp_path / "gt.json")
    cfg = {"name": "tiny", "data": {"features": str(tmp_path / "feats"), "ground_truth": str(gt_path),
                                    "train_subset": "training", "test_subset": "test",
                                    "labels": {"action_clicks": {"source": "uniform"}}, "sampling": {"train": {"kind": "crop", "length": 64}}},
           "model": {"name": "sfnet", "params": {"mining": {"start_iteration": 2}}},
           "train": {"iterations": 3, "batch_size": 3, "progress": False, "num_threads": 1},
           "postprocess": {"preset": "sfnet"}, "evaluation": {"use_ambiguous": False}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    train = load_tool("train_localizer")
    assert train.main(["--config", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "run")]) == 0

    videos = tmp_path / "videos"
    write_demo_videos(videos, n_videos=1, duration_s=2.0, size=(96, 72))
    (videos / "broken.mp4").write_bytes(b"not a video at all")
    out = tmp_path / "dets.json"
    code = load_tool("detect").main([str(videos), "--run", str(tmp_path / "run"), "--out", str(out), "--random-init",
                                "--flow-size", "32"])
    printed = capsys.readouterr().out
    assert code == 1  # the broken file fails, the good one is still localized
    assert "1 failed" in printed and out.is_file()
    failures = json.loads((tmp_path / "dets.json.features" / "failures.json").read_text())
    assert [(f["video"], f["reason"]) for f in failures["failed"]] == [("broken", "unreadable")]
    assert {d.video for d in read_detections(out)} <= {"demo_00"}
    assert json.loads(out.read_text())["results"] is not None
