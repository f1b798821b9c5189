#!/usr/bin/env python3
"""Train a localizer from a YAML config, then detect and evaluate on the config's test subset.

    python tools/train_localizer.py --config configs/sfnet_thumos14.yaml --features th14_features --out runs/sfnet
    python tools/train_localizer.py --out runs/sfnet --resume [--set train.iterations=10000]
    python tools/train_localizer.py --out runs/sfnet --eval-only [--checkpoint runs/sfnet/checkpoint_last.pt]

The run folder gets the resolved config (config.yaml), checkpoints, train_log.jsonl/.csv (every loss term, every
iteration), detections.json (ActivityNet results schema, seconds) and results.json (mAP per tIoU). ``--set`` overrides
any config key, e.g. ``--set train.iterations=500 --set model.params.eta=7``. Model selection never looks at the
test subset (train.select: last, or val_loss / val_map on data.val_fraction of the training subset).

``--resume`` continues from the run's last checkpoint with the run's own config.yaml (or ``--config``); a config
that changes what the run trains is refused, naming the keys; train.iterations may grow (docs/sfnet.md lists what
may change). A folder that already holds a run is refused (naming it and its last iteration) unless ``--resume``
or ``--overwrite`` is given; one training or evaluation writes a run folder at a time (a second is refused naming
the first). Exit status: 0 done; 2 a config, data, checkpoint or run-folder error (one line naming the file and
key); 3 a non-finite loss (naming the iteration and loss term); 4 the disk is full (naming the file; the run
resumes from its last checkpoint once there is space); 130 interrupted (Ctrl-C; ``--resume`` continues from the
last checkpoint).

Watching: what the run logs (label summary, a progress line every 5 % of the schedule or 30 s when the output is
not a terminal, validation) is shown on stdout (warnings on stderr) and appended to ``run.log`` in the run folder;
``--quiet`` shows warnings only (``run.log`` keeps everything), ``--verbose`` adds debug messages. TensorBoard:
``tensorboard --logdir RUN`` (``train.tensorboard``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clicktal.pipeline.core.config import ConfigError, load_config
from clicktal.pipeline.core.files import DiskFullError
from clicktal.pipeline.core.locks import FolderBusyError
from clicktal.pipeline.data.cache import CacheError
from clicktal.pipeline.runs.engine import NonFiniteLossError, add_log_options, console_logging, log_level
from clicktal.pipeline.runs.schema import ExperimentConfig
from clicktal.pipeline.runs.experiments import apply_overrides, evaluate_run, parse_set, run_experiment
from clicktal.tools.tables import format_results


def _fail(error: BaseException, status: int) -> int:
    print("error: " + " ".join(str(error).split()), file=sys.stderr)  # one line
    return status


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="experiment YAML (configs/*.yaml); not needed with --eval-only, and with "
                                    "--resume the run's own config.yaml is the default")
    p.add_argument("--features", help="feature folder (cache or synthesizer output); overrides data.features")
    p.add_argument("--out", help="run folder (default runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint_last.pt")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in --out (without it, refused)")
    p.add_argument("--eval-only", action="store_true", help="detect + evaluate with a trained run's weights")
    p.add_argument("--checkpoint", help="with --eval-only: weights to use (default: the run's selected ones)")
    p.add_argument("--subset", help="with --eval-only: evaluate this subset instead of data.test_subset")
    p.add_argument("--seed", type=int, help="overrides train.seed")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    add_log_options(p)
    args = p.parse_args(argv)
    if args.resume and args.overwrite:
        p.error("--resume continues the run in --out, --overwrite replaces it: give one")
    with console_logging(log_level(args)):
        return _train(p, args)


def _train(p: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """The work of :func:`main` on its parsed arguments ``args``."""
    try:
        if args.eval_only:
            if not args.out:
                p.error("--eval-only needs --out (the run folder)")
            result = evaluate_run(args.out, features=args.features, checkpoint=args.checkpoint, subset=args.subset)
            report = load_config(ExperimentConfig, Path(args.out) / "config.yaml").evaluation.report
        else:
            if not args.config and not (args.resume and args.out):
                p.error("--config is required (except with --eval-only, and with --resume --out RUN)")
            config = args.config or Path(args.out) / "config.yaml"
            if not Path(config).is_file():
                raise FileNotFoundError(f"{config}: no such config" + ("" if args.config else
                                        f" ({args.out} is not a run folder; pass --config)"))
            overrides = parse_set(args.set)
            if args.features:
                overrides.setdefault("data", {})["features"] = args.features
            if args.seed is not None:
                overrides.setdefault("train", {})["seed"] = args.seed
            cfg = apply_overrides(load_config(ExperimentConfig, config), overrides, "command line")
            out = Path(args.out or Path("runs") / cfg.name)
            result = run_experiment(cfg, out, resume=args.resume, overwrite=args.overwrite)
            report = cfg.evaluation.report
    except DiskFullError as e:
        return _fail(e, 4)
    except (ConfigError, ValueError, OSError, CacheError, FolderBusyError) as e:  # a checkpoint or resume refused, ...
        return _fail(e, 2)
    except NonFiniteLossError as e:
        return _fail(e, 3)
    except KeyboardInterrupt:
        return _fail(KeyboardInterrupt("interrupted; --resume continues from the last checkpoint"), 130)
    print(format_results([(result.name, [result.row(report)])], report,
                         title=f"{result.name}: test mAP (%), weights: {result.selected}"))
    print(f"detections: {result.detections}\nresults: {result.run_dir / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
