"""Saved flow: :class:`FlowWriter` keeps the cropped flow as uint8 images or ``.npz`` chunks while it streams,
:func:`read_saved_flow` reads such a folder back (``--save-flow``; the layout is in docs/extraction.md)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from .diskio import check_written, naming
from .flow import dequantize_flow, quantize_flow

SAVE_FLOW_FORMATS = ("jpg", "png", "npz")


def remove_entry(root: Path, name: str, *, missing_ok: bool = True) -> None:
    """Delete the folder ``root / name`` (one video's saved flow or its temporary folder), after checking that it is
    an entry directly inside ``root`` once links are resolved: a video id such as ``..`` must never turn this into
    deleting the flow folder, the cache or anything else (``ValueError`` naming the path)."""
    target = root / name
    if (name in ("", ".", "..") or "\0" in name or os.sep in name or (os.altsep and os.altsep in name)
            or target.resolve().parent != root.resolve()):
        raise ValueError(f"{target}: refusing to delete it: not one video's own folder directly inside {root}")
    try:
        shutil.rmtree(target)
    except FileNotFoundError:
        if not missing_ok:
            raise


class FlowWriter:
    """Saves the (cropped) flow as uint8 while it streams: ``x_%06d.<ext>`` / ``y_%06d.<ext>`` images, or
    ``flow_%06d.npz`` chunks (``flow [n, H, W, 2]`` uint8, first frame index in the name). Written to a hidden
    temporary folder that is renamed into place by :meth:`commit`. A failed write raises an ``OSError`` naming the
    file (``ENOSPC`` when the disk is full). Everything it deletes goes through :func:`remove_entry`."""

    ENCODING = "uint8 q = round((clip(f, -20, 20) / 20 + 1) * 127.5); f = (q / 127.5 - 1) * 20 pixels"

    def __init__(self, root: Path, video_id: str, fmt: str):
        self.root = Path(root)
        self.name, self.tmp_name = video_id, f".{video_id}.tmp-{os.getpid()}"
        self.final, self.tmp = self.root / self.name, self.root / self.tmp_name
        remove_entry(self.root, self.tmp_name)
        self.tmp.mkdir(parents=True)
        self.fmt = fmt
        self.count = 0

    def write(self, flows: np.ndarray) -> None:
        import cv2

        if len(flows) == 0:
            return
        q = quantize_flow(flows)
        if self.fmt == "npz":
            target = self.tmp / f"flow_{self.count:06d}.npz"
            with naming(target):
                np.savez_compressed(target, flow=q)
        else:
            params = [cv2.IMWRITE_JPEG_QUALITY, 95] if self.fmt == "jpg" else []
            for i, f in enumerate(q):
                for c, component in enumerate("xy"):
                    target = self.tmp / f"{component}_{self.count + i:06d}.{self.fmt}"
                    check_written(cv2.imwrite(str(target), f[..., c], params), target)
        self.count += len(flows)

    def commit(self, info: dict) -> None:
        with naming(self.tmp / "flow.json"):
            (self.tmp / "flow.json").write_text(json.dumps(dict(info, frames=self.count, encoding=self.ENCODING,
                                                                format=self.fmt), indent=1))
        remove_entry(self.root, self.name)
        os.replace(self.tmp, self.final)

    def abort(self) -> None:
        try:
            remove_entry(self.root, self.tmp_name)
        except OSError:  # the video's own error is the one to report
            pass


def read_saved_flow(folder: str | os.PathLike) -> np.ndarray:
    """Flow saved by ``--save-flow`` back as ``[N, H, W, 2]`` float32 in [-1, 1] (quantized to 1/127.5)."""
    import cv2

    folder = Path(folder)
    info = json.loads((folder / "flow.json").read_text())
    if info["format"] == "npz":
        q = np.concatenate([np.load(p)["flow"] for p in sorted(folder.glob("flow_*.npz"))])
    else:
        ext = info["format"]
        q = np.stack([np.stack([cv2.imread(str(folder / f"{c}_{i:06d}.{ext}"), cv2.IMREAD_GRAYSCALE)
                                for c in ("x", "y")], axis=-1) for i in range(info["frames"])])
    if len(q) != info["frames"]:
        raise ValueError(f"{folder}: {len(q)} flow frames, flow.json says {info['frames']}")
    return dequantize_flow(q)
