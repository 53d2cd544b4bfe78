"""coincast.startup.preload: imports with the cyclic collector off, then freezes what is alive, once.

Each case runs in a fresh interpreter: freezing the test process's own heap would outlive the test."""
import json
import subprocess
import sys
import textwrap


def run(tmp_path, body: str) -> dict:
    (tmp_path / "probe_mod.py").write_text("import gc\nENABLED_DURING_IMPORT = gc.isenabled()\n")
    code = "import gc, json, sys\nsys.path.insert(0, %r)\nfrom coincast.startup import preload\n" % str(tmp_path)
    proc = subprocess.run([sys.executable, "-c", code + textwrap.dedent(body)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_imports_with_the_collector_off_then_freezes_once(tmp_path):
    out = run(tmp_path, """
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


def test_leaves_a_disabled_collector_disabled_and_restores_it_on_a_failed_import(tmp_path):
    out = run(tmp_path, """
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
