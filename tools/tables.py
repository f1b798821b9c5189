"""Tables the tools and benchmarks print."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def format_table(headers: list[str], rows: list[list], title: str | None = None) -> str:
    """A plain fixed-width text table (floats with 2 decimals)."""
    cells = [[f"{c:.2f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda r: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
    out = ([title] if title else []) + [line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells]
    return "\n".join(out)


def format_results(rows: list[tuple[str, list[list[float]]]], report: list[float], *, minutes: dict | None = None,
                   title: str | None = None, leading: Sequence[str] = ()) -> str:
    """A Markdown table: one row per name, ``mean ± std`` over its runs of mAP (%) at ``report`` and AVG; each
    run's values start with those of the ``leading`` columns when given (e.g. frame-level mAP)."""
    head = ["Model", *leading] + [f"mAP@{t:g}" for t in report] + ["AVG"]
    if minutes:
        head.append("min/run")
    lines = ([f"**{title}**", ""] if title else []) + ["| " + " | ".join(head) + " |",
                                                      "|" + "|".join(["---"] * len(head)) + "|"]
    for name, runs in rows:
        a = np.asarray(runs, dtype=np.float64)
        cells = [f"{m:.1f} ± {s:.1f}" if a.shape[0] > 1 else f"{m:.1f}" for m, s in zip(a.mean(0), a.std(0))]
        if minutes:
            cells.append(f"{minutes.get(name, float('nan')):.1f}")
        lines.append("| " + " | ".join([name] + cells) + " |")
    return "\n".join(lines)
