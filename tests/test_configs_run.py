"""The BackTAL code preset runs as shipped on the BackTAL ground-truth copy (its ``val`` subset, its durations)
with the real A1 background clicks: only paths, widths and the schedule are shrunk."""
import json
import subprocess
import sys
from pathlib import Path

from clicktal.pipeline.core.config import load_config
from clicktal.pipeline.runs.experiments import run_experiment
from clicktal.pipeline.runs.schema import ExperimentConfig

REPO = Path(__file__).resolve().parents[1]


def test_backtal_code_preset_trains_on_the_backtal_ground_truth(tmp_path, benchkit):
    gt = benchkit / "thumos14/groundtruth_backtal.json"
    subprocess.run([sys.executable, str(benchkit / "synth.py"), "--gt", str(gt), "--out", str(tmp_path / "f"),
                    "--seed", "0", "--dim", "16", "--max-videos", "6"], check=True, capture_output=True)
    cfg = load_config(ExperimentConfig, REPO / "configs/backtal_code_thumos14.yaml", {
        "data": {"features": str(tmp_path / "f"), "ground_truth": str(gt),
                 "ambiguous": str(benchkit / "thumos14/ambiguous_test.txt"),
                 "labels": {"background_clicks": {"files": [str(benchkit / "thumos14/background_clicks_A1.csv")]}},
                 "sampling": {"train": {"kind": "resize", "length": 64}, "inference": {"kind": "resize", "length": 64}}},
        "model": {"params": {"hidden_dim": 16, "attention_hidden": 8, "embed_hidden": 8}},
        "train": {"iterations": 3, "batch_size": 4, "checkpoint_every": 3, "progress": False, "num_threads": 1}})
    run_experiment(cfg, tmp_path / "run")
    totals = json.loads((tmp_path / "run" / "labels.json").read_text())["totals"]
    bg = totals["background_clicks"]
    assert totals["videos"] == 6 and bg["count"] > 0 and bg["inside"] + bg["outside"] == bg["count"]
    rows = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(r["frame"] > 0 and "attention_l1" in r for r in rows)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["subset"] == "test" and len(results["mAP"]) == 7


def test_sfnet_beoid_config_runs_on_a_user_given_beoid_folder(tmp_path):
    """configs/sfnet_beoid.yaml reads a BEOID folder laid out as the authors' release (ground truth with
    training / validation, four click files) with 30 fps features; here a generated stand-in of 8 videos."""
    from clicktal.pipeline.core.geometry import FeatureGeometry
    from clicktal.pipeline.data.annotations import GroundTruth, Segment, VideoAnnotation
    from clicktal.pipeline.data.synthetic import synthesize_features

    classes = ["pick-up_plug", "plug_plug", "scan_card"]
    videos = {f"{k:02d}_Desk{k}": VideoAnnotation(f"{k:02d}_Desk{k}", "training" if k < 6 else "validation", 40.0,
                                                  tuple(Segment(4.0 + 12 * i, 9.0 + 12 * i, classes[(k + i) % 3])
                                                        for i in range(3)))
              for k in range(8)}
    root = tmp_path / "beoid"
    GroundTruth(videos).write(root / "beoid_groundtruth.json")
    (root / "single_frames").mkdir(parents=True)
    for a in range(1, 5):
        lines = [f"{v},{(s.start_s + s.end_s) / 2 + 0.1 * a:.3f},{s.label}" for v, ann in videos.items()
                 for s in ann.segments]
        (root / "single_frames" / f"BEOID{a}.txt").write_text("\n".join(lines) + "\n")
    synthesize_features(GroundTruth(videos), root / "features", dim=8, seed=0, geometry=FeatureGeometry(30, 16, 16))
    cfg = load_config(ExperimentConfig, REPO / "configs/sfnet_beoid.yaml")
    assert (cfg.model.params["eta"], cfg.train.iterations) == (1.0, 2000)
    assert (cfg.data.train_subset, cfg.data.test_subset) == ("training", "validation")
    files = [str(root / "single_frames" / f"BEOID{a}.txt") for a in range(1, 5)]
    cfg = load_config(ExperimentConfig, REPO / "configs/sfnet_beoid.yaml", {
        "data": {"features": str(root / "features"), "ground_truth": str(root / "beoid_groundtruth.json"),
                 "labels": {"action_clicks": {"files": files}}},
        "train": {"iterations": 4, "batch_size": 4, "checkpoint_every": 4, "progress": False, "num_threads": 1}})
    run_experiment(cfg, tmp_path / "run")
    meta = json.loads((tmp_path / "run" / "run_meta.json").read_text())
    assert meta["contract"]["geometry"]["fps"] == 30 and len(meta["train_videos"]) == 6
    assert json.loads((tmp_path / "run" / "labels.json").read_text())["totals"]["action_clicks"]["count"] == 18
