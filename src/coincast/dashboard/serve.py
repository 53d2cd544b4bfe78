"""``make dashboard``: serve ``notebooks/dashboard.ipynb`` with Voila on 127.0.0.1 (``python -m coincast.dashboard``)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from coincast.dashboard.data import PROJECT_ENV, find_project

NOTEBOOK = Path("notebooks") / "dashboard.ipynb"
DEFAULT_PORT = 8866
# lab extensions the dashboard does not use: jupytext's and Ploomber's fail to activate outside JupyterLab
# (errors in the browser console); anywidget, pygments and the Voila preview only add downloads
UNUSED_EXTENSIONS = ("jupyterlab-jupytext", "ploomber-extension", "anywidget", "jupyterlab_pygments",
                     "@voila-dashboards/jupyterlab-preview")


def voila_command(project_root: str | os.PathLike, port: int = DEFAULT_PORT, ip: str = "127.0.0.1",
                  preheat: bool = True) -> list[str]:
    """The Voila command line ``make dashboard`` runs (in ``project_root``), sources stripped.

    ``preheat``: Voila keeps one kernel started with the imports done (:func:`coincast.dashboard.app.prepare`),
    so the first render does not wait for a kernel (here ~2 s of a ~5 s first render); the products are still
    read when the page is requested. The pool is refilled 5 s after a page takes its kernel, so refilling does
    not compete with that page's rendering."""
    notebook = Path(project_root) / NOTEBOOK
    if not notebook.is_file():
        raise FileNotFoundError(f"{notebook} not found: run from the coincast project (or pass --project)")
    cmd = [sys.executable, "-m", "voila", str(NOTEBOOK), f"--port={int(port)}", f"--Voila.ip={ip}",
           "--no-browser", "--strip_sources=True", "--show_tracebacks=False"]
    cmd += [f"--VoilaConfiguration.extension_denylist={name}" for name in UNUSED_EXTENSIONS]
    # Voila 0.5.13 does not reliably shut a page's kernel down when the page goes away (here the unload
    # request was refused for lack of an XSRF token, or not sent): without culling every page view would
    # leave a Python process behind. Open pages' kernels stay (connected), and so does the pre-heated one.
    cmd += ["--MappingKernelManager.cull_idle_timeout=900", "--MappingKernelManager.cull_interval=60"]
    if preheat:
        cmd += ["--preheat_kernel=True", "--VoilaKernelManager.fill_delay=5"]
    return cmd


def main(argv: list[str] | None = None) -> int:
    """``python -m coincast.dashboard [--port P] [--ip IP] [--project DIR] [Voila options]``: serve the dashboard."""
    parser = argparse.ArgumentParser(prog="python -m coincast.dashboard", description=main.__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("DASHBOARD_PORT") or DEFAULT_PORT))
    parser.add_argument("--ip", default=os.environ.get("DASHBOARD_IP") or "127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--project", default=None, help="the project folder (default: found from here)")
    parser.add_argument("--no-preheat", action="store_true", help="start a kernel per page instead")
    args, voila_options = parser.parse_known_args(argv)  # anything else goes to Voila
    root = Path(args.project).resolve() if args.project else find_project()
    try:
        cmd = voila_command(root, args.port, args.ip, preheat=not args.no_preheat) + voila_options
    except FileNotFoundError as exc:
        print(f"coincast dashboard: {exc}", file=sys.stderr)
        return 2
    os.environ[PROJECT_ENV] = str(root)
    print(f"coincast dashboard: http://{args.ip}:{args.port}/ (products of {root})", flush=True)
    os.chdir(root)
    os.execv(cmd[0], cmd)  # replaces this process: signals reach Voila directly
    return 0  # pragma: no cover


__all__ = ["DEFAULT_PORT", "NOTEBOOK", "main", "voila_command"]
