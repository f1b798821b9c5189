#!/usr/bin/env python3
"""Detections of a trained run on any feature folder (no ground truth needed), as ActivityNet results JSON.

    python tools/infer.py --run runs/sfnet --features my_features --out detections.json [--videos v1 v2]
        [--preset sfnet_code] [--set thresholds=[0.5]] [--feature-format wtalc] [--annotations ann.json]

The run's post-processing (config.yaml ``postprocess``) is used unless ``--preset``/``--set`` change it; times in
the output are seconds (through the features' geometry). The folder's layout is recognised (``--feature-format``
names it: a clicktal cache, the synthesizer's folder, W-TALC's joint file, BaS-Net, BackTAL ``.npz``, ActionFormer;
the run's ``data.feature_layout`` states what a layout does not, and ActionFormer's per-video fps come from
``--annotations``, by default the run's ground truth). To evaluate a run on its test subset use
``tools/train_localizer.py --out RUN --eval-only``. Features made from a video file that has been replaced since
are refused, naming the video, unless ``--accept-changed-sources``. Exit status: 0 done, 2 a setup error (run,
checkpoint, features, contract, options, an output that cannot be written: checked before any work), 4 a full disk
(the path is named).
"""
from __future__ import annotations

import argparse
import logging
import sys

from clicktal.pipeline.core.files import DiskFullError, check_writable
from clicktal.pipeline.data.cache import CacheError
from clicktal.pipeline.data.formats import FeatureLayoutConfig, describe_no_features, detect_format, open_features
from clicktal.pipeline.data.detections import write_detections
from clicktal.pipeline.runs.engine import add_log_options, console_logging, log_level
from clicktal.pipeline.runs.experiments import parse_set
from clicktal.pipeline.runs.inference import load_run

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="run folder written by tools/train_localizer.py")
    p.add_argument("--features", required=True, help="feature folder (any layout clicktal reads)")
    p.add_argument("--feature-format", default="auto",
                   choices=["auto", "cache", "synth", "wtalc", "basnet", "backtal_npz", "actionformer"],
                   help="layout of --features (default: recognised from the folder)")
    p.add_argument("--annotations", help="ActionFormer layout: the annotation JSON with each video's fps (default: "
                                         "the run's data.ground_truth)")
    p.add_argument("--out", required=True, help="detections JSON to write")
    p.add_argument("--checkpoint", help="weights (default: the run's selected ones)")
    p.add_argument("--videos", nargs="*", help="only these videos (default: every video of the folder)")
    p.add_argument("--preset", help="post-processing preset instead of the run's")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a post-processing field")
    p.add_argument("--accept-changed-sources", action="store_true",
                   help="use features whose source video file was replaced since extraction (named on stderr)")
    add_log_options(p)
    args = p.parse_args(argv)
    with console_logging(log_level(args)):
        return _infer(args)


def _infer(args: argparse.Namespace) -> int:
    """The work of :func:`main` on its parsed arguments ``args``."""
    try:
        check_writable(args.out)
        run = load_run(args.run, checkpoint=args.checkpoint)
        data = run.config.data
        fmt = detect_format(args.features) if args.feature_format == "auto" else args.feature_format
        source = open_features(args.features, format=fmt, annotations=args.annotations or data.ground_truth or None,
                               layout=FeatureLayoutConfig() if fmt in ("cache", "synth") else data.feature_layout)
        ids = args.videos or source.ids()
        if not ids:
            raise CacheError(describe_no_features(args.features))
        dets = run.detect(source, ids, preset=args.preset, overrides=parse_set(args.set),
                          accept_changed_sources=args.accept_changed_sources,
                          note=logger.warning)
    except DiskFullError as e:
        print(f"error: {e}", file=sys.stderr)
        return 4
    except (ValueError, OSError, KeyError, CacheError) as e:
        print("error: " + " ".join(str(e).split()), file=sys.stderr)
        return 2
    try:
        write_detections(args.out, dets, version=run.config.name)
    except DiskFullError as e:
        print(f"error: {e}", file=sys.stderr)
        return 4
    with_dets = len({d.video for d in dets})
    print(f"{len(dets)} detections on {with_dets} videos; {len(ids) - with_dets} of the {len(ids)} videos got "
          f"none -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
