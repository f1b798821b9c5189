#!/usr/bin/env python3
"""Detect actions in new untrimmed video files with a trained run: extract features, then localize.

    python tools/detect.py video.mp4 [more videos or folders] --run runs/sfnet_th14 --out detections.json \
        [--gt annotations.json] [--cache DIR] [--weights-dir DIR] [--device auto] [--workers N] [--features i3d]

Features are extracted with the run's own extraction options (recorded from its training features) into a
resumable cache (``--cache``, default ``<out>.features/``); flags given here replace single options. Before any video
is decoded, the features these options will produce are checked against the run's feature contract (extractor,
weights' sha256, fps, window, stride, streams, width): a mismatch is an error naming the fields. Detections are
written as ActivityNet results JSON in seconds, the same rows as CSV beside it (``<out>.csv``: video, label, start_s,
end_s, score), one timeline PNG per video (``<out>.timelines/<video>.png``: the detected classes' scores over time,
the best segments and, with ``--gt``, the ground truth), and the best ones printed. Extraction failures are listed in
the cache's ``.clicktal/failures.json``; the exit status is 1 when any video failed or was left unextracted
(another process holds it), 2 on a setup error (run, checkpoint,
options, an output that cannot be written: checked before any video is decoded), 4 on a full disk (naming the
file).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clicktal.extractors.flow import FLOW_DEVICES, FLOW_METHODS
from clicktal.extractors.networks import FEATURES, device_line
from clicktal.extractors.weights import WeightsError
from clicktal.pipeline.core.files import DiskFullError, check_writable
from clicktal.pipeline.data.cache import CacheError
from clicktal.pipeline.data.annotations import AnnotationError, GroundTruth, load_ground_truth
from clicktal.pipeline.data.detections import write_detections, write_detections_csv
from clicktal.pipeline.runs.inference import LoadedRun, load_run
from clicktal.pipeline.runs.videos import DetectionReport, detect_files, extraction_config
from clicktal.pipeline.runs.schema import postprocess_config
from clicktal.pipeline.runs.timeline import plot_timeline


def write_outputs(report: DetectionReport, run: LoadedRun, out: Path, *, gt: GroundTruth | None = None,
                  top: int = 10) -> tuple[Path, Path]:
    """Write ``report``'s detections as ``out`` (ActivityNet results JSON) and ``<out>.csv``, and one timeline PNG
    per video under ``<out>.timelines/`` (with ``gt``'s segments when given); returns the CSV path and the
    timeline folder."""
    csv_path, pictures = out.with_suffix(".csv"), out.with_name(out.stem + ".timelines")
    write_detections(out, report.detections, version=run.config.name)
    write_detections_csv(csv_path, report.detections)
    for vid in report.video_ids:
        fs, grid = report.scores[vid]
        truth = gt.videos[vid].segments if gt is not None and vid in gt.videos else ()
        plot_timeline(pictures / f"{vid}.png", vid, fs.scores, grid, run.classes, report.of(vid), truth=truth,
                      duration_s=report.durations[vid], top=top, post=postprocess_config(run.postprocess()))
    return csv_path, pictures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("videos", nargs="+", help="video files or folders (searched recursively)")
    p.add_argument("--run", required=True, help="run folder written by tools/train_localizer.py")
    p.add_argument("--out", required=True, type=Path, help="detections JSON to write")
    p.add_argument("--cache", type=Path, help="feature cache (default: <out>.features/)")
    p.add_argument("--features", choices=FEATURES, help="extractor (default: the run's)")
    p.add_argument("--weights-dir", help="extractor checkpoints (default: $CLICKTAL_WEIGHTS_DIR)")
    p.add_argument("--random-init", action="store_true", help="untrained extractor: smoke tests only")
    p.add_argument("--flow-size", type=int, help="TV-L1 at this shorter side (default: the run's)")
    p.add_argument("--device", default="auto",
                   help="torch device of the extractor: auto (CUDA when torch sees it, else cpu; the default), cpu, "
                        "cuda, cuda:N")
    p.add_argument("--flow", choices=FLOW_METHODS,
                   help="TV-L1 implementation (default: the one that made the run's features)")
    p.add_argument("--flow-device", choices=FLOW_DEVICES,
                   help="where TV-L1 runs (default: where the run's features were made)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--top", type=int, default=10, help="detections to print and to draw per video")
    p.add_argument("--gt", help="ActivityNet-schema ground truth: drawn on the timelines")
    args = p.parse_args(argv)

    cache = args.cache or args.out.with_name(args.out.name + ".features")
    try:
        for path in (args.out, args.out.with_suffix(".csv")):
            check_writable(path)
        gt = load_ground_truth(args.gt) if args.gt else None
        run = load_run(args.run)
        print(device_line(args.device), flush=True)
        config = extraction_config(run, features=args.features, weights_dir=args.weights_dir,
                                   flow_size=args.flow_size, flow=args.flow, flow_device=args.flow_device,
                                   device=args.device, random_init=args.random_init or None)
        report = detect_files(run, args.videos, cache=cache, config=config, workers=args.workers)
        print(report.extraction.text())
        csv_path, pictures = write_outputs(report, run, args.out, gt=gt, top=args.top)
    except DiskFullError as e:
        print(f"error: {e}", file=sys.stderr)
        return 4
    except (WeightsError, AnnotationError, ValueError, OSError, CacheError) as e:
        print("error: " + " ".join(str(e).split()), file=sys.stderr)
        return 2
    detections, ids = report.detections, report.video_ids
    print(f"{len(detections)} detections on {len(ids)} videos -> {args.out}, {csv_path}, {pictures}/")
    for d in sorted(detections, key=lambda d: -d.score)[:args.top]:
        print(f"  {d.video}  {d.start_s:8.2f}-{d.end_s:8.2f} s  {d.label:<24} {d.score:.3f}")
    return 0 if report.extraction.ok else 1


if __name__ == "__main__":
    sys.exit(main())
