import json
import subprocess
import sys

import numpy as np
import pytest

from clicktal.pipeline.data.cache import CacheError, FeatureCache, FeatureMeta, SynthSource
from clicktal.pipeline.data.formats import open_features
from clicktal.pipeline.core.geometry import FeatureGeometry

META = FeatureMeta(FeatureGeometry(), {"rgb": (0, 4), "flow": (4, 8)}, extractor="test")


def test_write_read_is_memory_mapped_and_keeps_meta(tmp_path):
    cache = FeatureCache(tmp_path)
    x = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    cache.write("v1", x, META)
    y, meta = cache.read("v1")
    assert isinstance(y, np.memmap) and np.array_equal(x, y)
    assert meta == META and cache.has("v1") and cache.video_ids() == ["v1"]
    assert json.loads(cache.meta_path("v1").read_text())["num_snippets"] == 5


def test_shape_mismatch_is_refused_and_leaves_nothing(tmp_path):
    cache = FeatureCache(tmp_path)
    with pytest.raises(CacheError, match="v1"):
        cache.write("v1", np.zeros((3, 5)), META)
    assert not cache.has("v1") and list(tmp_path.iterdir()) == []


def test_array_without_sidecar_is_incomplete(tmp_path):
    cache = FeatureCache(tmp_path)
    np.save(cache.feature_path("v1"), np.zeros((2, 8), np.float32))
    assert not cache.has("v1") and cache.video_ids() == []
    with pytest.raises(CacheError, match="no cached features"):
        cache.read("v1")


def test_killed_writer_leaves_no_partial_file(tmp_path):
    # A child process dies (os._exit) in the middle of writing the array: no .npy, no sidecar, no temp file.
    code = f"""
import os, numpy as np
from clicktal.pipeline.data import cache as c
def dying_save(f, arr):
    f.write(b"half a file")
    os._exit(3)
c.np.save = dying_save
c.FeatureCache({str(tmp_path)!r}).write("v1", np.zeros((4, 8), np.float32), c.FeatureMeta(
    c.FeatureGeometry(), {{"rgb": (0, 4), "flow": (4, 8)}}))
"""
    assert subprocess.run([sys.executable, "-c", code]).returncode == 3
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert not FeatureCache(tmp_path).has("v1")
    assert "v1.npy" not in leftovers and "v1.json" not in leftovers
    FeatureCache(tmp_path).write("v1", np.ones((4, 8), np.float32), META)  # a rerun completes
    assert FeatureCache(tmp_path).has("v1")


def test_synth_layout_opens_through_the_same_reader(tmp_path, benchkit):
    out = tmp_path / "synth"
    subprocess.run([sys.executable, str(benchkit / "synth.py"), "--gt", str(benchkit / "gtea/groundtruth.json"),
                    "--out", str(out), "--dim", "16", "--max-videos", "2"], check=True, capture_output=True)
    src = open_features(out)
    assert isinstance(src, SynthSource) and len(src.ids()) == 4
    gt = json.loads((out / "annotations.json").read_text())["database"]
    vid = src.ids()[0]
    x, meta = src.load(vid)
    assert x.shape == (meta.geometry.snippet_count(gt[vid]["duration"]), 16)
    assert meta.streams == {"rgb": (0, 8), "flow": (8, 16)} and meta.geometry == FeatureGeometry(25, 16, 16)


def test_open_features_names_a_missing_folder(tmp_path):
    with pytest.raises(CacheError, match="nope"):
        open_features(tmp_path / "nope")
