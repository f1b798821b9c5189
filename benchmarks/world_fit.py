#!/usr/bin/env python3
"""Fit the proxy world's feature statistics to real I3D features (the first stage of its calibration).

    python benchmarks/world_fit.py --real /tmp/real/i3d_rgb --trials 300

Measures the real features' statistics (``clicktal.pipeline.data.feature_stats``, RGB columns, the benchkit
videos' ground truth), then searches the world's parameters (:class:`~clicktal.pipeline.data.world.WorldParams`)
so that the same statistics of the world's RGB half, on the first ``--videos`` THUMOS14 validation videos
(durations and segments real, world seed 0), land in the real range: a seeded random search in a box around the
current defaults, then coordinate refinement. Prints the fitted values and the table (real videos, the fit, the
defaults). The second stage (the remaining parameters against SF-Net's Full / Weak rows) runs
``benchmarks/sfnet_ablation.py --features-from world --variants Full Weak``; docs/world.md has both. Nothing here
reads a test subset.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from clicktal.pipeline.data.annotations import Segment, load_ground_truth
from clicktal.pipeline.data.formats import open_features
from clicktal.pipeline.data.feature_stats import STATISTICS, action_mask, feature_statistics, video_statistics
from clicktal.pipeline.data.world import World, WorldParams, _video_rng, video_extent

REPO = Path(__file__).resolve().parents[1]
BENCHKIT = REPO.parent / "shared" / "benchkit"
# how far off a statistic may be before it counts as one unit of misfit (about the spread of the two real videos)
SCALE = {"pair_cosine": 0.04, "act_bg_cosine": 0.01, "shift_ratio": 0.02, "shift_along_bg": 0.015,
         "mean_over_std": 0.25, "lag1_autocorr": 0.06, "near_zero": 0.003}
# the parameters searched, with their box (the rest keep their defaults)
BOX = {"middle_norm": (0.8, 3.0), "common_action": (0.0, 2.0), "replace": (0.0, 0.95), "scene_norm": (0.5, 2.5),
       "background_norm": (0.3, 3.0), "noise": (0.2, 1.2), "noise_corr": (0.0, 0.8), "bias_rgb": (-0.5, 1.5),
       "bias_spread": (0.1, 1.0), "sharpness": (1.0, 8.0), "scene_drift": (0.0, 0.8)}


def world_statistics(params: WorldParams, gt: dict, videos: list[str], dim: int) -> dict[str, float]:
    """Median statistics of the world's RGB half over ``videos`` (ActivityNet database entries ``gt``)."""
    classes = sorted({a["label"] for v in gt.values() for a in v["annotations"]})
    world = World(classes, dim, 0, params=params)
    rows = []
    for vid in videos:
        entry = gt[vid]
        x = world.video(entry["annotations"], video_extent(entry), _video_rng(0, vid))[:, : dim // 2]
        centres = (np.arange(len(x)) + 0.5) * world.snippet_s
        truth = [Segment(float(a["segment"][0]), float(a["segment"][1]), a["label"]) for a in entry["annotations"]]
        rows.append(video_statistics(x, action_mask(truth, centres)))
    return {k: float(np.nanmedian([r[k] for r in rows])) for k in STATISTICS}


def misfit(stats: dict[str, float], low: dict[str, float], high: dict[str, float]) -> float:
    """Squared distance of ``stats`` to the real range [low, high], in units of :data:`SCALE` (0 inside)."""
    return sum((max(low[k] - v, 0, v - high[k]) / SCALE[k]) ** 2 for k, v in stats.items())


def fit(low, high, gt, videos, dim, trials, seed=0, local=False, log=print) -> tuple[WorldParams, dict]:
    """A seeded search from the current defaults: the first half of ``trials`` drawn anywhere in :data:`BOX` (none
    when ``local``), the rest perturbing the best so far (each parameter with probability 0.4, by 10 % of its box
    width, 5 % when ``local``)."""
    rng = np.random.default_rng(seed)
    step = 0.05 if local else 0.1
    best = WorldParams()
    best_stats = world_statistics(best, gt, videos, dim)
    best_loss = misfit(best_stats, low, high)
    for trial in range(trials):
        values = {k: float(rng.uniform(*box)) for k, box in BOX.items()}
        candidate = dataclasses.replace(best, **values) if trial < trials // 2 and not local else dataclasses.replace(
            best, **{k: float(np.clip(getattr(best, k) + rng.normal(0, step) * (b - a), a, b))
                     for k, (a, b) in BOX.items() if rng.random() < 0.4})
        stats = world_statistics(candidate, gt, videos, dim)
        loss = misfit(stats, low, high)
        if loss < best_loss:
            best, best_stats, best_loss = candidate, stats, loss
            log(f"  trial {trial}: misfit {loss:.3f}")
    return best, best_stats


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--real", type=Path, required=True, help="feature cache of the benchkit videos (i3d_rgb)")
    p.add_argument("--real-gt", type=Path, default=BENCHKIT / "videos" / "annotations.json")
    p.add_argument("--gt", type=Path, default=BENCHKIT / "thumos14" / "groundtruth.json")
    p.add_argument("--videos", type=int, default=30, help="first N validation videos the world is measured on")
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--trials", type=int, default=300)
    p.add_argument("--local", action="store_true", help="only refine around the current defaults")
    p.add_argument("--out", type=Path, help="write the fitted parameters and table here (JSON)")
    args = p.parse_args(argv)

    real = feature_statistics(open_features(args.real), load_ground_truth(args.real_gt))
    low = {k: min(v[k] for v in real.per_video.values()) for k in STATISTICS}
    high = {k: max(v[k] for v in real.per_video.values()) for k in STATISTICS}
    db = json.loads(args.gt.read_text())["database"]
    videos = sorted(v for v in db if db[v]["subset"] == "validation")[: args.videos]
    default_stats = world_statistics(WorldParams(), db, videos, args.dim)
    print(f"real range: {low} .. {high}\ndefaults: misfit {misfit(default_stats, low, high):.3f}")
    params, stats = fit(low, high, db, videos, args.dim, args.trials, local=args.local)
    fitted = {k: getattr(params, k) for k in BOX}
    print("fitted:", json.dumps({k: round(v, 4) for k, v in fitted.items()}))
    print("| statistic | real low | real high | fitted world | defaults |\n|---|---|---|---|---|")
    for k, label in STATISTICS.items():
        print(f"| {label} | {low[k]:.3f} | {high[k]:.3f} | {stats[k]:.3f} | {default_stats[k]:.3f} |")
    if args.out:
        args.out.write_text(json.dumps({"fitted": fitted, "stats": stats, "defaults_stats": default_stats,
                                        "real_low": low, "real_high": high, "videos": args.videos,
                                        "trials": args.trials}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
