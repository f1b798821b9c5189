#!/usr/bin/env python
"""Detection mAP of an ActivityNet results file, equal to the official ActivityNet evaluator.

    python tools/evaluate.py --gt groundtruth.json --pred detections.json --subset test \\
        [--tiou 0.1:0.1:0.7] [--ambiguous ambiguous_test.txt] [--per-class] [--out results.json]
    python tools/evaluate.py --gt groundtruth.json --pred detections.json --subset validation test   # pooled
    python tools/evaluate.py --gt groundtruth.json --pred detections.json --subset all               # every subset
    python tools/evaluate.py --run runs/sfnet [--preset sfnet_code] [--set class_ratio=0.5] [--subset test]

Several subsets are pooled into one evaluation: the result is that of a ground-truth file holding only their videos
(in file order, which decides the class index and ties as the official code's), so the order of the names does not
matter. Detections on videos outside the chosen subsets are evaluated as false positives and counted, as for one
subset. Prints which subsets were scored and how many videos they hold, then mAP per tIoU and the averages (in %);
``--out`` writes the APs as fractions, with the subsets and the number of videos, atomically. Exit status: 0 done;
2 bad input (a missing, unreadable or malformed file, an unknown subset or label, ``all`` beside subset names, a bad
``--tiou``) or an ``--out`` that cannot be written, checked before any work; 4 the disk is full (naming the file; an
existing ``--out`` file keeps its old content). Every error is one line on stderr naming the file (a bad option also
prints the usage).

``--run`` evaluates a trained run folder instead, on its test subset (or the one ``--subset`` names), with the run's
own evaluation settings (tIoU thresholds, averages, ambiguous segments) and its post-processing, or another preset
(``--preset``; the run's own overrides kept) and fields (``--set FIELD=VALUE``, as ``tools/infer.py``). The scores are
the raw outputs the run saved (``raw/<subset>.npz``: no forward pass, no features needed), or, for a run that saved
none, the videos scored again from the run's features; the first line says which. Nothing in the run folder changes;
``--out`` writes what a run's ``results.json`` holds. Exit status as above (2 also for a run, config or feature
error).
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections import Counter
from dataclasses import replace
from pathlib import Path

from clicktal.pipeline.core.files import DiskFullError, atomic_write_text, check_writable
from clicktal.pipeline.data.annotations import AnnotationError, GroundTruth, load_ground_truth, read_ambiguous
from clicktal.pipeline.data.detections import DetectionFileError, read_detection_table
from clicktal.pipeline.evaluation.detection import (EvaluationError, EvaluationWarning, evaluate_detections,
                                                    parse_tiou)


def format_table(result: dict, per_class: bool) -> str:
    """mAP per tIoU and the averages in % of an evaluation's JSON record (:meth:`EvaluationResult.to_json`, or a
    run's ``results.json`` ``evaluation``), then AP per class when asked."""
    tious, per_class_AP = result["tiou_thresholds"], result["per_class_AP"]
    lines = ["tIoU   mAP (%)"]
    lines += [f"{t:<6.2f} {100 * m:7.2f}" for t, m in zip(tious, result["mAP"])]
    lines.append(f"average over the {len(tious)} thresholds: {100 * result['average_mAP']:.2f}")
    lines += [f"average over {name}: {100 * m:.2f}" for name, m in result.get("range_mAP", {}).items()]
    if per_class:
        width = max(len("class"), *(len(c) for c in per_class_AP))
        lines += ["", "AP (%) per class", f"{'class':<{width}} " + " ".join(f"{t:>6.2f}" for t in tious)]
        lines += [f"{c:<{width}} " + " ".join(f"{100 * a:6.2f}" for a in ap) for c, ap in per_class_AP.items()]
    return "\n".join(lines)


def choose_subsets(gt: GroundTruth, requested: list[str] | None, *, source: Path) -> list[str]:
    """The subsets of ``gt`` that ``--subset`` names, in sorted order: ``all`` is every one (unless the file has a
    subset of that name); none named is fine only when the file has one subset. ``source`` names the file in
    errors."""
    subsets = gt.subsets()
    if requested is None:
        if len(subsets) > 1:
            raise EvaluationError(f"{source}: has subsets {', '.join(subsets)}; choose one with --subset, several "
                                  f"(--subset {subsets[0]} {subsets[1]}) or --subset all")
        return subsets
    if "all" in requested and "all" not in subsets:
        if len(set(requested)) > 1:
            raise EvaluationError(f"--subset all means every subset of {source}; give it alone, or name the "
                                  f"subsets ({', '.join(subsets)})")
        return subsets
    unknown = sorted(set(requested) - set(subsets), key=requested.index)
    if unknown:
        raise EvaluationError(f"{source}: no subset {', '.join(map(repr, unknown))} (has {', '.join(subsets)})")
    return sorted(set(requested))


def pooled_ground_truth(gt: GroundTruth, subsets: list[str]) -> tuple[GroundTruth, str]:
    """The videos of ``subsets`` as one subset, and its name (the names joined by ``+``; the name itself for one
    subset): the evaluator takes one subset name, which then appears in its messages."""
    name = "+".join(subsets)
    videos = {vid: replace(v, subset=name) for vid, v in gt.videos.items() if v.subset in subsets}
    return GroundTruth(videos, gt.source, gt.warnings), name


def describe_subsets(gt: GroundTruth, subsets: list[str]) -> str:
    """One line: the subsets scored and their videos, e.g. ``subsets test (2 videos), validation (1 video): 3
    videos scored``."""
    counts = Counter(v.subset for v in gt.videos.values())

    def videos(n: int) -> str:
        return f"{n} video{'' if n == 1 else 's'}"

    each = ", ".join(f"{s or '(no subset)'} ({videos(counts[s])})" for s in subsets)
    return f"subset{'s' if len(subsets) > 1 else ''} {each}: {videos(sum(counts[s] for s in subsets))} scored"


def _fail(error: BaseException | str, status: int) -> int:
    print("evaluate.py: error: " + " ".join(str(error).split()), file=sys.stderr)  # one line
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gt", type=Path, help="ground truth in the ActivityNet schema")
    parser.add_argument("--pred", type=Path, help="detections in the ActivityNet results schema")
    parser.add_argument("--tiou", help="tIoU thresholds: 'a:b' (step 0.1), 'a:step:b' or '0.3,0.5' (default "
                                       "0.1:0.1:0.7)")
    parser.add_argument("--subset", nargs="+", metavar="SUBSET",
                        help="ground-truth subset(s) to evaluate, pooled into one evaluation; 'all': every subset of "
                             "the file (needed when the file has several)")
    parser.add_argument("--ambiguous", type=Path,
                        help="THUMOS14 ambiguous segments ('video start end'); overlapping detections are dropped")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--per-class", action="store_true", help="also print AP per class")
    parser.add_argument("--ignore-unknown-labels", action="store_true",
                        help="drop detections whose label has no ground truth in the subset instead of failing")
    parser.add_argument("--run", type=Path, help="evaluate this trained run folder instead of --gt / --pred")
    parser.add_argument("--preset", help="with --run: post-processing preset instead of the run's")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="with --run: override a post-processing field")
    args = parser.parse_args(argv)
    if args.run is not None:
        given = [f"--{k.replace('_', '-')}" for k in ("gt", "pred", "tiou", "ambiguous") if getattr(args, k)]
        if args.ignore_unknown_labels:
            given.append("--ignore-unknown-labels")
        if given:
            parser.error(f"--run evaluates with the run's own ground truth and evaluation settings: drop "
                         f"{', '.join(given)}")
        if args.subset is not None and len(args.subset) != 1:
            parser.error("--run evaluates one subset: give --subset one name")
        return _evaluate_run(args)
    if args.gt is None or args.pred is None:
        parser.error("give --gt and --pred (or --run RUN)")
    if args.preset or args.set:
        parser.error("--preset and --set re-group a run's scores: they need --run")

    try:
        tiou = parse_tiou(args.tiou or "0.1:0.1:0.7")
    except ValueError as e:
        parser.error(f"--tiou: {e}")  # exits with 2
    if args.out:
        try:
            check_writable(args.out)  # before the work, not after it
        except DiskFullError as e:
            return _fail(e, 4)
        except OSError as e:
            return _fail(e, 2)
    try:
        gt = load_ground_truth(args.gt)
        subsets = choose_subsets(gt, args.subset, source=args.gt)
        pooled, name = pooled_ground_truth(gt, subsets)
        detections = read_detection_table(args.pred)
        ambiguous = read_ambiguous(args.ambiguous) if args.ambiguous else None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", EvaluationWarning)  # counted in the notes below
                result = evaluate_detections(pooled, detections, tiou, subset=name, ambiguous=ambiguous,
                                             ignore_unknown_labels=args.ignore_unknown_labels)
        except EvaluationError as e:
            raise EvaluationError(f"{args.pred}: {e}") from None
    except (AnnotationError, DetectionFileError, EvaluationError) as e:
        return _fail(e, 2)

    print(describe_subsets(gt, subsets))
    notes = [f"{result.n_detections} detections evaluated"]
    if result.n_ambiguous:
        notes.append(f"{result.n_ambiguous} dropped for overlapping ambiguous segments")
    if result.n_unknown_label:
        notes.append(f"{result.n_unknown_label} dropped for labels without ground truth")
    if result.n_outside_subset:
        notes.append(f"{result.n_outside_subset} on videos outside the "
                     f"{'subsets' if len(subsets) > 1 else 'subset'} counted as false positives")
    if result.n_outside_video:
        notes.append(f"warning: {result.n_outside_video} reach outside [0, duration] of their video "
                     f"(evaluated as given, as the official code does)")
    print("; ".join(notes))
    print(format_table(result.to_json(), args.per_class))
    if args.out:
        try:
            payload = {**result.to_json(), "subsets": subsets, "videos_scored": len(pooled.videos)}
            atomic_write_text(args.out, json.dumps(payload, indent=1))
        except DiskFullError as e:
            return _fail(e, 4)
        except OSError as e:  # the folder changed since the check
            return _fail(f"{args.out}: cannot write it: {e.strerror or e}", 2)
    return 0


def _evaluate_run(args: argparse.Namespace) -> int:
    """``--run``: the run's test subset (or ``--subset``) evaluated with ``--preset`` / ``--set``, from its saved
    raw outputs where it has them; nothing in the run folder is written."""
    from clicktal.pipeline.data.cache import CacheError  # the run's stack (torch) only for --run
    from clicktal.pipeline.runs.engine import console_logging
    from clicktal.pipeline.runs.experiments import evaluate_run, parse_set

    if args.out:
        try:
            check_writable(args.out)
        except DiskFullError as e:
            return _fail(e, 4)
        except OSError as e:
            return _fail(e, 2)
    try:
        with console_logging():  # the library's messages (where the scores come from, warnings) on the console
            result = evaluate_run(args.run, subset=args.subset[0] if args.subset else None, preset=args.preset,
                                  overrides=parse_set(args.set), write=False)
    except (ValueError, KeyError, OSError, CacheError) as e:
        return _fail(e, 2)
    record = result.record
    if "scores_from" not in record:
        print(f"scores: the videos scored again from {record['features']} (the run saved no raw outputs of these "
              f"weights for {record['subset']!r})")
    post = record["postprocess"]
    print(f"run {args.run}, subset {record['subset']}, post-processing {post['preset']}"
          f"{' ' + json.dumps(post['params']) if post['params'] else ''}: {record['n_detections']} detections "
          f"evaluated")
    print(format_table(record["evaluation"], args.per_class))
    print(f"AVG (mean over {', '.join(f'{t:g}' for t in record['average_over'])}): "
          f"{100 * record['average_mAP']:.2f}")
    if args.out:
        try:
            atomic_write_text(args.out, json.dumps(record, indent=1))
        except DiskFullError as e:
            return _fail(e, 4)
        except OSError as e:
            return _fail(f"{args.out}: cannot write it: {e.strerror or e}", 2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
