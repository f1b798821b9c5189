"""One HTML page per run (``<run>/report.html``, what ``clicktal-report RUN`` writes): the run's name and config
summary, its loss curves, its per-class AP and a few timelines of its test videos, in one self-contained file (the
pictures inlined as base64 PNG, the style inline; no script, no server, no network) that opens in any browser.

What the page is made from, all read from the run folder: ``config.yaml`` (required: a folder without it is no
run), ``train_log.jsonl`` and ``val_log.jsonl`` (loss curves, learning rate, label counts, validation),
``results.json`` (mAP per tIoU, per-class AP, the post-processing that made the detections), ``detections.json``
(the timelines' detections: the ones ``results.json`` scored), ``raw/<subset>.npz`` (the curves above the
timelines: the frame scores the detections were grouped from, :func:`~clicktal.pipeline.runs.raw.load_raw`) and
the ground truth the config names (the timelines' truth lanes). A section whose file is missing says so instead; a
file that is there but unreadable is a :class:`ReportError` naming it.
"""
from __future__ import annotations

import base64
import datetime
import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from clicktal.pipeline.core.config import ConfigError
from clicktal.pipeline.core.files import atomic_write_text
from clicktal.pipeline.core.postprocess import PostprocessConfig
from clicktal.pipeline.data.annotations import AnnotationError, GroundTruth, load_ground_truth
from clicktal.pipeline.data.detections import Detection, DetectionFileError, read_detections
from clicktal.pipeline.runs.engine import CheckpointError, read_log
from clicktal.pipeline.runs.raw import RawOutputError, RawOutputs, load_raw
from clicktal.pipeline.runs.schema import PostprocessSpec, postprocess_config
from clicktal.pipeline.runs.timeline import TimelineSummary, figure_png, timeline_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REPORT_NAME = "report.html"
NOT_LOSSES = ("iteration", "grad_norm", "lr", "seconds")  # train_log columns that are not loss terms


class ReportError(ValueError):
    """The folder is not a run, or one of its files is unreadable, or the report exists; one line naming the
    file."""


@dataclass
class RunFiles:
    """What a run folder holds for its report (None or empty: the file is not there)."""

    run_dir: Path
    config: dict[str, Any]
    config_text: str
    train_rows: list[dict] = field(default_factory=list)
    val_rows: list[dict] = field(default_factory=list)
    results: dict[str, Any] | None = None
    meta: dict[str, Any] | None = None
    detections: list[Detection] | None = None
    notes: list[str] = field(default_factory=list)  # what was left out and why, shown on the page

    @property
    def name(self) -> str:
        return str(self.config.get("name") or self.run_dir.name)

    @property
    def subset(self) -> str:
        return str((self.results or {}).get("subset") or _get(self.config, "data", "test_subset") or "test")


@dataclass(frozen=True)
class ReportSummary:
    """What :func:`write_report` wrote: the page, its timelines' videos and the notes it shows."""

    path: Path
    videos: list[str]
    notes: list[str]
    size_bytes: int


def read_run(run_dir: str | os.PathLike) -> RunFiles:
    """The files of the run folder ``run_dir`` that its report draws; a missing folder or ``config.yaml``, or an
    unreadable file, is a :class:`ReportError` naming it."""
    run = Path(run_dir)
    if not run.is_dir():
        raise ReportError(f"{run}: no such run folder")
    config_path = run / "config.yaml"
    if not config_path.is_file():
        raise ReportError(f"{run}: not a run folder (no config.yaml; clicktal-train writes one into every run)")
    try:
        text = config_path.read_text()
        config = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ReportError(f"{config_path}: not readable: " + " ".join(str(e).split())) from None
    if not isinstance(config, dict):
        raise ReportError(f"{config_path}: not a run config (a mapping of sections)")
    files = RunFiles(run, config, text)
    for name, attr in (("train_log.jsonl", "train_rows"), ("val_log.jsonl", "val_rows")):
        if (run / name).is_file():
            try:
                setattr(files, attr, read_log(run / name, files.notes.append))
            except (OSError, CheckpointError) as e:
                raise ReportError(" ".join(str(e).split())) from None
    files.results, files.meta = _json(run / "results.json"), _json(run / "run_meta.json")
    if (run / "detections.json").is_file():
        try:
            files.detections = read_detections(run / "detections.json")
        except (OSError, DetectionFileError) as e:
            raise ReportError(" ".join(str(e).split())) from None
    return files


def write_report(run_dir: str | os.PathLike, *, overwrite: bool = False, timelines: int = 4,
                 videos: list[str] | None = None, top: int = 10) -> ReportSummary:
    """Write ``<run_dir>/report.html`` (atomically) with ``timelines`` timelines of the run's test videos (its
    first ones in the raw outputs' order, else the ground truth's, else the detections'), or of ``videos``, each
    with its ``top`` best detections. An existing report is refused unless ``overwrite``; an unknown video in
    ``videos``, a negative ``timelines`` or a ``top`` below 1 is a :class:`ReportError`."""
    if timelines < 0 or top < 1:
        raise ReportError(f"timelines must be >= 0 and top >= 1, got {timelines} and {top}")
    run = read_run(run_dir)
    out = run.run_dir / REPORT_NAME
    if out.exists() and not overwrite:
        raise ReportError(f"{out}: exists; replace it with --overwrite")
    pictures = _timelines(run, timelines, videos, top)
    page = render_page(run, loss_figure(run.train_rows, run.val_rows), ap_figure(run.results), pictures)
    atomic_write_text(out, page)
    return ReportSummary(out, [vid for vid, _, _ in pictures], list(run.notes), len(page.encode()))


def loss_figure(train_rows: list[dict], val_rows: list[dict]) -> Figure | None:
    """The training curves against iteration: every loss term, the label counts (``n_*`` columns, such as the
    mining yield) when logged, the learning rate, and the validation scores when the run validated. A run with
    more than 100 iterations shows running means (the window is named). None without rows."""
    if not train_rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [k for k in train_rows[0] if k not in NOT_LOSSES and _number(train_rows[0][k])]
    losses = [k for k in columns if not k.startswith("n_")]
    counts = [k for k in columns if k.startswith("n_")]
    val_keys = [k for k in (val_rows[0] if val_rows else {}) if k != "iteration" and _number(val_rows[0][k])]
    panels = [p for p, keep in (("loss", losses), ("counts", counts), ("lr", [True]), ("val", val_keys)) if keep]
    heights = [1.0 if p == "lr" else 2.0 for p in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 1.2 + 1.3 * sum(heights)), sharex=True, squeeze=False,
                             height_ratios=heights)
    it = np.array([r["iteration"] for r in train_rows])
    window = max(1, len(train_rows) // 50) if len(train_rows) > 100 else 1
    smooth = f" (running mean of {window} iterations)" if window > 1 else ""
    for ax, panel in zip(axes[:, 0], panels):
        if panel in ("loss", "counts"):
            for k in losses if panel == "loss" else counts:
                values = _running_mean(np.array([float(r.get(k, np.nan)) for r in train_rows]), window)
                ax.plot(it, values, lw=2.0 if k == "total" else 1.0, label=k)
            ax.set_ylabel("loss" if panel == "loss" else "labels per batch")
            ax.set_title(("loss terms" if panel == "loss" else "label counts") + smooth, fontsize=9)
            ax.legend(fontsize=7, loc="upper right", ncol=2)
        elif panel == "lr":
            ax.plot(it, [float(r.get("lr", np.nan)) for r in train_rows], color="0.3")
            ax.set_ylabel("learning rate")
        else:
            v_it = [r["iteration"] for r in val_rows]
            for k in val_keys:
                ax.plot(v_it, [float(r.get(k, np.nan)) for r in val_rows], marker="o", ms=3, label=k)
            ax.set_ylabel("validation")
            ax.set_title("on the held-out training videos", fontsize=9)
            ax.legend(fontsize=7, loc="upper right", ncol=2)
    axes[-1, 0].set_xlabel("iteration")
    fig.tight_layout()
    return fig


def ap_figure(results: dict | None) -> Figure | None:
    """Per-class AP bars, best on top: each class's AP averaged over the tIoUs the run averages
    (``average_over``), with the mAP as a line; None when the results hold no per-class AP."""
    per_class, means, over = _class_ap(results)
    if not per_class:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(per_class, key=lambda c: (-means[c], c))  # best on top
    fig, ax = plt.subplots(figsize=(10, 1.3 + 0.24 * len(names)))
    y = np.arange(len(names))[::-1]  # the first name on top
    ax.barh(y, [means[c] for c in names], color="tab:blue", height=0.7)
    for yy, c in zip(y, names):
        ax.text(means[c], yy, f" {means[c]:.3f}", va="center", fontsize=7)
    mean = float(np.mean(list(means.values())))
    ax.axvline(mean, color="tab:red", lw=1, label=f"mAP {mean:.3f}")
    ax.set_yticks(y, names, fontsize=7)
    ax.set_xlim(0, max(1.0, max(means.values()) * 1.1))
    ax.set_xlabel(f"AP, mean over tIoU {', '.join(f'{t:g}' for t in over)}")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def render_page(run: RunFiles, losses: Figure | None, ap: Figure | None,
                timelines: list[tuple[str, bytes, TimelineSummary]]) -> str:
    """The report page of ``run`` as HTML text, the figures inlined (and closed)."""
    e = html.escape
    parts = [f"<h1>{e(run.name)}</h1>",
             f"<p class=\"path\">run folder: <code>{e(str(run.run_dir.resolve()))}</code></p>",
             "<h2>Summary</h2>", _table(_summary_rows(run)),
             f"<details><summary>config.yaml</summary><pre>{e(run.config_text)}</pre></details>",
             "<h2>Training</h2>"]
    parts.append(_img(losses, "training curves") if losses is not None else
                 "<p class=\"missing\">no rows in train_log.jsonl (or no such file): nothing was trained yet</p>")
    parts.append("<h2>Evaluation</h2>")
    if run.results is None:
        parts.append("<p class=\"missing\">no results.json in the run folder: the run was not evaluated</p>")
    else:
        parts.append(_table(_map_rows(run.results), header=("tIoU", "mAP")))
        parts.append(_img(ap, "per-class AP") if ap is not None else
                     "<p class=\"missing\">results.json holds no per-class AP</p>")
    parts.append(f"<h2>Timelines ({e(run.subset)} subset)</h2>")
    if timelines:
        parts.append("<p>Above: each class's score per snippet. Below: the ground truth of each class (grey), then "
                     "the best detections (one lane each, best first, with their score; a black edge and ✓: it "
                     "matches a ground-truth instance of its class).</p>")
    for vid, png, summary in timelines:
        parts.append(f"<h3>{e(vid)}: {e(summary.title_suffix)}</h3>")
        parts.append(f"<img src=\"data:image/png;base64,{base64.b64encode(png).decode()}\" "
                     f"alt=\"timeline of {e(vid)}\">")
        parts.append(f"<p class=\"caption\">{e(summary.caption)}</p>")
    if run.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in run.notes) + "</ul>")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f"<footer>written by clicktal-report, {stamp}</footer>")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{e(run.name)}: clicktal run report</title><style>{_STYLE}</style></head>\n<body>\n"
            + "\n".join(parts) + "\n</body></html>\n")


_STYLE = ("body{font-family:sans-serif;max-width:1040px;margin:2em auto;padding:0 1em;color:#222}"
          "img{max-width:100%;display:block;margin:0.5em 0}table{border-collapse:collapse;margin:0.5em 0}"
          "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left;font-size:90%}"
          "th{background:#f2f2f2}.missing{color:#a33}.caption,.path,footer{color:#555;font-size:85%}"
          "pre{background:#f7f7f7;padding:0.5em;font-size:80%;overflow:auto}")


def _timelines(run: RunFiles, count: int, videos: list[str] | None, top: int
               ) -> list[tuple[str, bytes, TimelineSummary]]:
    """The timelines' videos drawn as PNG, with what each shows; what is missing goes into ``run.notes``."""
    if run.detections is None:
        run.notes.append("no detections.json in the run folder: no timelines")
        return []
    raw = _raw(run)
    gt = _ground_truth(run)
    if raw is not None:
        order = list(raw.videos)
    elif gt is not None:
        order = sorted(gt.subset(run.subset))
    else:
        order = list(dict.fromkeys(d.video for d in run.detections))
    if videos:
        unknown = [v for v in videos if v not in order]
        if unknown:
            raise ReportError(f"{run.run_dir}: video(s) {', '.join(unknown)} not among the {len(order)} "
                              f"{run.subset} videos of the run")
        chosen = list(videos)
    else:
        chosen = order[:count]
    classes = (raw.classes if raw is not None else (run.meta or {}).get("classes")
               or sorted({d.label for d in run.detections}))
    post = _postprocess(run)
    by_video: dict[str, list[Detection]] = {}
    for d in run.detections:
        by_video.setdefault(d.video, []).append(d)
    out = []
    for vid in chosen:
        v = raw.videos[vid] if raw is not None else None
        truth = gt.videos[vid].segments if gt is not None and vid in gt.videos else ()
        duration = v.duration_s if v is not None else (gt.videos[vid].duration_s if gt and vid in gt.videos else None)
        fig, summary = timeline_figure(vid, None if v is None else v.scores.scores, None if v is None else v.grid,
                                       classes, by_video.get(vid, []), truth=truth, duration_s=duration, top=top,
                                       post=post)
        out.append((vid, figure_png(fig), summary))
    return out


def _raw(run: RunFiles) -> RawOutputs | None:
    try:
        return load_raw(run.run_dir, run.subset)
    except RawOutputError as e:
        run.notes.append(f"timelines without score curves: {' '.join(str(e).split())}")
        return None


def _ground_truth(run: RunFiles) -> GroundTruth | None:
    path = _get(run.config, "data", "ground_truth")
    if not path:
        run.notes.append("the config names no ground-truth file: timelines without ground truth")
        return None
    try:
        return load_ground_truth(path)
    except (OSError, AnnotationError) as e:
        run.notes.append(f"timelines without ground truth: {' '.join(str(e).split())}")
        return None


def _postprocess(run: RunFiles) -> PostprocessConfig | None:
    """The post-processing that made ``detections.json`` (recorded in ``results.json``, else the config's), to
    explain the detections' scores; None when it is unknown here (a preset of a method not installed)."""
    spec = (run.results or {}).get("postprocess") or run.config.get("postprocess") or {}
    try:
        return postprocess_config(PostprocessSpec(spec.get("preset"), dict(spec.get("params") or {})))
    except (ConfigError, ValueError, TypeError, AttributeError) as e:
        run.notes.append(f"detection scores not explained: post-processing {spec!r}: {' '.join(str(e).split())}")
        return None


def _summary_rows(run: RunFiles) -> list[tuple[str, str]]:
    c, r, m = run.config, run.results or {}, run.meta or {}
    opt = _get(c, "train", "optimizer") or {}
    post = r.get("postprocess") or c.get("postprocess") or {}
    rows = [("name", run.name), ("method", _get(c, "model", "name")),
            ("features", _get(c, "data", "features")), ("ground truth", _get(c, "data", "ground_truth")),
            ("subsets", f"train {_get(c, 'data', 'train_subset')}, test {run.subset}"),
            ("classes", len(m["classes"]) if "classes" in m else None),
            ("training", f"{_get(c, 'train', 'iterations')} iterations, batch {_get(c, 'train', 'batch_size')}, "
                         f"{opt.get('name')} lr {opt.get('lr')}, seed {_get(c, 'train', 'seed')}"),
            ("trained", f"{len(run.train_rows)} iterations logged" + (
                f", {r['train_seconds']:.1f} s" if _number(r.get("train_seconds")) else "")),
            ("weights evaluated", r.get("selected")),
            ("post-processing", f"{post.get('preset')} {post.get('params') or ''}".strip() if post else None),
            ("average mAP", f"{r['average_mAP']:.4f} (tIoU {', '.join(f'{t:g}' for t in r.get('average_over', []))})"
             if _number(r.get("average_mAP")) else None),
            ("detections", r.get("n_detections"))]
    return [(k, str(v)) for k, v in rows if v not in (None, "")]


def _map_rows(results: dict) -> list[tuple[str, str]]:
    rows = [(k, f"{v:.4f}") for k, v in (results.get("mAP") or {}).items() if _number(v)]
    rows += [(k, f"{v:.4f}") for k, v in ((results.get("evaluation") or {}).get("range_mAP") or {}).items()
             if _number(v)]
    return rows


def _class_ap(results: dict | None) -> tuple[dict[str, list[float]], dict[str, float], list[float]]:
    """Per-class AP per tIoU, each class's mean over ``average_over`` and those tIoUs, from ``results.json``."""
    evaluation = (results or {}).get("evaluation") or {}
    per_class = evaluation.get("per_class_AP") or {}
    tious = [float(t) for t in evaluation.get("tiou_thresholds") or []]
    over = [float(t) for t in (results or {}).get("average_over") or tious]
    cols = [i for i, t in enumerate(tious) if any(abs(t - o) < 1e-9 for o in over)] or list(range(len(tious)))
    means = {c: float(np.mean([ap[i] for i in cols])) for c, ap in per_class.items() if len(ap) == len(tious)}
    return {c: per_class[c] for c in means}, means, [tious[i] for i in cols]


def _json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ReportError(f"{path}: not readable as JSON: " + " ".join(str(e).split())) from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: not a JSON object")
    return data


def _img(fig: Figure, alt: str) -> str:
    return f"<img src=\"data:image/png;base64,{base64.b64encode(figure_png(fig)).decode()}\" alt=\"{alt}\">"


def _table(rows: list[tuple[str, str]], header: tuple[str, str] | None = None) -> str:
    e = html.escape
    head = f"<tr><th>{e(header[0])}</th><th>{e(header[1])}</th></tr>" if header else ""
    body = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" if not header else
                   f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in rows)
    return f"<table>{head}{body}</table>"


def _running_mean(values: np.ndarray, window: int) -> np.ndarray:
    """``values`` ``[N]`` averaged over the ``window`` rows ending at each (fewer at the start)."""
    if window <= 1:
        return values
    csum = np.concatenate([[0.0], np.cumsum(values)])
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (csum[idx] - csum[lo]) / (idx - lo)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _get(config: dict, section: str, key: str) -> Any:
    value = config.get(section)
    return value.get(key) if isinstance(value, dict) else None


__all__ = ["REPORT_NAME", "ReportError", "ReportSummary", "RunFiles", "read_run", "write_report", "loss_figure",
           "ap_figure", "render_page"]
