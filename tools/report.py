#!/usr/bin/env python3
"""Write one HTML page about a trained run, ``RUN/report.html``, that opens in a browser with no server or network.

    clicktal-report runs/sfnet_th14 [--timelines 4] [--video VIDEO ...] [--top 10] [--overwrite]

The page shows the run's name and config, its loss curves (every loss term, label counts, learning rate,
validation), mAP per tIoU and per-class AP bars (``results.json``) and timelines of a few test videos (the first
``--timelines``, or the ``--video`` ones): the class scores the run saved (``raw/<subset>.npz``), its best
detections (``detections.json``) and the ground truth, matched detections marked with their tIoU. Pictures are
inlined, so the file can be mailed or archived alone. Exit status: 0 written; 2 not a run folder, an unreadable file
in it (named), an unknown ``--video``, or a report already there without ``--overwrite``; 4 the disk is full.
"""
from __future__ import annotations

import argparse
import sys

from clicktal.pipeline.core.files import DiskFullError
from clicktal.pipeline.runs.report import ReportError, write_report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="run folder written by clicktal-train")
    p.add_argument("--timelines", type=int, default=4, help="test videos to draw (default 4)")
    p.add_argument("--video", action="append", help="draw this test video (repeatable; instead of the first ones)")
    p.add_argument("--top", type=int, default=10, help="detections drawn per video (default 10)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report.html")
    args = p.parse_args(argv)
    try:
        summary = write_report(args.run, overwrite=args.overwrite, timelines=args.timelines, videos=args.video,
                               top=args.top)
    except DiskFullError as e:
        print(f"error: {e}", file=sys.stderr)
        return 4
    except (ReportError, OSError) as e:
        print("error: " + " ".join(str(e).split()), file=sys.stderr)
        return 2
    for note in summary.notes:
        print(f"note: {note}")
    print(f"{summary.path} ({summary.size_bytes // 1024} KB, {len(summary.videos)} timelines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
