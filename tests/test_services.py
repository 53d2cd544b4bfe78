"""Shared services for several workers (issue 17 §3), each started for real (tests/services.py): an MLflow tracking
server on PostgreSQL with its artifacts in S3-compatible storage, and a DVC remote on that storage.

moto_server stands in for S3/MinIO; everything listens on 127.0.0.1. What these tests cannot prove (several hosts,
a real object store's consistency and permissions) is in docs/scaling.md, "Shared services".
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import BIN, MLFLOW_EXPORTS, ROOT, copy_project, run
from services import s3_keys

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parent
ROUNDS = 2  # builds per coin per worker


def worker(services, root: Path, go: Path, *coins: str) -> subprocess.Popen:
    env = {**{k: v for k, v in os.environ.items() if k not in MLFLOW_EXPORTS}, **services.worker_env()}
    return subprocess.Popen([sys.executable, str(TESTS / "registry_worker.py"), str(root), str(go), str(ROUNDS),
                             *coins], cwd=TESTS, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_workers_registering_at_once_keep_versions_and_aliases_whole(services, tmp_path):
    """Two processes register through the tracking server at the same moment, each on its own coin and both on one
    shared coin: every version number is given once, in order, to exactly one build; each version is the model its
    build logged, its artifacts are in the bucket, and the aliases point at versions that were promoted."""
    go = tmp_path / "go"
    procs = [worker(services, tmp_path / f"w{i}", go, "racecoin", f"owncoin{i}") for i in (0, 1)]
    deadline = time.monotonic() + 180
    while len(list(tmp_path.glob("go.ready-*"))) < 2 and time.monotonic() < deadline:
        assert all(p.poll() is None for p in procs), [p.communicate()[1][-2000:] for p in procs if p.poll()]
        time.sleep(0.05)
    go.touch()  # both workers are imported, configured and waiting: released together
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert max(r["began"] for r in results) < min(r["ended"] for r in results)  # the registrations overlapped
    client = MlflowClient(services.mlflow_uri)

    for coin in ("racecoin", "owncoin0", "owncoin1"):
        name = f"coincast-{coin}"
        builds = [b for r in results for b in r["builds"] if b["coin"] == coin]
        mine = [b["challenger"]["version"] for b in builds]
        stored = client.search_model_versions(f"name = '{name}'")
        assert sorted(int(v.version) for v in stored) == list(range(1, len(builds) + 1))  # no gap, no double
        assert sorted(mine, key=int) == sorted(str(v.version) for v in stored)  # each given to one build
        for mv in stored:  # each version is its own build's model, with that build's tags
            build = next(b for b in builds if b["challenger"]["version"] == str(mv.version))
            assert mv.run_id == build["run_id"] == mv.tags["run_id"] and mv.tags["coin"] == coin
            assert mv.tags["promotion_decision"] == "promoted" and mv.tags.get("promoted_at")
            keys = s3_keys(services.s3_endpoint, services.bucket, "mlflow/")
            assert any(k.endswith("/MLmodel") and mv.source.rsplit("/", 1)[-1] in k for k in keys), mv.source
        aliases = {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}
        assert set(aliases) == {"champion", "challenger"} and set(aliases.values()) <= set(mine)
    for i, r in enumerate(results):  # a worker alone on its coin: builds in order, the last one in force
        own = [b for b in r["builds"] if b["coin"] == f"owncoin{i}"]
        assert [b["challenger"]["version"] for b in own] == [str(n) for n in range(1, ROUNDS + 1)]
        aliases = client.get_registered_model(f"coincast-owncoin{i}").aliases
        assert {k: str(v) for k, v in aliases.items()} == {"champion": str(ROUNDS), "challenger": str(ROUNDS)}
        assert r["loaded"][f"owncoin{i}"]["version"] == str(ROUNDS) and r["loaded"][f"owncoin{i}"]["rows"] == 2
        assert r["loaded"]["racecoin"]["rows"] == 2  # the shared coin's champion loads from the bucket too


def dvc(project: Path, *args: str, env: dict) -> subprocess.CompletedProcess:
    done = run([str(BIN / "dvc"), *args], cwd=project, env=env)
    assert done.returncode == 0, f"dvc {' '.join(args)}: {done.stdout[-1500:]}{done.stderr[-1500:]}"
    return done


@pytest.mark.skipif(shutil.which("git") is None, reason="git is needed for DVC's default (git) mode")
def test_an_hourly_tick_against_the_services(services, tmp_path):
    """A worker's first tick with MLFLOW_TRACKING_URI=http://... and the DVC remote on S3 (as `make dvc-init
    DVC_REMOTE=s3://... DVC_REMOTE_ENDPOINT=...` sets it): the build registers through the server, the champion's
    model and the run's notebooks land in the bucket, the data is pushed; a checkout without the data pulls it
    back byte for byte."""
    coin = "dogecoin"  # a name no other test of the session registers on the shared server
    project = copy_project(tmp_path / "p")
    small = [line for line in (project / "env.test.yaml").read_text().splitlines() if "_dir" not in line]
    (project / "env.small.yaml").write_text("\n".join(small) + "\n")  # the data where dvc.yaml expects it
    shutil.copytree(ROOT / "src" / "coincast", project / "src" / "coincast",
                    ignore=shutil.ignore_patterns("__pycache__"))  # a dependency of dvc.yaml's stage
    env = {**services.worker_env(), "PATH": f"{BIN}:{os.environ['PATH']}"}
    assert run(["git", "init", "-q"], cwd=project).returncode == 0
    dvc(project, "init", "-q", env=env)
    dvc(project, "remote", "add", "-f", "-d", "local", f"s3://{services.bucket}/dvc", env=env)
    dvc(project, "remote", "modify", "local", "endpointurl", services.s3_endpoint, env=env)

    tick = run([str(BIN / "coincast"), "hourly", "--project", str(project), "--env", "env.small.yaml", "--coins",
                coin, "--set", "models=[{kind: naive}, {kind: drift, window: 168}]", "--now", "2025-06-01T13:05Z"],
               cwd=project, env=env)
    assert tick.returncode == 0, tick.stdout[-3000:] + tick.stderr[-3000:]
    assert "committed and pushed" in tick.stdout and "mlflow.db" not in os.listdir(project)

    client = MlflowClient(services.mlflow_uri)
    name = f"coincast-{coin}"
    registered = json.loads((project / "products" / coin / "registry.json").read_text())
    aliases = {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}
    assert aliases == {"champion": registered["champion"]["version"],
                       "challenger": registered["challenger"]["version"]}
    champion = client.get_model_version_by_alias(name, "champion")
    run_artifacts = {a.path for a in client.list_artifacts(champion.run_id)}
    assert {"03_features.ipynb", "backtest.json", "params.json"} <= run_artifacts
    experiment = client.get_experiment_by_name("coincast")
    keys = s3_keys(services.s3_endpoint, services.bucket, f"mlflow/{experiment.experiment_id}/")
    assert any(k.endswith(f"{champion.run_id}/artifacts/backtest.json") for k in keys)
    assert any(k.endswith("/MLmodel") and champion.source.rsplit("/", 1)[-1] in k for k in keys)
    live = client.search_runs([experiment.experiment_id], filter_string=f"tags.`coincast.live_coin` = '{coin}'")
    assert len(live) == 1  # the tick's live run, through the server too

    assert s3_keys(services.s3_endpoint, services.bucket, "dvc/files/md5/")
    saved = {p: p.read_bytes() for p in (project / "data").rglob("*.parquet")}
    assert saved
    shutil.rmtree(project / "data")
    shutil.rmtree(project / ".dvc" / "cache")
    dvc(project, "pull", "-q", "build@simulated", env=env)
    assert {p: p.read_bytes() for p in (project / "data").rglob("*.parquet")} == saved


def test_make_dvc_init_takes_an_s3_remote_and_its_endpoint():
    """The Makefile's dvc-init adds DVC_REMOTE and, when DVC_REMOTE_ENDPOINT is set, its endpointurl (dry run)."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is absent")
    dry = subprocess.run([make, "-n", "-C", str(ROOT), "dvc-init", "DVC_REMOTE=s3://bucket/dvc",
                          "DVC_REMOTE_ENDPOINT=http://127.0.0.1:9000"], capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert 'dvc remote add -f -d local "s3://bucket/dvc"' in dry.stdout
    assert 'dvc remote modify local endpointurl "http://127.0.0.1:9000"' in dry.stdout
    plain = subprocess.run([make, "-n", "-C", str(ROOT), "dvc-init", "DVC_REMOTE=/tmp/remote"], capture_output=True,
                           text=True, timeout=60)
    assert "endpointurl" not in plain.stdout
