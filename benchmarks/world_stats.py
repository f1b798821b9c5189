#!/usr/bin/env python3
"""Feature statistics of several feature sets side by side (real features beside synthetic worlds), one command:

    python benchmarks/world_stats.py real=/tmp/real/i3d_rgb:../shared/benchkit/videos/annotations.json \
        world=runs/world/thumos14_d2048_s0@validation synth=runs/synth/thumos14@validation --max-videos 60

Each ``NAME=FEATURES[:GROUND_TRUTH][@SUBSET]`` is a feature cache or a synthesizer folder (whose
``annotations.json`` is the ground truth when none is given), optionally only the videos of one subset. Rows: the statistics of ``clicktal.pipeline.data.feature_stats`` for the
``--stream`` columns, median over the videos; with ``--per-video`` one column per video of sets of at most 4.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clicktal.pipeline.data.annotations import load_ground_truth
from clicktal.pipeline.data.cache import SynthSource
from clicktal.pipeline.data.formats import open_features
from clicktal.pipeline.data.feature_stats import STATISTICS, feature_statistics


def _parse(item: str) -> tuple[str, Path, Path | None, str | None]:
    if "=" not in item:
        raise ValueError(f"{item!r}: expected NAME=FEATURES[:GROUND_TRUTH][@SUBSET]")
    name, rest = item.split("=", 1)
    rest, _, subset = rest.partition("@")
    features, _, gt = rest.partition(":")
    return name, Path(features), Path(gt) if gt else None, subset or None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sets", nargs="+", metavar="NAME=FEATURES[:GT][@SUBSET]")
    p.add_argument("--stream", default="rgb", help="columns to measure (default: %(default)s)")
    p.add_argument("--max-videos", type=int, help="the first N videos (sorted) of each set")
    p.add_argument("--per-video", action="store_true", help="a column per video for sets of at most 4 videos")
    args = p.parse_args(argv)
    columns: dict[str, dict[str, float]] = {}
    try:
        for item in args.sets:
            name, features, gt_path, subset = _parse(item)
            source = open_features(features)
            if gt_path is None and not isinstance(source, SynthSource):
                raise ValueError(f"{item}: a feature cache needs its ground truth (NAME=FEATURES:GT)")
            gt = load_ground_truth(gt_path or source.annotations_path)
            videos = sorted(set(gt.subset(subset)) & set(source.ids())) if subset else None
            stats = feature_statistics(source, gt, stream=args.stream, videos=videos, max_videos=args.max_videos)
            if args.per_video and len(stats.per_video) <= 4:
                columns.update({f"{name} {vid}": row for vid, row in stats.per_video.items()})
            columns[f"{name} (median of {len(stats.per_video)})"] = stats.median
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"| statistic ({args.stream}, per video) | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for key, label in STATISTICS.items():
        cells = [f"{100 * c[key]:.1f} %" if key == "near_zero" else f"{c[key]:.3f}" for c in columns.values()]
        print(f"| {label} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
