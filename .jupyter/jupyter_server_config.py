# Jupyter config for this project (make jupyter sets JUPYTER_CONFIG_DIR to this folder).
# jupytext >= 1.17 no longer replaces Jupyter's contents manager by default, and Ploomber's extension
# (frozen at 0.23.3) derives its manager from whatever class is configured: without this line every
# file answers HTTP 500. With it, notebooks/*.py open as notebooks and Ploomber injects the
# parameters cell (upstream/product/params from pipeline.yaml + env.yaml) when one is opened.
c = get_config()  # noqa: F821
c.ServerApp.contents_manager_class = "jupytext.TextFileContentsManager"
c.ServerApp.ip = "127.0.0.1"
c.ServerApp.open_browser = False
import os  # noqa: E402

if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers and CI run as root
    c.ServerApp.allow_root = True
