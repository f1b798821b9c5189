#!/usr/bin/env python3
"""Train a localizer from a YAML config, then detect and evaluate on the config's test subset.

    python tools/train_localizer.py --config configs/sfnet_thumos14.yaml --features th14_features --out runs/sfnet
    python tools/train_localizer.py --config configs/sfnet_thumos14.yaml --out runs/sfnet --resume
    python tools/train_localizer.py --out runs/sfnet --eval-only [--checkpoint runs/sfnet/checkpoint_last.pt]

The run folder gets the resolved config (config.yaml), checkpoints, train_log.jsonl/.csv (every loss term, every
iteration), detections.json (ActivityNet results schema, seconds) and results.json (mAP per tIoU). ``--set`` overrides
any config key, e.g. ``--set train.iterations=500 --set model.params.eta=7``. Model selection never looks at the
test subset (train.select: last, or val_loss / val_map on data.val_fraction of the training subset).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clicktal.pipeline.core.config import ConfigError, load_config
from clicktal.pipeline.runs.engine import NonFiniteLossError
from clicktal.pipeline.runs.schema import ExperimentConfig
from clicktal.pipeline.runs.experiments import apply_overrides, evaluate_run, parse_set, run_experiment
from clicktal.tools.tables import format_results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="experiment YAML (configs/*.yaml); not needed with --eval-only")
    p.add_argument("--features", help="feature folder (cache or synthesizer output); overrides data.features")
    p.add_argument("--out", help="run folder (default runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint_last.pt")
    p.add_argument("--eval-only", action="store_true", help="detect + evaluate with a trained run's weights")
    p.add_argument("--checkpoint", help="with --eval-only: weights to use (default: the run's selected ones)")
    p.add_argument("--subset", help="with --eval-only: evaluate this subset instead of data.test_subset")
    p.add_argument("--seed", type=int, help="overrides train.seed")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    args = p.parse_args(argv)

    try:
        if args.eval_only:
            if not args.out:
                p.error("--eval-only needs --out (the run folder)")
            result = evaluate_run(args.out, features=args.features, checkpoint=args.checkpoint, subset=args.subset)
            report = load_config(ExperimentConfig, Path(args.out) / "config.yaml").evaluation.report
        else:
            if not args.config:
                p.error("--config is required (except with --eval-only)")
            overrides = parse_set(args.set)
            if args.features:
                overrides.setdefault("data", {})["features"] = args.features
            if args.seed is not None:
                overrides.setdefault("train", {})["seed"] = args.seed
            cfg = apply_overrides(load_config(ExperimentConfig, args.config), overrides, "command line")
            out = Path(args.out or Path("runs") / cfg.name)
            result = run_experiment(cfg, out, resume=args.resume)
            report = cfg.evaluation.report
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    print(format_results([(result.name, [result.row(report)])], report,
                         title=f"{result.name}: test mAP (%), weights: {result.selected}"))
    print(f"detections: {result.detections}\nresults: {result.run_dir / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
