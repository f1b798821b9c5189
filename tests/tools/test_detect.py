"""tools/detect.py: new video files -> features (the run's own extraction options) -> the run's detections."""
import json

import pytest
import yaml

from clicktal.extractors.runner import extract_folder
from clicktal.extractors.testvideos import write_demo_videos
from clicktal.pipeline.data.detections import read_detections

SMALL = {"features": "i3d", "random_init": True, "flow_size": 32, "resize": 128, "crop": 112}


@pytest.mark.slow
def test_detect_extracts_like_the_run_and_refuses_a_broken_contract_before_extracting(tmp_path, capsys, load_tool):
    # a tiny run trained on features this project extracted from its own videos (untrained I3D, small frames)
    train_videos = tmp_path / "train_videos"
    write_demo_videos(train_videos, n_videos=4, duration_s=2.0, size=(96, 72), seed=1)
    summary = extract_folder(train_videos, tmp_path / "feats", progress=False, **SMALL)
    assert summary.ok
    cfg = {"name": "tiny", "data": {"features": str(tmp_path / "feats"),
                                    "ground_truth": str(train_videos / "groundtruth.json"),
                                    "train_subset": "training", "test_subset": "validation",
                                    "labels": {"action_clicks": {"source": "uniform"}}},
           "model": {"name": "sfnet", "params": {"mining": {"start_iteration": 2}}},
           "train": {"iterations": 3, "batch_size": 2, "progress": False, "num_threads": 1},
           "postprocess": {"preset": "sfnet"}, "evaluation": {"use_ambiguous": False}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    assert load_tool("train_localizer").main(["--config", str(tmp_path / "tiny.yaml"),
                                              "--out", str(tmp_path / "run")]) == 0
    assert json.loads((tmp_path / "run" / "run_meta.json").read_text())["extraction"]["crop"] == 112

    videos = tmp_path / "videos"
    write_demo_videos(videos, n_videos=1, duration_s=2.0, size=(96, 72))
    (videos / "broken.mp4").write_bytes(b"not a video at all")
    detect = load_tool("detect")
    capsys.readouterr()

    # another extractor breaks the contract: refused before a single video is decoded
    out = tmp_path / "tsn.json"
    assert detect.main([str(videos), "--run", str(tmp_path / "run"), "--out", str(out), "--features", "tsn"]) == 2
    err = capsys.readouterr().err
    assert "extractor: i3d != tsn" in err and "dim" in err
    assert not (tmp_path / "tsn.json.features").exists() and not out.exists()

    # no extraction flags: the run's own options (untrained I3D at 112 px, flow at 32 px)
    out = tmp_path / "dets.json"
    code = detect.main([str(videos), "--run", str(tmp_path / "run"), "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 1  # the broken file fails, the good one is still localized
    assert "1 failed" in printed and out.is_file()
    cache = tmp_path / "dets.json.features"
    failures = json.loads((cache / ".clicktal" / "failures.json").read_text())
    assert [(f["video"], f["reason"]) for f in failures["failed"]] == [("broken", "unreadable")]
    assert json.loads((cache / "demo_00.json").read_text())["options"]["signature"]["crop"] == 112
    assert {d.video for d in read_detections(out)} <= {"demo_00"}
