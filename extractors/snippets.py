"""Snippet assembly: streamed frames (and flows) in, batches of fixed-length snippets out.

Snippet ``i`` sees the resampled frames ``[i * stride, i * stride + window)`` and the flows of the same frames (the
pair ``(t, t + 1)`` for each frame ``t``; see :mod:`clicktal.extractors.flow`). The last partial snippet is padded
by repeating the video's last frame (edge padding), never dropped; the padded positions are frozen copies of that
frame, so their flow is zero (not the last pair's motion repeated). A video of ``duration_s`` seconds gives
``FeatureGeometry.snippet_count(duration_s) = ceil(duration_s * fps / stride)`` snippets.
"""
from __future__ import annotations

import math
from typing import Iterator

import numpy as np


def centre_crop(frames: np.ndarray, size: int) -> np.ndarray:
    """``[n, H, W, C]`` -> ``[n, size, size, C]`` (the centre; odd margins put the extra pixel after)."""
    h, w = frames.shape[1:3]
    top, left = (h - size) // 2, (w - size) // 2
    return frames[:, top:top + size, left:left + size]


class SnippetAssembler:
    """Collects frames (and flows) as they stream in and hands out batches of complete snippets.

    Only the frames that unfinished snippets still need are kept. After :meth:`close` with the video's frame count
    the remaining snippets are padded by repeating the last frame, with zero flow.
    """

    def __init__(self, window: int, stride: int, batch_size: int, with_flow: bool):
        self.window, self.stride, self.batch_size, self.with_flow = window, stride, batch_size, with_flow
        self._rgb: list[np.ndarray] = []
        self._flow: list[np.ndarray] = []
        self._rgb_base = 0
        self._flow_base = 0
        self.next_snippet = 0
        self.num_frames: int | None = None
        self._pending: list[tuple[np.ndarray, np.ndarray | None]] = []

    def add(self, rgb: np.ndarray | None = None, flow: np.ndarray | None = None) -> None:
        if rgb is not None:
            self._rgb.extend(rgb)
        if flow is not None:
            self._flow.extend(flow)

    def close(self, num_frames: int) -> None:
        if self._rgb_base + len(self._rgb) != num_frames:
            raise AssertionError(f"assembler saw {self._rgb_base + len(self._rgb)} frames, video has {num_frames}")
        if self.with_flow and self._flow_base + len(self._flow) != num_frames:
            raise AssertionError(f"assembler saw {self._flow_base + len(self._flow)} flows for {num_frames} frames")
        self.num_frames = num_frames

    @property
    def num_snippets(self) -> int | None:
        return None if self.num_frames is None else max(1, math.ceil(self.num_frames / self.stride))

    def _take(self, buf: list[np.ndarray], base: int, start: int, pad_zero: bool = False) -> np.ndarray:
        """Positions ``start .. start + window - 1``; past the last element, the last one repeated (or zeros)."""
        last = base + len(buf) - 1
        pad = np.zeros_like(buf[-1]) if pad_zero else buf[-1]
        return np.stack([buf[t - base] if t <= last else pad for t in range(start, start + self.window)])

    def _ready(self, i: int) -> bool:
        if self.num_frames is not None:
            return i < self.num_snippets
        end = i * self.stride + self.window
        return self._rgb_base + len(self._rgb) >= end and (
            not self.with_flow or self._flow_base + len(self._flow) >= end)

    def batches(self, final: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Batches ``(rgb [B, window, h, w, 3], flow [B, window, h, w, 2] | None)`` of complete snippets, in
        order; with ``final`` also the last, smaller batch."""
        while self._ready(self.next_snippet):
            start = self.next_snippet * self.stride
            rgb = self._take(self._rgb, self._rgb_base, start)
            flow = self._take(self._flow, self._flow_base, start, pad_zero=True) if self.with_flow else None
            self._pending.append((rgb, flow))
            self.next_snippet += 1
            self._drop_before(self.next_snippet * self.stride)
            if len(self._pending) == self.batch_size:
                yield self._flush()
        if final and self._pending:
            yield self._flush()

    def _flush(self):
        rgb = np.stack([r for r, _ in self._pending])
        flow = np.stack([f for _, f in self._pending]) if self.with_flow else None
        self._pending = []
        return rgb, flow

    def _drop_before(self, frame: int) -> None:
        # keep at least the last element: padding repeats it
        n = min(frame - self._rgb_base, len(self._rgb) - 1)
        if n > 0:
            del self._rgb[:n]
            self._rgb_base += n
        if self.with_flow:
            n = min(frame - self._flow_base, len(self._flow) - 1)
            if n > 0:
                del self._flow[:n]
                self._flow_base += n
