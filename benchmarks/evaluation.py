#!/usr/bin/env python
"""Speed of the detection evaluator beside a plain per-detection loop port of the official ActivityNet code
(:mod:`clicktal.pipeline.evaluation.reference`, the same port the tests compare against).

    python benchmarks/evaluation.py [--gt groundtruth.json] [--detections 200000] [--repeats 3] [--quick]

Random detections on THUMOS14's test videos (mostly jittered copies of ground-truth instances, the rest anywhere
with any class), 7 tIoUs (0.1:0.7). Both implementations run in the same process on the same input; the table
gives the median of the repeats, and the run checks that both give the same per-class APs.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from clicktal.pipeline.data.annotations import GroundTruth, load_ground_truth
from clicktal.pipeline.data.detections import Detection, detections_to_json
from clicktal.pipeline.evaluation.detection import evaluate_detections, parse_tiou
from clicktal.pipeline.evaluation.reference import reference_anet_detection

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_GT = ROOT.parent / "shared" / "benchkit" / "thumos14" / "groundtruth.json"


def random_detections(gt: GroundTruth, subset: str, n: int, rng: np.random.Generator) -> list[Detection]:
    """80% jittered ground-truth instances (centre +-N(0, 2 s), length x lognormal(0, 0.4)), 20% uniform."""
    videos = gt.subset(subset)
    classes = gt.classes(subset)
    instances = [(v, s) for v, a in videos.items() for s in a.segments]
    near = rng.random(n) < 0.8
    pick = rng.integers(len(instances), size=n)
    names = list(videos)
    video_pick = rng.integers(len(names), size=n)
    class_pick = rng.integers(len(classes), size=n)
    jitter, stretch = rng.normal(0, 2.0, n), np.exp(rng.normal(0, 0.4, n))
    uniform, length = rng.random(n), rng.exponential(5.0, n)
    scores = rng.random(n)
    out = []
    for k in range(n):
        if near[k]:
            video, seg = instances[pick[k]]
            half = (seg.end_s - seg.start_s) * stretch[k] / 2
            centre = max((seg.start_s + seg.end_s) / 2 + jitter[k], half)
            out.append(Detection(video, seg.label, centre - half, centre + half, float(scores[k])))
        else:
            video = names[video_pick[k]]
            start = uniform[k] * videos[video].duration_s
            out.append(Detection(video, classes[class_pick[k]], start, start + length[k], float(scores[k])))
    return out


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def median_time(fn, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gt", type=Path, default=DEFAULT_GT, help="THUMOS14 ground truth (default: benchkit's)")
    parser.add_argument("--subset", default="test")
    parser.add_argument("--detections", type=int, default=200_000)
    parser.add_argument("--tiou", default="0.1:0.7")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="20,000 detections")
    args = parser.parse_args(argv)
    n = 20_000 if args.quick else args.detections

    gt = load_ground_truth(args.gt)
    thresholds = parse_tiou(args.tiou)
    detections = random_detections(gt, args.subset, n, np.random.default_rng(args.seed))
    videos = gt.subset(args.subset)
    n_gt = sum(len(a.segments) for a in videos.values())

    with np.errstate(divide="ignore", invalid="ignore"):
        t_ours, ours = median_time(lambda: evaluate_detections(gt, detections, thresholds, subset=args.subset),
                                   args.repeats)
        database = json.loads(args.gt.read_text())["database"]
        results = detections_to_json(detections)["results"]
        t_loop, (loop, loop_map) = median_time(
            lambda: reference_anet_detection(database, results, args.subset, thresholds), args.repeats)
    identical = all(ours.per_class_AP[c] == tuple(ap) for c, ap in loop.items())

    print(f"Detection mAP on {args.gt.name} ({args.subset}: {len(videos)} videos, {n_gt:,} ground-truth segments), "
          f"{n:,} random detections, {len(thresholds)} tIoUs ({args.tiou})")
    print(f"device: {cpu_name()} ({os.cpu_count()} logical CPUs); "
          f"Python {platform.python_version()}, numpy {np.__version__}; "
          f"median of {args.repeats} runs\n")
    print("| implementation | time (s) | detections / s | speed-up |")
    print("|---|---:|---:|---:|")
    for name, t in [("clicktal `evaluate_detections`", t_ours), ("per-detection loop port of the official code",
                                                                   t_loop)]:
        print(f"| {name} | {t:.3f} | {n / t:,.0f} | {t_loop / t:.1f}x |")
    print(f"\nsame result: {'yes' if identical else 'NO'} (per-class AP bit-identical: {identical}; "
          f"max |mAP difference| {np.max(np.abs(np.array(ours.mAP) - loop_map)):.1e})")
    print("mAP (%): " + ", ".join(f"{t:.1f}: {100 * m:.2f}" for t, m in zip(thresholds, ours.mAP)))
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
