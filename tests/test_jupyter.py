"""Opening notebooks/*.py in Jupyter works with the committed config (the jupytext >= 1.17 trap),
and Ploomber injects the parameters cell. A real jupyter server on 127.0.0.1."""
from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time

import pytest
import requests

from conftest import BIN, ROOT

pytestmark = pytest.mark.pipeline


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(config_dir: str, tmp_path):
    port, token = _free_port(), secrets.token_hex(8)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": config_dir, "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"),
           "JUPYTER_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen(
        [str(BIN / "jupyter"), "server", "--port", str(port), f"--IdentityProvider.token={token}",
         "--ServerApp.allow_root=True", "--ServerApp.ip=127.0.0.1", "--no-browser"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    session = requests.Session()
    session.trust_env = False
    session.headers["Authorization"] = f"token {token}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if session.get(f"{url}/api/status", timeout=2).ok:
                return proc, url, session
        except requests.ConnectionError:
            time.sleep(0.5)
    proc.kill()
    pytest.fail("jupyter server did not start within 90 s")


def _stop(proc):
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_notebooks_open_with_injected_parameters(tmp_path):
    proc, url, session = _serve(str(ROOT / ".jupyter"), tmp_path)
    try:
        for name in ["01_extract.py", "02_validate.py", "03_features.py", "04_profile.py"]:
            resp = session.get(f"{url}/api/contents/notebooks/{name}", params={"content": 1}, timeout=60)
            assert resp.status_code == 200, (name, resp.status_code, resp.text[:300])
            model = resp.json()
            assert model["type"] == "notebook"
            tags = [c["metadata"].get("tags", []) for c in model["content"]["cells"]]
            assert ["injected-parameters"] in tags, f"{name}: Ploomber did not inject parameters"
        injected = next(c for c in model["content"]["cells"] if c["metadata"].get("tags") == ["injected-parameters"])
        assert "products/bitcoin/features.parquet" in "".join(injected["source"])
    finally:
        _stop(proc)
    # the file on disk is untouched: injection happens only in the browser's copy
    assert "injected-parameters" not in (ROOT / "notebooks" / "04_profile.py").read_text()


def test_without_the_committed_config_ploomber_breaks(tmp_path):
    """Documents the trap the committed config fixes (if this starts passing, the config may be dropped)."""
    empty = tmp_path / "cfg"
    empty.mkdir()
    proc, url, session = _serve(str(empty), tmp_path)
    try:
        resp = session.get(f"{url}/api/contents/notebooks/01_extract.py", params={"content": 1}, timeout=60)
        assert resp.status_code == 500
    finally:
        _stop(proc)
