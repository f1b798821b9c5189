"""The per-video task and the folder run: shapes, metadata, bad videos, resuming, shards, saved flow."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from clicktal.extractors import testvideos as tv
from clicktal.extractors.extract import ExtractionConfig, compute_features, extract_video
from clicktal.extractors.flowio import read_saved_flow
from clicktal.extractors.runner import extract_folder, plan_videos
from clicktal.extractors.snippets import SnippetAssembler
from clicktal.pipeline.data.cache import FeatureCache
from clicktal.pipeline.data.formats import open_features

# Small frames and TV-L1 at 32 px (see conftest.fast_config)
FAST = dict(random_init=True, resize=48, crop=40, flow_size=32)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two good videos (25 and 29.97 fps, one in a subfolder), an audio-only file and a truncated one."""
    root = tmp_path_factory.mktemp("videos")
    (root / "sub").mkdir()
    tv.write_video(root / "good_a.mp4", tv.translating(64, 48, dx=1), 20)
    tv.write_video(root / "sub" / "good_b.mp4", tv.translating(64, 48, dy=1), 40, fps=30000 / 1001)
    tv.write_audio_only(root / "audio_only.mp4")
    tv.truncate(tv.write_video(root / "broken.mp4", tv.counter(64, 48), 20), 0.4)
    return root


@pytest.fixture(scope="module")
def first_run(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("cache")
    return out, extract_folder(folder, out, progress=False, **FAST)


def test_bad_videos_fail_clearly_while_the_others_complete(first_run, folder):
    out, summary = first_run
    assert (summary.total, summary.done, summary.failed, summary.skipped) == (4, 2, 2, 0)
    assert not summary.ok
    failures = json.loads((out / ".clicktal" / "failures.json").read_text())["failed"]
    assert {(f["video"], f["reason"]) for f in failures} == {("audio_only", "no_video_stream"),
                                                             ("broken", "truncated")}
    assert all(f["path"].startswith(str(folder)) and f["message"] for f in failures)
    assert FeatureCache(out).video_ids() == ["good_a", "good_b"]
    assert "audio_only.mp4: no_video_stream" in summary.text()


def test_features_shapes_and_metadata(first_run):
    out, _ = first_run
    source = open_features(out)
    feats, meta = source.load("good_b")
    duration = 40 / (30000 / 1001)
    assert feats.shape == (math.ceil(duration * 25 / 16), 2048) and feats.dtype == np.float32
    assert isinstance(feats, np.memmap)
    assert meta.geometry.to_dict() == {"fps": 25.0, "window": 16, "stride": 16}
    assert meta.streams == {"rgb": (0, 1024), "flow": (1024, 2048)}
    assert meta.extractor == "i3d"
    assert meta.weights_sha256 == {"rgb": "untrained", "flow": "untrained"}
    assert meta.source["duration_s"] == pytest.approx(duration, abs=1e-3)
    assert meta.source["native_fps"] == pytest.approx(29.97, abs=0.01)
    assert meta.source["size_bytes"] > 0 and meta.source["path"].endswith("good_b.mp4")
    assert {"torch", "av", "opencv", "numpy"} <= set(meta.versions)
    opts = meta.options
    assert opts["untrained"] is True
    assert opts["signature"]["crop"] == 40 and opts["signature"]["flow_size"] == 32
    assert opts["flow"]["params"]["lambda"] == 0.15 and opts["flow"]["clip_px"] == 20
    assert "repeat" in opts["snippets"] and "[-1, 1]" in opts["model"]["rgb_input"]


def test_rerun_skips_completed_videos(first_run, folder):
    out, _ = first_run
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy")}
    summary = extract_folder(folder, out, progress=False, **FAST)
    assert (summary.skipped, summary.done, summary.failed) == (2, 0, 2)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy")} == before


def test_other_options_do_not_reuse_the_cache(first_run, folder):
    out, _ = first_run
    summary = extract_folder(folder, out, progress=False, **dict(FAST, crop=32))
    conflicts = [f for f in summary.failures if f["reason"] == "cache_conflict"]
    assert len(conflicts) == 2 and "crop" in conflicts[0]["message"] and "--overwrite" in conflicts[0]["message"]


def test_padding_keeps_the_last_partial_snippet(tmp_path, fast_config):
    # 20 frames -> 2 snippets; the second holds frames 16..19 and 12 copies of frame 19
    path = tv.write_video(tmp_path / "v.mp4", tv.translating(64, 48, dx=1), 20)
    feats, meta = compute_features(path, fast_config)
    assert feats.shape == (2, 2048) and meta.source["resampled_frames"] == 20
    asm = SnippetAssembler(16, 16, batch_size=4, with_flow=False)
    asm.add(np.arange(20).reshape(20, 1, 1, 1))
    asm.close(20)
    rgb, _ = next(asm.batches(final=True))
    assert rgb[:, :, 0, 0, 0].tolist() == [list(range(16)), list(range(16, 20)) + [19] * 12]


def test_overlapping_windows(tmp_path):
    asm = SnippetAssembler(window=8, stride=4, batch_size=2, with_flow=False)
    asm.add(np.arange(6).reshape(6, 1, 1, 1))
    got = [b[0][:, :, 0, 0, 0].tolist() for b in asm.batches()]
    assert got == []  # snippet 0 needs frames 0..7
    asm.add(np.arange(6, 10).reshape(4, 1, 1, 1))
    asm.close(10)
    got = [row for b in asm.batches(final=True) for row in b[0][:, :, 0, 0, 0].tolist()]
    assert got == [list(range(8)), list(range(4, 10)) + [9, 9], [8, 9] + [9] * 6]


def test_decord_and_pyav_give_the_same_features(tmp_path, fast_config):
    pytest.importorskip("decord")
    path = tv.write_video(tmp_path / "v.mp4", tv.translating(64, 48, dx=1), 18, fps=30)
    a, _ = compute_features(path, fast_config)
    b, meta = compute_features(path, ExtractionConfig(**dict(FAST, decoder="decord")))
    np.testing.assert_array_equal(a, b)
    assert meta.options["decoder"] == "decord" and "decord" in meta.versions


def test_shards_split_deterministically(folder):
    all_ids = [vid for vid, _ in plan_videos(folder)]
    parts = [[vid for vid, _ in plan_videos(folder, f"{i}/3")] for i in range(3)]
    assert sorted(sum(parts, [])) == sorted(all_ids) and all(parts)
    assert parts == [[vid for vid, _ in plan_videos(folder, (i, 3))] for i in range(3)]
    with pytest.raises(ValueError, match="0 <= i < n"):
        plan_videos(folder, "3/3")


def test_duplicate_video_ids_are_refused(tmp_path):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "same.mp4").write_bytes(b"")
    with pytest.raises(ValueError, match="same.mp4"):
        plan_videos(tmp_path)


@pytest.mark.parametrize("fmt", ["jpg", "npz"])
def test_save_flow(tmp_path, fmt):
    path = tv.write_video(tmp_path / "v.mp4", tv.translating(64, 48, dx=2), 10)
    res = extract_video(path, tmp_path / "out", ExtractionConfig(**dict(FAST, save_flow=fmt)))
    assert res.status == "done", res.message
    flow_dir = tmp_path / "out" / "flow" / "v"
    info = json.loads((flow_dir / "flow.json").read_text())
    assert info["frames"] == 10 and info["format"] == fmt
    if fmt == "jpg":
        assert len(list(flow_dir.glob("x_*.jpg"))) == len(list(flow_dir.glob("y_*.jpg"))) == 10
    flow = read_saved_flow(flow_dir)
    assert flow.shape == (10, 40, 40, 2)
    assert float(np.median(flow[:, 8:-8, 8:-8, 0])) == pytest.approx(2 / 20, abs=0.02)  # 2 px per frame
    assert not list((tmp_path / "out" / "flow").glob(".*"))  # no temporary folder left


def test_tsn_through_the_folder_run(tmp_path):
    tv.write_video(tmp_path / "v.mp4", tv.translating(64, 48, dx=1), 20)
    summary = extract_folder(tmp_path, tmp_path / "out", progress=False, **dict(FAST, features="tsn"))
    assert summary.ok
    feats, meta = FeatureCache(tmp_path / "out").read("v")
    assert feats.shape == (2, 4096) and meta.extractor == "tsn"
    assert meta.streams == {"rgb": (0, 2048), "flow": (2048, 4096)}


def test_parallel_videos_match_sequential(folder, first_run, tmp_path):
    out, _ = first_run
    summary = extract_folder(folder, tmp_path, workers=2, progress=False, **FAST)
    assert (summary.done, summary.failed) == (2, 2)
    for vid in ("good_a", "good_b"):
        a, _ = FeatureCache(out).read(vid)
        b, _ = FeatureCache(tmp_path).read(vid)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_cluster_backends_fail_clearly_when_missing(folder, tmp_path):
    import importlib.util

    if importlib.util.find_spec("dask") is not None:
        pytest.skip("dask is installed")
    with pytest.raises(RuntimeError, match="pip install 'clicktal\\[cluster\\]'"):
        extract_folder(folder, tmp_path, workers=2, backend="dask", progress=False, **FAST)


def test_assembler_memory_stays_bounded():
    """Streaming: however long the video, only the frames unfinished snippets need are held."""
    asm = SnippetAssembler(16, 16, batch_size=4, with_flow=True)
    held = []
    for start in range(0, 5000, 64):
        frames = np.zeros((64, 2, 2, 3), np.uint8)
        asm.add(frames, np.zeros((64, 2, 2, 2), np.float32))
        for _ in asm.batches():
            pass
        held.append(len(asm._rgb) + len(asm._pending) * 16)
    assert max(held) <= 64 + 16 + 4 * 16


def test_other_weights_do_not_reuse_the_cache(tmp_path):
    import torch

    from clicktal.extractors.i3d import InceptionI3d

    weights = tmp_path / "weights"
    weights.mkdir()

    def save(seed):
        for stream, ch in (("rgb", 3), ("flow", 2)):
            torch.manual_seed(seed + ch)
            torch.save(InceptionI3d(ch).state_dict(), weights / f"{stream}_imagenet.pt")

    tv.write_video(tmp_path / "v.mp4", tv.translating(64, 48, dx=1), 8)
    opts = dict(FAST, random_init=False, weights_dir=str(weights))
    save(0)
    first = extract_folder([tmp_path / "v.mp4"], tmp_path / "out", progress=False, **opts)
    assert first.done == 1
    assert extract_folder([tmp_path / "v.mp4"], tmp_path / "out", progress=False, **opts).skipped == 1
    save(1)
    again = extract_folder([tmp_path / "v.mp4"], tmp_path / "out", progress=False, **opts)
    assert again.failed == 1 and "other weights" in again.failures[0]["message"]
