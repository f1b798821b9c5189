"""The same features in every layout the product reads train SF-Net to the same results: the reader, not the data,
differs (GTEA's real SF-Net release annotation arrays and real clicks; synthetic 8-d features at 15 fps)."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from clicktal.pipeline.core.config import load_config, merge_overrides
from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.data.cache import FeatureCache, FeatureMeta
from clicktal.pipeline.data.releases import read_release_annotations
from clicktal.pipeline.runs.experiments import apply_overrides, run_experiment
from clicktal.pipeline.runs.schema import ExperimentConfig

GEOMETRY = FeatureGeometry(15, 16, 16)  # SF-Net's GTEA features: 15 fps, 16-frame snippets
DIM, RGB = 8, 4
SPLIT = {"training": "train", "validation": "test"}  # BaS-Net's folder per subset


@pytest.fixture(scope="module")
def layouts(benchkit, tmp_path_factory):
    """``{layout: (features folder, data-block overrides)}`` holding identical features."""
    root = tmp_path_factory.mktemp("layouts")
    annotations = benchkit / "gtea/sfnet_release/GTEA-Annotations"
    rel = read_release_annotations(annotations)
    gt = rel.ground_truth
    rng = np.random.default_rng(0)
    protos = {c: rng.standard_normal(DIM) for c in rel.classes}
    feats = {}
    for vid in rel.names:
        video = gt.videos[vid]
        x = 0.7 * rng.standard_normal((GEOMETRY.snippet_count(video.duration_s), DIM))
        centres = GEOMETRY.centre_s(np.arange(len(x)))
        for seg in video.segments:
            x[(centres >= seg.start_s) & (centres < seg.end_s)] += protos[seg.label]
        feats[vid] = x.astype(np.float32)
    gt_json = gt.write(root / "gt.json")
    streams = {"rgb": (0, RGB), "flow": (RGB, DIM)}

    cache = FeatureCache(root / "cache")
    for vid, x in feats.items():
        cache.write(vid, x, FeatureMeta(GEOMETRY, streams, extractor="test"))

    joint = np.empty(len(rel.names), object)
    for i, vid in enumerate(rel.names):
        joint[i] = feats[vid]
    (root / "wtalc").mkdir()
    np.save(root / "wtalc" / "GTEA-I3D-JOINTFeatures.npy", joint, allow_pickle=True)
    shutil.copytree(annotations, root / "wtalc" / "GTEA-Annotations")

    for vid, x in feats.items():
        for stream, (lo, hi) in streams.items():
            folder = root / "basnet" / "features" / SPLIT[gt.videos[vid].subset] / stream
            folder.mkdir(parents=True, exist_ok=True)
            np.save(folder / f"{vid}.npy", x[:, lo:hi])

    (root / "actionformer").mkdir()
    database = json.loads(gt_json.read_text())
    for vid, x in feats.items():
        np.save(root / "actionformer" / f"{vid}.npy", x)
        database["database"][vid]["fps"] = GEOMETRY.fps
    (root / "af.json").write_text(json.dumps(database))

    grid = {"window": GEOMETRY.window, "stride": GEOMETRY.stride, "rgb_dim": RGB}  # the layout names no streams
    return {
        "cache": (root / "cache", {"ground_truth": str(gt_json)}),
        "wtalc": (root / "wtalc", {"ground_truth": ""}),  # the release's own arrays
        "basnet": (root / "basnet", {"ground_truth": str(gt_json), "feature_layout": {"fps": GEOMETRY.fps}}),
        "actionformer": (root / "actionformer", {"ground_truth": str(root / "af.json"), "feature_layout": grid}),
    }


def train(benchkit, folder, data, out):
    base = load_config(ExperimentConfig, Path(__file__).resolve().parents[3] / "configs" / "sfnet_gtea.yaml")
    files = [str(benchkit / f"gtea/action_clicks_A{i}.txt") for i in range(1, 5)]
    overrides = {"data": merge_overrides({"features": str(folder), "labels": {"action_clicks": {"files": files}}},
                                         data),
                 "model": {"params": {"mining": {"start_iteration": 2}}},
                 "train": {"iterations": 4, "batch_size": 4, "checkpoint_every": 4, "progress": False,
                           "num_threads": 1}}
    run_experiment(apply_overrides(base, overrides), out, log=lambda *_: None)
    res = json.loads((out / "results.json").read_text())
    return res, json.loads((out / "detections.json").read_text())


def test_every_layout_trains_sfnet_to_the_same_results(benchkit, layouts, tmp_path):
    results = {name: train(benchkit, folder, data, tmp_path / name) for name, (folder, data) in layouts.items()}
    ref_res, ref_dets = results.pop("cache")
    assert ref_res["average_mAP"] > 0 and sum(len(v) for v in ref_dets["results"].values()) > 0
    for name, (res, dets) in results.items():
        assert dets["results"] == ref_dets["results"], name
        for key in ("mAP", "average_mAP", "evaluation", "iterations"):
            assert res[key] == ref_res[key], (name, key)


def test_infer_reads_a_layout_with_the_run_s_reading_of_it(benchkit, layouts, tmp_path, load_tool, capsys):
    """A folder of plain ``<video>.npy`` files (ActionFormer's layout) is recognised, read with the run's grid and
    the fps of the run's annotation JSON: the run's own test detections come back (before: 0 videos, exit 0)."""
    folder, data = layouts["actionformer"]
    _, dets = train(benchkit, folder, data, tmp_path / "run")
    test_videos = sorted(dets["results"])
    out = tmp_path / "infer.json"
    assert load_tool("infer").main(["--run", str(tmp_path / "run"), "--features", str(folder), "--out", str(out),
                                    "--videos", *test_videos]) == 0
    assert json.loads(out.read_text())["results"] == dets["results"]
    capsys.readouterr()
    # a folder of another layout than the run's features is refused, naming what differs
    assert load_tool("infer").main(["--run", str(tmp_path / "run"), "--features", str(layouts["cache"][0]),
                                    "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert "extractor: actionformer != test" in err and len(err.strip().splitlines()) == 1


def test_a_run_trained_on_the_cache_detects_on_its_actionformer_export(benchkit, layouts, tmp_path, load_tool):
    """clicktal-export keeps the cache's feature contract (extractor, streams, grid) in export.json, so the features
    exported for an ActionFormer run still serve the run trained on the cache, to the same detections."""
    folder, data = layouts["cache"]
    _, dets = train(benchkit, folder, data, tmp_path / "run")
    assert load_tool("export_features").main([str(folder), "--out", str(tmp_path / "af"), "--no-progress"]) == 0
    out = tmp_path / "infer.json"
    assert load_tool("infer").main(["--run", str(tmp_path / "run"), "--features", str(tmp_path / "af"),
                                    "--out", str(out), "--videos", *sorted(dets["results"])]) == 0
    assert json.loads(out.read_text())["results"] == dets["results"]
