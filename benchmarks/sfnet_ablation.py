#!/usr/bin/env python3
"""SF-Net's Table 3 ablation on synthetic features with the real temporal structure and real human clicks.

    python benchmarks/sfnet_ablation.py --dataset thumos14 gtea       # both tables, defaults below
    python benchmarks/sfnet_ablation.py --quick                        # 64-d, seed 0, 500 iterations
    python benchmarks/sfnet_ablation.py --dataset gtea --difficulty 0.5 --work runs/sfnet_ablation/gtea_x0.5
    python benchmarks/sfnet_ablation.py --time-full-size --threads 2      # CPU seconds per full-size iteration
    python benchmarks/sfnet_ablation.py --quick --iterations 600 --dataset thumos14 --variants SFBAE --seeds 0 1 2 \
        --heldout-curve 150 --normalize standardize                     # a choice measured on held-out videos

Features: the frozen proxy world of ``clicktal.pipeline.data.world`` (default; ``--features-from synth``:
``../shared/benchkit/synth.py``) on the dataset's real ground truth (feature seed ``--feature-seed``, ``--dim``
dimensions, ``--difficulty``), written once under ``--work``. Labels: the real clicks of the four
annotators, one drawn at random per video (the run's seed draws it). Rows (the same network each time):

* Full:  every action snippet labelled from the ground-truth boundaries (+ background mining, actionness);
* Weak:  3C-Net, the paper's Weak row: L_video plus 3C-Net's centre loss, no background class, no actionness; the
  video target is the set of classes the sample's clicks hold (for a crop, what the crop contains, as the authors'
  code computes it; the clicks serve nothing else);
* SF:    + clicks (L_frame^l), no background class;
* SFB:   + background class and background mining (L_frame^b);
* SFBA:  + actionness module (L_actionness, and C + A at inference);
* SFBAE: + action-frame mining (Algorithm 1), i.e. SF-Net;
* SFBAE-kept: SFBAE with the mined labels kept across iterations (``mining.keep``), as the code keeps its one-time
  mining.

Every row also reports the mining yield (mined snippets per click and their precision against the ground truth),
the frame-loss curve (its mean over each fifth of the schedule, to show it has levelled off) and the mAP of the
same scores without the video-level class rule.

Everything else is the dataset's config (configs/sfnet_thumos14.yaml, configs/sfnet_gtea.yaml: the paper's
hyper-parameters) with a shorter schedule: ``--iterations`` (mining from a quarter of them), ``--max-length``
random crops, ``--batch-size``. Evaluation on the test subset (THUMOS14: test, ambiguous segments removed; GTEA:
validation); weights are the last iteration's (no model selection). Runs go ``--jobs`` at a time, ``--threads``
torch threads each. Prints Markdown tables (mAP in %, mean ± std over seeds) and writes them with every run's
numbers to ``--work``/ablation_<dataset>.{md,json}, and every table's rows (labelled ``THUMOS14 SFBAE``, ...: both
datasets share one work folder) to ``--work``/table.json. Results on synthetic features are not THUMOS14/GTEA
results.

``--quick``: 64-d features, seed 0, 500 iterations (mining from 125), both datasets, every row: a smoke run of the
whole table (about 15 min on 2 idle cores with ``--jobs 2``); its numbers are not the table's.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from ablation import BENCHKIT, REPO, run_all, run_config, world, write_report
from ablation import synthesize as synth_features

VARIANTS = {
    "Full": {"data": {"labels": {"boundaries": True, "action_clicks": {"source": "none"}}},
             "model": {"params": {"mining": {"enabled": False}}}},
    "Weak": {"model": {"params": {"frame_loss": False, "background": False, "actionness": False,
                                  "mining": {"enabled": False}, "centre_loss": True,
                                  "video_target": "click_classes"}}},
    "SF": {"model": {"params": {"background": False, "actionness": False, "mining": {"enabled": False}}}},
    "SFB": {"model": {"params": {"actionness": False, "mining": {"enabled": False}}}},
    "SFBA": {"model": {"params": {"mining": {"enabled": False}}}},
    "SFBAE": {},
    "SFBAE-kept": {"model": {"params": {"mining": {"keep": True}}}},
}
HELDOUT = 0.25  # share of the training videos --heldout-curve holds out
QUICK = {"dim": 64, "seeds": [0], "iterations": 500}
DATASETS = {
    "thumos14": {"config": "configs/sfnet_thumos14.yaml", "gt": "thumos14/groundtruth.json",
                 "clicks": "thumos14/action_clicks_A{}.txt", "ambiguous": "thumos14/ambiguous_test.txt",
                 "iterations": 1500, "max_length": 512},
    "gtea": {"config": "configs/sfnet_gtea.yaml", "gt": "gtea/groundtruth.json", "clicks": "gtea/action_clicks_A{}.txt",
             "ambiguous": None, "iterations": 1500, "max_length": None},
}


def synthesize(dataset: str, work: Path, dim: int, seed: int, difficulty: float, generator: str = "world",
               world_params: dict | None = None) -> Path:
    if generator == "world":
        return world(dataset, DATASETS[dataset]["gt"], work, dim, seed, difficulty, world_params)
    return synth_features(dataset, DATASETS[dataset]["gt"], work, dim, seed, difficulty)


def features_name(args) -> str:
    """What the features are, for table titles: the generator, its version and seed."""
    if args.features_from == "world":
        from clicktal.pipeline.data.world import WORLD_VERSION

        changed = ", ".join(f"{k} {v:g}" for k, v in sorted(args.world_params.items()))
        return f"proxy world v{WORLD_VERSION}" + (f" with {changed} (a calibration candidate)" if changed else "")
    return "benchkit synth.py"


def mining_start(args, iterations: int) -> int:
    return iterations // 4 if args.mining_start is None else args.mining_start


def overrides(dataset: str, variant: str, seed: int, features: Path, args) -> dict:
    d = DATASETS[dataset]
    iterations = args.iterations or d["iterations"]
    max_length = d["max_length"] if args.max_length is None else (args.max_length or None)
    base = {
        "name": f"{dataset}-{variant}-seed{seed}",
        "data": {"features": str(features), "ground_truth": str(BENCHKIT / d["gt"]),
                 "sampling": {"train": {"kind": "crop", "length": max_length} if max_length else {"kind": "whole"}},
                 "ambiguous": str(BENCHKIT / d["ambiguous"]) if d["ambiguous"] else "",
                 "labels": {"action_clicks": {
                     "source": "random_annotator",
                     "files": [str(BENCHKIT / d["clicks"].format(i)) for i in range(1, 5)]}}},
        "model": {"params": {"mining": {"start_iteration": mining_start(args, iterations)}}},
        "train": {"iterations": iterations, "batch_size": args.batch_size, "seed": seed, "progress": False,
                  "num_threads": args.threads, "checkpoint_every": min(iterations, 500)},
        "evaluation": {"without_class_selection": True},
    }
    if args.heldout_curve:  # the same run on 75 % of the training videos, validated on the rest
        base["name"] += f"-heldout{HELDOUT:g}"
        base["data"]["val_fraction"] = HELDOUT
        base["train"]["validate_every"] = args.heldout_curve
    if args.normalize:  # a choice measured against the config's: named in the run
        base["name"] += f"-{args.normalize}"
        base["data"]["normalize"] = args.normalize
    from clicktal.pipeline.core.config import merge_overrides

    return merge_overrides(base, VARIANTS[variant])


def heldout_curve_table(results: list[dict], work: Path, dataset: str, every: int, normalize: str | None = None
                        ) -> str:
    """Per run, at every validation: the training frame loss (mean since the previous validation) beside the frame
    loss, total loss and mAP of the held-out training videos (eval mode, whole videos)."""
    lines = [f"**Held-out curve, {dataset}{f' (data.normalize {normalize})' if normalize else ''}: "
             f"{100 * HELDOUT:g} % of the training videos held out, validated "
             f"every {every} iterations** (frame losses summed over the fused, RGB and flow score sets)", "",
             "| run | iteration | training frame loss | held-out frame loss | held-out total loss | held-out mAP |",
             "|---|---:|---:|---:|---:|---:|"]
    import numpy as np

    from clicktal.pipeline.runs.engine import read_log

    last: dict[str, list[float]] = {}
    for r in results:
        folder = work / "runs" / r["name"]
        train = read_log(folder / "train_log.jsonl", note=print)
        for v in read_log(folder / "val_log.jsonl", note=print):
            window = [t["frame"] for t in train if v["iteration"] - every < t["iteration"] <= v["iteration"]]
            lines.append(f"| {r['variant']} seed {r['seed']} | {v['iteration']} | {sum(window) / len(window):.3f} | "
                         f"{v['val_frame']:.3f} | {v['val_loss']:.3f} | {100 * v.get('val_map', float('nan')):.1f} |")
        last.setdefault(r["variant"], []).append(100 * v.get("val_map", float("nan")))
    lines += ["", "| row | held-out mAP at the last iteration (mean ± std over seeds) | seeds |", "|---|---:|---:|"]
    lines += [f"| {k} | {np.mean(x):.1f} ± {np.std(x):.1f} | {len(x)} |" for k, x in last.items()]
    table = "\n".join(lines)
    (work / f"heldout_{dataset}{f'_{normalize}' if normalize else ''}.md").write_text(table + "\n")
    return table


def finished_run(work: Path, name: str, **tags) -> dict | None:
    """What :func:`ablation.run_config` returns for a finished run of ``work``, read from its ``results.json`` and
    logs (no training, no evaluation); None when the run has not finished."""
    import yaml

    from ablation import loss_curve, mining_yield
    from clicktal.pipeline.runs.engine import read_log

    folder = work / "runs" / name
    if not (folder / "results.json").exists():
        return None
    res = json.loads((folder / "results.json").read_text())
    cfg = yaml.safe_load((folder / "config.yaml").read_text())
    report = cfg["evaluation"]["report"]
    mAP = dict(zip(res["evaluation"]["tiou_thresholds"], res["evaluation"]["mAP"]))
    row = [100 * next(v for k, v in mAP.items() if abs(k - t) < 1e-9) for t in report] + [100 * res["average_mAP"]]
    log = read_log(folder / "train_log.jsonl", note=print)
    plain = res.get("average_mAP_without_class_selection")
    return {**tags, "name": name, "row": row, "minutes": None, "train_minutes": sum(r["seconds"] for r in log) / 60,
            "report": report, "mAP": {f"{k:.1f}": v for k, v in mAP.items()}, "frame_mAP": None,
            "avg_without_class_selection": None if plain is None else 100 * plain,
            **mining_yield(log, cfg["model"]["params"]["mining"]["start_iteration"]),
            "loss_curve": loss_curve(log, "frame"), "total_loss_curve": loss_curve(log)}


def details_table(results: list[dict], variants: list[str]) -> str:
    """Per row, means over the seeds: AVG without the class rule, the mining yield and the frame-loss curve."""
    import numpy as np

    def mean(values, fmt):
        values = [v for v in values if v is not None]
        return f"{np.mean(values):{fmt}}" + (f" ± {np.std(values):{fmt}}" if len(values) > 1 else "") if values \
            else "-"

    lines = ["| row | seeds | AVG without class selection | mined per click | mined precision | frame loss by fifth "
             "of the schedule | last fifth's share of the drop |", "|---|---|---:|---:|---:|---|---:|"]
    for v in variants:
        runs = [r for r in results if r["variant"] == v]
        key = "loss_curve" if any(any(r.get("loss_curve") or []) for r in runs) else "total_loss_curve"
        curves = np.array([r[key] for r in runs if r.get(key)])
        curve = " / ".join(f"{x:.3f}" for x in curves.mean(0)) if curves.size else "-"
        curve += " (total loss: no frame loss)" if key == "total_loss_curve" and curves.size else ""
        # levelled off = the last fifth adds little to what the whole schedule took off the loss
        share = f"{100 * last_fifth_share(curves.mean(0)):.0f} %" if curves.size else "-"
        lines.append(f"| {v} | {' '.join(str(r['seed']) for r in runs)} | "
                     f"{mean([r.get('avg_without_class_selection') for r in runs], '.1f')} | "
                     f"{mean([r.get('mined_per_click') for r in runs], '.2f')} | "
                     f"{mean([r.get('mined_precision') for r in runs], '.2f')} | {curve} | {share} |")
    return "\n".join(lines)


def last_fifth_share(curve) -> float:
    """How much of the loss's fall over the schedule (first fifth's mean to the last's) the last fifth made."""
    return float((curve[-2] - curve[-1]) / (curve[0] - curve[-1]))


def foreground_table(args) -> int:
    """Of each finished run of ``--work``: AVG and how well its scores separate action from background on the test
    snippets, class-agnostic (AP of "inside a ground-truth segment"): the classifier's ``1 - P(background)`` and the
    actionness ``sigma(A)``. A diagnostic of finished runs (nothing is chosen on it)."""
    import torch

    from clicktal.pipeline.data.datasets import load_data
    from clicktal.pipeline.evaluation.detection import foreground_ap
    from clicktal.pipeline.runs.inference import load_run

    torch.set_num_threads(args.threads)
    for dataset in args.dataset:
        lines = [f"**Foreground AP of finished runs, {dataset}, {args.work}** (test snippets; '-': the row has no "
                 "background class / no actionness)", "",
                 "| row | seed | AVG | AP of 1 - P(background) | AP of sigma(actionness) |",
                 "|---|---:|---:|---:|---:|"]
        bundle = None
        for v in args.variants:
            for seed in args.seeds:
                folder = args.work / "runs" / f"{dataset}-{v}-seed{seed}"
                if not (folder / "results.json").exists():
                    print(f"{folder}: not finished, left out", file=sys.stderr)
                    continue
                run = load_run(folder, device="cpu")
                if bundle is None:  # every run of the dataset reads the same features and ground truth
                    bundle = load_data(run.config.data, seed=run.config.train.seed, contract=run.contract,
                                       normalization=run.normalization)
                scores: dict = {}
                run.detect(bundle.source, bundle.test_ids, scores_out=scores)
                grid = next(iter(scores.values()))[1]
                fg = {vid: fs.class_probs.sum(1) for vid, (fs, _) in scores.items()}
                act = {vid: fs.actionness for vid, (fs, _) in scores.items() if fs.actionness is not None}
                subset = run.config.data.test_subset
                fg_ap = foreground_ap(bundle.gt, fg, grid, subset) if run.model.config.background else None
                act_ap = foreground_ap(bundle.gt, act, grid, subset) if act else None
                avg = 100 * json.loads((folder / "results.json").read_text())["average_mAP"]
                lines.append(f"| {v} | {seed} | {avg:.1f} | " + " | ".join(
                    "-" if x is None else f"{x:.3f}" for x in (fg_ap, act_ap)) + " |")
        print("\n".join(lines), flush=True)
        (args.work / f"foreground_{dataset}.md").write_text("\n".join(lines) + "\n")
    return 0


def time_full_size(args) -> int:
    """Seconds per training iteration of the paper's THUMOS14 setting (2048-d two-stream features, batch 32, the
    paper's network) on this machine, for whole videos (the paper) and for the code's 750-snippet crops."""
    import numpy as np
    import torch

    from clicktal.models import build_localizer
    from clicktal.pipeline.core.config import load_config
    from clicktal.pipeline.data.datasets import batch_rng, load_data, sample_batch
    from clicktal.pipeline.data.sampling import Sampler, SamplerConfig, SamplingConfig
    from clicktal.pipeline.runs.engine import make_optimizer
    from clicktal.pipeline.runs.schema import ExperimentConfig

    features = synthesize("thumos14", args.work, 2048, args.feature_seed, 1.0, args.features_from)
    cfg = load_config(ExperimentConfig, REPO / DATASETS["thumos14"]["config"],
                      overrides("thumos14", "SFBAE", 0, features, args))
    torch.set_num_threads(args.threads)
    bundle = load_data(cfg.data, seed=0)
    meta = bundle.source.load(bundle.train.ids[0])[1]
    print(f"full size: {meta.dim}-d features, batch {args.batch_size}, {torch.get_num_threads()} torch thread(s), "
          f"{args.time_iterations} timed iterations after 1 warm-up", flush=True)
    lines = []
    for crop in (None, 750):
        torch.manual_seed(0)
        model, _ = build_localizer("sfnet", cfg.model.params, input_dim=meta.dim, num_classes=len(bundle.classes),
                                   streams=meta.streams, geometry=meta.geometry)
        sampler = Sampler(SamplingConfig(train=SamplerConfig(kind="crop", length=crop) if crop else SamplerConfig()))
        opt = make_optimizer(model, cfg.train.optimizer)
        times, lengths = [], []
        for i in range(args.time_iterations + 1):
            batch = sample_batch(bundle.train, args.batch_size, batch_rng(0, i), sampler)
            t0 = time.perf_counter()
            model.train()
            terms = model.losses(model(batch.features, batch.mask), batch, iteration=10**6)  # mining active
            opt.zero_grad()
            terms["total"].backward()
            opt.step()
            if i:
                times.append(time.perf_counter() - t0)
                lengths.append(batch.features.shape[1])
        line = (f"- {'whole videos (paper)' if crop is None else f'crops of {crop} snippets (code)'}: "
                f"{np.mean(times):.1f} s/iteration (min {np.min(times):.1f}, max {np.max(times):.1f}; padded "
                f"length {int(np.mean(lengths))} snippets on average) -> 5000 iterations = "
                f"{5000 * np.mean(times) / 3600:.0f} h")
        print(line, flush=True)
        lines.append(line)
    (args.work / "full_size_timing.md").write_text("\n".join(lines) + "\n")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", nargs="+", default=["thumos14", "gtea"], choices=list(DATASETS))
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--seeds", nargs="+", type=int, help="default: 0 1 2 (--quick: 0)")
    p.add_argument("--dim", type=int, help="feature dimension (RGB half + flow half); default 256 (--quick: 64)")
    p.add_argument("--feature-seed", type=int, default=0)
    p.add_argument("--difficulty", type=float, default=1.0)
    p.add_argument("--features-from", choices=("world", "synth"), default="world",
                   help="feature generator: the frozen proxy world (clicktal.pipeline.data.world, default) or "
                        "benchkit synth.py")
    p.add_argument("--world-params", type=json.loads, default={}, metavar="JSON",
                   help="world parameters replaced (calibration candidates only, before a version is frozen)")
    p.add_argument("--quick", action="store_true",
                   help=f"a smoke run of the table: {QUICK['dim']}-d features, seed 0, {QUICK['iterations']} "
                        "iterations (explicit --dim / --seeds / --iterations still win)")
    p.add_argument("--iterations", type=int, help="default: 1500 for both datasets (--quick: 500)")
    p.add_argument("--mining-start", type=int, help="iteration online mining starts at (default: a quarter of "
                                                    "--iterations); fixing it lets a longer --iterations resume "
                                                    "finished runs instead of training anew")
    p.add_argument("--max-length", type=int, help="training crop in snippets, 0 for none (default: thumos14 512, "
                                                  "gtea none)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--normalize", choices=("none", "standardize"),
                   help="data.normalize instead of the config's (named in the run folders; for measuring the choice "
                        "with --heldout-curve)")
    p.add_argument("--jobs", type=int, default=2, help="runs at a time")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--work", type=Path, help="default: runs/sfnet_ablation (--quick: runs/sfnet_ablation_quick)")
    p.add_argument("--time-full-size", action="store_true",
                   help="instead of the ablation: seconds per iteration at full size (2048-d THUMOS14, batch 32)")
    p.add_argument("--time-iterations", type=int, default=3)
    p.add_argument("--heldout-curve", type=int, metavar="EVERY", default=0,
                   help="instead of the table: the runs on 75 %% of the training videos, validated on the rest every "
                        "EVERY iterations; prints training and held-out losses side by side")
    p.add_argument("--table-only", action="store_true",
                   help="instead of training: the table of the finished runs in --work as their results.json gave "
                        "them (no training, no evaluation; unfinished runs are left out and named)")
    p.add_argument("--foreground-ap", action="store_true",
                   help="instead of training: AVG and class-agnostic foreground AP of the finished runs in --work")
    args = p.parse_args(argv)
    quick = QUICK if args.quick else {"dim": 256, "seeds": [0, 1, 2], "iterations": None}
    args.dim = args.dim or quick["dim"]
    args.seeds = args.seeds or quick["seeds"]
    args.iterations = args.iterations or quick["iterations"]
    args.work = args.work or REPO / "runs" / ("sfnet_ablation_quick" if args.quick else "sfnet_ablation")
    needed = BENCHKIT / ("synth.py" if args.features_from == "synth" else DATASETS["thumos14"]["gt"])
    if not needed.exists():
        print(f"error: {needed} not found (set CLICKTAL_BENCHKIT)", file=sys.stderr)
        return 2
    args.work.mkdir(parents=True, exist_ok=True)
    if args.time_full_size:
        return time_full_size(args)
    if args.foreground_ap:
        return foreground_table(args)

    t_all = time.perf_counter()
    for dataset in args.dataset:
        features = synthesize(dataset, args.work, args.dim, args.feature_seed, args.difficulty, args.features_from,
                              args.world_params)
        jobs = [(run_config, (DATASETS[dataset]["config"], overrides(dataset, v, s, features, args), args.work,
                              args.threads), {"dataset": dataset, "variant": v, "seed": s})
                for s in args.seeds for v in args.variants]  # seed-major: an interrupted table has whole seeds
        print(f"{dataset}: {len(jobs)} runs, {args.jobs} at a time", flush=True)
        t0 = time.perf_counter()
        if args.table_only:
            found = [finished_run(args.work, overrides(dataset, v, s, features, args)["name"], **tags)
                     for _, (_, over, *_), tags in jobs for v, s in [(tags["variant"], tags["seed"])]]
            for (_, (_, over, *_), tags), r in zip(jobs, found):
                if r is None:
                    print(f"{over['name']}: not finished, left out", file=sys.stderr)
            results = [r for r in found if r is not None]
            if not results:
                continue
            args.variants = [v for v in args.variants if any(r["variant"] == v for r in results)]
        else:
            results = run_all(jobs, args.jobs)
        wall = (time.perf_counter() - t0) / 60
        if args.heldout_curve:
            print(heldout_curve_table(results, args.work, dataset, args.heldout_curve, args.normalize), flush=True)
            continue
        label = {"thumos14": "THUMOS14", "gtea": "GTEA"}[dataset]
        groups = {f"{label} {v}": [r for r in results if r["variant"] == v] for v in args.variants}
        d = DATASETS[dataset]
        iterations = args.iterations or d["iterations"]
        settings = (f"synthetic {label}-structured features ({features_name(args)}, feature seed "
                    f"{args.feature_seed}, {args.dim}-d, difficulty {args.difficulty:g}), real human clicks (random "
                    f"annotator per video), {iterations} iterations (mining from {mining_start(args, iterations)}), "
                    f"batch {args.batch_size}, crop "
                    f"{(d['max_length'] if args.max_length is None else args.max_length) or 'none'}, seeds "
                    f"{' '.join(sorted({str(r['seed']) for r in results}))}, "
                    + ("assembled from the finished runs' results.json (--table-only); " if args.table_only else
                       f"{args.jobs} runs at a time x {args.threads} thread(s) on {os.cpu_count()}-core CPU; ")
                    + f"min/run = training minutes from each run's log; this invocation took {wall:.1f} min")
        write_report(args.work, dataset, "SF-Net ablation", groups, settings, wall, results)
        details = details_table(results, args.variants)
        print("\n" + details, flush=True)
        with open(args.work / f"ablation_{dataset}.md", "a") as f:
            f.write("\n" + details + "\n")
    print(f"took {(time.perf_counter() - t_all) / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
