"""The accuracy benchmark keeps working: a tiny run on the real BTC file (no assertion on time)."""
import json
import subprocess
import sys

import pytest

from conftest import BTC_CSV, ROOT, need_shared

sys.path.insert(0, str(ROOT / "bench"))
from speed import SMOKE  # noqa: E402

pytestmark = pytest.mark.pipeline


def test_tiny_accuracy_benchmark(tmp_path):
    need_shared(BTC_CSV)
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "accuracy.py"), "--tiny", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads((tmp_path / "accuracy.json").read_text())
    rows = res["series"]["BTCUSDT"]["out_of_sample"]
    assert len(rows) == 1 and len(res["series"]["BTCUSDT"]["windows"]) == 2  # a window chooses, the next scores
    from coincast.forecasting.models import KINDS  # every model, the opt-in ones (LightGBM) too

    assert {m["kind"] for m in res["models"]} == set(KINDS)
    assert len(res["series"]["BTCUSDT"]["windows"][0]["models"]) == len(KINDS)
    for earlier, row in zip(res["series"]["BTCUSDT"]["windows"], rows):
        assert row["chosen_on"] == earlier["end"] and row["window_end"] > row["chosen_on"]
        assert row["rel_mae_1h"] > 0 and row["rel_crps_1h"] > 0 and row["rel_interval_score_95_24h"] > 0
        assert set(row["scaling_share_1h"]) <= set(res["interval_scalings"])  # the scalings its intervals used
    md = (tmp_path / "accuracy.md").read_text()
    assert "Out of sample" in md and res["machine"]["cores"] >= 1 and "## Targets" in md
    assert "## Interval scalings the champion's intervals used" in md
    pooled = md[md.index("## Coverage pooled over the windows"):].splitlines()
    assert [line.split(" | ")[1] for line in pooled[4:6]] == ["1", "1"]  # BTCUSDT and all: the one scored window
    assert pooled[4].split(" | ")[2:] == pooled[5].split(" | ")[2:]
    # --render writes the same page again from the JSON, without a backtest
    (tmp_path / "accuracy.md").unlink()
    again = subprocess.run([sys.executable, str(ROOT / "bench" / "accuracy.py"), "--render", str(tmp_path / "accuracy.json")],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and (tmp_path / "accuracy.md").read_text() == md, again.stderr[-2000:]


def test_speed_benchmark_harness(tmp_path):
    """`bench/speed.py --smoke`: the harness of `make bench` (every measurement, once, on the tiniest project that
    builds: no timing claim; but the papermill build, the in-process build's measure with papermill's kernels,
    which test_pipeline's live path builds); the results have every figure, and the plain script reproduces the
    pipeline's forecast (so the limit it sets is for the same computation)."""
    # --skip profile: ydata's cost is tests/test_profiling.py's; the in-process harness runs with the backtest
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "speed.py"), "--smoke", "--skip", "profile",
                          "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=2400)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    res = json.loads((tmp_path / "speed-smoke.json").read_text())
    r = res["results"]
    for key in ("build_engine", "build_plain", "noop_coincast_build", "noop_ploomber_build",
                "noop_ploomber_floor", "tick_coincast", "tick_plain", "backtest", "imports_tick_coincast", "imports_tick_plain"):
        assert r[key]["seconds"]["median"] > 0 and r[key]["peak_mb"]["median"] > 50, key
        assert 0 < r[key]["cpu_seconds"]["median"], key
    # the progress lines read: every task's seconds (the disabled profile's can round to 0.0 on a quick machine)
    tasks = {k: v["median"] for k, v in r["build_engine"].items() if k.startswith("task_")}
    assert "build_papermill" not in r and len(tasks) == 8 and min(tasks.values()) >= 0 and tasks["task_train"] > 0
    assert r["noop_ploomber_build"]["tasks_run"] == 0  # a no-op really ran nothing (the floor's task neither)
    assert r["noop_ploomber_build_paired_ratio"]["median"] > 0
    assert r["plain_forecast_max_rel_diff"] < 1e-6  # the limit is measured on the same computation
    assert r["backtest"]["origins"]["median"] == SMOKE["backtest_days"] * 24
    assert set(r["growth"]["coins"]) == {"2"} and r["growth"]["days"] == {}  # the smallest sizes with every branch
    assert r["growth"]["coins"]["2"]["build_seconds"] > 0 and r["growth"]["coins"]["2"]["tick_seconds"] > 0
    assert "profile" not in r  # skipped
    assert res["ratios"]["tick_ratio"] > 0 and res["machine"]["cores"] >= 1
    assert res["ratios"]["tick_cpu_ratio_paired"]["median"] > 0
    assert "first_render_seconds" in r["dashboard"] or "skipped" in r["dashboard"]
    md = (tmp_path / "speed-smoke.md").read_text()
    assert "plain script (the limit)" in md and "| ratio |" in md and "Ploomber's floor" in md


def test_tiny_cross_coin_benchmark(tmp_path):
    """`bench/cross.py --tiny`: LightGBM and Prophet with regressors, without and with the cross-coin features of the
    other two real series, beside naive on the same origins (no assertion on the scores or on time)."""
    need_shared(BTC_CSV)
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "cross.py"), "--tiny", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = json.loads((tmp_path / "cross.json").read_text())["rows"]
    assert {(r["kind"], r["cross"]) for r in rows} == {("naive", "off"), ("lightgbm", "off"), ("lightgbm", "on"),
                                                       ("prophet_regressors", "off"), ("prophet_regressors", "on")}
    assert all(r["rel_mae_1h"] > 0 and r["rel_mae_24h"] > 0 for r in rows)
    assert len({r["model"] for r in rows}) == 5  # with the cross-coin columns a model is another model
    assert "| BTCUSDT |" in (tmp_path / "cross.md").read_text()
