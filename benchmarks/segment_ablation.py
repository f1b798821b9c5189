#!/usr/bin/env python3
"""Segment-level supervision's Table 1 on synthetic features with the real THUMOS14 structure, and one line with
SF-Net and BackTAL trained by the same engine on the same features.

    python benchmarks/segment_ablation.py                        # every row, defaults below
    python benchmarks/segment_ablation.py --rows CL all --segments 1 --seeds 0

Features: ``../shared/benchkit/synth.py`` on THUMOS14's ground truth (seed ``--feature-seed``, ``--dim``), written
once under ``--work``. Labels: one labelled 16-frame segment per instance (``--segments 1``) or two with everything
between them labelled (``2``), simulated from the boundaries with the run's seed, as the paper does. Rows are
configs/segment_thumos14.yaml with the loss terms of Table 1 switched on: ``CL`` (the classification loss alone),
``+PSL``, ``+SL``, ``+PL``, the pairs and ``all``; ``sfnet`` (configs/sfnet_thumos14.yaml on the real action clicks of
annotator A<seed + 1>) and ``backtal`` (configs/backtal_thumos14.yaml on background clicks A<seed + 1>) run with the
same iterations, batch and features. The schedule is shortened (``--iterations``, ``--batch-size``, ``--lr``); the
last iteration's weights are evaluated on the test subset (ambiguous segments removed): mAP@0.5 and the average
over tIoU 0.1:0.1:0.5 (Table 2's AVG). Prints a Markdown table (mean ± std over ``--seeds``) and writes it with
every run's numbers to ``--work``/ablation_segment.{md,json}. Results on synthetic features are not THUMOS14
results.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ablation import BENCHKIT, run_all, run_config, synthesize, write_report

TERMS = {"PSL": "segment_loss", "SL": "sphere_loss", "PL": "propagation_loss"}
ROWS = {"CL": (), "+PSL": ("PSL",), "+SL": ("SL",), "+PL": ("PL",), "+PSL+SL": ("PSL", "SL"),
        "+PSL+PL": ("PSL", "PL"), "+SL+PL": ("SL", "PL"), "all": ("PSL", "SL", "PL")}
OTHERS = {"sfnet": ("SF-Net (action clicks)", "configs/sfnet_thumos14.yaml"),
          "backtal": ("BackTAL (background clicks)", "configs/backtal_thumos14.yaml")}
EVALUATION = {"tiou_thresholds": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7], "average_over": [0.1, 0.2, 0.3, 0.4, 0.5],
              "report": [0.5], "use_ambiguous": True}


def overrides(row: str, segments: int, seed: int, features: Path, args) -> dict:
    out = {
        "name": f"segment_ablation-{row}-{segments}seg-seed{seed}" if row in ROWS else f"segment_ablation-{row}-A{seed + 1}",
        "data": {"features": str(features), "ground_truth": str(BENCHKIT / "thumos14/groundtruth.json"),
                 "ambiguous": str(BENCHKIT / "thumos14/ambiguous_test.txt")},
        "train": {"iterations": args.iterations, "batch_size": args.batch_size, "seed": seed, "progress": False,
                  "num_threads": args.threads, "checkpoint_every": args.iterations, "optimizer": {"lr": args.lr}},
        "evaluation": EVALUATION,
    }
    if row in ROWS:
        out["data"]["labels"] = {"segments": {"source": "simulated", "per_instance": segments}}
        out["model"] = {"params": {flag: name in ROWS[row] for name, flag in TERMS.items()}}
    elif row == "sfnet":
        out["data"]["labels"] = {"action_clicks": {
            "source": "annotator", "annotator": 0, "files": [str(BENCHKIT / f"thumos14/action_clicks_A{seed + 1}.txt")]}}
        out["data"]["sampling"] = {"train": {"kind": "crop", "length": 750}}
    else:
        out["data"]["labels"] = {"background_clicks": {
            "source": "annotator", "annotator": 0,
            "files": [str(BENCHKIT / f"thumos14/background_clicks_A{seed + 1}.csv")]}}
        out["model"] = {"params": {"hidden_dim": args.backtal_hidden, "attention_hidden": args.backtal_hidden}}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", nargs="+", default=[*ROWS, *OTHERS], choices=[*ROWS, *OTHERS])
    p.add_argument("--segments", nargs="+", type=int, default=[1, 2], choices=[1, 2])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], choices=[0, 1, 2])
    p.add_argument("--dim", type=int, default=256, help="feature dimension (RGB half + flow half)")
    p.add_argument("--feature-seed", type=int, default=0)
    p.add_argument("--iterations", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=10, help="W-TALC's batch (the paper gives none)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's rate (the config's: W-TALC's 1e-4)")
    p.add_argument("--backtal-hidden", type=int, default=64, help="BackTAL's width for its comparison line")
    p.add_argument("--jobs", type=int, default=2, help="runs at a time")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--work", type=Path, default=Path(__file__).resolve().parents[1] / "runs" / "segment_ablation")
    args = p.parse_args(argv)
    if not (BENCHKIT / "synth.py").exists():
        print(f"error: {BENCHKIT}/synth.py not found (set CLICKTAL_BENCHKIT)", file=sys.stderr)
        return 2
    args.work.mkdir(parents=True, exist_ok=True)
    features = synthesize("thumos14", "thumos14/groundtruth.json", args.work, args.dim, args.feature_seed, 1.0)
    keys = [(r, n) for r in args.rows if r in ROWS for n in args.segments] + [(r, 0) for r in args.rows if r in OTHERS]
    config = lambda r: OTHERS[r][1] if r in OTHERS else "configs/segment_thumos14.yaml"  # noqa: E731
    jobs = [(run_config, (config(r), overrides(r, n, s, features, args), args.work, args.threads),
             {"row_name": r, "segments": n, "seed": s}) for r, n in keys for s in args.seeds]
    print(f"{len(jobs)} runs, {args.jobs} at a time", flush=True)
    t0 = time.perf_counter()
    results = run_all(jobs, args.jobs)
    wall = (time.perf_counter() - t0) / 60

    def label(r: str, n: int) -> str:
        terms = "CL" + "".join(f" +{t}" for t in ROWS.get(r, ()))
        return OTHERS[r][0] if r in OTHERS else f"{terms}, {n}-segment"

    groups = {label(r, n): [x for x in results if x["row_name"] == r and x["segments"] == n] for r, n in keys}
    settings = (f"synthetic THUMOS14-structured features (benchkit synth.py, seed {args.feature_seed}, dim "
                f"{args.dim}), simulated segment labels (seeds {' '.join(map(str, args.seeds))}), "
                f"{args.iterations} iterations, batch {args.batch_size}, Adam lr {args.lr:g}, {args.jobs} runs at a "
                f"time x {args.threads} thread(s); AVG = mAP over tIoU 0.1:0.1:0.5; min/run = training minutes; "
                f"table wall time {wall:.1f} min")
    write_report(args.work, "segment", "Segment-level ablation", groups, settings, wall, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
