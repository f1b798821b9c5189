#!/usr/bin/env python
"""Feature-extraction throughput and memory, stage by stage, on this machine. Prints Markdown tables.

    python benchmarks/extraction.py                      # everything (about 10-15 minutes on 2 CPU cores)
    python benchmarks/extraction.py --quick              # shorter inputs, same tables (about 3 minutes)
    python benchmarks/extraction.py --stages decode,flow # a subset: decode, flow, i3d, e2e, memory

Stages:
  decode  frames/s of PyAV and decord: raw decoding, and the pipeline's resampled (25 fps) + resized (256) stream
  flow    TV-L1 frame pairs/s at the default resolution (shorter side 256) with 1 and 2 worker processes, CPU and
          (when OpenCV has CUDA and a GPU) cv2.cuda
  i3d     two-stream I3D snippets/s (16 x 224 x 224, batch 8): fp32, and bf16 where the device supports it
  e2e     video-seconds per wall-second for the whole pipeline (random-init I3D) on a real sample video: the
          default configuration, and the smoke-test configuration (--flow-size 32)
  memory  peak resident memory of a 10-minute generated video beside a 1-minute one (streaming keeps them close)

Inputs: the sample videos of ../shared/benchkit/videos (or CLICKTAL_BENCHKIT) when present, else generated ones.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BENCHKIT = Path(os.environ.get("CLICKTAL_BENCHKIT", REPO.parent / "shared" / "benchkit"))
STAGES = ("decode", "flow", "i3d", "e2e", "memory")


def device_line() -> str:
    import cv2
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    cv_cuda = cv2.cuda.getCudaEnabledDeviceCount() if hasattr(cv2, "cuda") else 0
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"device: {cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"{gpu}, OpenCV {cv2.__version__} CUDA devices: {cv_cuda}; load average at start {load:.2f}")


def table(title: str, header: list[str], rows: list[list]) -> None:
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for r in rows:
        print("| " + " | ".join(str(c) for c in r) + " |")
    sys.stdout.flush()


def sample_videos(tmp: Path) -> list[Path]:
    videos = sorted((BENCHKIT / "videos").glob("*.mp4")) if (BENCHKIT / "videos").is_dir() else []
    if videos:
        return videos
    from clicktal.extractors import testvideos as tv

    return [tv.write_video(tmp / "generated_320x240.mp4", tv.translating(320, 240, dx=2), 250),
            tv.write_video(tmp / "generated_480x360.mp4", tv.translating(480, 360, dy=1), 300, fps=30)]


# ------------------------------------------------------------------------------------------------------ stages
def bench_decode(videos: list[Path], repeats: int) -> None:
    import av

    from clicktal.extractors.decode import Video

    rows = []
    for path in videos:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            size = f"{s.codec_context.width}x{s.codec_context.height} @ {float(s.average_rate):.2f} fps"
        for backend in ("pyav", "decord"):
            try:
                raw_best, pipe_best = float("inf"), float("inf")
                for _ in range(repeats):
                    t = time.perf_counter()
                    n_raw = _raw_decode(path, backend)
                    raw_best = min(raw_best, time.perf_counter() - t)
                    t = time.perf_counter()
                    with Video(path, backend) as v:
                        n_out = sum(len(ch) for ch in v.chunks(25.0, 64, short_side=256))
                    pipe_best = min(pipe_best, time.perf_counter() - t)
                rows.append([path.name, size, backend, f"{n_raw / raw_best:.0f}", f"{n_out / pipe_best:.0f}"])
            except Exception as e:  # noqa: BLE001 - report, keep going
                rows.append([path.name, size, backend, f"error: {type(e).__name__}: {e}", ""])
    table("Decoding (frames/s, best of %d)" % repeats,
          ["video", "source", "decoder", "raw decode, all frames", "pipeline: 25 fps + short side 256"], rows)


def _raw_decode(path: Path, backend: str) -> int:
    if backend == "pyav":
        import av

        with av.open(str(path)) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            return sum(1 for f in c.decode(s) if f.to_ndarray(format="rgb24") is not None)
    import decord

    vr = decord.VideoReader(str(path), ctx=decord.cpu(0))
    n = len(vr)
    for a in range(0, n, 64):
        vr.get_batch(list(range(a, min(n, a + 64)))).asnumpy()
    return n


def bench_flow(videos: list[Path], pairs: int) -> None:
    from clicktal.extractors.decode import Video
    from clicktal.extractors.flow import FlowComputer, cuda_flow_available

    with Video(videos[0]) as v:
        frames = next(v.chunks(25.0, pairs + 1, short_side=256))
    rows = []
    runs = [("cpu", 1), ("cpu", 2)] + ([("cuda", 1)] if cuda_flow_available() else [])
    for device, workers in runs:
        with FlowComputer(device, workers) as fc:
            fc.push(frames[:3])  # start the workers / the CUDA context
        with FlowComputer(device, workers) as fc:
            fc.push(frames[:2])
            t = time.perf_counter()
            fc.push(frames[2:])
            dt = time.perf_counter() - t
        n = len(frames) - 2
        rows.append([device, workers, f"{frames.shape[2]}x{frames.shape[1]}", n, f"{n / dt:.2f}", f"{dt / n:.3f}"])
    if not cuda_flow_available():
        rows.append(["cuda", "-", "-", "-", "n/a: this OpenCV has no CUDA or sees no GPU", ""])
    table("TV-L1 optical flow (OpenCV Dual TV-L1, default parameters)",
          ["device", "workers", "frame size", "pairs", "pairs/s", "s/pair"], rows)


def bench_i3d(batch: int, repeats: int) -> None:
    import torch

    from clicktal.extractors.networks import bf16_supported, build_extractor

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        for precision in ("fp32", "bf16"):
            if precision == "bf16" and not bf16_supported(torch.device(device)):
                rows.append([device, precision, batch, "n/a: no bf16 support", ""])
                continue
            ex = build_extractor("i3d", random_init=True, device=device, precision=precision)
            rng = np.random.default_rng(0)
            rgb = rng.integers(0, 256, (batch, 16, 224, 224, 3), dtype=np.uint8)
            flow = rng.uniform(-1, 1, (batch, 16, 224, 224, 2)).astype(np.float32)
            ex(rgb[:1], flow[:1])
            best = float("inf")
            for _ in range(repeats):
                t = time.perf_counter()
                ex(rgb, flow)
                if device == "cuda":
                    torch.cuda.synchronize()
                best = min(best, time.perf_counter() - t)
            rows.append([device, precision, batch, f"{batch / best:.2f}", f"{best / batch * 1000:.0f}"])
    table(f"Two-stream I3D (RGB + flow networks, 16 x 224 x 224 snippets, best of {repeats})",
          ["device", "precision", "batch", "snippets/s", "ms/snippet"], rows)


def bench_e2e(video: Path, workers: int, configs: list[tuple[str, dict]]) -> None:
    import torch

    from clicktal.extractors.runner import extract_folder

    rows = []
    for name, opts in configs:
        with tempfile.TemporaryDirectory() as tmp:
            device = "cuda" if torch.cuda.is_available() else "cpu"
            s = extract_folder([video], tmp, workers=workers, progress=False, random_init=True, device=device,
                               **opts)
            assert s.ok, s.text()
            rows.append([name, video.name, f"{s.video_seconds:.1f}", workers, f"{s.wall_s:.1f}",
                         f"{s.video_seconds / s.wall_s:.3f}"])
    table("End to end (decode + TV-L1 + two-stream I3D + cache write; random-init weights)",
          ["configuration", "video", "video s", "workers", "wall s", "video-s per wall-s"], rows)


_MEMORY_CHILD = r"""
import json, resource, sys, time
from clicktal.extractors.extract import ExtractionConfig, compute_features
from clicktal.extractors.decode import Video
path, mode = sys.argv[1], sys.argv[2]
t = time.perf_counter()
if mode == "decode":
    with Video(path) as v:
        n = sum(len(c) for c in v.chunks(25.0, 64, short_side=256))
else:
    cfg = ExtractionConfig(random_init=True, resize=64, crop=56, flow_size=16)
    n = compute_features(path, cfg)[0].shape[0]
def peak_mb():
    # VmHWM: this process's own high-water mark (ru_maxrss would carry the parent's over fork + exec)
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"n": n, "wall_s": time.perf_counter() - t, "peak_rss_mb": peak_mb()}))
"""


def bench_memory(minutes: list[float], tmp: Path) -> None:
    from clicktal.extractors import testvideos as tv

    rows = []
    for m in minutes:
        n = int(round(m * 60 * 25))
        path = tmp / f"generated_{m:g}min.mp4"
        t = time.perf_counter()
        tv.write_video(path, tv.translating(320, 240, dx=1), n)
        gen = time.perf_counter() - t
        for mode in ("decode", "pipeline"):
            out = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(path), mode], capture_output=True,
                                 text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            what = ("decode 25 fps + resize 256 (frames)" if mode == "decode"
                    else "full pipeline, small (resize 64, crop 56, flow at 16 px) (snippets)")
            rows.append([f"{m:g} min (320x240, {n} frames)", what, r["n"], f"{r['wall_s']:.1f}",
                         f"{r['peak_rss_mb']:.0f}"])
        print(f"(generated {path.name} in {gen:.1f} s)", file=sys.stderr)
    table("Peak memory, streaming (one process; resident set size)",
          ["input", "work", "output", "wall s", "peak RSS MB"], rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {STAGES}")
    p.add_argument("--quick", action="store_true", help="shorter inputs and fewer repeats")
    args = p.parse_args(argv)
    stages = [s for s in args.stages.split(",") if s]
    unknown = set(stages) - set(STAGES)
    if unknown:
        p.error(f"unknown stages {sorted(unknown)}")
    print(device_line())
    print(f"command: python benchmarks/extraction.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        videos = sample_videos(tmp)
        if "decode" in stages:
            bench_decode(videos, repeats=2 if args.quick else 3)
        if "flow" in stages:
            bench_flow(videos, pairs=12 if args.quick else 32)
        if "i3d" in stages:
            bench_i3d(batch=4 if args.quick else 8, repeats=2 if args.quick else 3)
        if "e2e" in stages:
            short = min(videos, key=lambda v: v.stat().st_size)
            configs = [("smoke: --flow-size 32", {"flow_size": 32})]
            if not args.quick:
                configs.insert(0, ("default (TV-L1 at 256, crop 224)", {}))
            bench_e2e(short, workers=min(2, os.cpu_count() or 1), configs=configs)
        if "memory" in stages:
            bench_memory([0.25, 1.0] if args.quick else [1.0, 10.0], tmp)
    print(f"\nload average at end {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
