#!/usr/bin/env python
"""Export a feature folder in ActionFormer's / OpenTAD's layout (resumable).

    clicktal-export cache/ --out actionformer_feats/ [--gt groundtruth.json] [--overwrite]

Writes ``<out>/<video>.npy`` (float32 [T, D]) for every video, ``<out>/annotations.json`` (ActionFormer's
annotation JSON: fps, duration, subset and, with ``--gt``, the annotations with label ids) and ``<out>/export.json``
(the geometry and the ActionFormer / OpenTAD config values to use: feat_stride, num_frames, default_fps, input_dim).
Files already written identically are skipped and counted, so a rerun resumes; files that differ are refused unless
``--overwrite``. Only features with one geometry of whole frames can be exported (ActionFormer's config has one
feat_stride and num_frames).

Exit status: 0 done; 2 bad input (a missing or unreadable feature folder or ground truth, features of several
geometries, NaN features, existing files that differ, an output folder that cannot be written); 4 the disk is full
(naming the file). Every error is one line on stderr.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clicktal.pipeline.core.files import DiskFullError, check_writable
from clicktal.pipeline.data.annotations import AnnotationError, load_ground_truth
from clicktal.pipeline.data.cache import CacheError
from clicktal.pipeline.data.formats import open_features
from clicktal.pipeline.data.layouts import ExportError, export_actionformer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("features", type=Path, help="feature folder (a clicktal feature cache)")
    parser.add_argument("--out", required=True, type=Path, help="folder to write (ActionFormer's layout)")
    parser.add_argument("--gt", type=Path, help="ground truth in the ActivityNet schema: durations, subsets and the "
                                                "annotations of annotations.json")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files that differ")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    def fail(error: BaseException, status: int) -> int:
        print(f"{parser.prog}: error: " + " ".join(str(error).split()), file=sys.stderr)  # one line
        return status

    try:
        source = open_features(args.features)
        gt = load_ground_truth(args.gt) if args.gt else None
        check_writable(args.out / "export.json")  # before the work, not after it
        report = export_actionformer(source, args.out, ground_truth=gt, overwrite=args.overwrite,
                                     progress=not args.no_progress)
    except DiskFullError as e:
        return fail(e, 4)
    except (CacheError, AnnotationError, ExportError, OSError) as e:
        return fail(e, 2)
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
