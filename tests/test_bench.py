"""The accuracy benchmark keeps working: a tiny run on the real BTC file (no assertion on time)."""
import json
import subprocess
import sys

import pytest

from conftest import BTC_CSV, ROOT, need_shared

pytestmark = pytest.mark.pipeline


def test_tiny_accuracy_benchmark(tmp_path):
    need_shared(BTC_CSV)
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "accuracy.py"), "--tiny", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads((tmp_path / "accuracy.json").read_text())
    rows = res["series"]["BTCUSDT"]["out_of_sample"]
    assert len(rows) == 2 and len(res["series"]["BTCUSDT"]["windows"]) == 3
    for earlier, row in zip(res["series"]["BTCUSDT"]["windows"], rows):
        assert row["chosen_on"] == earlier["end"] and row["window_end"] > row["chosen_on"]
        assert row["rel_mae_1h"] > 0
    md = (tmp_path / "accuracy.md").read_text()
    assert "Out of sample" in md and res["machine"]["cores"] >= 1 and "## Targets" in md
