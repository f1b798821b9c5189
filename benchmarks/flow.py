#!/usr/bin/env python
"""Torch Dual TV-L1 (``--flow tvl1-torch``) against OpenCV's: agreement and speed, side by side in one run.

    python benchmarks/flow.py                 # about 10 minutes on 2 CPU cores
    python benchmarks/flow.py --quick         # smaller frames and fewer pairs (about 2 minutes)
    python benchmarks/flow.py --skip-agreement / --skip-speed

Agreement (OpenCV's CPU ``DualTVL1OpticalFlow`` as the reference, both with extractors/flow.py's parameters):
  * real frames: consecutive pairs of the two benchkit sample videos at the extraction size (shorter side 256;
    --quick 128): mean endpoint error (EPE) between the two flows, its 99th percentile, and the mean |flow|;
  * generated frames with known motion (a translation, a rotation, a zoom of a smooth texture): EPE of each
    implementation to the truth and between the two, away from the borders;
  * features: cosine similarity of flow-stream I3D features (a seeded untrained I3D, which is enough to compare
    two inputs) from one 16-frame snippet (--quick 8) of each video, flow from OpenCV vs from torch.
Speed: frame pairs/s at 224 x 224 and 256 x 340 for OpenCV CPU (1 and 2 worker processes), torch CPU (batch 1 and
all pairs at once), and, where a GPU is visible, torch CUDA at batch 1 / 16 / 64 / 256 with peak GPU memory and
OpenCV CUDA if this OpenCV has it. Without a GPU those rows say so; the script runs unchanged on a GPU machine.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from extraction import BENCHKIT, device_line, table  # noqa: E402

from clicktal.extractors import flow as F  # noqa: E402
from clicktal.extractors.decode import Video  # noqa: E402
from clicktal.extractors.testvideos import affine_motion_pair  # noqa: E402
from clicktal.extractors.i3d import InceptionI3d  # noqa: E402
from clicktal.extractors.networks import init_untrained  # noqa: E402
from clicktal.extractors.tvl1_torch import tvl1_flow  # noqa: E402

VIDEOS = ("v_GGSY1Qvo990", "v_ZNVhz7ctTq0")
PARAMS = F.TVL1_TORCH_KWARGS


def gray_frames(name: str, count: int, short_side: int, start: int = 60) -> np.ndarray:
    """``count`` consecutive grayscale frames of a sample video at 25 fps, resized to ``short_side``."""
    with Video(BENCHKIT / "videos" / f"{name}.mp4") as video:
        frames = []
        for chunk in video.chunks(25.0, 64, short_side=short_side):
            frames.extend(chunk)
            if len(frames) >= start + count:
                break
    return F.to_gray(np.stack(frames[start:start + count]))


def opencv(i0: np.ndarray, i1: np.ndarray) -> np.ndarray:
    cv2.setNumThreads(1)
    return F._cpu_tvl1().calc(i0, i1, None)


def ours(i0: np.ndarray, i1: np.ndarray) -> np.ndarray:
    return tvl1_flow(torch.from_numpy(i0)[None], torch.from_numpy(i1)[None], **PARAMS)[0].numpy()


def epe(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sqrt(((a - b) ** 2).sum(-1))


def agreement_real(pairs: int, short_side: int) -> None:
    rows = []
    for name in VIDEOS:
        gray = gray_frames(name, pairs + 1, short_side)
        errors, p99, mags = [], [], []
        for k in range(pairs):
            ref, out = opencv(gray[k], gray[k + 1]), ours(gray[k], gray[k + 1])
            e = epe(ref, out)
            errors.append(e.mean())
            p99.append(np.percentile(e, 99))
            mags.append(np.sqrt((ref ** 2).sum(-1)).mean())
        rows.append([name, f"{gray.shape[2]}x{gray.shape[1]}", pairs, f"{np.mean(mags):.3f}",
                     f"{np.mean(errors):.4f}", f"{max(errors):.4f}", f"{np.mean(p99):.3f}"])
    table("Agreement on real frames (torch vs OpenCV CPU)",
          ["video", "size (w x h)", "pairs", "mean |flow| (px)", "mean EPE (px)", "worst pair's mean EPE",
           "EPE p99 (px)"], rows)


def agreement_generated(size) -> None:
    c, s = np.cos(np.radians(3)), np.sin(np.radians(3))
    cases = [("translation (2.5, -1.25) px", [[1, 0, 2.5], [0, 1, -1.25]]),
             ("translation (-6, 4) px", [[1, 0, -6.0], [0, 1, 4.0]]),
             ("rotation 3 deg", [[c, -s, 0], [s, c, 0]]), ("zoom 4 %", [[1.04, 0, 0], [0, 1.04, 0]])]
    rows = []
    inner = (slice(16, -16), slice(16, -16))
    for name, matrix in cases:
        i0, i1, truth = affine_motion_pair(np.array(matrix, float), *size)
        ref, out = opencv(i0, i1), ours(i0, i1)
        rows.append([name, f"{epe(ref, truth)[inner].mean():.4f}", f"{epe(out, truth)[inner].mean():.4f}",
                     f"{epe(ref, out).mean():.4f}", f"{epe(ref, out)[inner].mean():.4f}"])
    table(f"Agreement on generated frames ({size[1]} x {size[0]}, smooth texture; interior = 16 px from the border)",
          ["motion", "OpenCV EPE to truth (interior)", "torch EPE to truth (interior)", "torch vs OpenCV EPE (all)",
           "torch vs OpenCV EPE (interior)"], rows)


def agreement_features(frames: int, short_side: int, crop: int) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        i3d = init_untrained(InceptionI3d(in_channels=2)).eval()
    rows = []
    for name in VIDEOS:
        gray = gray_frames(name, frames + 1, short_side)
        flows = {}
        for impl, fn in (("opencv", opencv), ("torch", ours)):
            raw = np.stack([fn(gray[k], gray[k + 1]) for k in range(frames)])
            h, w = raw.shape[1:3]
            y, x = (h - crop) // 2, (w - crop) // 2
            scaled = F.scale_flow(raw[:, y:y + crop, x:x + crop])
            with torch.inference_mode():
                flows[impl] = i3d.features(torch.from_numpy(scaled).permute(3, 0, 1, 2)[None])[0]
        cos = torch.nn.functional.cosine_similarity(flows["opencv"], flows["torch"], dim=0).item()
        rows.append([name, f"{frames} x {crop} x {crop}", f"{cos:.6f}"])
    table("Flow-stream I3D features from each flow (seeded untrained I3D)", ["video", "snippet", "cosine"], rows)


def timed(fn, repeats: int = 3) -> float:
    fn()  # warm-up: worker processes, CUDA context, allocator
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def opencv_pairs(first: np.ndarray, second: np.ndarray) -> list[np.ndarray]:
    cv2.setNumThreads(1)
    tv = F._cpu_tvl1()
    return [tv.calc(a, b, None) for a, b in zip(first, second)]


def opencv_cuda_pairs(first: np.ndarray, second: np.ndarray) -> list[np.ndarray]:
    tv, g0, g1 = F._cuda_tvl1(), cv2.cuda_GpuMat(), cv2.cuda_GpuMat()
    out = []
    for a, b in zip(first, second):
        g0.upload(a)
        g1.upload(b)
        out.append(tv.calc(g0, g1, None).download())
    return out


def torch_pairs(first: np.ndarray, second: np.ndarray, batch: int, device: str) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for k in range(0, len(first), batch):
            a = torch.from_numpy(first[k:k + batch]).to(device)
            b = torch.from_numpy(second[k:k + batch]).to(device)
            out.append(tvl1_flow(a, b, **PARAMS).cpu().numpy())
    return np.concatenate(out)


def speed(pairs: int, gpu_batches: tuple[int, ...], repeats: int) -> None:
    from joblib import Parallel, delayed

    need = max(pairs, *gpu_batches) if torch.cuda.is_available() else pairs
    gray = gray_frames(VIDEOS[0], 121, 256)
    moving = [k for k in range(len(gray) - 1) if not np.array_equal(gray[k], gray[k + 1])]  # held frames: no flow
    order = (moving * (need // len(moving) + 1))[:need]  # long batches reuse the clip's pairs
    rows = []
    for h, w in ((224, 224), (256, 340)):
        y, x = (gray.shape[1] - h) // 2, (gray.shape[2] - w) // 2
        crop = np.ascontiguousarray(gray[:, y:y + h, x:x + w])
        first, second = crop[order], crop[[k + 1 for k in order]]
        a, b = first[:pairs], second[:pairs]
        half = pairs // 2
        runs = [("OpenCV CPU, 1 process", pairs, lambda: opencv_pairs(a, b)),
                ("OpenCV CPU, 2 processes", pairs, lambda: Parallel(n_jobs=2)(
                    delayed(opencv_pairs)(a[s], b[s]) for s in (slice(0, half), slice(half, pairs)))),
                (f"torch CPU ({torch.get_num_threads()} threads), batch 1", pairs,
                 lambda: torch_pairs(a, b, 1, "cpu")),
                (f"torch CPU ({torch.get_num_threads()} threads), batch {pairs}", pairs,
                 lambda: torch_pairs(a, b, pairs, "cpu"))]
        if torch.cuda.is_available():
            for n in gpu_batches:
                runs.append((f"torch CUDA ({torch.cuda.get_device_name(0)}), batch {n}", n,
                             lambda n=n: torch_pairs(first[:n], second[:n], n, "cuda")))
        if F.cuda_flow_available():
            runs.append(("OpenCV CUDA", pairs, lambda: opencv_cuda_pairs(a, b)))
        base = None
        for name, n, fn in runs:
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            t = timed(fn, repeats)
            peak = f"{torch.cuda.max_memory_allocated() / 2 ** 30:.2f}" if name.startswith("torch CUDA") else "-"
            base = base or n / t
            rows.append([f"{w} x {h}", name, n, f"{n / t:.2f}", f"{n / t / base:.2f}x", peak])
        if not torch.cuda.is_available():
            rows.append([f"{w} x {h}", "torch CUDA, batch " + " / ".join(map(str, gpu_batches)), "-",
                         "not measured: no GPU here", "-", "-"])
    table("Speed (frame pairs/s; ratio to OpenCV CPU with 1 process at the same size; median of "
          f"{repeats} runs)", ["size (w x h)", "implementation", "pairs", "pairs/s", "vs OpenCV 1 process",
                               "peak GPU memory (GiB)"], rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="frames at shorter side 128, fewer pairs")
    p.add_argument("--skip-agreement", action="store_true")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    if not (BENCHKIT / "videos").is_dir():
        raise SystemExit(f"the benchkit sample videos are missing at {BENCHKIT} (set CLICKTAL_BENCHKIT)")
    print(device_line())
    print(f"parameters: {F.TVL1_PARAMS}")
    if not args.skip_agreement:
        agreement_real(2 if args.quick else 4, 128 if args.quick else 256)
        agreement_generated((96, 128) if args.quick else (192, 256))
        agreement_features(8 if args.quick else 16, 128 if args.quick else 256, 112 if args.quick else 224)
    if not args.skip_speed:
        speed(2 if args.quick else 6, (1, 16, 64, 256), 1 if args.quick else args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
