"""A method from outside the package (tests/data/plugin_method.py: its own target kind, network, loss, preset and
label need), listed under ``imports:`` in a config, trains through ``clicktal-train`` and detects through
``clicktal-infer``; its batches carry its own kind and no kind it did not declare. Each tool runs as a user runs it,
in its own process: the registries of this test process stay as they are, and the detection process imports the
plugin again from the path the run recorded."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.data.annotations import GroundTruth, Segment, VideoAnnotation
from clicktal.pipeline.data.detections import read_detections
from clicktal.pipeline.data.synthetic import synthesize_features

PLUGIN = Path(__file__).resolve().parent / "data" / "plugin_method.py"
BIN = Path(sys.executable).parent
CLASSES = ["jump", "throw"]


def _tool(name: str, *args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([str(BIN / name), *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=600)


def _load(config: Path) -> subprocess.CompletedProcess:
    """Loading ``config`` alone (no torch), in a fresh process: the error line or ``ok``."""
    code = ("import sys\nfrom clicktal.pipeline.core.config import ConfigError, load_config\n"
            "from clicktal.pipeline.runs.schema import ExperimentConfig\n"
            "try:\n    load_config(ExperimentConfig, sys.argv[1])\nexcept ConfigError as e:\n    print(e)\n"
            "else:\n    print('ok', 'torch' in sys.modules)\n")
    return subprocess.run([sys.executable, "-c", code, str(config)], capture_output=True, text=True, timeout=300)


@pytest.fixture
def world(tmp_path):
    videos = {f"v{k}": VideoAnnotation(f"v{k}", "training" if k < 6 else "test", 30.0,
                                       tuple(Segment(3.0 + 10 * i, 8.0 + 10 * i, CLASSES[(k + i) % 2])
                                             for i in range(2)))
              for k in range(8)}
    GroundTruth(videos).write(tmp_path / "gt.json")
    synthesize_features(GroundTruth(videos), tmp_path / "feats", dim=8, seed=0, geometry=FeatureGeometry(25, 16, 16))
    return tmp_path


def _config(folder: Path, world: Path, **changes) -> Path:
    cfg = {"name": "plugin",
           "imports": [os.path.relpath(PLUGIN, folder)],  # relative to the config's own folder
           "data": {"features": str(world / "feats"), "ground_truth": str(world / "gt.json"),
                    "train_subset": "training", "test_subset": "test",
                    "labels": {"action_clicks": {"source": "uniform"}}},
           "model": {"name": "plugin_points", "params": {"hidden_dim": 8}},
           "train": {"iterations": 30, "batch_size": 3, "checkpoint_every": 30, "progress": False,
                     "num_threads": 1},
           "postprocess": {"preset": "plugin_points"}, "evaluation": {"use_ambiguous": False}}
    for key, value in changes.items():  # section__field=value, or a top-level key
        section, _, field = key.partition("__")
        if field:
            cfg[section][field] = value
        else:
            cfg[section] = value
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"config_{len(list(folder.glob('config_*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_a_plugin_method_trains_with_clicktal_train_and_detects_with_clicktal_infer(world):
    config = _config(world / "configs", world)
    elsewhere = world / "elsewhere"  # the tools run from another folder: the import is the config's, not the cwd's
    elsewhere.mkdir()
    train = _tool("clicktal-train", "--config", config, "--out", world / "run", cwd=elsewhere)
    assert train.returncode == 0, train.stderr
    assert "test mAP" in train.stdout
    saved = yaml.safe_load((world / "run" / "config.yaml").read_text())
    assert saved["imports"] == [str(PLUGIN)] and saved["model"]["params"] == {"hidden_dim": 8, "topk_divisor": 8.0,
                                                                                "click_weight": 1.0}
    rows = [json.loads(x) for x in (world / "run" / "train_log.jsonl").read_text().splitlines()]
    assert len(rows) == 30 and {"video", "click"} <= set(rows[0]) and rows[-1]["total"] < rows[0]["total"]
    results = json.loads((world / "run" / "results.json").read_text())
    assert results["n_detections"] > 0 and "note" not in results["evaluation"]  # the standard protocol

    infer = _tool("clicktal-infer", "--run", world / "run", "--features", world / "feats", "--out",
                  world / "dets.json", cwd=elsewhere)
    assert infer.returncode == 0, infer.stderr
    dets = read_detections(world / "dets.json")
    assert dets and {d.label for d in dets} <= set(CLASSES) and {d.video for d in dets} <= {f"v{k}" for k in range(8)}
    # the plugin's preset (video_weight 1: mean probability + video score) and not another method's
    assert all(0 < d.score <= 2 for d in dets)


def test_a_plugin_batch_carries_the_plugin_s_own_target_kind_and_no_kind_it_did_not_declare(world):
    code = """
import json, sys
from clicktal.pipeline.core.config import load_config
from clicktal.pipeline.data.datasets import collate, load_data
from clicktal.pipeline.runs.schema import ExperimentConfig
cfg = load_config(ExperimentConfig, sys.argv[1])
bundle = load_data(cfg.data, seed=cfg.train.seed, kinds=cfg.model.targets)  # as clicktal-train builds them
items = list(bundle.train)
batch = collate(items)
clicks = {it.video_id: [[int(it.geometry.index_of(c.time_s, it.length)), bundle.classes.index(c.label)]
                        for c in bundle.labels.supervision[it.video_id].action_clicks] for it in items}
windows = {it.video_id: [[int(t), int(c)] for t, c in zip(*batch.targets["click_window"][b].nonzero(as_tuple=True))]
           for b, it in enumerate(items)}
print(json.dumps({"declared": cfg.model.targets, "targets": sorted(batch.targets), "masks": sorted(batch.masks),
                  "lengths": {it.video_id: it.length for it in items}, "clicks": clicks, "windows": windows}))
"""
    done = subprocess.run([sys.executable, "-c", code, str(_config(world / "configs", world))], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["declared"] == ["video_labels", "click_window"]
    assert out["targets"] == ["click_window", "video_labels"] and out["masks"] == ["click_window"]
    assert sum(len(c) for c in out["clicks"].values()) >= 6  # every training video has clicks
    for vid, clicks in out["clicks"].items():
        expected = sorted({(t + d, c) for t, c in clicks for d in (-1, 0, 1) if 0 <= t + d < out["lengths"][vid]})
        assert sorted(map(tuple, out["windows"][vid])) == expected, vid


def test_a_plugin_config_is_checked_at_load_naming_the_key_and_the_file(world):
    folder = world / "configs"
    good = _load(_config(folder, world))
    assert good.stdout.split() == ["ok", "True"]  # the plugin itself imports torch; clicktal's schema does not

    typo = _config(folder, world, model__params={"hiden_dim": 8})
    out = _load(typo).stdout.strip()
    assert out.startswith(f"{typo}: ") and "model.params" in out and "hiden_dim" in out and "PointNetConfig" in out
    assert len(out.splitlines()) == 1

    no_clicks = _config(folder, world, data__labels={"action_clicks": {"source": "none"}})
    out = _load(no_clicks).stdout.strip()
    assert out == (f"{no_clicks}: data.labels: model 'plugin_points' needs data.labels.action_clicks (the click "
                   f"term reads the clicked snippets)")

    missing = _config(folder, world, imports=["no_such_plugin.py"])
    assert _load(missing).stdout.strip() == f"{missing}: imports[0]: no file {folder / 'no_such_plugin.py'}"
    no_module = _config(folder, world, imports=["no_such_package.methods"])
    assert "imports[0]: no module named 'no_such_package.methods'" in _load(no_module).stdout

    broken = folder / "broken_plugin.py"
    broken.write_text("raise RuntimeError('the plugin is broken')\n")
    out = _load(_config(folder, world, imports=["broken_plugin.py"])).stdout.strip()
    assert out.endswith(f"imports[0]: importing {broken} failed: RuntimeError: the plugin is broken")

    # a method declaring a target kind nobody registered is refused at load, naming the kind and the registered ones
    undeclared = folder / "undeclared_kind.py"
    undeclared.write_text("from dataclasses import dataclass\n"
                          "from clicktal.models import Method, register_method\n"
                          "@dataclass\nclass Cfg:\n    width: int = 1\n"
                          "register_method('undeclared', Method(Cfg, 'undeclared_kind:build', "
                          "targets=('video_labels', 'click_windows')))\n")
    bad_kind = _config(folder, world, imports=["undeclared_kind.py"], model={"name": "undeclared"})
    out = _load(bad_kind).stdout.strip()
    assert out.startswith(f"{bad_kind}: model.name: method 'undeclared' declares targets: unknown target kind "
                          f"'click_windows' (registered: video_labels, clicks, ") and len(out.splitlines()) == 1

    # without the import the method is unknown: the model's key names it and the known ones
    unknown = _config(folder, world, imports=[])
    assert "model.name: unknown localizer 'plugin_points'" in _load(unknown).stdout
