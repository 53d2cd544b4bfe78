"""coincast.operations.publish: build stamps, the published snapshot and its atomic switch (issue 14, item 3).

Unit tests on real files in a temporary folder (atomic writes, hard links, symlinks, a concurrent reader), then
end to end: real builds (the publish task in pipeline.yaml), a forced rebuild whose atomic rewrites leave the
previous snapshot intact, a failed gate that never changes what is published, and ``ploomber task publish``
refusing a failed build.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from pathlib import Path

import pandas as pd
import pytest

from coincast import files
from coincast.operations import publish
from conftest import BIN, coincast, hourly_frame, progress, run

CLOCK = "2025-06-01T12:30:00+00:00"
FILES = ["extract.json", "raw.parquet", "validation.json", "forecast.parquet", "live.json", "01_extract.html"]


def gate(passed: bool = True) -> dict:
    checks = [{"name": "min_rows", "passed": True, "message": "200 rows (minimum 100)"},
              {"name": "staleness", "passed": passed, "message": "last row 10.5 h before the clock (limit 3 h)"}]
    return {"passed": passed, "failed": [] if passed else ["staleness"], "checks": checks}


def write_build(folder: Path, source: str = "simulated", passed: bool = True, seed: int = 0,
                forecast_build: str | None = None) -> str:
    """One build's products, written as the tasks write them (atomically); returns its build_id."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"coin": "bitcoin", "source": source, "now": CLOCK, "rows": 200, "series": "s", "vs_currency": "usd",
            "build_id": files.new_build_id(source, CLOCK)}
    raw = hourly_frame(seed=seed)
    files.write_parquet_atomic(raw, folder / "raw.parquet")
    files.write_json_atomic(meta, folder / "extract.json")
    files.write_json_atomic(publish.stamp(gate(passed), meta), folder / "validation.json")
    fc = pd.DataFrame({"horizon": [1, 2], "forecast": [float(raw["price"].iloc[-1])] * 2})
    files.write_parquet_atomic(publish.stamp(fc, {"build_id": forecast_build or meta["build_id"]}),
                            folder / "forecast.parquet")
    files.write_json_atomic(publish.stamp({"scored": 0}, meta), folder / "live.json")
    files.write_text_atomic(f"<html>executed notebook of {meta['build_id']}</html>", folder / "01_extract.html")
    return meta["build_id"]


def publish_all(folder: Path) -> dict:
    return publish.publish_files(folder, [folder / f for f in FILES], copies=["01_extract.html"])


def snapshots(folder: Path) -> list[str]:
    return sorted(d.name for d in folder.glob(".published-*"))


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


# --- stamps ------------------------------------------------------------------------------------------------------
def test_build_id_names_source_and_clock_and_is_unique():
    a = files.new_build_id("simulated", "2025-06-01T14:30:00+02:00")
    b = files.new_build_id("simulated", "2025-06-01T12:30:00Z")
    assert re.fullmatch(r"simulated-20250601T123000Z-[0-9a-f]{8}", a) and a != b
    assert files.new_build_id("coingecko", pd.Timestamp("2025-06-01 12:30")).startswith("coingecko-20250601T123000Z-")
    assert len({files.new_build_id("replay", CLOCK) for _ in range(200)}) == 200


def test_extraction_summary_carries_one_build_id(tmp_path):
    from coincast.data.extract import extract

    result = extract("bitcoin", 10, "simulated", replay_now=CLOCK, history_dir=tmp_path / "h")
    first, second = result.summary(), result.summary()
    assert first["build_id"] == second["build_id"] and first["build_id"].startswith("simulated-20250601T123000Z-")
    again = extract("bitcoin", 10, "simulated", replay_now=CLOCK, history_dir=tmp_path / "h")
    assert again.summary()["build_id"] != first["build_id"]  # one per extraction, even at the same clock


def test_stamp_dicts_and_frames():
    meta = {"build_id": "simulated-x"}
    report = {"passed": True}
    assert publish.stamp(report, meta) == {"passed": True, "build_id": "simulated-x"} and report == {"passed": True}
    df = pd.DataFrame({"a": [1, 2]})
    assert list(publish.stamp(df, meta)["build_id"]) == ["simulated-x"] * 2 and "build_id" not in df
    assert publish.stamp({}, None) == {"build_id": None}


def test_gate_reason():
    assert publish.gate_reason(gate(True)) is None and publish.gate_reason(None) is None
    assert publish.gate_reason(gate(False)) == ("validation gate failed: staleness (last row 10.5 h before the "
                                                "clock (limit 3 h))")


# --- publishing ----------------------------------------------------------------------------------------------------
def test_publish_snapshots_switches_and_keeps_one_previous(tmp_path):
    folder = tmp_path / "bitcoin"
    a = write_build(folder)
    info = publish_all(folder)
    pointer = folder / "published"
    assert pointer.is_symlink() and os.readlink(pointer) == f".published-{a}"  # relative: the folder can move
    snap = publish.published_folder(folder)
    assert snap == (folder / f".published-{a}").resolve()
    assert digest(snap) == {**digest(folder), "published.json": digest(snap)["published.json"]}
    # data products are hard links (free), executed notebooks copies (written in place by the executors)
    assert os.stat(snap / "raw.parquet").st_ino == os.stat(folder / "raw.parquet").st_ino
    assert os.stat(snap / "01_extract.html").st_ino != os.stat(folder / "01_extract.html").st_ino
    assert info["files"]["raw.parquet"]["how"] == "link" and info["files"]["01_extract.html"]["how"] == "copy"
    manifest = json.loads((folder / "published.json").read_text())
    assert manifest == json.loads((snap / "published.json").read_text()) == info
    assert (manifest["build_id"], manifest["source"], manifest["clock"]) == (a, "simulated", CLOCK)

    b = write_build(folder, seed=1)
    publish_all(folder)
    assert os.readlink(pointer) == f".published-{b}"
    assert snapshots(folder) == sorted([f".published-{a}", f".published-{b}"])
    c = write_build(folder, seed=2)
    publish_all(folder)
    assert os.readlink(pointer) == f".published-{c}"
    # a removed, b kept (a reader may still be reading it)
    assert snapshots(folder) == sorted([f".published-{b}", f".published-{c}"])
    assert json.loads((folder / "published.json").read_text())["build_id"] == c
    # the same build published again (e.g. ploomber task publish --force): a new snapshot, never a half-replaced one
    publish_all(folder)
    assert os.readlink(pointer).startswith(f".published-{c}-") and len(snapshots(folder)) == 2


def test_snapshot_is_unaffected_by_the_next_build_writing_atomically(tmp_path):
    folder = tmp_path / "bitcoin"
    write_build(folder)
    publish_all(folder)
    snap = publish.published_folder(folder)
    before = digest(snap)
    raw_before = pd.read_parquet(snap / "raw.parquet")
    write_build(folder, source="coingecko", passed=False, seed=9)  # the next build: temp file + rename each
    (folder / "01_extract.html").write_text("rewritten in place, as papermill writes an .ipynb product")
    assert digest(snap) == before
    pd.testing.assert_frame_equal(pd.read_parquet(snap / "raw.parquet"), raw_before)
    assert not pd.read_parquet(folder / "raw.parquet").equals(raw_before)  # the working file did change


def test_a_failed_or_mixed_build_never_changes_the_published_snapshot(tmp_path):
    folder = tmp_path / "bitcoin"
    a = write_build(folder)
    publish_all(folder)
    snap = publish.published_folder(folder)
    def state() -> tuple:
        pointer = os.readlink(folder / "published")
        return pointer, snapshots(folder), (folder / "published.json").read_bytes(), digest(snap)

    before = state()

    def refused(match: str) -> None:
        with pytest.raises(publish.PublishError, match=match):
            publish_all(folder)
        assert state() == before

    b = write_build(folder, source="coingecko", passed=False)
    refused(r"did not pass: validation gate failed: staleness \(last row 10.5 h")
    write_build(folder, forecast_build=a)  # a forecast of the earlier build beside a new extraction
    refused(r"forecast.parquet is from build simulated-.* the products mix builds")
    write_build(folder)
    files.write_json_atomic(publish.stamp(gate(True), {"build_id": b}), folder / "validation.json")
    refused("the gate did not judge this data")
    (folder / "validation.json").unlink()
    refused("validation.json missing")
    write_build(folder)
    meta = files.read_json(folder / "extract.json")
    files.write_json_atomic({k: v for k, v in meta.items() if k != "build_id"}, folder / "extract.json")
    refused("extract.json has no build_id")
    (folder / "published").unlink()
    (folder / "published").mkdir()
    write_build(folder)
    with pytest.raises(publish.PublishError, match="is not a symlink"):
        publish_all(folder)


def test_the_switch_is_atomic_for_a_reader(tmp_path):
    """A reader opening published/extract.json while builds are published never finds it missing or partial."""
    folder = tmp_path / "bitcoin"
    ids = [write_build(folder)]
    publish_all(folder)
    stop, seen, errors = threading.Event(), set(), []

    def reader() -> None:
        while not stop.is_set():
            try:
                seen.add(json.loads((folder / "published" / "extract.json").read_text())["build_id"])
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                errors.append(repr(exc))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(40):
            ids.append(write_build(folder, seed=i))
            publish_all(folder)
    finally:
        stop.set()
        thread.join()
    assert errors == [] and len(seen) > 1 and seen <= set(ids)
    assert len(snapshots(folder)) == publish.KEEP


def test_the_task_snapshots_every_upstream_product(tmp_path):
    """The Ploomber callable: products of the seven tasks as Ploomber passes them (key ``nb`` copied)."""
    folder = tmp_path / "bitcoin"
    write_build(folder)
    (folder / "02_validate.html").write_text("<html>gate</html>")
    upstream = {"extract": {"nb": str(folder / "01_extract.html"), "data": str(folder / "raw.parquet"),
                            "meta": str(folder / "extract.json")},
                "validate": {"nb": str(folder / "02_validate.html"), "report": str(folder / "validation.json")},
                "features": {}, "profile": {}, "train": {}, "forecast": {"data": str(folder / "forecast.parquet")},
                "monitor": {"live": str(folder / "live.json")}}
    publish.publish({"manifest": str(folder / "published.json")}, upstream)
    info = json.loads((folder / "published.json").read_text())
    assert {n: f["how"] for n, f in info["files"].items()} == {
        "01_extract.html": "copy", "02_validate.html": "copy", "raw.parquet": "link", "extract.json": "link",
        "validation.json": "link", "forecast.parquet": "link", "live.json": "link"}


# --- the status a reader shows -----------------------------------------------------------------------------------
def test_build_status(tmp_path):
    folder = tmp_path / "bitcoin"
    assert publish.build_status(folder)["published"] is False and publish.build_status(folder)["failed"] is False
    b0 = write_build(folder, source="coingecko", passed=False)
    st = publish.build_status(folder)
    assert (st["published"], st["failed"], st["latest_build_id"], st["latest_source"]) == (False, True, b0, "coingecko")
    assert st["reason"].startswith("validation gate failed: staleness") and st["gate"]["build_id"] == b0

    a = write_build(folder)
    publish_all(folder)
    st = publish.build_status(folder)
    assert (st["published"], st["failed"], st["reason"], st["published_build_id"]) == (True, False, None, a)
    assert st["snapshot"] == publish.published_folder(folder)

    b = write_build(folder, source="coingecko", passed=False)
    st = publish.build_status(folder)
    assert st["failed"] and st["latest_build_id"] == b and st["published_build_id"] == a
    assert (st["published_source"], st["published_clock"]) == ("simulated", CLOCK)
    assert st["reason"] == publish.gate_reason(files.read_json(folder / "validation.json"))
    # a new extraction whose gate has not reported (validation.json is still the previous build's)
    meta = {**files.read_json(folder / "extract.json"), "build_id": files.new_build_id("coingecko", CLOCK)}
    files.write_json_atomic(meta, folder / "extract.json")
    st = publish.build_status(folder)
    assert st["failed"] and st["gate"] is None and st["reason"].startswith("did not finish: it stopped before")
    # passed the gate, not published: a later task failed (or runs)
    files.write_json_atomic(publish.stamp(gate(True), meta), folder / "validation.json")
    assert publish.build_status(folder)["reason"].startswith("did not finish: a task after the validation gate")
    # products from before build stamps
    legacy = publish.describe_status(None, {"source": "simulated", "now": CLOCK}, None)
    assert legacy["failed"] and "older coincast" in legacy["reason"]


def test_a_build_that_failed_before_its_extraction_is_reported(tmp_path):
    """The API unreachable: no new extract.json, but the marker coincast writes says the latest build failed."""
    folder = tmp_path / "bitcoin"
    a = write_build(folder)
    publish_all(folder)
    publish.record_failure(folder, "build failed: CoinGeckoError: cannot reach api", "coingecko", "2025-06-01T14:00Z")
    st = publish.build_status(folder)
    assert st["failed"] and st["reason"] == "build failed: CoinGeckoError: cannot reach api"
    assert (st["latest_source"], st["published_build_id"]) == ("coingecko", a)
    publish.record_failure(folder, None)  # the next build succeeded
    assert not (folder / publish.FAILURE).exists() and publish.build_status(folder)["failed"] is False


def test_replay_report_reads_the_published_build(tmp_path):
    """hourly.replay_report finds the prediction log from the last successful tick, not from a failed one."""
    from coincast.operations.hourly import replay_report

    folder = tmp_path / "products" / "bitcoin"
    env = {"coins": ["bitcoin"], "predictions_dir": str(tmp_path / "predictions"), "log_horizons": [1],
           "min_scored_rows": 1, "calibration_window_days": 30}
    clock = pd.Timestamp(CLOCK)
    write_build(folder, source="coingecko", passed=False)  # a tick that extracted, then failed its gate
    assert replay_report(tmp_path, env, clock, clock) == {"bitcoin": {"error": "no published build: no tick succeeded"}}
    write_build(folder)
    publish_all(folder)
    write_build(folder, source="coingecko", passed=False)
    entry = replay_report(tmp_path, env, clock, clock)["bitcoin"]
    assert "error" not in entry and entry["late_rows"] == 0


# --- end to end: the publish task in real builds --------------------------------------------------------------------
def merged_env(project: Path, **changes) -> None:
    """env.yaml + env.test.yaml + ``changes`` as the project's env.yaml: a bare ``ploomber`` command (as an Airflow
    step runs it) then sees the same settings as ``coincast build``."""
    import yaml

    env = yaml.safe_load((project / "env.yaml").read_text())
    env.update(yaml.safe_load((project / "env.test.yaml").read_text()), **changes)
    (project / "env.yaml").write_text(yaml.safe_dump(env))


@pytest.mark.pipeline
def test_builds_publish_whole_builds_only(project: Path):
    # fast: in-process, naive only (the builds are about publishing, and one of them is forced to retrain)
    merged_env(project, notebook_executor="ploomber-engine", executed_format="ipynb", models=[{"kind": "naive"}])
    out = project / "products" / "bitcoin"
    state = lambda: (os.readlink(out / "published"), digest(publish.published_folder(out)),  # noqa: E731
                     (out / "published.json").read_bytes())

    first = run([str(BIN / "ploomber"), "build"], cwd=project)  # a bare Ploomber build publishes too
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert re.search(r"^publish\s+True", first.stdout, re.M), first.stdout[-2000:]
    snap_a = publish.published_folder(out)
    meta_a = files.read_json(out / "extract.json")
    assert snap_a.name == f".published-{meta_a['build_id']}" and files.read_json(snap_a / "extract.json") == meta_a
    assert set(files.read_json(out / "published.json")["files"]) == {
        "01_extract.ipynb", "02_validate.ipynb", "03_features.ipynb", "04_profile.ipynb", "05_train.ipynb",
        "06_forecast.ipynb", "07_monitor.ipynb", "raw.parquet", "quarantine.parquet", "extract.json", "validation.json",
        "features.parquet", "profile.html", "profile.json", "backtest.json", "backtest.html", "backtest_forecasts.parquet",
        "registry.json", "forecast.parquet", "live.json", "predictions.parquet"}
    assert set(pd.read_parquet(snap_a / "forecast.parquet")["build_id"]) == {meta_a["build_id"]}
    assert files.read_json(snap_a / "live.json")["build_id"] == meta_a["build_id"]
    before = digest(snap_a)

    # every task runs again and rewrites its products: the previous snapshot keeps its content
    again = coincast(project, "--force")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert [t for _, t, _ in progress(again.stdout)][-2:] == ["monitor", "publish"], again.stdout[-500:]  # last
    snap_b = publish.published_folder(out)
    assert snap_b != snap_a and snap_a.is_dir() and digest(snap_a) == before
    assert files.read_json(snap_b / "extract.json")["build_id"] != meta_a["build_id"]

    # the task on its own (an Airflow step: `ploomber task publish`) publishes the up-to-date build again
    alone = run([str(BIN / "ploomber"), "task", "publish", "--force"], cwd=project)
    assert alone.returncode == 0, alone.stdout[-3000:] + alone.stderr[-3000:]
    assert os.readlink(out / "published").startswith(snap_b.name + "-") and not snap_a.exists()
    published = state()

    # a build that fails its gate leaves the published snapshot as it was
    failed = coincast(project, "--force", "--set", "min_rows=100000")
    assert failed.returncode == 1 and "validation gate failed: min_rows" in failed.stderr, failed.stderr[-2000:]
    assert files.read_json(out / "extract.json")["build_id"] != files.read_json(snap_b / "extract.json")["build_id"]
    assert state() == published
    status = publish.build_status(out)
    assert status["failed"] and status["reason"].startswith("validation gate failed: min_rows")
    # and so does the task on its own (Ploomber refuses: its upstream is not up to date; check_build refuses a
    # failed gate as well, see the unit tests)
    alone = run([str(BIN / "ploomber"), "task", "publish", "--force", "--env--min_rows", "100000"], cwd=project)
    assert alone.returncode != 0 and "publish" in alone.stderr
    assert state() == published
