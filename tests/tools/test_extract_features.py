"""tools/extract_features.py end to end: exit status, failures.json, a killed run resumed, the real videos."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from clicktal.extractors import testvideos as tv
from clicktal.extractors.weights import I3D_URL
from clicktal.pipeline.data.cache import FeatureCache

TOOL = Path(__file__).resolve().parents[2] / "tools" / "extract_features.py"
SMALL = ["--random-init", "--resize", "48", "--crop", "40", "--flow-size", "32", "--no-progress"]


@pytest.fixture(scope="module")
def tool(load_tool):
    return load_tool("extract_features")


def test_exit_status_and_failures_json(tool, tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    tv.write_video(videos / "ok.mp4", tv.translating(64, 48, dx=1), 12)
    assert tool.main([str(videos), "--out", str(tmp_path / "c1"), *SMALL]) == 0
    assert json.loads((tmp_path / "c1" / ".clicktal" / "failures.json").read_text())["failed"] == []
    (videos / "corrupt.avi").write_bytes(b"RIFF" + os.urandom(3000))
    assert tool.main([str(videos), "--out", str(tmp_path / "c1"), *SMALL]) == 1
    out = capsys.readouterr()
    assert "1 already in the cache, 1 failed" in out.out and "corrupt.avi: unreadable" in out.out
    failed = json.loads((tmp_path / "c1" / ".clicktal" / "failures.json").read_text())["failed"]
    assert [(f["video"], f["reason"]) for f in failed] == [("corrupt", "unreadable")]


def test_missing_weights_exit_2_with_the_download_address(tool, tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    tv.write_video(videos / "ok.mp4", tv.counter(64, 48), 5)
    assert tool.main([str(videos), "--out", str(tmp_path / "c"), "--weights-dir", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "flow_imagenet.pt" in err and I3D_URL in err and "--features i3d_rgb" in err
    assert not list((tmp_path / "c").glob("*.npy"))


def test_shard_option_writes_its_own_failures_file(tool, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in "abc":
        tv.write_video(videos / f"{name}.mp4", tv.counter(64, 48), 5)
    assert tool.main([str(videos), "--out", str(tmp_path / "c"), "--shard", "1/2", *SMALL]) == 0
    assert FeatureCache(tmp_path / "c").video_ids() == ["b"]
    assert (tmp_path / "c" / ".clicktal" / "failures.shard-1-of-2.json").is_file()


def _run(videos, out, *extra):
    return subprocess.run([sys.executable, str(TOOL), str(videos), "--out", str(out), *SMALL, *extra],
                          capture_output=True, text=True, timeout=300)


def test_killed_run_resumed_gives_identical_features(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(3):
        tv.write_video(videos / f"v{i}.mp4", tv.translating(64, 48, dx=1 + i, seed=i), 45)
    ref = _run(videos, tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr

    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(TOOL), str(videos), "--out", str(out), *SMALL],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if any(out.glob("*.json")):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    done_before = FeatureCache(out).video_ids()
    assert 1 <= len(done_before) < 3
    for npy in out.glob("*.npy"):  # whatever is visible is whole
        assert np.load(npy).shape[1] == 2048
    mtimes = {v: FeatureCache(out).feature_path(v).stat().st_mtime_ns for v in done_before}

    resumed = _run(videos, out)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(done_before)} already in the cache" in resumed.stdout
    assert {v: FeatureCache(out).feature_path(v).stat().st_mtime_ns for v in done_before} == mtimes
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.name != ".clicktal"]  # no temp file left
    for vid in ("v0", "v1", "v2"):
        a, meta_a = FeatureCache(tmp_path / "ref").read(vid)
        b, meta_b = FeatureCache(out).read(vid)
        np.testing.assert_array_equal(a, b)
        assert meta_a.options == meta_b.options


@pytest.mark.slow
def test_real_sample_videos_end_to_end(benchkit, tmp_path):
    """Both benchkit videos (18 s at 981/50 fps and 14 s at 30 fps), random-init I3D at the default 224 crop, CPU.
    TV-L1 runs at 32 px (--flow-size) to keep CI to about a minute; everything else is the default."""
    videos = benchkit / "videos"
    out = tmp_path / "cache"
    cmd = [sys.executable, str(TOOL), str(videos), "--out", str(out), "--random-init", "--flow-size", "32",
           "--workers", "2", "--no-progress"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "UNTRAINED" in result.stderr
    gt = json.loads((videos / "annotations.json").read_text())["database"]
    cache = FeatureCache(out)
    assert cache.video_ids() == sorted(gt)
    for vid, entry in gt.items():
        feats, meta = cache.read(vid)
        assert feats.shape == (math.ceil(meta.source["duration_s"] * 25 / 16), 2048)
        assert feats.shape[0] == math.ceil(entry["duration"] * 25 / 16)  # the annotation's duration agrees
        assert np.isfinite(feats).all() and feats.std() > 0
        assert meta.weights_sha256 == {"rgb": "untrained", "flow": "untrained"}
    assert cache.read_meta("v_GGSY1Qvo990").source["native_fps"] == pytest.approx(981 / 50)


def test_flow_tvl1_torch_is_recorded_and_not_mixed_with_opencv(tool, tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    tv.write_video(videos / "v.mp4", tv.translating(64, 48, dx=2), 10)
    out = tmp_path / "cache"
    assert tool.main([str(videos), "--out", str(out), "--flow", "tvl1-torch", *SMALL]) == 0
    meta = FeatureCache(out).read_meta("v")
    assert meta.options["signature"]["flow_impl"] == "clicktal.extractors.tvl1_torch (cpu)"
    assert meta.options["flow"]["method"] == "tvl1-torch" and meta.options["flow"]["version"].startswith("torch ")
    torch_feats, _ = FeatureCache(out).read("v")
    assert tool.main([str(videos), "--out", str(out), "--flow", "opencv", *SMALL]) == 1
    assert "flow_impl" in capsys.readouterr().out
    assert tool.main([str(videos), "--out", str(tmp_path / "cv"), "--flow", "opencv", *SMALL]) == 0
    cv_feats, _ = FeatureCache(tmp_path / "cv").read("v")
    # the same algorithm: flow-stream features of the same untrained network agree closely
    flow = slice(*meta.streams["flow"])
    cos = (torch_feats[:, flow] * cv_feats[:, flow]).sum(1) / (
        np.linalg.norm(torch_feats[:, flow], axis=1) * np.linalg.norm(cv_feats[:, flow], axis=1))
    assert cos.min() > 0.999
