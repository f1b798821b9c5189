"""What the ablation benchmarks share: synthetic features written once, one run of a config with overrides, and a
pool of such runs. Run as part of the benchmark scripts (this folder is on their ``sys.path``)."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCHKIT = Path(os.environ.get("CLICKTAL_BENCHKIT", REPO.parent / "shared" / "benchkit"))


def synthesize(name: str, gt: str, work: Path, dim: int, seed: int, difficulty: float, *extra: str) -> Path:
    """``benchkit/synth.py`` on the ground truth ``gt`` (relative to the benchkit), once per setting. The folder is
    returned absolute: runs record it, and a resumed table must not see a relative ``--work`` as other features."""
    out = (work / f"{name}_d{dim}_s{seed}_x{difficulty:g}").resolve()
    if not (out / "annotations.json").exists():
        subprocess.run([sys.executable, str(BENCHKIT / "synth.py"), "--gt", str(BENCHKIT / gt), "--out", str(out),
                        "--seed", str(seed), "--dim", str(dim), "--difficulty", str(difficulty), *extra], check=True)
    return out


def world(name: str, gt: str, work: Path, dim: int, seed: int, difficulty: float, params: dict | None = None,
          **options) -> Path:
    """The proxy world (``clicktal.pipeline.data.world``, at its current version) on the ground truth ``gt``
    (relative to the benchkit), once per setting; the folder is returned absolute, named with the world's version
    so that a new version never reuses an old one's features. ``params`` replaces world parameters (calibration
    candidates before a version is frozen; named in the folder)."""
    from clicktal.pipeline.data.world import WORLD_VERSION, WorldParams, write_world

    tag = "".join(f"_{k}{v:g}" for k, v in sorted((params or {}).items()))
    out = (work / f"world_v{WORLD_VERSION}{tag}_{name}_d{dim}_s{seed}_x{difficulty:g}").resolve()
    if not (out / "annotations.json").exists():
        meta = write_world(BENCHKIT / gt, out, seed=seed, dim=dim, difficulty=difficulty,
                           params=WorldParams.from_dict(params or {}), **options)
        print(f"{out}: proxy world v{WORLD_VERSION}, {meta['videos']} videos, {len(meta['extended_videos'])} "
              f"extended to cover annotations past their duration", flush=True)
    return out


def run_config(config: str, overrides: dict, work: Path, threads: int, **tags) -> dict:
    """Train and evaluate ``config`` (relative to the repository) with ``overrides`` under ``work/runs/<name>``; a
    run folder with a checkpoint is resumed (a finished run is only evaluated again, with the current evaluation
    settings; a changed training config is refused, naming the keys). Returns ``tags`` with the run's name, the
    reported row (mAP in %, AVG last), the minutes, the mAP per tIoU and the frame-level mAP in % (None unless the
    config reports it)."""
    import torch

    from clicktal.pipeline.core.config import load_config
    from clicktal.pipeline.runs.engine import read_log
    from clicktal.pipeline.runs.experiments import run_experiment
    from clicktal.pipeline.runs.schema import ExperimentConfig

    torch.set_num_threads(threads)
    cfg = load_config(ExperimentConfig, REPO / config, overrides)
    out = Path(work) / "runs" / cfg.name
    t0 = time.perf_counter()
    res = run_experiment(cfg, out, resume=(out / "checkpoint_last.pt").exists())
    minutes = (time.perf_counter() - t0) / 60
    row = res.row(cfg.evaluation.report)
    print(f"  {cfg.name}: AVG {row[-1]:.1f}  ({minutes:.1f} min)", flush=True)
    log = read_log(out / "train_log.jsonl", note=print)
    train_minutes = sum(r["seconds"] for r in log) / 60  # every iteration's time, across resumes
    frame = res.extra.get("frame_mAP")
    plain = res.extra.get("average_mAP_without_class_selection")
    return {**tags, "name": cfg.name, "row": row, "minutes": minutes, "train_minutes": train_minutes,
            "report": cfg.evaluation.report, "mAP": {f"{k:.1f}": v for k, v in res.mAP.items()},
            "frame_mAP": None if frame is None else 100 * frame["mAP"],
            "avg_without_class_selection": None if plain is None else 100 * plain,
            **mining_yield(log, cfg.model.params.get("mining", {}).get("start_iteration", 0)),
            "loss_curve": loss_curve(log, "frame"), "total_loss_curve": loss_curve(log)}


def mining_yield(log: list[dict], start: int) -> dict:
    """Mined snippets per clicked snippet in the batches from ``start`` (the mining iteration) on, and the share of
    them whose ground truth holds the mined class; None where nothing was mined."""
    rows = [r for r in log if r["iteration"] >= start]
    mined, clicks = sum(r.get("n_mined", 0) for r in rows), sum(r.get("n_clicks", 0) for r in rows)
    true = sum(r.get("n_mined_true", 0) for r in rows)
    return {"mined_per_click": mined / clicks if clicks and mined else None,
            "mined_precision": true / mined if mined else None}


def loss_curve(log: list[dict], key: str = "total", parts: int = 5) -> list[float]:
    """The mean of ``key`` over each of ``parts`` equal stretches of the schedule: a curve that has levelled off
    ends in near-equal values."""
    values = [r[key] for r in log if key in r]
    if not values:
        return []
    size = max(1, len(values) // parts)
    return [sum(values[i:i + size]) / len(values[i:i + size]) for i in range(0, size * parts, size)
            if values[i:i + size]]


def _call(job: tuple) -> dict:
    fn, args, kwargs = job
    return fn(*args, **kwargs)


def run_all(jobs: list[tuple], processes: int) -> list[dict]:
    """``[(fn, args, kwargs), ...]`` -> their results in order, ``processes`` at a time (spawned)."""
    if processes <= 1:
        return [_call(j) for j in jobs]
    with mp.get_context("spawn").Pool(processes) as pool:
        return pool.map(_call, jobs, chunksize=1)


def _stats(values: list[float]) -> dict:
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5  # over n, as the printed tables
    return {"mean": mean, "std": std, "min": min(values)}


def write_table_json(work: Path, groups: dict[str, list[dict]], *, merge: bool = False) -> dict:
    """``work/table.json``: ``{"rows": {row label: {"AVG": mean, "AVG_std", "AVG_min", "runs", "frame_mAP"?}}}``
    (mAP in %, over the runs of each row), the machine-readable twin of the printed table. ``merge`` keeps the rows
    of other tables a benchmark wrote into the same work folder (one benchmark, several tables)."""
    path = work / "table.json"
    rows = json.loads(path.read_text())["rows"] if merge and path.exists() else {}
    for label, runs in groups.items():
        avg = _stats([x["row"][-1] for x in runs])
        row = {"AVG": avg["mean"], "AVG_std": avg["std"], "AVG_min": avg["min"], "runs": len(runs)}
        frames = [x["frame_mAP"] for x in runs if x.get("frame_mAP") is not None]
        if len(frames) == len(runs):
            row["frame_mAP"] = _stats(frames)["mean"]
        rows[label] = row
    out = {"rows": rows}
    path.write_text(json.dumps(out, indent=1))
    return out


def write_report(work: Path, name: str, title: str, groups: dict[str, list[dict]], settings: str, wall: float,
                 results: list[dict], *, frame_map: bool = False) -> str:
    """The Markdown table of ``groups`` (row label -> its runs: mean ± std of their rows, training minutes per
    run; with ``frame_map`` a first column of frame-level mAP), printed and written to ``work/ablation_<name>.md``,
    with every run in ``ablation_<name>.json``."""
    from clicktal.tools.tables import format_results

    lead = lambda x: [x["frame_mAP"]] if frame_map else []  # noqa: E731
    rows = [(label, [lead(x) + x["row"] for x in runs]) for label, runs in groups.items()]
    minutes = {label: sum(x["train_minutes"] for x in runs) / len(runs) for label, runs in groups.items()}
    first = next(iter(groups.values()))[0]
    table = format_results(rows, first["report"], minutes=minutes, title=f"{title}, {settings}",
                           leading=["frame mAP"] if frame_map else [])
    print(table, flush=True)
    (work / f"ablation_{name}.md").write_text(table + "\n")
    write_table_json(work, groups, merge=True)
    (work / f"ablation_{name}.json").write_text(json.dumps({"settings": settings, "wall_minutes": wall,
                                                             "runs": results}, indent=1))
    return table
