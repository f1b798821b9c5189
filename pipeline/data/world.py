"""The proxy world: two-stream snippet features for a real annotation set, made to behave like real I3D features.

Real THUMOS14 / GTEA features cannot be fetched here, so benchmarks pair the real temporal structure (durations,
segments, human clicks) with these synthetic vectors. The world is calibrated once, on real-feature statistics
(:mod:`clicktal.pipeline.data.feature_stats`) and a few baseline rows, then frozen under :data:`WORLD_VERSION`:
every other number measured on it is a prediction (docs/world.md has the fit and the rules).

What a video is made of (a latent of :attr:`WorldParams.latent` dimensions, projected to the feature space):

* a scene: a class-correlated context plus the video's own, drifting slowly in time;
* actions that *replace* part of the scene (``replace``; the rest of the context persists) with a class pattern:
  a discriminative middle, onset and offset phases partly shared across classes, and an action direction shared
  by all classes;
* signal boundaries that differ from the annotated ones (``boundary_jitter_s``: annotators disagree by about a
  second), and overlapping or nested instances (THUMOS14's CliffDiving inside Diving) rendered together;
* action-like background: run-ups before actions and isolated near-misses of the video's main class;
* temporally correlated noise, and flow that scales with motion;
* observed through a rectifier (``sharpness``), so a share of values sits at zero as in ReLU-pooled features.

Ground truth whose ``duration`` is shorter than its own annotations (17 videos of the SF-Net release's THUMOS14
file: 9 test and 8 validation videos) gets features that cover the annotations; :func:`write_world` reports how
many videos were extended.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WORLD_VERSION = "1"
FPS = 25.0
SNIPPET_FRAMES = 16


@dataclass(frozen=True)
class WorldParams:
    """Every parameter of the world (``difficulty`` scales noise and confusers, as synth.py's does)."""

    latent: int = 48
    middle_norm: float = 1.233  # size of a class's discriminative middle
    phase_shared: float = 0.8  # onset / offset: share of the direction all classes have in common
    common_action: float = 1.928  # size of the direction every action shares (actionness)
    replace: float = 0.8348  # share of the scene an action replaces (the rest persists as context)
    scene_norm: float = 2.253  # size of the scene
    scene_rho: float = 0.35  # correlation of a video's scene with its main class's context
    scene_drift: float = 0.2293  # slow drift of the scene over the video (relative size)
    drift_corr_s: float = 20.0  # time constant of that drift, seconds
    background_norm: float = 1.678  # a direction every snippet shares
    boundary_jitter_s: float = 1.0  # std of signal boundaries around the annotated ones
    run_up_prob: float = 0.5  # chance an action has an action-like run-up before it
    run_up_strength: float = 0.45
    near_miss_rate: float = 1.0  # isolated near-misses per video (plus one per 400 snippets)
    near_miss_strength: float = 0.5
    noise: float = 0.2134  # latent noise (times difficulty)
    noise_corr: float = 0.3129  # lag-1 correlation of the latent noise at 0.64 s snippets
    obs_noise: float = 0.05  # feature-space noise (times difficulty)
    bias_rgb: float = 0.2488  # mean of the per-dimension biases
    bias_flow: float = -0.3
    bias_spread: float = 0.1  # std of the per-dimension biases
    sharpness: float = 2.616  # rectifier log(1 + e^(s x)) / s: larger is closer to ReLU (more exact zeros)

    @classmethod
    def from_dict(cls, values: dict) -> "WorldParams":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown world parameter(s) {unknown}; known: {sorted(names)}")
        return cls(**values)


def snippet_count(extent_s: float, fps: float = FPS, snippet_frames: int = SNIPPET_FRAMES) -> int:
    return max(1, math.ceil(extent_s * fps / snippet_frames))


def video_extent(entry: dict) -> float:
    """The seconds a video's features must cover: its ``duration``, or its last annotation's end when later."""
    ends = [float(a["segment"][1]) for a in entry.get("annotations", [])]
    return max([float(entry["duration"]), *ends])


def _video_rng(seed: int, name: str) -> np.random.Generator:
    """A video's generator: a function of the seed and its name only, so its features do not depend on which other
    videos are generated with it (``--max-videos``)."""
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])


class World:
    """What every video shares: class prototypes, scene contexts and the projection to feature space."""

    def __init__(self, classes: list[str], dim: int, seed: int, *, difficulty: float = 1.0,
                 params: WorldParams = WorldParams(), fps: float = FPS, snippet_frames: int = SNIPPET_FRAMES):
        if dim < 2:
            raise ValueError(f"dim {dim}: need at least 2 (an RGB and a flow half)")
        p = self.params = params
        rng = np.random.default_rng([seed, 0xA11])
        self.classes, self.index = list(classes), {c: i for i, c in enumerate(classes)}
        self.difficulty, self.fps, self.snippet_frames = difficulty, fps, snippet_frames
        self.snippet_s = snippet_frames / fps
        n, L = len(classes), p.latent

        def unit(*shape):
            v = rng.standard_normal(shape)
            return v / np.linalg.norm(v, axis=-1, keepdims=True)

        self.middle = unit(n, L) * p.middle_norm
        self.onset = p.phase_shared * unit(L) + (1 - p.phase_shared) * unit(n, L)
        self.offset = p.phase_shared * unit(L) + (1 - p.phase_shared) * unit(n, L)
        self.action = unit(L) * p.common_action
        self.context = 0.5 * self.middle / p.middle_norm + 0.85 * unit(n, L)
        self.background = unit(L) * p.background_norm
        half = dim // 2
        self.w = [rng.standard_normal((L, k)) / math.sqrt(L) for k in (half, dim - half)]
        self.b = [rng.normal(p.bias_rgb, p.bias_spread, half), rng.normal(p.bias_flow, p.bias_spread, dim - half)]

    def video(self, annotations: list[dict], extent_s: float, rng: np.random.Generator) -> np.ndarray:
        """Features ``[T, dim]`` (RGB half then flow half) of a video of ``extent_s`` seconds with ``annotations``
        (ActivityNet entries: ``label``, ``segment``)."""
        p, d = self.params, self.difficulty
        T = snippet_count(extent_s, self.fps, self.snippet_frames)
        t = (np.arange(T) + 0.5) * self.snippet_s
        labels = [self.index[a["label"]] for a in annotations if a["label"] in self.index]
        main = max(set(labels), key=labels.count) if labels else int(rng.integers(len(self.classes)))

        own = rng.standard_normal(p.latent)
        scene = p.scene_rho * self.context[main] + math.sqrt(1 - p.scene_rho**2) * own / np.linalg.norm(own)
        scene = p.scene_norm * scene / np.linalg.norm(scene)
        drift = _ar1(rng.standard_normal((T, p.latent)), math.exp(-self.snippet_s / p.drift_corr_s))
        scene_t = scene + p.scene_drift * p.scene_norm * drift / math.sqrt(p.latent)
        context = self.background + d * scene_t

        weight = np.zeros(T)
        pattern = np.zeros((T, p.latent))
        motion = np.full(T, rng.uniform(0.15, 0.5))  # camera motion in background
        for a in annotations:
            c = self.index.get(a["label"])
            if c is None:
                continue
            s, e = (float(x) for x in a["segment"])
            # where the action's signal runs, around the annotated boundaries
            s, e = s + rng.normal(0, p.boundary_jitter_s), e + rng.normal(0, p.boundary_jitter_s)
            if e - s < self.snippet_s / 2:
                mid = (s + e) / 2
                s, e = mid - self.snippet_s / 4, mid + self.snippet_s / 4
            inside = (t >= s) & (t <= e)
            edge = np.clip(1 - np.minimum(np.abs(t - s), np.abs(t - e)) / self.snippet_s, 0, 1)
            w = np.where(inside, 1.0, 0.5 * edge)
            phase = np.clip((t - s) / (e - s), 0, 1)
            shape = (np.sin(np.pi * phase) ** 1.5)[:, None] * self.middle[c] \
                + np.clip(1 - phase / 0.25, 0, 1)[:, None] * self.onset[c] \
                + np.clip(1 - (1 - phase) / 0.25, 0, 1)[:, None] * self.offset[c] + self.action
            pattern += w[:, None] * shape
            weight += w
            motion = np.maximum(motion, w * rng.uniform(0.8, 1.2))
            if rng.random() < p.run_up_prob:  # run-up: background in the ground truth, partly action-like
                pre = (t >= s - (e - s) * rng.uniform(0.3, 1.0)) & (t < s)
                pattern[pre] += p.run_up_strength * d * self.middle[c] + 0.3 * self.onset[c]
                motion[pre] = np.maximum(motion[pre], 0.6)
        # overlapping instances share the snippet: their patterns are averaged where the weights add past 1
        share = np.maximum(weight, 1.0)
        pattern /= share[:, None]
        weight = np.minimum(weight, 1.0)
        for _ in range(rng.poisson(p.near_miss_rate + T / 400)):  # failed attempts, replays
            near = np.abs(t - rng.uniform(0, extent_s)) < rng.uniform(1.0, 6.0) / 2
            pattern[near] += p.near_miss_strength * d * self.middle[main]
            motion[near] = np.maximum(motion[near], 0.7)

        a = p.noise_corr ** (self.snippet_s / (SNIPPET_FRAMES / FPS))
        noise = _ar1(rng.standard_normal((T, p.latent)), a) * p.noise * d
        z = (1 - p.replace * weight)[:, None] * context + pattern + noise
        out = []
        for stream, (w, b) in enumerate(zip(self.w, self.b)):
            x = (motion[:, None] * z if stream else z) @ w + b
            x = np.logaddexp(0.0, p.sharpness * x) / p.sharpness
            out.append(x + rng.standard_normal(x.shape) * p.obs_noise * d)
        return np.maximum(np.concatenate(out, axis=1), 0.0).astype(np.float32)


def _ar1(innovations: np.ndarray, a: float) -> np.ndarray:
    """A unit-variance AR(1) process along axis 0 with lag-1 correlation ``a``."""
    out = innovations.copy()
    scale = math.sqrt(1 - a * a)
    for i in range(1, len(out)):
        out[i] = a * out[i - 1] + scale * out[i]
    return out


def write_world(gt_path: str | os.PathLike, out: str | os.PathLike, *, seed: int = 0, dim: int = 2048,
                max_videos: int = 0, fps: float = FPS, snippet_frames: int = SNIPPET_FRAMES, difficulty: float = 1.0,
                params: WorldParams = WorldParams()) -> dict:
    """Features of every video of the ground truth at ``gt_path`` (``max_videos``: the first N of each subset,
    sorted) into ``out`` in synth.py's layout: ``features/<video>.npy``, ``annotations.json`` (the ground truth
    with ``feature_meta``) and ``meta.json`` (every parameter, :data:`WORLD_VERSION`, the videos whose features
    were extended to cover annotations past their ``duration``). Returns the meta."""
    gt = json.loads(Path(gt_path).read_text(encoding="utf-8-sig"))
    db = gt["database"]
    # the classes of the whole file: a video's features must not depend on which videos are generated with it
    classes = sorted({a["label"] for v in db.values() for a in v["annotations"]})
    if max_videos:
        kept, per_subset = {}, {}
        for name in sorted(db):
            subset = db[name]["subset"]
            if per_subset.get(subset, 0) < max_videos:
                kept[name], per_subset[subset] = db[name], per_subset.get(subset, 0) + 1
        db = kept
    world = World(classes, dim, seed, difficulty=difficulty, params=params, fps=fps, snippet_frames=snippet_frames)
    out = Path(out)
    (out / "features").mkdir(parents=True, exist_ok=True)
    extended = {}
    for name in sorted(db):
        entry = db[name]
        extent = video_extent(entry)
        if extent > float(entry["duration"]):
            extended[name] = {"duration": float(entry["duration"]), "covered_to": extent}
        feats = world.video(entry["annotations"], extent, _video_rng(seed, name))
        tmp = out / "features" / f".{name}.npy.tmp"
        with open(tmp, "wb") as f:
            np.save(f, feats)
        os.replace(tmp, out / "features" / f"{name}.npy")
    meta = {"world_version": WORLD_VERSION, "generator": "clicktal.pipeline.data.world", "fps": fps,
            "snippet_frames": snippet_frames, "dim": dim, "rgb_dim": dim // 2, "seed": seed,
            "difficulty": difficulty, "params": dataclasses.asdict(params), "classes": classes, "videos": len(db),
            "extended_videos": extended, "ground_truth": str(gt_path)}
    (out / "annotations.json").write_text(json.dumps(dict(gt, database=db, feature_meta=meta)))
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


__all__ = ["WORLD_VERSION", "WorldParams", "World", "write_world", "video_extent", "snippet_count"]
