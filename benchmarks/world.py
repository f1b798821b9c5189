#!/usr/bin/env python3
"""Write the proxy world's features for a real annotation set (synth.py's layout and arguments).

    python benchmarks/world.py --gt ../shared/benchkit/thumos14/groundtruth.json --out th14_world --seed 0 \
        [--dim 2048] [--max-videos N] [--fps 25] [--snippet-frames 16] [--difficulty 1.0]

``features/<video>.npy`` (float32, T x dim: RGB half then flow half), ``annotations.json`` (the ground truth with
``feature_meta``) and ``meta.json`` (every parameter and the ``world_version``). The world is
``clicktal.pipeline.data.world`` at its frozen version; docs/world.md says how it was calibrated. Results on it are
synthetic: report them as "proxy world v<version>, seed S", never as THUMOS14 / GTEA results.
"""
from __future__ import annotations

import argparse
import sys
import time

from clicktal.pipeline.data.world import FPS, SNIPPET_FRAMES, write_world


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gt", required=True, help="ground truth in the ActivityNet schema")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--max-videos", type=int, default=0, help="keep only the first N videos of each subset")
    p.add_argument("--difficulty", type=float, default=1.0, help="scales noise and confusers")
    p.add_argument("--fps", type=float, default=FPS, help="frame rate the snippets are counted at")
    p.add_argument("--snippet-frames", type=int, default=SNIPPET_FRAMES, help="frames per snippet (window = stride)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    try:
        meta = write_world(args.gt, args.out, seed=args.seed, dim=args.dim, max_videos=args.max_videos,
                           fps=args.fps, snippet_frames=args.snippet_frames, difficulty=args.difficulty)
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {args.gt}: {e}", file=sys.stderr)
        return 2
    extended = meta["extended_videos"]
    print(f"wrote {meta['videos']} videos, {len(meta['classes'])} classes, dim {args.dim}, world v"
          f"{meta['world_version']} seed {args.seed} to {args.out} in {time.perf_counter() - t0:.1f} s; "
          f"{len(extended)} video(s) extended to cover annotations past their duration"
          + (f" ({', '.join(sorted(extended)[:3])}{', ...' if len(extended) > 3 else ''})" if extended else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
