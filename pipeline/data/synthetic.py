"""Data the project makes itself, for the demo and for tests on machines without the shared benchmark kit
(videos with ground truth are :func:`clicktal.extractors.testvideos.write_demo_videos`).

* :func:`synthesize_features` writes two-stream-shaped features for any ground truth into a :class:`FeatureCache`:
  class prototypes strongest in the middle of each instance, a per-video scene context, action-like distractors in
  the background and temporally correlated noise, so that clicks, mining and boundaries matter. Never a benchmark of
  real data: its metadata says ``extractor: synthetic-clicktal``.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from clicktal.pipeline.data.annotations import GroundTruth, Segment, VideoAnnotation
from clicktal.pipeline.data.cache import FeatureCache, FeatureMeta
from clicktal.pipeline.core.geometry import FeatureGeometry

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
