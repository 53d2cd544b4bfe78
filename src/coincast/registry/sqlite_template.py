"""A new local sqlite MLflow store starts as a copy of an empty one that MLflow made once per MLflow version.

MLflow makes a new sqlite store's tables by replaying every migration of its schema (alembic): 1.6 s of CPU here,
paid by every new project (``make demo``), every scratch project of the tests and every cold build. Here MLflow
makes one empty store per MLflow version in coincast's cache folder (``COINCAST_CACHE_DIR``, default the user's
cache: ``~/.cache/coincast``); its one row, the Default experiment (which names the folder of the store it was
made in), is removed. A new store is a copy of it (~5 ms): MLflow then finds its tables at the head of its
migrations, skips them, and adds the Default experiment with the new store's own artifact root, as in a store it
made itself (tests/test_registry.py compares the two). Anything that goes wrong leaves the store to MLflow.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

import mlflow
from filelock import FileLock, Timeout
from mlflow.tracking import MlflowClient
from platformdirs import user_cache_path

logger = logging.getLogger(__name__)

PREFIX = "sqlite:///"


def template_path() -> Path:
    """Where this MLflow version's empty store is kept: ``$COINCAST_CACHE_DIR`` or the user's cache folder."""
    folder = os.environ.get("COINCAST_CACHE_DIR", "").strip() or user_cache_path("coincast")
    return Path(folder).expanduser() / f"mlflow-{mlflow.__version__}-empty.db"


def store_file(uri: str) -> Path | None:
    """The file of a local sqlite store URI (``sqlite:///<path>[?options]``); None for any other store."""
    if not uri.startswith(PREFIX):
        return None
    return Path(uri[len(PREFIX):].split("?", 1)[0])


def make_template(path: Path) -> Path:
    """The empty store at ``path``, made by MLflow if absent (one process at a time); returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{path}.lock", timeout=300):
        if path.is_file():
            return path
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            made, copy = Path(tmp) / "made.db", Path(tmp) / "template.db"
            MlflowClient(PREFIX + made.as_posix()).search_experiments()  # MLflow makes its tables
            with contextlib.closing(sqlite3.connect(made)) as source, \
                    contextlib.closing(sqlite3.connect(copy)) as target:
                source.backup(target)  # (MLflow may keep its connection to `made` open)
                target.execute("DELETE FROM experiments")  # the Default experiment: MLflow adds it per store
                target.commit()
                target.execute("VACUUM")
            os.replace(copy, path)
    logger.info("made the empty MLflow store %s", path)
    return path


def seed(uri: str) -> bool:
    """If ``uri`` is a local sqlite store whose file does not exist yet, make the file a copy of the template
    (:func:`make_template`); True if it did. The caller holds the store's write lock. Never overwrites a store."""
    db = store_file(uri)
    if db is None or db.exists():
        return False
    try:
        template = make_template(template_path())
        db.parent.mkdir(parents=True, exist_ok=True)
        partial = db.with_name(f"{db.name}.seeding")
        shutil.copyfile(template, partial)
        os.replace(partial, db)
    except (OSError, sqlite3.Error, Timeout) as exc:  # MLflow makes the tables itself, as without the template
        logger.info("no MLflow store template (%s: %s): MLflow makes %s", type(exc).__name__, exc, db)
        return False
    return True
