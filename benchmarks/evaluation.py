#!/usr/bin/env python
"""Speed of the detection evaluator: the whole command against the official ActivityNet code, and the evaluation
alone against a per-detection loop port of it (:mod:`clicktal.pipeline.evaluation.reference`, the port the tests
compare against).

    python benchmarks/evaluation.py [--official ActivityNet/Evaluation] [--detections 212000] [--repeats 3] [--quick]

Random detections on THUMOS14's test videos (mostly jittered copies of ground-truth instances, the rest anywhere
with any class), 7 tIoUs (0.1:0.7), written as one ActivityNet results file.

Whole command: ``tools/evaluate.py`` and the official evaluator each run as a fresh process on that file
(interpreter start, imports, reading, evaluation). ``--official`` is the ``Evaluation`` folder of a checkout of
github activitynet/ActivityNet (its ``eval_detection.py`` and ``utils.py``; they need pandas): that code is Python 2,
so it is converted mechanically into a temporary folder (lib2to3, Python <= 3.12, and ``astype(np.float)`` ->
``astype(float)`` for numpy >= 1.24) and run as ``ANETdetection(..., check_status=False).evaluate()``. Without
``--official`` the whole-command row times the in-repo loop port instead, and says so.

Every row runs in this one process's run on the same input, median of the repeats; the run checks that the
per-class APs are bit-identical.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from clicktal.pipeline.data.annotations import GroundTruth, load_ground_truth
from clicktal.pipeline.data.detections import Detection, detections_to_json, write_detections
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


# Prints {"classes": [...], "ap": [[K] per class]} (classes in ground-truth order) for the whole-command check.
OFFICIAL_RUNNER = """
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from eval_detection import ANETdetection
a = ANETdetection(sys.argv[2], sys.argv[3], subset=sys.argv[4], tiou_thresholds=np.array(json.loads(sys.argv[5])),
                  verbose=False, check_status=False)
a.evaluate()
print(json.dumps({"classes": list(a.activity_index), "ap": [a.ap[:, i].tolist() for i in a.activity_index.values()]}))
"""

PORT_RUNNER = """
import json, sys
from clicktal.pipeline.evaluation.reference import reference_anet_detection
database = json.load(open(sys.argv[2]))["database"]
results = json.load(open(sys.argv[3]))["results"]
ap, _ = reference_anet_detection(database, results, sys.argv[4], json.loads(sys.argv[5]))
print(json.dumps({"classes": list(ap), "ap": [ap[c].tolist() for c in ap]}))
"""


def python3_copy_of_official(evaluation_dir: Path, into: Path) -> Path:
    """The official Python 2 evaluator converted mechanically to Python 3 in ``into``; nothing else changed."""
    for name in ("eval_detection.py", "utils.py"):
        if not (evaluation_dir / name).is_file():
            raise SystemExit(f"--official {evaluation_dir}: no {name} (give the Evaluation folder of a checkout "
                             f"of github activitynet/ActivityNet)")
        shutil.copy(evaluation_dir / name, into / name)
    out = subprocess.run([sys.executable, "-W", "ignore", "-m", "lib2to3", "-w", "-n", "--no-diffs",
                          str(into / "eval_detection.py"), str(into / "utils.py")], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"lib2to3 could not convert the official code (it needs Python <= 3.12):\n{out.stderr}")
    code = (into / "eval_detection.py").read_text().replace("astype(np.float)", "astype(float)")
    (into / "eval_detection.py").write_text(code)
    return into


def timed_command(cmd: list[str], repeats: int) -> tuple[float, str]:
    """Median wall time of running ``cmd`` as a fresh process, and its last stdout."""
    times, stdout = [], ""
    for _ in range(repeats):
        t = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True)
        times.append(time.perf_counter() - t)
        if out.returncode:
            raise SystemExit(f"{' '.join(cmd[:3])} ... failed:\n{out.stderr[-3000:]}")
        stdout = out.stdout
    return statistics.median(times), stdout


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
    parser.add_argument("--detections", type=int, default=212_000)
    parser.add_argument("--tiou", default="0.1:0.7")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="20,000 detections")
    parser.add_argument("--official", type=Path,
                        help="the Evaluation folder of a checkout of github activitynet/ActivityNet (needs pandas)")
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

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        det_file, out_file = tmp / "detections.json", tmp / "results.json"
        write_detections(det_file, detections)
        t_cmd, _ = timed_command([sys.executable, str(ROOT / "tools" / "evaluate.py"), "--gt", str(args.gt),
                                  "--pred", str(det_file), "--subset", args.subset, "--tiou", args.tiou,
                                  "--out", str(out_file)], args.repeats)
        cmd_ap = json.loads(out_file.read_text())["per_class_AP"]
        if args.official:
            code = python3_copy_of_official(args.official.resolve(), Path(tempfile.mkdtemp(dir=tmp)))
            other_name = "official ActivityNet `ANETdetection` (pandas, joblib), whole command"
            runner = OFFICIAL_RUNNER
        else:
            code, other_name, runner = tmp, "loop port of the official code, whole command (not the official " \
                                            "code: pass --official)", PORT_RUNNER
        t_other, printed = timed_command([sys.executable, "-c", runner, str(code), str(args.gt), str(det_file),
                                          args.subset, json.dumps(list(thresholds))], args.repeats)
    other = json.loads(printed)
    cmd_identical = all(tuple(cmd_ap[c]) == tuple(ap) for c, ap in zip(other["classes"], other["ap"]))

    print(f"Detection mAP on {args.gt.name} ({args.subset}: {len(videos)} videos, {n_gt:,} ground-truth segments), "
          f"{n:,} random detections, {len(thresholds)} tIoUs ({args.tiou})")
    print(f"device: {cpu_name()} ({os.cpu_count()} logical CPUs); "
          f"Python {platform.python_version()}, numpy {np.__version__}; "
          f"median of {args.repeats} runs\n")
    print("| what is timed | implementation | time (s) | detections / s | speed-up |")
    print("|---|---|---:|---:|---:|")
    for what, name, t, base in [
            ("whole command (fresh process, file in, mAP out)", "clicktal `tools/evaluate.py`", t_cmd, t_other),
            ("", other_name, t_other, t_other),
            ("evaluation of parsed detections", "clicktal `evaluate_detections`", t_ours, t_loop),
            ("", "per-detection loop port of the official code", t_loop, t_loop)]:
        print(f"| {what} | {name} | {t:.3f} | {n / t:,.0f} | {base / t:.1f}x |")
    print(f"\nsame result, whole command: {'yes' if cmd_identical else 'NO'} (per-class AP bit-identical: "
          f"{cmd_identical}); evaluation: {'yes' if identical else 'NO'} (per-class AP bit-identical: {identical}; "
          f"max |mAP difference| {np.max(np.abs(np.array(ours.mAP) - loop_map)):.1e})")
    print("mAP (%): " + ", ".join(f"{t:.1f}: {100 * m:.2f}" for t, m in zip(thresholds, ours.mAP)))
    return 0 if identical and cmd_identical else 1


if __name__ == "__main__":
    sys.exit(main())
