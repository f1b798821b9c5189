#!/usr/bin/env python3
"""FSN and WFSN (Tables 1-5's rows) on synthetic features at FSN's geometry, beside a fully supervised SF-Net-engine
baseline on the same features.

    python benchmarks/fsn.py                                   # every row, defaults below
    python benchmarks/fsn.py --rows fsn wfsn --seeds 0 --iterations 500

Features: ``../shared/benchkit/synth.py --snippet-frames 5`` on THUMOS14's ground truth (0.2 s snippets at 25 fps,
TSN's 5-frame snippets; seed ``--feature-seed``, ``--dim``: RGB half + flow half), written once under ``--work``.
Rows: configs/fsn_thumos14.yaml as ``fsn_rgb``, ``fsn_flow``, ``fsn`` (late fusion) and ``fsn_rgb_no_tcnn``
(Table 4's "w/o temporal CNN"), trained on per-frame labels from the boundaries, and ``fsn_whole`` (``fsn`` applied to
each test video in one pass instead of the paper's non-overlapping 7-snippet windows); configs/wfsn_thumos14.yaml as
``wfsn`` (GMP) and ``wfsn_gap`` (Table 5's GAP), on video labels; ``sfnet_full`` (configs/sfnet_thumos14.yaml with the
full boundaries as its labels, no clicks, crops of 750 snippets). Each row keeps its paper's optimiser (SGD lr 1e-4,
momentum 0.9, batch 12 for FSN/WFSN; Adam 1e-3 for SF-Net, batch 12 too) with the schedule shortened to fit a
2-core CPU (``--iterations``, ``--wfsn-iterations``, ``--sfnet-iterations``; ``--hidden`` narrows the temporal
CNN); the last iteration's weights are evaluated on the test subset (ambiguous segments removed). FSN
rows and the baseline report mAP at tIoU 0.3:0.1:0.7 (Table 2), WFSN rows 0.1:0.1:0.5 (Table 3), with FSN's rule of
NMS at the evaluation tIoU - 0.1; every row also reports frame-level mAP (Table 1; per frame for FSN / WFSN, per
snippet for SF-Net, whose scores are constant over a snippet's 5 frames). Prints two Markdown tables (mean ± std
over ``--seeds``) and writes them with every run to ``--work``/ablation_fsn_{strong,weak}.{md,json}. Results on
synthetic features are not THUMOS14 results.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ablation import BENCHKIT, run_all, run_config, synthesize, write_report

FSN, WFSN, SFNET = "configs/fsn_thumos14.yaml", "configs/wfsn_thumos14.yaml", "configs/sfnet_thumos14.yaml"
ROWS = {  # name: (label, config, model params, table)
    "fsn_rgb": ("FSN RGB", FSN, {"streams": "rgb"}, "strong"),
    "fsn_flow": ("FSN flow", FSN, {"streams": "flow"}, "strong"),
    "fsn": ("FSN (RGB + flow, late fusion)", FSN, {}, "strong"),
    "fsn_rgb_no_tcnn": ("FSN RGB w/o temporal CNN", FSN, {"streams": "rgb", "temporal_cnn": False}, "strong"),
    "fsn_whole": ("FSN (RGB + flow), whole-video inference", FSN, {}, "strong"),
    "sfnet_full": ("SF-Net engine, full boundaries", SFNET, {}, "strong"),
    "wfsn": ("WFSN (GMP)", WFSN, {}, "weak"),
    "wfsn_gap": ("WFSN (GAP)", WFSN, {"pooling": "avg"}, "weak"),
}
TABLES = {"strong": ([0.3, 0.4, 0.5, 0.6, 0.7], [0.3, 0.5, 0.7]), "weak": ([0.1, 0.2, 0.3, 0.4, 0.5], [0.1, 0.3, 0.5])}


def overrides(row: str, seed: int, features: Path, args) -> dict:
    _, config, params, table = ROWS[row]
    tious, report = TABLES[table]
    sgd = config != SFNET
    iterations = {FSN: args.iterations, WFSN: args.wfsn_iterations, SFNET: args.sfnet_iterations}[config]
    out = {
        "name": f"fsn_benchmark-{row}-seed{seed}",
        "data": {"features": str(features), "ground_truth": str(BENCHKIT / "thumos14/groundtruth.json"),
                 "ambiguous": str(BENCHKIT / "thumos14/ambiguous_test.txt")},
        "model": {"params": {**params, **({"hidden_dim": args.hidden} if sgd else {})}},
        "train": {"iterations": iterations, "batch_size": 12, "seed": seed, "progress": False,
                  "num_threads": args.threads, "checkpoint_every": iterations,
                  "optimizer": {"lr": args.lr if sgd else 1e-3}},
        "evaluation": {"tiou_thresholds": tious, "average_over": tious, "report": report, "use_ambiguous": True,
                       "frame_map": True},
    }
    if row == "fsn_whole":  # the network is fully convolutional: one pass over the video, no tile edges
        out["data"]["sampling"] = {"inference": {"kind": "whole", "length": None}}
    if config == SFNET:
        out["data"]["labels"] = {"boundaries": True, "action_clicks": {"source": "none", "files": []}}
        out["data"]["sampling"] = {"train": {"kind": "crop", "length": 750}}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--dim", type=int, default=256, help="feature dimension (RGB half + flow half)")
    p.add_argument("--feature-seed", type=int, default=0)
    p.add_argument("--iterations", type=int, default=6000, help="FSN's (the paper: about 60000)")
    p.add_argument("--wfsn-iterations", type=int, default=2000,
                   help="WFSN's (not given; each of its samples holds 100 snippets, FSN's 7)")
    p.add_argument("--sfnet-iterations", type=int, default=1500,
                   help="the baseline's (each sample is a 750-snippet crop)")
    p.add_argument("--lr", type=float, default=1e-4, help="FSN / WFSN SGD rate (the paper's)")
    p.add_argument("--hidden", type=int, default=256, help="temporal CNN width of FSN / WFSN (the config: 512)")
    p.add_argument("--jobs", type=int, default=2, help="runs at a time")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--work", type=Path, default=Path(__file__).resolve().parents[1] / "runs" / "fsn_benchmark")
    args = p.parse_args(argv)
    if not (BENCHKIT / "synth.py").exists():
        print(f"error: {BENCHKIT}/synth.py not found (set CLICKTAL_BENCHKIT)", file=sys.stderr)
        return 2
    args.work.mkdir(parents=True, exist_ok=True)
    features = synthesize("thumos14_f5", "thumos14/groundtruth.json", args.work, args.dim, args.feature_seed, 1.0,
                          "--snippet-frames", "5")
    jobs = [(run_config, (ROWS[r][1], overrides(r, s, features, args), args.work, args.threads),
             {"row_name": r, "seed": s}) for r in args.rows for s in args.seeds]
    print(f"{len(jobs)} runs, {args.jobs} at a time", flush=True)
    t0 = time.perf_counter()
    results = run_all(jobs, args.jobs)
    wall = (time.perf_counter() - t0) / 60
    for table, (tious, _) in TABLES.items():
        rows = [r for r in args.rows if ROWS[r][3] == table]
        if not rows:
            continue
        groups = {ROWS[r][0]: [x for x in results if x["row_name"] == r] for r in rows}
        settings = (f"synthetic THUMOS14-structured features (benchkit synth.py --snippet-frames 5, seed "
                    f"{args.feature_seed}, dim {args.dim}), seeds {' '.join(map(str, args.seeds))}, "
                    f"batch 12, {args.iterations} / {args.wfsn_iterations} / {args.sfnet_iterations} iterations "
                    f"(FSN / WFSN / SF-Net), FSN/WFSN SGD lr {args.lr:g} momentum 0.9 width {args.hidden}, SF-Net "
                    f"Adam 1e-3; last iteration; AVG = mAP over tIoU {tious[0]:g}:0.1:{tious[-1]:g}, NMS at tIoU - 0.1 for "
                    f"FSN/WFSN; {args.jobs} runs at a time x {args.threads} thread(s); min/run = training minutes; "
                    f"all tables' wall time {wall:.1f} min")
        write_report(args.work, f"fsn_{table}", "FSN benchmark" if table == "strong" else "WFSN benchmark", groups,
                     settings, wall, results, frame_map=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
