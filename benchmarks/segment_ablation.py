#!/usr/bin/env python3
"""Segment-level supervision's Table 1 on the proxy world (THUMOS14's real structure), and one line each with
SF-Net and BackTAL trained by the same engine on the same features.

    python benchmarks/segment_ablation.py                        # every row, 3 seeds, 256-d
    python benchmarks/segment_ablation.py --quick                # 64-d, seed 0, short schedule (~15 min)
    python benchmarks/segment_ablation.py --rows CL all --segments 1 --seeds 0
    python benchmarks/segment_ablation.py --quick --heldout --rows all --segments 1 --normalize none standardize

Features: the frozen proxy world (``clicktal.pipeline.data.world``, ``--features-from world``, the default) or
``../shared/benchkit/synth.py`` (``--features-from synth``) on THUMOS14's ground truth (seed ``--feature-seed``,
``--dim``), written once under ``--work``. Labels: one labelled 16-frame segment per instance (``--segments 1``)
or two with everything between them labelled (``2``), simulated from the boundaries with the run's seed, as the
paper does. Rows are configs/segment_thumos14.yaml with the loss terms of Table 1 switched on: ``CL`` (the
classification loss alone), ``+PSL``, ``+SL``, ``+PL``, the pairs and ``all``; ``sfnet`` (configs/sfnet_thumos14.yaml
on the real action clicks of annotator A<seed + 1>) and ``backtal`` (configs/backtal_thumos14.yaml on background
clicks A<seed + 1>) run with the same iterations, batch and features.

Top-k (``--topk``): ``paper`` (default) gives the rows without the partial segment loss the fixed ``k = floor(T /
8)`` and no segment label at all (Table 1's CL, +SL, +PL and +SL+PL are equal for one and two segments, so they
read none: one row each), and the rows with it ``k = floor(T / 2Q)`` (Sec. 5.1); ``ratio`` / ``fixed`` give every
row that rule (the label-free rows then run once per ``--segments``, with the labels).

The schedule is shortened (``--iterations``, ``--batch-size``, ``--lr``); the last iteration's weights are
evaluated on the test subset (ambiguous segments removed): mAP@0.5 and the average over tIoU 0.1:0.1:0.5 (Table
2's AVG). Prints a Markdown table (mean ± std over ``--seeds``) and writes it with every run's numbers to
``--work``/ablation_segment.{md,json} and table.json. ``--heldout`` instead holds out a quarter of the training
videos and prints their mAP (never the test subset's), for choosing options (``--normalize``, ``--r``). Results on
synthetic features are not THUMOS14 results.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ablation import BENCHKIT, REPO, run_all, run_config, synthesize, world

TERMS = {"PSL": "segment_loss", "SL": "sphere_loss", "PL": "propagation_loss"}
ROWS = {"CL": (), "+PSL": ("PSL",), "+SL": ("SL",), "+PL": ("PL",), "+PSL+SL": ("PSL", "SL"),
        "+PSL+PL": ("PSL", "PL"), "+SL+PL": ("SL", "PL"), "all": ("PSL", "SL", "PL")}
OTHERS = {"sfnet": ("SF-Net (action clicks)", "configs/sfnet_thumos14.yaml"),
          "backtal": ("BackTAL (background clicks)", "configs/backtal_thumos14.yaml")}
EVALUATION = {"tiou_thresholds": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7], "average_over": [0.1, 0.2, 0.3, 0.4, 0.5],
              "report": [0.5], "use_ambiguous": True, "without_class_selection": True}
HELDOUT = 0.25  # share of the training videos --heldout holds out
QUICK = {"dim": 64, "seeds": [0], "iterations": 300}


def topk_rule(row: str, topk: str) -> str:
    return ("ratio" if "PSL" in ROWS[row] else "fixed") if topk == "paper" else topk


def reads_labels(row: str, topk: str) -> bool:
    """Whether a Table 1 row sees the segment labels (through L_segment or k = floor(T / 2Q))."""
    return "PSL" in ROWS[row] or topk_rule(row, topk) != "fixed"


def run_name(row: str, segments: int, seed: int, variant: tuple, args) -> str:
    normalize, r = variant
    norm = (f"-{normalize}" if normalize else "") + (f"-r{r:g}" if r is not None and row in ROWS else "")
    held = f"-heldout{HELDOUT:g}" if args.heldout else ""
    if row in OTHERS:
        return f"segment_ablation-{row}-A{seed + 1}{norm}{held}"
    labels = f"{segments}seg" if segments else "nolabels"
    return f"segment_ablation-{row}-{labels}-{topk_rule(row, args.topk)}k-seed{seed}{norm}{held}"


def overrides(row: str, segments: int, seed: int, variant: tuple, features: Path, args) -> dict:
    normalize, r = variant
    out = {
        "name": run_name(row, segments, seed, variant, args),
        "data": {"features": str(features), "ground_truth": str(BENCHKIT / "thumos14/groundtruth.json"),
                 "ambiguous": str(BENCHKIT / "thumos14/ambiguous_test.txt")},
        "train": {"iterations": args.iterations, "batch_size": args.batch_size, "seed": seed, "progress": False,
                  "num_threads": args.threads, "checkpoint_every": args.iterations, "optimizer": {"lr": args.lr}},
        "evaluation": EVALUATION,
    }
    if normalize:
        out["data"]["normalize"] = normalize
    if args.heldout:  # validated once, at the end: the held-out mAP of the last weights
        out["data"]["val_fraction"] = HELDOUT
        out["train"]["validate_every"] = args.iterations
    if row in ROWS:
        out["data"]["labels"] = {"segments": {"source": "simulated", "per_instance": segments} if segments
                                 else {"source": "none"}}
        out["model"] = {"params": {**{flag: name in ROWS[row] for name, flag in TERMS.items()},
                                   "topk": topk_rule(row, args.topk)}}
        if r is not None:
            out["model"]["params"]["fallback_r"] = r
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


def label(row: str, segments: int, variant: tuple) -> str:
    normalize, r = variant
    norm = f", normalize {normalize}" if normalize else ""
    if row in OTHERS:
        return OTHERS[row][0] + norm
    terms = "CL" + "".join(f" +{t}" for t in ROWS[row])
    return f"{terms}, {f'{segments}-segment' if segments else 'no segment label'}{norm}" + (
        f", r {r:g}" if r is not None else "")


def class_rule_table(groups: dict[str, list[dict]], work: Path) -> str:
    """Per row, means over the seeds: the AVG of the same scores grouped for every class (no class rule), and what
    the class rule kept: classes detected per test video (last line: the ground truth's) and the share of the true ones
    among them, from each run's detections.json. A diagnosis of finished runs; nothing is chosen on it."""
    from clicktal.pipeline.data.annotations import load_ground_truth

    gt = load_ground_truth(BENCHKIT / "thumos14/groundtruth.json").subset("test")
    truth = {vid: {s.label for s in ann.segments} for vid, ann in gt.items()}
    lines = ["| row | AVG without class selection | classes detected per test video | true among them |",
             "|---|---|---:|---:|"]
    for name, runs in groups.items():
        plain = [r["avg_without_class_selection"] for r in runs if r.get("avg_without_class_selection") is not None]
        kept, precise = [], []
        for r in runs:
            found = json.loads((work / "runs" / r["name"] / "detections.json").read_text())["results"]
            labels = {vid: {d["label"] for d in found.get(vid, [])} for vid in truth}
            kept.append(sum(map(len, labels.values())) / len(truth))
            precise.append(sum(len(labels[v] & truth[v]) for v in truth) / max(sum(map(len, labels.values())), 1))
        mean = sum(plain) / len(plain) if plain else float("nan")
        std = (sum((v - mean) ** 2 for v in plain) / (len(plain) - 1)) ** 0.5 if len(plain) > 1 else 0.0
        lines.append(f"| {name} | {mean:.1f} ± {std:.1f} | {sum(kept) / len(kept):.2f} | "
                     f"{100 * sum(precise) / len(precise):.0f} % |")
    lines.append(f"| ground truth | - | {sum(map(len, truth.values())) / len(truth):.2f} | 100 % |")
    table = "\n".join(lines)
    print(table, flush=True)
    (work / "class_rule_segment.md").write_text(table + "\n")
    return table


def heldout_table(groups: dict[str, list[dict]], work: Path, settings: str) -> str:
    """Per row: the held-out training videos' mAP (AVG over the evaluation's tIoUs) of each run's last weights,
    read from its val_log.jsonl, mean ± std over the seeds."""
    from clicktal.pipeline.runs.engine import read_log

    lines = [f"**Held-out training videos ({100 * HELDOUT:g} % of the training subset; not the test subset), "
             f"{settings}**", "", "| row | held-out mAP AVG 0.1:0.5 | runs |", "|---|---|---:|"]
    for name, runs in groups.items():
        values = [100 * read_log(work / "runs" / r["name"] / "val_log.jsonl", note=print)[-1]["val_map"]
                  for r in runs]
        mean = sum(values) / len(values)
        std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
        lines.append(f"| {name} | {mean:.1f} ± {std:.1f} | {len(values)} |")
    table = "\n".join(lines)
    print(table, flush=True)
    (work / "heldout_segment.md").write_text(table + "\n")
    return table


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", nargs="+", default=[*ROWS, *OTHERS], choices=[*ROWS, *OTHERS])
    p.add_argument("--segments", nargs="+", type=int, default=[1, 2], choices=[1, 2])
    p.add_argument("--seeds", nargs="+", type=int, choices=[0, 1, 2], help="default: 0 1 2 (--quick: 0)")
    p.add_argument("--dim", type=int, help="feature dimension, RGB half + flow half (default 256, --quick 64)")
    p.add_argument("--features-from", choices=("world", "synth"), default="world",
                   help="the frozen proxy world (default) or benchkit synth.py")
    p.add_argument("--feature-seed", type=int, default=0)
    p.add_argument("--iterations", type=int, help="default 1000 (--quick 300)")
    p.add_argument("--batch-size", type=int, default=10, help="W-TALC's batch (the paper gives none)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's rate (the config's: W-TALC's 1e-4)")
    p.add_argument("--topk", choices=("paper", "ratio", "fixed"), default="paper",
                   help="k of the top-k mean: see the module docstring")
    p.add_argument("--normalize", nargs="+", choices=("none", "standardize"),
                   help="data.normalize values to run each row with (default: the configs' own)")
    p.add_argument("--r", nargs="+", type=float, dest="fixed_r",
                   help="values of r in k = floor(T / r) (fallback_r: the fixed-k rows' top-k and every row's at "
                        "inference) to run each Table 1 row with (default: the config's, W-TALC's 8)")
    p.add_argument("--heldout", action="store_true",
                   help="hold out 25 %% of the training videos and print their mAP instead of the test table")
    p.add_argument("--quick", action="store_true", help="64-d features, seed 0, 300 iterations")
    p.add_argument("--backtal-hidden", type=int, default=64, help="BackTAL's width for its comparison line")
    p.add_argument("--jobs", type=int, default=2, help="runs at a time")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--work", type=Path, help="default runs/segment_ablation (--quick: runs/segment_ablation_quick)")
    args = p.parse_args(argv)
    for key, full in (("dim", 256), ("seeds", [0, 1, 2]), ("iterations", 1000)):
        if getattr(args, key) is None:
            setattr(args, key, QUICK[key] if args.quick else full)
    args.work = args.work or REPO / "runs" / ("segment_ablation_quick" if args.quick else "segment_ablation")
    if args.features_from == "synth" and not (BENCHKIT / "synth.py").exists():
        print(f"error: {BENCHKIT}/synth.py not found (set CLICKTAL_BENCHKIT)", file=sys.stderr)
        return 2
    args.work.mkdir(parents=True, exist_ok=True)
    make = world if args.features_from == "world" else synthesize
    features = make("thumos14", "thumos14/groundtruth.json", args.work, args.dim, args.feature_seed, 1.0)
    keys = [(r, n) for r in args.rows for n in (args.segments if r in ROWS and reads_labels(r, args.topk) else [0])]
    variants = [(v, r) for v in args.normalize or [None] for r in args.fixed_r or [None]]
    config = lambda r: OTHERS[r][1] if r in OTHERS else "configs/segment_thumos14.yaml"  # noqa: E731
    jobs = [(run_config, (config(r), overrides(r, n, s, v, features, args), args.work, args.threads),
             {"row_name": r, "segments": n, "seed": s, "variant": v})
            for s in args.seeds for r, n in keys for v in variants
            if r in ROWS or v[1] is None or v[1] == (args.fixed_r or [None])[0]]  # seed by seed: a cut-short table has whole seeds
    print(f"{len(jobs)} runs, {args.jobs} at a time", flush=True)
    t0 = time.perf_counter()
    results = run_all(jobs, args.jobs)
    wall = (time.perf_counter() - t0) / 60
    groups = {label(r, n, v): runs for r, n in keys for v in variants
              if (runs := [x for x in results if (x["row_name"], x["segments"], x["variant"]) == (r, n, v)])}
    if args.features_from == "world":
        from clicktal.pipeline.data.world import WORLD_VERSION

        source = f"proxy world v{WORLD_VERSION}, feature seed {args.feature_seed}, {args.dim}-d"
    else:
        source = f"benchkit synth.py, feature seed {args.feature_seed}, {args.dim}-d"
    settings = (f"THUMOS14-structured synthetic features ({source}; not THUMOS14 results), simulated segment labels "
                f"(seeds {' '.join(map(str, args.seeds))}), top-k {args.topk}, {args.iterations} iterations, batch "
                f"{args.batch_size}, Adam lr {args.lr:g}, {args.jobs} runs at a time x {args.threads} thread(s) on "
                f"a 2-core CPU; AVG = mAP over tIoU 0.1:0.1:0.5; min/run = training minutes; "
                f"this invocation took {wall:.1f} min")
    print(f"wall time {wall:.1f} min", flush=True)
    if args.heldout:
        heldout_table(groups, args.work, settings)
        return 0
    from ablation import write_report

    write_report(args.work, "segment", "Segment-level ablation", groups, settings, wall, results)
    class_rule_table(groups, args.work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
