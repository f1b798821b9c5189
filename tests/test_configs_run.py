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
