"""Data the project makes itself, for the demo and for tests on machines without the shared benchmark kit.

* :func:`write_demo_videos` writes small untrimmed videos with PyAV (a textured square that moves during "actions" and
  rests in between; the class sets the direction of motion) and returns their ground truth in the ActivityNet schema.
* :func:`synthesize_features` writes two-stream-shaped features for any ground truth into a :class:`FeatureCache`:
  class prototypes strongest in the middle of each instance, a per-video scene context, action-like distractors in
  the background and temporally correlated noise, so that clicks, mining and boundaries matter. Never a benchmark of
  real data: its metadata says ``extractor: synthetic-clicktal``.
"""
from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np

from .annotations import GroundTruth, Segment, VideoAnnotation
from .cache import FeatureCache, FeatureMeta
from .geometry import FeatureGeometry

DEMO_CLASSES = {"MoveRight": (1.0, 0.0), "MoveDown": (0.0, 1.0), "MoveLeftUp": (-0.7, -0.7)}


def write_demo_videos(out_dir: str | Path, *, n_videos: int = 4, duration_s: float = 8.0, fps: int = 25,
                      size: tuple[int, int] = (160, 120), seed: int = 0) -> dict:
    """Write ``n_videos`` H.264 videos to ``out_dir`` and return their ground truth (ActivityNet schema).

    Every video has two action instances of random classes (the square moves at 60 px/s, each instance a fifth of
    the video) separated by rest.
    Half the videos are ``training``, half ``validation``.
    """
    import av  # extraction dependency; imported here so the rest of the module needs numpy only

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    width, height = size
    texture = (rng.random((24, 24, 3)) * 255).astype(np.uint8)
    database = {}
    for v in range(n_videos):
        name = f"demo_{v:02d}"
        labels = rng.choice(sorted(DEMO_CLASSES), size=2)
        lengths = rng.uniform(0.15, 0.25, size=2) * duration_s
        starts = [rng.uniform(0.1 * duration_s, duration_s / 2 - lengths[0]),
                  rng.uniform(0.55 * duration_s, 0.95 * duration_s - lengths[1])]
        segments = [(float(s), float(s + d), str(c)) for s, d, c in zip(starts, lengths, labels)]
        with av.open(str(out_dir / f"{name}.mp4"), "w") as container:
            stream = container.add_stream("libx264", rate=Fraction(fps))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            pos = np.array([width / 2 - 12, height / 2 - 12])
            for i in range(round(duration_s * fps)):
                t = i / fps
                for s, e, c in segments:
                    if s <= t < e:
                        pos = pos + 60.0 / fps * np.array(DEMO_CLASSES[c])
                pos = np.clip(pos, 0, [width - 24, height - 24])
                frame = np.full((height, width, 3), 40, np.uint8)
                x, y = (int(round(p)) for p in pos)
                frame[y:y + 24, x:x + 24] = texture
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        database[name] = {"subset": "training" if v < n_videos // 2 else "validation", "duration": duration_s,
                          "annotations": [{"segment": [s, e], "label": c} for s, e, c in segments]}
    gt = {"version": "clicktal-demo", "database": database}
    (out_dir / "groundtruth.json").write_text(json.dumps(gt, indent=1))
    return gt


def random_ground_truth(*, n_videos: int = 60, classes: tuple[str, ...] = ("A", "B", "C", "D", "E"),
                        duration_range: tuple[float, float] = (60.0, 180.0), seed: int = 0,
                        subsets: tuple[str, str] = ("training", "test")) -> GroundTruth:
    """A THUMOS-like ground truth: one or two classes per video, 2-8 instances of 2-12 s, background between.
    The first half of the videos is ``subsets[0]``, the rest ``subsets[1]``."""
    rng = np.random.default_rng(seed)
    videos = {}
    for v in range(n_videos):
        duration = float(rng.uniform(*duration_range))
        labels = rng.choice(classes, size=int(rng.integers(1, 3)), replace=False)
        n = int(rng.integers(2, 9))
        lengths = rng.uniform(2, 12, size=n)
        lengths *= min(1.0, 0.6 * duration / lengths.sum())  # short videos keep room for background
        gaps = rng.dirichlet(np.ones(n + 1)) * max(duration - lengths.sum(), 0.0)
        starts = np.cumsum(np.concatenate([[gaps[0]], (lengths + gaps[1:])[:-1]]))
        segs = tuple(Segment(float(s), float(min(s + d, duration)), str(rng.choice(labels)))
                     for s, d in zip(starts, lengths))
        name = f"synth_{v:04d}"
        videos[name] = VideoAnnotation(name, subsets[0] if v < n_videos // 2 else subsets[1], duration, segs)
    return GroundTruth(videos, source=f"random_ground_truth(seed={seed})")


def synthesize_features(gt: GroundTruth, out_dir: str | Path, *, dim: int = 256, seed: int = 0,
                        geometry: FeatureGeometry = FeatureGeometry(), latent: int = 32) -> FeatureCache:
    """Write ``[T, dim]`` features (RGB half then flow half) for every video of ``gt`` into a cache at ``out_dir``."""
    rng = np.random.default_rng(seed)
    classes = gt.classes()
    unit = lambda *s: (lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True))(rng.standard_normal(s))
    middle, edge, background = 1.5 * unit(len(classes), latent), unit(latent), 0.8 * unit(latent)
    scene = 0.5 * middle / 1.5 + 0.8 * unit(len(classes), latent)
    half = dim // 2
    project = [rng.standard_normal((latent, n)) / math.sqrt(latent) for n in (half, dim - half)]
    meta = FeatureMeta(geometry, {"rgb": (0, half), "flow": (half, dim)}, extractor="synthetic-clicktal",
                       weights_sha256={"rgb": "untrained", "flow": "untrained"}, options={"seed": seed})
    cache = FeatureCache(out_dir)
    for i, (vid, video) in enumerate(sorted(gt.videos.items())):
        vrng = np.random.default_rng([seed, i])
        T = geometry.snippet_count(video.duration_s)
        t = geometry.centre_s(np.arange(T))
        main = classes.index(video.segments[0].label) if video.segments else int(vrng.integers(len(classes)))
        z = np.tile(background + 0.6 * scene[main], (T, 1))
        motion = np.full(T, vrng.uniform(0.1, 0.4))
        for seg in video.segments:
            c = classes.index(seg.label)
            phase = np.clip((t - seg.start_s) / max(seg.end_s - seg.start_s, 1e-3), 0, 1)
            inside = ((t >= seg.start_s) & (t <= seg.end_s)).astype(float)
            z += inside[:, None] * (np.sin(np.pi * phase)[:, None] * middle[c] + 0.7 * edge)
            motion = np.maximum(motion, inside)
        for _ in range(vrng.poisson(1 + T / 300)):  # action-like background: near misses of the main class
            near = np.abs(t - vrng.uniform(0, video.duration_s)) < vrng.uniform(0.5, 3)
            z[near] += 0.5 * middle[main]
        noise = vrng.standard_normal((T, latent)) * 0.6
        for k in range(1, T):
            noise[k] = 0.7 * noise[k - 1] + math.sqrt(1 - 0.49) * noise[k]
        z += noise
        rgb = np.logaddexp(0, z @ project[0])
        flow = np.logaddexp(0, (motion[:, None] * z) @ project[1])
        cache.write(vid, np.concatenate([rgb, flow], axis=1), meta)
    return cache
