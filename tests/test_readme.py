"""README.md is what a new user reads first: its commands must run as written, and its links must lead somewhere.

* The shell lines of the "Quick start" and "Detect" sections (fenced ```sh blocks, the README's one style for
  commands) run as written, in that order, in one bash session: in a copy of this checkout (so that `make demo`'s
  `demo_out/` and the `runs/` and `det/` folders the lines name land in a temporary folder) that sits beside a
  `shared/benchkit` (the sample data the lines reach as `../shared/benchkit`). The copy's `.venv` is the virtual
  environment this test runs in, so `make` finds it built; the session starts without it on PATH, so the
  README's own `source .venv/bin/activate` is what puts the `clicktal-*` commands there. A line that fails fails
  the test, naming the line.
* README has fewer than 250 lines before its architecture section.
* Every relative link (and `#anchor` into a Markdown file) resolves; every console script of setup.cfg is named;
  examples use the installed commands, never `python tools/<name>.py`.
"""
from __future__ import annotations

import configparser
import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
RUN_SECTIONS = ("Quick start", "Detect")
ARCHITECTURE = "## Layout and architecture"
MAX_LINES_BEFORE_ARCHITECTURE = 250
MAX_IMAGE_BYTES = 200_000


def section(text: str, title: str) -> str:
    """The body of the ``## <title>...`` section of Markdown ``text`` (up to the next ``## `` heading)."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(f"## {title}")]
    assert len(starts) == 1, f"README needs exactly one '## {title}' section, found {len(starts)}"
    body = []
    for line in lines[starts[0] + 1:]:
        if line.startswith("## "):
            break
        body.append(line)
    return "\n".join(body)


def shell_lines(markdown: str) -> list[str]:
    """The commands of the fenced ```sh blocks of ``markdown``: one per line, a line ending in ``\\`` joined with
    the next, blank and comment-only lines left out."""
    commands, block, pending = [], False, ""
    for line in markdown.splitlines():
        if line.strip().startswith("```"):
            block = line.strip() == "```sh" if not block else False
            continue
        if not block:
            continue
        pending += line
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        if pending.strip() and not pending.strip().startswith("#"):
            commands.append(pending.strip())
        pending = ""
    assert not pending, f"a ```sh block ends inside a continued line: {pending!r}"
    return commands


def bash_script(commands: list[str]) -> str:
    """A bash script that runs ``commands`` one after another, echoing each, and stops at the first that fails,
    naming it on stderr."""
    lines = ["set -e -o pipefail",
             """trap 'echo "README command failed (exit status $?): $BASH_COMMAND" >&2' ERR"""]
    for command in commands:
        lines += [f"printf '%s\\n' {shlex.quote('$ ' + command)}", command]
    return "\n".join(lines) + "\n"


def run_commands(commands: list[str], cwd: Path, env: dict[str, str], log: Path,
                 timeout_s: float) -> subprocess.CompletedProcess:
    """Run ``commands`` in one bash session in ``cwd``; stdout and stderr go to ``log``."""
    with open(log, "w") as out:
        return subprocess.run(["bash", "-c", bash_script(commands)], cwd=cwd, env=env, stdout=out,
                              stderr=subprocess.STDOUT, timeout=timeout_s)


def copy_checkout(src: Path, dst: Path) -> None:
    """Copy the checkout ``src`` to ``dst`` as git would see it: without `.git` and what `.gitignore` ignores (its
    patterns are plain names or globs; a leading `/` anchors one to the top folder). Modification times are kept,
    so that make compares setup.cfg with the environment's stamp as it would in ``src``."""
    patterns = [p.strip() for p in (src / ".gitignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]

    def ignored(folder: str, names: list[str]) -> set[str]:
        top = Path(folder) == src
        out = {".git"} & set(names)
        for pattern in patterns:
            anchored, glob = pattern.startswith("/"), pattern.strip("/")
            if anchored and not top:
                continue
            out |= {n for n in names if fnmatch.fnmatch(n, glob)}
        return out

    shutil.copytree(src, dst, ignore=ignored, symlinks=True)


def session_env(venv: Path) -> dict[str, str]:
    """This process's environment for a fresh shell: no virtual environment active, none of make's variables
    (this test may itself run under `make test`)."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"VIRTUAL_ENV", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"}}
    bins = {str(venv / "bin"), str(REPO / ".venv" / "bin")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p and os.path.realpath(p) not in {os.path.realpath(b) for b in bins})
    return env


# ------------------------------------------------------------------------------------------------------------
# the README's commands, as written

def test_shell_lines_are_read_from_sh_blocks_only():
    text = ("intro\n```sh\nmake demo     # a comment\n# only a comment\n\nclicktal-detect a \\\n    --out b\n```\n"
            "```text\nnot a command\n```\n    indented: not a command\n")
    assert shell_lines(text) == ["make demo     # a comment", "clicktal-detect a      --out b"]


def test_a_failing_line_stops_the_session_and_is_named(tmp_path):
    """What makes the README test fail when one of its commands fails."""
    log = tmp_path / "log"
    result = run_commands(["echo first", "cd no_such_folder", "echo never"], tmp_path, dict(os.environ), log, 60)
    text = log.read_text()
    assert result.returncode != 0
    assert "$ echo first" in text and "first" in text and "never" not in text.replace("$ echo never", "")
    assert "README command failed (exit status 1): cd no_such_folder" in text


def test_copy_of_checkout_leaves_out_what_git_ignores(tmp_path):
    src = tmp_path / "src"
    for path in ("a.py", "runs/x.json", "pipeline/runs/engine.py", "pkg/__pycache__/m.pyc", ".git/HEAD",
                 "demo_out/f"):
        (src / path).parent.mkdir(parents=True, exist_ok=True)
        (src / path).write_text("x")
    (src / ".gitignore").write_text("__pycache__/\n/runs/\n/demo_out/\n")
    copy_checkout(src, tmp_path / "dst")
    kept = sorted(str(p.relative_to(tmp_path / "dst")) for p in (tmp_path / "dst").rglob("*") if p.is_file())
    assert kept == [".gitignore", "a.py", "pipeline/runs/engine.py"]


@pytest.mark.slow
def test_quick_start_and_detect_run_as_written(tmp_path, benchkit):
    """`make demo`, then the Detect section's commands, in a copy of the checkout beside ../shared/benchkit."""
    if sys.prefix == sys.base_prefix:
        pytest.skip("not running in a virtual environment: the README's `make demo` would build one")
    text = README.read_text()
    commands = [c for title in RUN_SECTIONS for c in shell_lines(section(text, title))]
    assert any(c.startswith("make demo") for c in commands) and any(c.startswith("clicktal-detect") for c in commands)
    work = tmp_path / "clicktal"
    copy_checkout(REPO, work)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "benchkit").symlink_to(benchkit.resolve())
    venv = Path(sys.prefix)
    (work / ".venv").symlink_to(venv)
    env = session_env(venv)
    # the copy must never install into the environment it shares: an editable install from it would point the
    # environment at a folder this test deletes. Make's own question mode says whether `make demo` would.
    stale = subprocess.run(["make", "-q", "venv"], cwd=work, env=env)
    if stale.returncode != 0:
        pytest.fail(f"{venv}/.installed is missing or older than setup.cfg or pyproject.toml, so the README's "
                    f"`make demo` would reinstall the environment: run `make venv` in {REPO} first")
    log = tmp_path / "readme_commands.log"
    result = run_commands(commands, work, env, log, timeout_s=3000)
    output = log.read_text()
    print(output)
    assert result.returncode == 0, f"a README command failed; the session's output ends:\n{output[-6000:]}"
    assert "demo finished" in output
    assert (work / "demo_out" / "results.json").is_file()
    for command in commands:
        if command.startswith("clicktal-detect"):
            out = Path(shlex.split(command)[shlex.split(command).index("--out") + 1])
            assert (work / out).is_file() and (work / out.with_suffix(".csv")).is_file()
            assert list((work / out.with_name(out.stem + ".timelines")).glob("*.png"))


# ------------------------------------------------------------------------------------------------------------
# the README's shape and links

def test_readme_is_short_before_the_architecture_section():
    lines = README.read_text().splitlines()
    assert ARCHITECTURE in lines, f"README has no '{ARCHITECTURE}' heading"
    before = lines.index(ARCHITECTURE)
    assert before < MAX_LINES_BEFORE_ARCHITECTURE, f"{before} lines before '{ARCHITECTURE}'"


def test_quick_start_and_detect_have_commands():
    text = README.read_text()
    quick = shell_lines(section(text, "Quick start"))
    assert quick[0].startswith("make demo"), quick
    assert "make test" in section(text, "Quick start")  # named there; it runs in Development's block
    assert any(c.startswith("clicktal-detect") for c in shell_lines(section(text, "Detect")))


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation other than `-` and `_` dropped, spaces
    to `-`."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(markdown: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", markdown.read_text(), flags=re.S)  # a `#` in a code block is no heading
    return {github_anchor(m.group(1)) for m in re.finditer(r"^#+\s+(.+)$", text, flags=re.M)}


@pytest.mark.parametrize("page", [README, REPO / "docs" / "reference.md"], ids=lambda p: p.name)
def test_relative_links_resolve(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert links
    broken = []
    for link in links:
        if re.match(r"[a-z]+:", link):
            continue
        path, _, anchor = link.partition("#")
        target = page if not path else (page.parent / path)
        if not target.exists():
            broken.append(f"{link}: no {path}")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            broken.append(f"{link}: no heading with anchor #{anchor} in {path or page.name}")
        elif target.suffix == ".png" and target.stat().st_size >= MAX_IMAGE_BYTES:
            broken.append(f"{link}: {target.stat().st_size} bytes (keep README's pictures under 200 KB)")
    assert not broken, "\n".join(broken)


def test_every_console_script_is_named():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    scripts = [line.split("=")[0].strip() for line in cfg["options.entry_points"]["console_scripts"].splitlines()
               if line.strip()]
    assert "clicktal-detect" in scripts
    text = README.read_text()
    assert not [s for s in scripts if f"`{s}`" not in text and not re.search(rf"^{re.escape(s)} ", text, re.M)]


def test_examples_use_the_installed_commands():
    assert not re.findall(r"python3? tools/\w+\.py", README.read_text())
