"""``clicktal <command>``: each installed ``clicktal-<command>`` behind one entry point (the Docker images')."""
import configparser
from pathlib import Path

import pytest

from clicktal.tools import cli

REPO = Path(__file__).resolve().parents[2]


def test_the_commands_are_the_clicktal_console_scripts_of_setup_cfg():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    scripts = dict(line.split(" = ") for line in cfg["options.entry_points"]["console_scripts"].strip().splitlines())
    expected = {name[len("clicktal-"):]: target for name, target in scripts.items() if name.startswith("clicktal-")}
    assert cli.commands() == expected and "weights" in expected and "report" in expected


def test_a_command_runs_its_tool_with_the_rest_of_the_arguments(capsys):
    with pytest.raises(SystemExit) as done:  # argparse's --help exits 0 after printing the tool's own usage
        cli.main(["weights", "--help"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("usage: clicktal weights")


def test_help_lists_every_command_and_an_unknown_one_is_exit_2(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {name} " in out for name in cli.commands())
    assert cli.main(["extrac"]) == 2
    assert "unknown command 'extrac'" in capsys.readouterr().err
    assert cli.main([]) == 2
