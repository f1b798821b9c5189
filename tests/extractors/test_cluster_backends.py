"""Scale-out: extraction through joblib's Dask backend on a dask.distributed LocalCluster (standing in for a real
scheduler address) and through Ray (local) writes the same cache as a local run, array for array."""
import dataclasses

import numpy as np
import pytest

from clicktal.extractors import testvideos as tv
from clicktal.extractors.runner import extract_folder
from clicktal.pipeline.data.cache import FeatureCache


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster_videos")
    for i in range(3):
        tv.write_video(root / f"v{i}.mp4", tv.counter(64, 48), 20 + 7 * i, fps=25)
    return root


@pytest.fixture(scope="module")
def config(fast_config):
    """One torch thread everywhere: the local run and every worker then sum in the same order, bit for bit."""
    return dataclasses.replace(fast_config, torch_threads=1)


@pytest.fixture(scope="module")
def local_cache(videos, tmp_path_factory, config):
    out = tmp_path_factory.mktemp("local")
    assert extract_folder(videos, out, config=config, workers=1, progress=False).ok
    return FeatureCache(out)


def assert_same_cache(a: FeatureCache, b: FeatureCache):
    assert a.video_ids() == b.video_ids() and len(a.video_ids()) == 3
    for vid in a.video_ids():
        (fa, ma), (fb, mb) = a.read(vid), b.read(vid)
        assert np.array_equal(fa, fb), vid
        assert ma.geometry == mb.geometry and ma.streams == mb.streams and ma.weights_sha256 == mb.weights_sha256


@pytest.mark.slow
def test_dask_cluster_writes_the_local_cache(videos, local_cache, tmp_path, config):
    distributed = pytest.importorskip("dask.distributed", reason="pip install 'clicktal[cluster]'")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        summary = extract_folder(videos, tmp_path / "dask", config=config, workers=2,
                                 backend="dask", scheduler=cluster.scheduler_address, progress=False)
    assert summary.ok
    assert_same_cache(local_cache, FeatureCache(tmp_path / "dask"))


@pytest.mark.slow
def test_ray_writes_the_local_cache(videos, local_cache, tmp_path, config):
    ray = pytest.importorskip("ray", reason="pip install 'clicktal[cluster]'")
    try:
        summary = extract_folder(videos, tmp_path / "ray", config=config, workers=2, backend="ray",
                                 progress=False)
    finally:
        ray.shutdown()
    assert summary.ok
    assert_same_cache(local_cache, FeatureCache(tmp_path / "ray"))
