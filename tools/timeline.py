"""Timeline pictures of one video's detections: the per-class scores over time for the classes detected, the
detected segments and, when given, the ground truth. Used by ``tools/detect.py``."""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from clicktal.pipeline.core.files import atomic_write
from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.data.annotations import Segment
from clicktal.pipeline.data.detections import Detection


def plot_timeline(path: str | os.PathLike, video: str, scores: np.ndarray, grid: FeatureGeometry,
                  classes: Sequence[str], detections: Sequence[Detection], *, truth: Sequence[Segment] = (),
                  duration_s: float | None = None, top: int = 10) -> list[str]:
    """Write a PNG for ``video``: ``scores [T, C]`` on ``grid`` (one row per snippet or frame) for each class with a
    detection or a ground-truth segment, the ``top`` best detections as bars in their class's colour (a lane each,
    best on top, with its score) and the ground truth as grey bars. Returns the classes drawn."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    shown = sorted({d.label for d in detections} | {s.label for s in truth}, key=list(classes).index)
    t = grid.centre_s(np.arange(scores.shape[0]))
    end = duration_s or float(grid.end_s(scores.shape[0] - 1))
    best = sorted(detections, key=lambda d: -d.score)[:top]
    fig, (ax, bars) = plt.subplots(2, 1, figsize=(10, 4 + 0.2 * len(best)), sharex=True,
                                   height_ratios=[3, 1 + 0.4 * len(best)])
    colours = {c: plt.cm.tab10(i % 10) for i, c in enumerate(shown)}
    for c in shown:
        ax.plot(t, scores[:, list(classes).index(c)], color=colours[c], lw=1.2, label=c)
    ax.set_ylabel("class score")
    ax.set_title(video)
    if shown:
        ax.legend(loc="upper right", fontsize=8)
    for rank, d in enumerate(best):  # one lane per detection, the best on top
        y = len(best) - rank
        bars.barh(y, d.end_s - d.start_s, left=d.start_s, height=0.7, color=colours[d.label])
        bars.text(d.end_s, y, f" {d.score:.2f}", va="center", fontsize=7)
    for s in truth:
        bars.barh(0, s.end_s - s.start_s, left=s.start_s, height=0.7, color="0.5")
    bars.set_yticks([0, *range(1, len(best) + 1)],
                    ["ground truth" if truth else "", *[f"#{len(best) - i}" for i in range(len(best))]], fontsize=7)
    bars.set_xlim(0, end)
    bars.set_xlabel("time (s)")
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
    return shown
