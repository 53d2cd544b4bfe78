"""The executed notebooks of a real build (products/<coin>/0*.html of the session's demo build) read as a story:
headings, and each notebook's plot or table, drawn offline in Chromium; and the next hour's build, in-process with
.ipynb notebooks as the hourly tick runs, whose train notebook shows the standing backtest although it did not train.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import coincast

pytestmark = pytest.mark.pipeline

NOTEBOOKS = ("01_extract", "02_validate", "03_features", "04_profile", "05_train", "06_forecast", "07_monitor")
#: each notebook's plot, by a phrase of its title (in the figure's JSON); 02 shows a table of the checks instead
PLOTS = {"01_extract": "hourly prices (all fetched by this build)", "05_train": "Backtest rel_mae per model",
         "06_forecast": "last 72 h and the next 24 h", "07_monitor": "Live accuracy: too few to score yet"}
COINS = ("bitcoin", "ethereum")


def headings(html_text: str, tag: str) -> list[str]:
    return [re.sub(r"<[^>]+>|¶", "", h).strip() for h in re.findall(rf"<{tag}[^>]*>(.*?)</{tag}>", html_text, re.S)]


def test_executed_notebooks_tell_the_story(demo: Path):
    for coin in COINS:
        out = demo / "products" / coin
        for name in NOTEBOOKS:
            text = (out / f"{name}.html").read_text()
            title, sections = headings(text, "h1"), headings(text, "h2")
            assert len(title) == 1 and title[0].startswith(name[:2] + " · "), (coin, name, title)
            assert "What this stage does" in sections, (coin, name, sections)
            assert {"What to look at", "What the numbers mean"} & set(sections), (coin, name, sections)
            plotted = "plotly-graph-div" in text
            assert plotted == (name in PLOTS), (coin, name)
            if plotted:  # plotly.js inline (the page draws offline, as backtest.html does) and this notebook's figure
                assert "window.Plotly" in text and PLOTS[name] in text, (coin, name)
        checks = (out / "02_validate.html").read_text()
        assert all(f"<th>{col}</th>" in checks for col in ("passed", "value", "limit", "message"))
        assert "Trained this build" in (out / "05_train.html").read_text()


def test_executed_notebooks_draw_their_plots_offline(demo: Path, browser):
    # two pages (~4 s each: 4.8 MB of plotly.js to parse): every notebook's plot is embedded the same way
    # (figures.embed, tests/test_figures.py); these two have the panels and the shapes laid out by hand
    for name in ("05_train", "06_forecast"):
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.route(re.compile(r"^https?://"), lambda route: route.abort())  # offline: the CDN scripts fail
        page.goto((demo / "products" / "bitcoin" / f"{name}.html").as_uri(), wait_until="load", timeout=60_000)
        page.wait_for_selector(".plotly-graph-div .main-svg", timeout=30_000)
        assert not errors, (name, errors)
        page.close()


def test_the_train_notebook_shows_the_standing_backtest_when_training_is_skipped(demo_copy: Path):
    """The next hour's build, in-process with .ipynb notebooks as the hourly tick runs: training is not due, and
    05 still shows the champion's backtest (from the last training), saying why it did not train."""
    import nbformat

    res = coincast(demo_copy, "--env", "env.test.yaml", "--coins", "bitcoin", "--replay-now", "2025-06-01T13:30:00Z",
                   "--set", "executed_format=ipynb")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    out = demo_copy / "products" / "bitcoin"

    def outputs(name: str) -> list[dict]:
        nb = nbformat.read(out / f"{name}.ipynb", as_version=4)
        assert [c for c in nb.cells if c.cell_type == "markdown" and c.source.startswith("# ")], name
        found = [o for c in nb.cells for o in c.get("outputs", [])]
        assert not [o for o in found if o["output_type"] == "error"], name
        return found

    def plot_title(name: str) -> str:
        shown = outputs(name)
        plots = [o["data"]["application/vnd.plotly.v1+json"] for o in shown
                 if "application/vnd.plotly.v1+json" in o.get("data", {})]
        assert len(plots) == 1, name
        assert not [o for o in shown if "window.Plotly" in o.get("data", {}).get("text/html", "")], name  # no 4.8 MB
        return plots[0]["layout"]["title"]["text"]

    notes = [o["data"]["text/markdown"] for o in outputs("05_train") if "text/markdown" in o.get("data", {})]
    assert any(n.startswith("**Training skipped this build**: champion trained") for n in notes), notes
    registry = json.loads((out / "registry.json").read_text())
    assert any(f"champion **{registry['champion']['model_name']}**" in n for n in notes)
    assert plot_title("05_train").startswith("Backtest rel_mae per model")
    assert "(1 fetched by this build)" in plot_title("01_extract")
    assert plot_title("06_forecast").endswith("last 72 h and the next 24 h")
    assert plot_title("07_monitor").startswith("Live accuracy: too few to score yet")  # 1 scored of 24 needed
