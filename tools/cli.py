#!/usr/bin/env python3
"""``clicktal <command> [args]``: every ``clicktal-<command>`` tool behind one command (the Docker images' entry
point). The commands are the installed ``clicktal-*`` console scripts, so the two spellings never drift apart.

    clicktal detect video.mp4 --run runs/kinetics      # = clicktal-detect video.mp4 --run runs/kinetics
    clicktal --help                                     # the commands

Exit status: the tool's own; 2 for an unknown command.
"""
from __future__ import annotations

import importlib
import sys
from importlib.metadata import entry_points

PREFIX = "clicktal-"


def commands() -> dict[str, str]:
    """``command -> "module:function"`` of the installed ``clicktal-*`` console scripts."""
    return {ep.name[len(PREFIX):]: ep.value for ep in entry_points(group="console_scripts")
            if ep.name.startswith(PREFIX)}


def _usage(known: dict[str, str]) -> str:
    lines = ["usage: clicktal <command> [args]   (clicktal <command> --help for its options)", "", "commands:"]
    for name, target in sorted(known.items()):
        doc = (importlib.import_module(target.split(":")[0]).__doc__ or "").strip().splitlines()
        lines.append(f"  {name:<14} {doc[0] if doc else ''}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    known = commands()
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage(known))
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in known:
        print(f"clicktal: unknown command {name!r}; commands: {', '.join(sorted(known))}", file=sys.stderr)
        return 2
    module, func = known[name].split(":")
    sys.argv[0] = f"clicktal {name}"  # argparse's usage line names the command as typed
    return getattr(importlib.import_module(module), func)(rest)


if __name__ == "__main__":
    sys.exit(main())
