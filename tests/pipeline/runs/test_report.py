"""``clicktal-report RUN``: one self-contained HTML page per run (config summary, loss curves, per-class AP,
timelines from the saved raw outputs), refused over an existing page, one line and exit 2 on a bad folder; and the
page rendered by headless Chromium, when installed, is a non-blank picture with the run's name in its text."""
import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from clicktal.pipeline.runs.engine import read_log
from clicktal.pipeline.runs.raw import load_raw
from clicktal.pipeline.runs.report import ReportError, loss_figure, write_report

NAME = "report-probe-run"
PNG = b"\x89PNG\r\n\x1a\n"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, train_small_run):
    root, _ = train_small_run(tmp_path_factory.mktemp("report"), seed=6, n_videos=12, name=NAME,
                              data={"val_fraction": 0.25}, train={"iterations": 6, "seed": 1, "validate_every": 3})
    return root / "run"


@pytest.fixture
def run(trained, tmp_path) -> Path:
    """A copy of the trained run folder, for a test to write its report into."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


def images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_the_page_holds_the_summary_curves_ap_and_timelines_inlined_with_nothing_fetched(run):
    summary = write_report(run, timelines=2)
    page = (run / "report.html").read_text()
    assert summary.path == run / "report.html" and summary.notes == []
    assert f"<title>{NAME}: clicktal run report</title>" in page and f"<h1>{NAME}</h1>" in page
    # self-contained: every picture inlined as PNG, no script, nothing referenced outside the file
    pictures = images(page)
    assert len(pictures) == 1 + 1 + 2 and all(p.startswith(PNG) for p in pictures)
    assert page.count("<img ") == 4 and "<script" not in page
    assert not re.search(r'(src|href)="(?!data:)', page) and "http" not in page.replace(str(run), "")
    # the first test videos of the raw outputs, drawn with their curves
    assert summary.videos == list(load_raw(run, "test").videos)[:2]
    assert all(f"<h3>{v}: " in page for v in summary.videos)
    results = json.loads((run / "results.json").read_text())
    assert f"<td>0.10</td><td>{results['mAP']['0.10']:.4f}</td>" in page
    assert "detection score = highest value of its class&#x27;s curve inside the segment" in page


def test_the_loss_figure_has_every_logged_loss_term_the_counts_and_the_validation(run):
    from matplotlib.text import Text
    import matplotlib.pyplot as plt

    rows, val = read_log(run / "train_log.jsonl", print), read_log(run / "val_log.jsonl", print)
    fig = loss_figure(rows, val)
    texts = {t.get_text() for t in fig.findobj(Text)}
    plt.close(fig)
    terms = set(rows[0]) - {"iteration", "grad_norm", "lr", "seconds"}
    assert {"total", "n_clicks"} <= terms <= texts
    assert {"val_loss", "val_map", "validation", "learning rate", "iteration"} <= texts
    assert len(val) == 2


def test_without_raw_outputs_the_timelines_have_no_curves_and_the_page_says_why(run):
    shutil.rmtree(run / "raw")
    summary = write_report(run, videos=["synth_0011"])
    page = (run / "report.html").read_text()
    assert summary.videos == ["synth_0011"] and len(images(page)) == 3
    assert any("timelines without score curves" in n and "test.json: no such file" in n for n in summary.notes)
    assert "<h2>Notes</h2>" in page and "timelines without score curves" in page


def test_an_existing_page_is_kept_unless_overwrite(run):
    write_report(run, timelines=1)
    (run / "report.html").write_text("kept")
    with pytest.raises(ReportError, match="report.html: exists; replace it with --overwrite"):
        write_report(run, timelines=1)
    assert (run / "report.html").read_text() == "kept"
    write_report(run, timelines=1, overwrite=True)
    assert NAME in (run / "report.html").read_text()


def test_the_command_writes_the_page_and_says_one_line_with_exit_2_on_a_bad_folder(run, tmp_path, load_tool,
                                                                                     capsys):
    tool = load_tool("report")
    assert tool.main([str(run), "--timelines", "1"]) == 0
    out = capsys.readouterr().out
    assert f"{run / 'report.html'} (" in out and "1 timelines" in out
    for argv, said in (([str(tmp_path / "nothing")], "no such run folder"),
                       ([str(tmp_path)], "not a run folder (no config.yaml"),
                       ([str(run)], "exists; replace it with --overwrite"),
                       ([str(run), "--overwrite", "--video", "nope"], "video(s) nope not among the"),
                       ([str(run), "--overwrite", "--timelines", "-1"], "timelines must be >= 0")):
        assert tool.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and said in err
    (run / "results.json").write_text("{cut")
    assert tool.main([str(run), "--overwrite"]) == 2
    assert "results.json: not readable as JSON" in capsys.readouterr().err


def browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


@pytest.mark.skipif(browser() is None, reason="no headless Chromium here (Debian: apt-get install -y chromium)")
def test_headless_chromium_renders_a_non_blank_page_with_the_run_name(run, tmp_path):
    import matplotlib.image

    write_report(run, timelines=2)
    url = (run / "report.html").resolve().as_uri()
    flags = [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert f"<h1>{NAME}</h1>" in dom.stdout and dom.stdout.count("<img ") == 4
    shot = tmp_path / "page.png"
    done = subprocess.run([*flags, "--window-size=1200,1800", f"--screenshot={shot}", url], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    pixels = matplotlib.image.imread(shot)[..., :3]  # [H, W, 3] in 0..1
    assert pixels.shape[:2] == (1800, 1200)
    assert pixels.std() > 0.05  # not blank
    # the inlined plots were decoded and drawn: text alone is black and grey, the curves are in colour
    coloured = (pixels.max(-1) - pixels.min(-1)) > 0.25
    assert coloured.mean() > 0.002, coloured.mean()
