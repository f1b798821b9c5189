#!/usr/bin/env python
"""Extract two-stream snippet features from a folder of videos into a feature cache (resumable).

    clicktal-extract videos/ --out cache/                     # downloads missing weights into the cache first
    clicktal-extract videos/ --out cache/ --offline           # never downloads: missing weights are an error
    clicktal-extract videos/ --out cache/ --random-init       # smoke test, untrained networks
    clicktal-extract list.txt --out cache/ --shard 3/8        # one of 8 batch jobs

Missing I3D / TSN checkpoints are downloaded into the weights folder (--weights-dir, else $CLICKTAL_WEIGHTS_DIR, else
~/.cache/clicktal/weights) on first use, resumably, and verified before use; `clicktal-weights fetch` gets them ahead
of time. The networks run on --device auto (CUDA when torch sees it, else the CPU); the choice is printed.

Exit status:
  0    every video is in the cache.
  1    some video failed (listed with its reason in the summary and in <out>/.clicktal/failures.json; a full disk
       fails the video being written with reason disk_full, naming the file, and stops the run; a file name the
       cache cannot hold, such as ..mp4, fails as bad_id), or failures.json could not be written.
  2    a setup error before any video: missing weights (offline, or a download that failed), bad arguments, a
       folder with no video files, an output folder that cannot be created.
  3    incomplete: no video failed, but some are being extracted by other live processes on the same cache
       (listed as LOCKED); rerun after they finish.
  130  interrupted (Ctrl-C): "interrupted; rerun the same command to resume". Locks are released and nothing
       half-written counts as complete.
See docs/extraction.md for every choice.
"""
from __future__ import annotations

import argparse
import sys
import warnings

from clicktal.extractors.decode import MAX_FRAME_GAP_S
from clicktal.extractors.diskio import describe_os_error
from clicktal.extractors.extract import ExtractionConfig
from clicktal.extractors.flow import FLOW_DEVICES, FLOW_METHODS
from clicktal.extractors.flowio import SAVE_FLOW_FORMATS
from clicktal.extractors.networks import FEATURES, device_line
from clicktal.extractors.runner import PARALLEL_BACKENDS, extract_folder
from clicktal.extractors.weights import WeightsError

EXIT_OK, EXIT_FAILED, EXIT_SETUP, EXIT_INCOMPLETE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def build_parser() -> argparse.ArgumentParser:
    d = ExtractionConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("videos", help="folder of videos (searched recursively) or a text file listing video paths")
    p.add_argument("--out", required=True, help="feature cache folder (<video>.npy + <video>.json)")
    p.add_argument("--features", choices=FEATURES, default=d.features,
                   help="extractor (default: %(default)s; i3d_rgb: RGB only, no optical flow)")
    p.add_argument("--fps", type=float, default=d.fps, help="resampling rate (default: %(default)s)")
    p.add_argument("--window", type=int, default=d.window, help="frames per snippet (default: %(default)s)")
    p.add_argument("--stride", type=int, default=d.stride, help="frames between snippets (default: %(default)s)")
    p.add_argument("--device", default=d.device,
                   help="torch device for the networks: auto (CUDA when torch sees it, else cpu; the default), cpu, "
                        "cuda, cuda:N")
    p.add_argument("--precision", choices=("fp32", "bf16"), default=d.precision,
                   help="network precision (bf16 = autocast where the device supports it)")
    p.add_argument("--flow", choices=FLOW_METHODS, default=d.flow,
                   help="TV-L1 implementation: opencv, or tvl1-torch (the same algorithm in torch, batched; runs on "
                        "any CUDA torch); auto: OpenCV CUDA, else tvl1-torch on a GPU, else OpenCV on the CPU")
    p.add_argument("--chunk-frames", type=int, default=d.chunk_frames,
                   help="frames decoded at a time (bounds memory; tvl1-torch batches each chunk's frame pairs, "
                        "default: %(default)s)")
    p.add_argument("--flow-device", choices=FLOW_DEVICES, default=d.flow_device,
                   help="where TV-L1 runs (auto: a GPU when one of the implementations can use it)")
    p.add_argument("--workers", type=int, default=1,
                   help="processes: videos run in parallel; with fewer videos than workers, TV-L1 of one video "
                        "is split across them")
    p.add_argument("--backend", choices=PARALLEL_BACKENDS, default="loky",
                   help="joblib backend: loky (this machine), dask or ray (a cluster; see docs)")
    p.add_argument("--scheduler", default=None, help="dask scheduler address or ray address (default: local)")
    p.add_argument("--shard", default=None, help="i/n: process every n-th video starting at i (0-based)")
    p.add_argument("--weights-dir", default=None,
                   help="folder with the checkpoints (default: $CLICKTAL_WEIGHTS_DIR or ~/.cache/clicktal/weights)")
    p.add_argument("--offline", action="store_true",
                   help="never download: missing weights are an error saying which file to place where "
                        "(also $CLICKTAL_OFFLINE=1)")
    p.add_argument("--random-init", action="store_true",
                   help="no weights: untrained networks for smoke tests (metadata says 'untrained')")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of --random-init")
    p.add_argument("--decoder", choices=("pyav", "decord"), default=d.decoder)
    p.add_argument("--resize", type=int, default=d.resize, help="shorter side before cropping (default: 256)")
    p.add_argument("--crop", type=int, default=d.crop, help="centre crop (default: 224)")
    p.add_argument("--flow-size", type=int, default=None,
                   help="smoke tests only: TV-L1 at this shorter side, upsampled (default: at --resize)")
    p.add_argument("--tsn-arch", default=d.tsn_arch, help="torchvision backbone of --features tsn")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="snippets per network call")
    p.add_argument("--save-flow", nargs="?", const="jpg", choices=SAVE_FLOW_FORMATS, default=None,
                   help="also keep the flow as uint8 under <out>/flow/<video>/ (jpg images by default)")
    p.add_argument("--max-frame-gap", type=float, default=MAX_FRAME_GAP_S, metavar="SECONDS",
                   help="fail a video (bad_timestamps) whose timestamps jump by more than this, or run this far past "
                        "its declared duration (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="recompute videos already in the cache")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _extract(args)
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED


def _extract(args: argparse.Namespace) -> int:
    if args.random_init:
        print("WARNING: --random-init: the networks are UNTRAINED; these features are for smoke tests only and "
              "are marked 'untrained' in the cache metadata.", file=sys.stderr, flush=True)
    warnings.simplefilter("default", RuntimeWarning)
    try:
        print(device_line(args.device), flush=True)
        summary = extract_folder(
            args.videos, args.out, workers=args.workers, backend=args.backend, scheduler=args.scheduler,
            shard=args.shard, overwrite=args.overwrite, progress=not args.no_progress,
            features=args.features, fps=args.fps, window=args.window, stride=args.stride, device=args.device,
            precision=args.precision, flow=args.flow, flow_device=args.flow_device, weights_dir=args.weights_dir,
            offline=args.offline, random_init=args.random_init, seed=args.seed, decoder=args.decoder,
            resize=args.resize, crop=args.crop, flow_size=args.flow_size, chunk_frames=args.chunk_frames,
            tsn_arch=args.tsn_arch, batch_size=args.batch_size, save_flow=args.save_flow,
            max_frame_gap_s=args.max_frame_gap,
        )
    except (WeightsError, ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_SETUP
    except OSError as e:  # before any video: the output folder cannot be created, a sidecar cannot be read, ...
        print(f"error: {describe_os_error(e, args.out)}", file=sys.stderr)
        return EXIT_SETUP
    print(summary.text())
    if summary.failed or summary.failures_error:
        return EXIT_FAILED
    return EXIT_OK if summary.ok else EXIT_INCOMPLETE


if __name__ == "__main__":
    sys.exit(main())
