"""Real shared services for the tests: PostgreSQL (Debian's binaries), an S3-compatible server (moto_server) and an
MLflow tracking server on both, each on 127.0.0.1 at a free port (docs/scaling.md, "Shared services").

:func:`shared` starts them once per test session: the pytest-xdist workers of a session share one set (a state file
under a file lock counts the workers using it; the last to leave stops it). Each piece also starts on its own
(:func:`start_postgres`, :func:`start_s3`, :func:`start_mlflow`) for a test that needs only one.

PostgreSQL refuses to run as root: as root, the server runs as the ``postgres`` user Debian's package creates
(``nobody`` without it), its data directory a fresh temporary folder that user owns, and it listens on 127.0.0.1 only
(trust authentication: a test server that lives for one session). Nothing here reaches the network.
"""
from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

from filelock import FileLock

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
PG_USER = "coincast"  # the database superuser initdb creates (not a system account)
BUCKET = "coincast"
#: moto accepts any key; real S3/MinIO take theirs from the same variables
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
QUIET = {"MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1", "PLOOMBER_STATS_ENABLED": "false",
         "PLOOMBER_VERSION_CHECK_DISABLED": "true"}


@dataclass(frozen=True)
class Services:
    """Where the session's services listen, and what to stop them with."""

    postgres: str  # postgresql+psycopg2://coincast@127.0.0.1:PORT (add /DBNAME)
    s3_endpoint: str  # http://127.0.0.1:PORT
    bucket: str
    mlflow_uri: str  # http://127.0.0.1:PORT
    pg_data: str
    pg_user: str
    s3_pid: int
    mlflow_pid: int

    def worker_env(self) -> dict[str, str]:
        """What a worker needs: the tracking server (artifacts go through it) and the S3 endpoint and keys (DVC)."""
        return {**QUIET, **S3_CREDENTIALS, "MLFLOW_TRACKING_URI": self.mlflow_uri,
                "MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint}


# --- small pieces -----------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(ready: Callable[[], bool], what: str, log: Path | None, timeout: float = 90) -> None:
    """Poll ``ready`` until true; a RuntimeError naming ``what`` and the end of its log otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if ready():
                return
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} did not start within {timeout:.0f} s\n{tail}")


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status == 200


def spawn(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    """``cmd`` in a session (process group) of its own, output to ``log``; returns its pid."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **QUIET, **(env or {})}, start_new_session=True)
    return proc.pid


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie awaiting its parent's wait is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def stop_group(pid: int, timeout: float = 15) -> None:
    """SIGTERM to the process group ``pid`` leads (uvicorn's workers too), SIGKILL if it outlives ``timeout``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if running(pid):
            os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it when it is our child


# --- PostgreSQL -------------------------------------------------------------------------------------------------
def pg_bin(name: str) -> str:
    """A PostgreSQL program: on PATH, else Debian's /usr/lib/postgresql/<newest>/bin."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True)
    for folder in versions:
        if (folder / name).exists():
            return str(folder / name)
    raise FileNotFoundError(f"{name} not found: install PostgreSQL (apt-get install postgresql)")


def server_user() -> str | None:
    """The account PostgreSQL runs as when we are root (it refuses root), None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root and neither a postgres nor a nobody account exists")


def as_user(user: str | None, cmd: list[str]) -> list[str]:
    return cmd if user is None else ["runuser", "-u", user, "--", *cmd]


def start_postgres() -> tuple[str, str, str | None]:
    """initdb + pg_ctl start on 127.0.0.1 at a free port; returns (server URL without database, data dir, user)."""
    user = server_user()
    folder = Path(tempfile.mkdtemp(prefix="coincast-pg-"))
    if user is not None:
        info = pwd.getpwnam(user)
        os.chown(folder, info.pw_uid, info.pw_gid)
    data, log, port = folder / "data", folder / "server.log", free_port()
    init = subprocess.run(as_user(user, [pg_bin("initdb"), "-D", str(data), "-U", PG_USER, "--auth=trust",
                                         "-E", "UTF8", "--no-sync"]),
                          capture_output=True, text=True, timeout=120)
    if init.returncode != 0:
        raise RuntimeError(f"initdb failed: {init.stderr.strip()[-1000:]}")
    options = f"-h 127.0.0.1 -p {port} -k {folder} -c fsync=off -c full_page_writes=off"
    start = subprocess.run(as_user(user, [pg_bin("pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w",
                                          "-t", "60", "start"]), capture_output=True, text=True, timeout=90)
    if start.returncode != 0:
        tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
        raise RuntimeError(f"pg_ctl start failed: {start.stderr.strip()[-500:]}\n{tail}")
    return f"postgresql+psycopg2://{PG_USER}@127.0.0.1:{port}", str(data), user


def stop_postgres(data: str, user: str | None) -> None:
    subprocess.run(as_user(user, [pg_bin("pg_ctl"), "-D", data, "-m", "fast", "-w", "stop"]),
                   capture_output=True, timeout=60)
    shutil.rmtree(Path(data).parent, ignore_errors=True)


def create_database(server: str, name: str) -> str:
    """A new database on the server (``server``: :func:`start_postgres`'s URL); returns its SQLAlchemy URL."""
    import psycopg2

    host_port = server.split("@", 1)[1]
    host, port = host_port.rsplit(":", 1)
    conn = psycopg2.connect(host=host, port=int(port), user=PG_USER, dbname="postgres")
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()
    return f"{server}/{name}"


# --- the S3 stand-in ----------------------------------------------------------------------------------------------
def start_s3(folder: Path, bucket: str = BUCKET) -> tuple[str, int]:
    """moto_server on 127.0.0.1 at a free port with ``bucket`` made; returns (endpoint URL, pid)."""
    import boto3

    port = free_port()
    endpoint, log = f"http://127.0.0.1:{port}", folder / "s3.log"
    pid = spawn([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], log)
    try:
        wait_until(lambda: http_ok(f"{endpoint}/moto-api/"), "moto_server", log)
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name=S3_CREDENTIALS["AWS_DEFAULT_REGION"],
                          aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
        s3.create_bucket(Bucket=bucket)
    except BaseException:
        stop_group(pid)
        raise
    return endpoint, pid


def s3_keys(endpoint: str, bucket: str = BUCKET, prefix: str = "") -> list[str]:
    """Every object key under ``prefix`` in the bucket."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=S3_CREDENTIALS["AWS_DEFAULT_REGION"],
                      aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


# --- the MLflow tracking server -------------------------------------------------------------------------------
def start_mlflow(folder: Path, backend: str, artifacts: str, s3_endpoint: str, workers: int = 1) -> tuple[str, int]:
    """``make mlflow-server`` on 127.0.0.1 at a free port: ``backend`` (postgresql+psycopg2://...) for runs and the
    registry, artifacts proxied to ``artifacts`` (s3://bucket/prefix) at ``s3_endpoint``; returns (URI, pid)."""
    port = free_port()
    uri, log = f"http://127.0.0.1:{port}", folder / "mlflow.log"
    make = shutil.which("make") or "make"
    pid = spawn([make, "-s", "-C", str(ROOT), "mlflow-server", "MLFLOW_HOST=127.0.0.1", f"MLFLOW_PORT={port}",
                 f"MLFLOW_WORKERS={workers}"], log,
                {**S3_CREDENTIALS, "MLFLOW_BACKEND_STORE_URI": backend, "MLFLOW_ARTIFACTS_DESTINATION": artifacts,
                 "MLFLOW_S3_ENDPOINT_URL": s3_endpoint})
    try:
        wait_until(lambda: http_ok(f"{uri}/health"), "make mlflow-server", log, timeout=120)
    except BaseException:
        stop_group(pid)
        raise
    return uri, pid


# --- all three, once per session ------------------------------------------------------------------------------
def start_all(folder: Path) -> Services:
    """PostgreSQL, the S3 stand-in and an MLflow server on both (database ``mlflow``, artifacts under
    s3://coincast/mlflow); whatever started is stopped again if a later piece fails."""
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as undo:
        server, data, user = start_postgres()
        undo.callback(stop_postgres, data, user)
        endpoint, s3_pid = start_s3(folder)
        undo.callback(stop_group, s3_pid)
        backend = create_database(server, "mlflow")
        uri, mlflow_pid = start_mlflow(folder, backend, f"s3://{BUCKET}/mlflow", endpoint)
        undo.pop_all()
    return Services(postgres=server, s3_endpoint=endpoint, bucket=BUCKET, mlflow_uri=uri, pg_data=data,
                    pg_user=user or "", s3_pid=s3_pid, mlflow_pid=mlflow_pid)


def stop_all(services: Services) -> None:
    """All three at once (each takes a second or more to shut down cleanly)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(3) as pool:
        stops = [pool.submit(stop_group, services.mlflow_pid), pool.submit(stop_group, services.s3_pid),
                 pool.submit(stop_postgres, services.pg_data, services.pg_user or None)]
    for stop in stops:
        stop.result()


@contextlib.contextmanager
def shared(folder: Path) -> Iterator[Services]:
    """The session's services, started by the first user (an xdist worker, or this process) and stopped by the
    last one leaving; ``folder`` is shared by every worker of the session."""
    folder.mkdir(parents=True, exist_ok=True)
    state_file, lock = folder / "state.json", FileLock(str(folder / "state.lock"))
    with lock:
        state = json.loads(state_file.read_text()) if state_file.exists() else {"users": 0}
        if state["users"] == 0:
            state["services"] = asdict(start_all(folder / f"run-{time.time_ns()}"))
        state["users"] += 1
        state_file.write_text(json.dumps(state))
    try:
        yield Services(**state["services"])
    finally:
        with lock:
            state = json.loads(state_file.read_text())
            state["users"] -= 1
            if state["users"] == 0:
                stop_all(Services(**state["services"]))
            state_file.write_text(json.dumps(state))
