#!/usr/bin/env python3
"""FSN and WFSN (Tables 1-5's rows) on the proxy world at FSN's geometry, beside a fully supervised SF-Net-engine
baseline on the same features.

    python benchmarks/fsn.py                                   # every row, 3 seeds, defaults below
    python benchmarks/fsn.py --quick                           # 64-d, seed 0, short schedules (prints its time)
    python benchmarks/fsn.py --rows fsn wfsn --seeds 0 --iterations 500

Features: the proxy world v1 (``clicktal.pipeline.data.world``; ``--features-from synth``: benchkit synth.py) on
THUMOS14's ground truth with 5-frame snippets (0.2 s at 25 fps, TSN's; the world folder ``thumos14_f5``), feature
seed ``--feature-seed``, ``--dim`` dimensions (RGB half + flow half), written once under ``--work``. Rows:
configs/fsn_thumos14.yaml (the ``fsn`` recipe, whole-video inference, its ``data.normalize``) as ``fsn_rgb``,
``fsn_flow``, ``fsn`` (late fusion), ``fsn_rgb_no_tcnn`` (Table 4's "w/o temporal CNN"), ``fsn_tiles`` (the ``fsn``
row's weights with the paper's non-overlapping 7-snippet windows at inference, evaluation only) and ``fsn_literal`` (the old default: ``fsn_literal`` preset on
7-snippet tiles, features as stored), trained on per-frame labels from the boundaries; configs/wfsn_thumos14.yaml
as ``wfsn`` (GMP), ``wfsn_gap`` (Table 5's GAP) and ``wfsn_literal`` (the old default: features as stored, SGD
1e-4, ``fsn_literal`` on the frame softmax), on video labels; ``sfnet_full`` (configs/sfnet_thumos14.yaml with the
full boundaries as its labels, no clicks, crops of 750 snippets). Each row keeps its config's optimiser (FSN: SGD lr
1e-4, momentum 0.9, the paper's; WFSN: the config's; SF-Net: Adam 1e-3), batch 12, with the schedule shortened to
fit a 2-core CPU (``--iterations``, ``--wfsn-iterations``, ``--sfnet-iterations``; ``--hidden`` narrows the temporal
CNN); the last iteration's weights are evaluated on the test subset (ambiguous segments removed). FSN rows and the
baseline report mAP at tIoU 0.3:0.1:0.7 (Table 2), WFSN rows 0.1:0.1:0.5 (Table 3), with FSN's rule of NMS at the
evaluation tIoU - 0.1; every row also reports frame-level mAP (Table 1; per frame for FSN / WFSN, per snippet for
SF-Net). Prints two Markdown tables (mean ± std over ``--seeds``, min per run) and writes them with every run to
``--work``/ablation_fsn_{strong,weak}.{md,json} and ``--work``/table.json. Synthetic features: not THUMOS14 results.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ablation import BENCHKIT, REPO, run_all, run_config, synthesize, world, write_report

FSN, WFSN, SFNET = "configs/fsn_thumos14.yaml", "configs/wfsn_thumos14.yaml", "configs/sfnet_thumos14.yaml"
TILES = {"kind": "windows", "length": 7}
ROWS = {  # name: (label, config, model params, table)
    "fsn_rgb": ("FSN RGB", FSN, {"streams": "rgb"}, "strong"),
    "fsn_flow": ("FSN flow", FSN, {"streams": "flow"}, "strong"),
    "fsn": ("FSN (RGB + flow, late fusion)", FSN, {}, "strong"),
    "fsn_rgb_no_tcnn": ("FSN RGB w/o temporal CNN", FSN, {"streams": "rgb", "temporal_cnn": False}, "strong"),
    "fsn_tiles": ("FSN, 7-snippet tiles at inference", FSN, {}, "strong"),
    "fsn_literal": ("FSN, old default (fsn_literal, tiles, features as stored)", FSN, {}, "strong"),
    "sfnet_full": ("SF-Net engine, full boundaries", SFNET, {}, "strong"),
    "wfsn": ("WFSN (GMP)", WFSN, {}, "weak"),
    "wfsn_gap": ("WFSN (GAP)", WFSN, {"pooling": "avg"}, "weak"),
    "wfsn_literal": ("WFSN, old default (fsn_literal on the softmax, features as stored, SGD 1e-4)", WFSN,
                     {"frame_signal": "softmax"}, "weak"),
}
TABLES = {"strong": ([0.3, 0.4, 0.5, 0.6, 0.7], [0.3, 0.5, 0.7]), "weak": ([0.1, 0.2, 0.3, 0.4, 0.5], [0.1, 0.3, 0.5])}


def overrides(row: str, seed: int, features: Path, args) -> dict:
    _, config, params, table = ROWS[row]
    tious, report = TABLES[table]
    iterations = {FSN: args.iterations, WFSN: args.wfsn_iterations, SFNET: args.sfnet_iterations}[config]
    out = {
        "name": f"fsn_benchmark-{row}-seed{seed}",
        "data": {"features": str(features), "ground_truth": str(BENCHKIT / "thumos14/groundtruth.json"),
                 "ambiguous": str(BENCHKIT / "thumos14/ambiguous_test.txt")},
        "model": {"params": {**params, **({"hidden_dim": args.hidden} if config != SFNET else {})}},
        "train": {"iterations": iterations, "batch_size": 12, "seed": seed, "progress": False,
                  "num_threads": args.threads, "checkpoint_every": iterations},
        "evaluation": {"tiou_thresholds": tious, "average_over": tious, "report": report, "use_ambiguous": True,
                       "frame_map": True},
    }
    if row == "fsn_literal":  # the paper's non-overlapping 35-frame windows
        out["data"]["sampling"] = {"inference": TILES}
    if row in ("fsn_literal", "wfsn_literal"):  # the project's reading before the held-out measurements
        out["postprocess"] = {"preset": "fsn_literal"}
        out["data"]["normalize"] = "none"
    if row == "wfsn_literal":
        out["train"]["optimizer"] = {"name": "sgd", "lr": 1e-4, "momentum": 0.9, "weight_decay": 5e-4}
    if config == SFNET:
        out["data"]["labels"] = {"boundaries": True, "action_clicks": {"source": "none", "files": []}}
        out["data"]["sampling"] = {"train": {"kind": "crop", "length": 750}}
    return out


def tiles_row(base: dict, work: Path, threads: int, reevaluate: bool, **tags) -> dict:
    """The ``fsn`` row's weights (``base``: its overrides; trained first when its run is missing) evaluated with
    7-snippet tiles at inference: the same network, only the inference sampler differs. As
    :func:`ablation.run_config` returns, the training minutes being the ``fsn`` run's; a tiles evaluation already
    made is read unless ``reevaluate``."""
    import dataclasses

    import torch

    from clicktal.pipeline.data.datasets import load_data
    from clicktal.pipeline.data.sampling import SamplerConfig
    from clicktal.pipeline.runs.experiments import _detect_and_evaluate
    from clicktal.pipeline.runs.inference import load_run

    trained = finished_row(FSN, base, work, threads)
    name = base["name"].replace("-fsn-", "-fsn_tiles-")
    out = work / "runs" / name
    if not reevaluate and (out / "results.json").exists():
        return {**read_results(out, base["evaluation"]["report"]), **tags, "name": name,
                "train_minutes": trained["train_minutes"]}
    run = load_run(work / "runs" / base["name"])
    torch.set_num_threads(threads)
    data = run.config.data
    cfg = dataclasses.replace(run.config, name=name, data=dataclasses.replace(
        data, sampling=dataclasses.replace(data.sampling, inference=SamplerConfig(**TILES))))
    out.mkdir(parents=True, exist_ok=True)
    bundle = load_data(cfg.data, seed=cfg.train.seed, contract=run.contract, normalization=run.normalization)
    base_results = json.loads((work / "runs" / base["name"] / "results.json").read_text())
    t0 = time.perf_counter()
    res = _detect_and_evaluate(run.model, cfg, bundle, out, "last", base_results["train_seconds"],
                               base_results["iterations"], run.device, (run.checkpoint.name, run.iteration))
    row = res.row(cfg.evaluation.report)
    print(f"  {cfg.name}: AVG {row[-1]:.1f}  ({(time.perf_counter() - t0) / 60:.1f} min, evaluation only)", flush=True)
    return {**tags, "name": cfg.name, "row": row, "minutes": (time.perf_counter() - t0) / 60,
            "train_minutes": trained["train_minutes"], "report": cfg.evaluation.report,
            "mAP": {f"{k:.1f}": v for k, v in res.mAP.items()}, "frame_mAP": 100 * res.extra["frame_mAP"]["mAP"]}


def read_results(folder: Path, report: list[float]) -> dict:
    """The reported row (mAP %, AVG last), the mAP per tIoU and the frame mAP of an evaluated run folder."""
    res = json.loads((folder / "results.json").read_text())
    mAP = {float(k): v for k, v in res["mAP"].items()}
    row = [100 * next(v for k, v in mAP.items() if abs(k - t) < 1e-9) for t in report] + [100 * res["average_mAP"]]
    print(f"  {folder.name}: AVG {row[-1]:.1f}  (read from its results.json)", flush=True)
    return {"row": row, "minutes": 0.0, "report": report, "mAP": {f"{k:.1f}": v for k, v in mAP.items()},
            "frame_mAP": 100 * res["frame_mAP"]["mAP"] if "frame_mAP" in res else None}


def finished_row(config: str, overrides: dict, work: Path, threads: int, **tags) -> dict:
    """A run of this table already evaluated: its numbers read from its ``results.json`` (as
    :func:`ablation.run_config` returns them, without evaluating again); not finished: :func:`ablation.run_config`."""
    from clicktal.pipeline.runs.engine import read_log

    folder = work / "runs" / overrides["name"]
    if not (folder / "results.json").exists():
        return run_config(config, overrides, work, threads, **tags)
    log = read_log(folder / "train_log.jsonl", note=print)
    return {**tags, "name": overrides["name"], **read_results(folder, overrides["evaluation"]["report"]),
            "train_minutes": sum(r["seconds"] for r in log) / 60}


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
    p.add_argument("--hidden", type=int, default=256, help="temporal CNN width of FSN / WFSN (the config: 512)")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--features-from", choices=("world", "synth"), default="world",
                   help="the proxy world v1 (clicktal.pipeline.data.world) or benchkit synth.py")
    p.add_argument("--quick", action="store_true",
                   help="64-d, seed 0, 1500 / 600 / 300 iterations (FSN / WFSN / SF-Net)")
    p.add_argument("--reevaluate", action="store_true",
                   help="evaluate finished runs again (after a post-processing change); default: read their results")
    p.add_argument("--finished-only", action="store_true",
                   help="tables of the runs already evaluated only (a row lists the seeds it holds); trains nothing")
    p.add_argument("--work", type=Path, default=REPO / "runs" / "fsn_benchmark")
    args = p.parse_args(argv)
    if args.quick:
        args.dim, args.seeds, args.iterations, args.wfsn_iterations, args.sfnet_iterations = 64, [0], 1500, 600, 300
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.features_from == "world":
        from clicktal.pipeline.data.world import WORLD_VERSION

        features = world("thumos14_f5", "thumos14/groundtruth.json", args.work, args.dim, args.feature_seed, 1.0,
                         snippet_frames=5)
        source = f"proxy world v{WORLD_VERSION} (5-frame snippets), feature seed {args.feature_seed}, {args.dim}-d"
    else:
        if not (BENCHKIT / "synth.py").exists():
            print(f"error: {BENCHKIT}/synth.py not found (set CLICKTAL_BENCHKIT)", file=sys.stderr)
            return 2
        features = synthesize("thumos14_f5", "thumos14/groundtruth.json", args.work, args.dim, args.feature_seed,
                              1.0, "--snippet-frames", "5")
        source = (f"synthetic THUMOS14-structured features (benchkit synth.py --snippet-frames 5, seed "
                  f"{args.feature_seed}, dim {args.dim})")
    one_run = run_config if args.reevaluate else finished_row
    jobs = [(tiles_row, (overrides("fsn", s, features, args), args.work, args.threads, args.reevaluate),
             {"row_name": r, "seed": s})
            if r == "fsn_tiles" else
            (one_run, (ROWS[r][1], overrides(r, s, features, args), args.work, args.threads),
             {"row_name": r, "seed": s}) for r in args.rows for s in args.seeds]
    if args.finished_only:  # assemble the tables from the runs already evaluated, train nothing
        run_name = lambda job: overrides(job[2]["row_name"], job[2]["seed"], features, args)["name"]  # noqa: E731
        jobs = [j for j in jobs if (args.work / "runs" / run_name(j) / "results.json").exists()]
    print(f"{len(jobs)} runs, {args.jobs} at a time", flush=True)
    t0 = time.perf_counter()
    results = run_all(jobs, args.jobs)
    wall = (time.perf_counter() - t0) / 60
    for table, (tious, _) in TABLES.items():
        rows = [r for r in args.rows if ROWS[r][3] == table and any(x["row_name"] == r for x in results)]
        if not rows:
            continue
        groups = {ROWS[r][0]: [x for x in results if x["row_name"] == r] for r in rows}
        seeds = {r: [x["seed"] for x in results if x["row_name"] == r] for r in rows}
        seeds = (f"seeds {' '.join(map(str, args.seeds))}" if all(v == args.seeds for v in seeds.values()) else
                 "seeds " + "; ".join(f"{ROWS[r][0]}: {' '.join(map(str, v))}" for r, v in seeds.items()))
        settings = (f"{source}, {seeds}, batch 12, {args.iterations} / "
                    f"{args.wfsn_iterations} / {args.sfnet_iterations} iterations (FSN / WFSN / SF-Net), each "
                    f"config's optimiser, FSN/WFSN width {args.hidden}; last iteration; AVG = mAP over tIoU "
                    f"{tious[0]:g}:0.1:{tious[-1]:g}, NMS at tIoU - 0.1 for FSN/WFSN; {args.jobs} run(s) at a time x "
                    f"{args.threads} thread(s) on a 2-core CPU; min/run = training minutes; all tables' wall time "
                    f"{wall:.1f} min")
        write_report(args.work, f"fsn_{table}", "FSN benchmark" if table == "strong" else "WFSN benchmark", groups,
                     settings, wall, results, frame_map=True)
    print(f"wall time {wall:.1f} min ({len(jobs)} runs)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
