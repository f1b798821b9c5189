"""Small generated videos for tests and benchmarks (PyAV writes them): patterns with known motion, odd and
variable frame rates, rotation metadata, audio-only and damaged files."""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np


def texture(height: int, width: int, seed: int = 0, blur: float = 2.0) -> np.ndarray:
    """A smooth random grayscale texture (uint8), good for optical flow (no aperture problem)."""
    import cv2

    rng = np.random.default_rng(seed)
    img = rng.random((height, width)).astype(np.float32)
    img = cv2.GaussianBlur(img, (0, 0), blur)
    img = (img - img.min()) / max(float(np.ptp(img)), 1e-6)
    return (img * 255).astype(np.uint8)


def translating(width: int, height: int, dx: float = 2.0, dy: float = 0.0,
                seed: int = 0) -> Callable[[int], np.ndarray]:
    """Frame ``i`` of a texture moving ``(dx, dy)`` pixels per frame (content moves right/down for positive values)."""
    import cv2

    pad = 64
    big = texture(height + 2 * pad, width + 2 * pad, seed)

    def frame(i: int) -> np.ndarray:
        m = np.float32([[1, 0, dx * i], [0, 1, dy * i]])
        moved = cv2.warpAffine(big, m, (big.shape[1], big.shape[0]), borderMode=cv2.BORDER_WRAP)
        crop = moved[pad:pad + height, pad:pad + width]
        return np.repeat(crop[:, :, None], 3, axis=2)

    return frame


def affine_motion_pair(matrix: np.ndarray, height: int, width: int, *, margin: int = 30, seed: int = 0,
                       blur: float = 3.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two ``[height, width]`` uint8 frames of a smooth texture, the second moved by the 2 x 3 affine ``matrix``
    about the frame's centre (bicubic), and the true flow ``[height, width, 2]`` of the first frame's pixels. The
    texture reaches ``margin`` pixels beyond the frame, so content moves in from real texture, not a border."""
    import cv2

    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.random((height + 2 * margin, width + 2 * margin)).astype(np.float32), (0, 0), blur)
    base = (base - base.min()) / max(float(np.ptp(base)), 1e-6) * 255
    centre = np.array([margin + (width - 1) / 2, margin + (height - 1) / 2])
    a, t = np.asarray(matrix, np.float64)[:, :2], np.asarray(matrix, np.float64)[:, 2]
    about_centre = np.hstack([a, (t + centre - a @ centre)[:, None]]).astype(np.float32)
    moved = cv2.warpAffine(base, about_centre, base.shape[::-1], flags=cv2.INTER_CUBIC)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    points = np.stack([xs + margin, ys + margin], -1)
    truth = (points - centre) @ a.T + t + centre - points
    crop = (slice(margin, margin + height), slice(margin, margin + width))
    return (base[crop].round().astype(np.uint8), moved[crop].round().clip(0, 255).astype(np.uint8),
            truth.astype(np.float32))


def counter(width: int, height: int) -> Callable[[int], np.ndarray]:
    """Frame ``i`` encodes ``i`` (< 256) in flat colours that survive lossy coding; read it with
    :func:`read_counter`."""
    def frame(i: int) -> np.ndarray:
        a = np.zeros((height, width, 3), np.uint8)
        a[..., 0] = (i % 16) * 16 + 8
        a[..., 1] = 128
        a[..., 2] = (i // 16) * 16 + 8
        return a

    return frame


def read_counter(frame: np.ndarray) -> int:
    r, b = (float(np.median(frame[..., c])) for c in (0, 2))
    return int(np.clip((r - 8) / 16 + 0.5, 0, 15)) + 16 * int(np.clip((b - 8) / 16 + 0.5, 0, 15))


def write_video(path: str | Path, frame: Callable[[int], np.ndarray], num_frames: int, *, fps: float | Fraction = 25,
                pts_s: list[float] | None = None, codec: str = "libx264", rotation: int = 0, crf: int = 18,
                audio: bool = False) -> Path:
    """Write ``num_frames`` frames; ``pts_s`` gives explicit presentation times (variable frame rate)."""
    import av

    path = Path(path)
    rate = Fraction(fps).limit_denominator(100000) if not isinstance(fps, Fraction) else fps
    first = frame(0)
    h, w = first.shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": str(crf), "preset": "ultrafast"}
        if pts_s is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            stream.set_display_rotation(rotation)
        astream = out.add_stream("aac", rate=16000) if audio else None
        for i in range(num_frames):
            vf = av.VideoFrame.from_ndarray(frame(i) if i else first, format="rgb24")
            if pts_s is not None:
                vf.pts = int(round(pts_s[i] * 1000))
                vf.time_base = Fraction(1, 1000)
            for packet in stream.encode(vf):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if astream is not None:
            _write_tone(out, astream, num_frames / float(rate))
    return path


def _write_tone(out, stream, seconds: float) -> None:
    import av

    sr = stream.codec_context.sample_rate
    n = int(seconds * sr)
    t = np.arange(n) / sr
    samples = (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    size = stream.codec_context.frame_size or 1024
    for start in range(0, n, size):
        chunk = samples[start:start + size]
        if len(chunk) < size:
            chunk = np.pad(chunk, (0, size - len(chunk)))
        af = av.AudioFrame.from_ndarray(chunk[None], format="fltp", layout="mono")
        af.sample_rate = sr
        af.pts = start
        for packet in stream.encode(af):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)


def write_audio_only(path: str | Path, seconds: float = 1.0) -> Path:
    import av

    path = Path(path)
    with av.open(str(path), "w") as out:
        _write_tone(out, out.add_stream("aac", rate=16000), seconds)
    return path


def truncate(path: str | Path, fraction: float = 0.5) -> Path:
    """Cut a file to ``fraction`` of its bytes (a download that stopped half-way)."""
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


DEMO_CLASSES = {"MoveRight": (1.0, 0.0), "MoveDown": (0.0, 1.0), "MoveLeftUp": (-0.7, -0.7)}


def write_demo_videos(out_dir: str | Path, *, n_videos: int = 4, duration_s: float = 8.0, fps: int = 25,
                      size: tuple[int, int] = (160, 120), seed: int = 0) -> dict:
    """Write ``n_videos`` untrimmed H.264 videos to ``out_dir`` and return their ground truth (ActivityNet schema,
    also written as ``groundtruth.json``).

    A textured square moves at 60 px/s during each of two action instances (the class sets the direction, each
    instance a fifth of the video) and rests in between. Half the videos are ``training``, half ``validation``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    width, height = size
    patch = (rng.random((24, 24, 3)) * 255).astype(np.uint8)
    database = {}
    for v in range(n_videos):
        name = f"demo_{v:02d}"
        labels = rng.choice(sorted(DEMO_CLASSES), size=2)
        lengths = rng.uniform(0.15, 0.25, size=2) * duration_s
        starts = [rng.uniform(0.1 * duration_s, duration_s / 2 - lengths[0]),
                  rng.uniform(0.55 * duration_s, 0.95 * duration_s - lengths[1])]
        segments = [(float(s), float(s + d), str(c)) for s, d, c in zip(starts, lengths, labels)]
        positions = [np.array([width / 2 - 12, height / 2 - 12])]
        for i in range(1, round(duration_s * fps)):
            pos = positions[-1]
            for s, e, c in segments:
                if s <= i / fps < e:
                    pos = pos + 60.0 / fps * np.array(DEMO_CLASSES[c])
            positions.append(np.clip(pos, 0, [width - 24, height - 24]))

        def frame(i: int, positions=positions) -> np.ndarray:
            img = np.full((height, width, 3), 40, np.uint8)
            x, y = (int(round(p)) for p in positions[i])
            img[y:y + 24, x:x + 24] = patch
            return img

        write_video(out_dir / f"{name}.mp4", frame, len(positions), fps=fps)
        database[name] = {"subset": "training" if v < n_videos // 2 else "validation", "duration": duration_s,
                          "annotations": [{"segment": [s, e], "label": c} for s, e, c in segments]}
    gt = {"version": "clicktal-demo", "database": database}
    (out_dir / "groundtruth.json").write_text(json.dumps(gt, indent=1))
    return gt
