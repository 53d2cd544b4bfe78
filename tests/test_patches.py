"""coincast.patches.

- lighten_ploomber_engine: ploomber-engine runs notebooks without importing matplotlib until one draws with it,
  and a notebook that draws still gets its figures inline, exactly as with ploomber-engine's own eager set-up.
- release_notebook_shells: a notebook's IPython shell, its variables and its history thread are gone when the
  notebook ends, not kept until the process exits.
- preload: imports with the cyclic collector off, then freezes what is alive, once.
- telemetry_off: importing coincast switches every usage ping off, leaving a variable set by the caller alone.

Each case runs in a fresh interpreter: whether matplotlib is imported, a frozen heap and the environment are
per-process facts (freezing the test process's own heap would outlive the test)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import version
from pathlib import Path

import nbformat
import pytest

from coincast import patches

SCRIPT = r"""
import json, sys
lazy = sys.argv[1] == "lazy"
drawing = sys.argv[2]
applied = None
if lazy:
    from coincast.patches import lighten_ploomber_engine
    applied = lighten_ploomber_engine()
    assert lighten_ploomber_engine() is True  # idempotent
import ploomber  # imports ploomber_engine, and papermill its engine plugins
from ploomber_engine import execute_notebook
seen = {"applied": applied, "after_import": "matplotlib" in sys.modules}
execute_notebook("plain.ipynb", "plain_out.ipynb")
seen["after_plain_notebook"] = "matplotlib" in sys.modules
outputs = []
for k in range(2):  # a new shell per notebook: the second one must be set up too
    nb = execute_notebook(drawing, f"draws_out{k}.ipynb")
    outputs.append([sorted({key for o in c.get("outputs", []) for key in o.get("data", {})}) for c in nb.cells])
seen["outputs"] = outputs
print(json.dumps(seen))
"""


def notebook(path: Path, *sources: str) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    nbformat.write(nb, path)


def run(tmp_path: Path, mode: str, drawing: str = "draws.ipynb") -> dict:
    notebook(tmp_path / "plain.ipynb", "x = sum(range(10))", "x")
    notebook(tmp_path / "draws.ipynb", "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])",
             "plt.figure()\nplt.plot([3, 2, 1])\nplt.show()", "y = 1")
    notebook(tmp_path / "magic.ipynb", "%matplotlib inline", "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, mode, drawing], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_notebooks_run_without_matplotlib_until_one_draws_and_its_figures_stay_inline(tmp_path: Path) -> None:
    eager, lazy = run(tmp_path, "eager"), run(tmp_path, "lazy")
    assert eager["after_import"] is True  # what lighten_ploomber_engine() is for: ploomber-engine's own start-up imports pyplot
    assert lazy["applied"] is True
    assert lazy["after_import"] is False and lazy["after_plain_notebook"] is False
    figure = ["image/png", "text/plain"]
    for outputs in lazy["outputs"]:  # both notebooks: each plotting cell shows its figure, the last cell nothing
        assert outputs[0] == figure and outputs[1] == figure and outputs[2] == []
    assert lazy["outputs"] == eager["outputs"]


def test_a_notebook_that_asks_for_the_inline_backend_itself_still_gets_it(tmp_path: Path) -> None:
    lazy = run(tmp_path, "lazy", "magic.ipynb")  # `%matplotlib inline` before matplotlib is imported
    assert lazy["after_plain_notebook"] is False
    assert lazy["outputs"] == [[[], ["image/png", "text/plain"]]] * 2


def test_lighten_leaves_a_process_that_already_imported_matplotlib_alone() -> None:
    code = ("import matplotlib, sys\nfrom coincast.patches import lighten_ploomber_engine\n"
            "print(lighten_ploomber_engine())\n"
            "from ploomber_engine.ipython import PloomberShell\n"
            "print(getattr(PloomberShell.enable_matplotlib, '_coincast_lazy', False))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["False", "False"], proc.stderr[-2000:]


def test_the_installed_ploomber_engine_is_the_release_lighten_knows() -> None:
    # lighten_ploomber_engine() reaches into ploomber-engine's internals; a new release must be re-checked first
    assert version("ploomber-engine") == patches.PLOOMBER_ENGINE_VERSION


@pytest.mark.parametrize("attr", ["subplots", "figure"])
def test_the_memory_plot_still_finds_pyplot(attr: str) -> None:
    assert callable(getattr(patches.LazyPyplot(), attr))


SHELLS = r"""
import gc, json, sys, threading, weakref
from coincast.patches import lighten_ploomber_engine, release_notebook_shells
lighten_ploomber_engine()  # as coincast builds
if sys.argv[1] == "release":
    assert release_notebook_shells() and release_notebook_shells()  # idempotent
from ploomber_engine import execute_notebook
from ploomber_engine.ipython import PloomberShell
shells = []
started = PloomberShell.__init__
def tracked(self):
    started(self)
    shells.append(weakref.ref(self))
PloomberShell.__init__ = tracked
for k in range(3):
    execute_notebook("big.ipynb", f"big_out{k}.ipynb", progress_bar=False)
gc.collect()
history = [t for t in threading.enumerate() if "history" in type(t).__name__.lower()]
print(json.dumps({"shells": sum(ref() is not None for ref in shells), "history_threads": len(history),
                  "main_restored": sys.modules["__main__"].__dict__ is globals(),
                  "out": json.load(open("big_out2.ipynb"))["cells"][1]["outputs"][0]["data"]["text/plain"]}))
"""


def test_each_notebook_shell_is_released_when_its_notebook_ends(tmp_path: Path) -> None:
    # the big variable is the notebook's own; the shell also caches the last output (`_`), which the
    # notebook's own clean-up leaves alone
    notebook(tmp_path / "big.ipynb", "big = list(range(200_000))", "len(big)")
    seen = {}
    for mode in ("keep", "release"):
        proc = subprocess.run([sys.executable, "-c", SHELLS, mode], cwd=tmp_path, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        seen[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["keep"]["shells"] == 3 and seen["keep"]["history_threads"] == 3  # each alive until exit
    assert seen["release"] == {"shells": 0, "history_threads": 0, "main_restored": True, "out": ["200000"]}


def run_preload(tmp_path, body: str) -> dict:
    (tmp_path / "probe_mod.py").write_text("import gc\nENABLED_DURING_IMPORT = gc.isenabled()\n")
    code = "import gc, json, sys\nsys.path.insert(0, %r)\nfrom coincast.patches import preload\n" % str(tmp_path)
    proc = subprocess.run([sys.executable, "-c", code + textwrap.dedent(body)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_preload_imports_with_the_collector_off_then_freezes_once(tmp_path):
    out = run_preload(tmp_path, """
        frozen_before = gc.get_freeze_count()
        first = preload(["probe_mod", "colorsys", "json"])  # json: imported already by this script
        import probe_mod
        frozen_after = gc.get_freeze_count()
        again = preload(["probe_mod", "colorsys"])
        print(json.dumps({"first": first, "during": probe_mod.ENABLED_DURING_IMPORT, "enabled": gc.isenabled(),
                          "frozen_before": frozen_before, "frozen_after": frozen_after, "again": again,
                          "frozen_again": gc.get_freeze_count()}))
    """)
    assert out["first"] == ["probe_mod", "colorsys"]  # only what was missing, in order
    assert out["during"] is False and out["enabled"] is True  # off while importing, back on after
    assert out["frozen_before"] == 0 and out["frozen_after"] > 1000
    assert out["again"] == [] and out["frozen_again"] == out["frozen_after"]  # nothing new: no second freeze


def test_preload_leaves_a_disabled_collector_disabled_and_restores_it_on_a_failed_import(tmp_path):
    out = run_preload(tmp_path, """
        gc.disable()
        preload(["colorsys"])
        stays_off = not gc.isenabled()
        gc.enable()
        try:
            preload(["probe_mod", "coincast_no_such_module"])
            error = None
        except ModuleNotFoundError as exc:
            error = str(exc)
        print(json.dumps({"stays_off": stays_off, "error": error, "enabled": gc.isenabled()}))
    """)
    assert out["stays_off"] is True
    assert "coincast_no_such_module" in out["error"] and out["enabled"] is True


def test_importing_coincast_switches_telemetry_off_but_keeps_what_the_caller_set() -> None:
    env = {k: v for k, v in os.environ.items() if k not in patches.TELEMETRY_OFF}
    env["DVC_NO_ANALYTICS"] = "caller's"
    code = "import json, os, coincast\nprint(json.dumps({k: os.environ.get(k) for k in %r}))" % sorted(patches.TELEMETRY_OFF)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout) == {**patches.TELEMETRY_OFF, "DVC_NO_ANALYTICS": "caller's"}


def test_an_unchanged_source_is_not_normalised_to_be_compared_with_itself(monkeypatch):
    """same_source_differ gives Ploomber's answers (unchanged; outdated by params; outdated by code) without
    autopep8 when the stored and current texts are equal, and with Ploomber's own comparison otherwise."""
    import autopep8
    from ploomber.codediffer import CodeDiffer

    source = "def publish(product, upstream):\n    return 1\n"
    differ, plain = patches.same_source_differ(), CodeDiffer()
    same = (source, source, {"a": 1}, {"a": 1}, "py")
    params_changed = (source, source, {"a": 1}, {"a": 2}, "py")
    reformatted = (source, source.replace("return 1", "return  1"), {"a": 1}, {"a": 1}, "py")
    changed = (source, source.replace("1", "2"), {"a": 1}, {"a": 1}, "py")
    for case in (same, params_changed, reformatted, changed):
        assert differ.is_different(*case)[0] == plain.is_different(*case)[0], case
    assert [plain.is_different(*c)[0] for c in (same, params_changed, reformatted, changed)] == [False, True, False, True]

    def refuse(*args, **kwargs):
        raise AssertionError("autopep8 ran on an unchanged source")

    monkeypatch.setattr(autopep8, "fix_code", refuse)
    assert differ.is_different(*same) == (False, differ.get_diff(source, source, normalize=False))
    assert differ.is_different(*params_changed)[0] is True
    with pytest.raises(AssertionError, match="autopep8 ran"):
        differ.is_different(*changed)  # a changed text is Ploomber's to compare
