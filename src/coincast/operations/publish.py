"""Build stamps and the published snapshot: what the dashboard (and a person) reads is one whole, successful build.

Every extraction gets a ``build_id`` (source, clock, a random part: :func:`coincast.files.new_build_id`) written to
``extract.json``; the per-build products after it carry it too (:func:`stamp`: ``validation.json``,
``forecast.parquet``, ``live.json``). The working products under ``products/<coin>/`` are what the tasks write,
so after a failed build they mix two builds (the new extract and gate report beside the previous forecast).

The last task, ``publish`` (:func:`publish`, downstream of every other task, so it runs only when the whole coin
DAG succeeded), checks that the products are one passed build (:func:`check_build`), snapshots them into
``products/<coin>/.published-<build_id>/`` and switches the pointer ``products/<coin>/published`` (a relative
symlink, replaced with one ``os.replace``) to it; ``products/<coin>/published.json`` (the task's product) describes
the snapshot. Data products are hard links: every one is written by temp file + rename
(``coincast.files.write_*_atomic``), so a later build replaces the working file with a new inode and the snapshot's
link keeps the old content. Executed notebooks are copied (papermill / ploomber-engine write an ``.ipynb`` product
in place). The snapshot in use and the one before it are kept (a reader that resolved the pointer just before a
switch still finds its files); older ones are removed.

Readers: :func:`published_folder` resolves the pointer once; :func:`build_status` compares the working build with
the published one (the dashboard's warning when the latest build failed).
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from coincast import files as fileio  # (`files` names the products this module publishes)

POINTER = "published"
SNAPSHOT_PREFIX = ".published-"
MANIFEST = "published.json"
#: snapshots kept: the published one and the one before it
KEEP = 2


class PublishError(RuntimeError):
    """The working products are not one whole, passed build: nothing was published."""


# --- build stamps -------------------------------------------------------------------------------------------
def stamp(obj: Any, meta: Mapping[str, Any] | None) -> Any:
    """``obj`` (a dict or a DataFrame) with the build's ``build_id`` (from ``extract.json``'s ``meta``) added."""
    build_id = (meta or {}).get("build_id")
    if isinstance(obj, pd.DataFrame):
        return obj.assign(build_id=build_id)
    return {**obj, "build_id": build_id}


def gate_reason(report: Mapping[str, Any] | None) -> str | None:
    """A failed gate report's one line: ``validation gate failed: name (message); ...``; None if it passed."""
    if not report or report.get("passed", True):
        return None
    failed = [c for c in report.get("checks") or [] if not c.get("passed")]
    if not failed:
        return "validation gate failed"
    return "validation gate failed: " + "; ".join(f"{c.get('name')} ({c.get('message')})" for c in failed)


# --- checking and publishing --------------------------------------------------------------------------------
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _parquet_build_ids(path: Path) -> set[Any] | None:
    """The distinct ``build_id`` values of a parquet file, or None when it has no such column."""
    import pyarrow.parquet as pq

    if "build_id" not in pq.read_schema(path).names:
        return None
    return set(pq.read_table(path, columns=["build_id"]).column(0).to_pylist())


def check_build(folder: str | os.PathLike, files: Iterable[str | os.PathLike]) -> dict[str, Any]:
    """``extract.json`` of ``folder`` if ``files`` are one whole build that passed its gate, else PublishError.

    Whole: every file exists; ``validation.json`` passed; every JSON file or parquet column that carries a
    ``build_id`` carries the extraction's."""
    folder = Path(folder)
    paths = [Path(f) for f in files]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise PublishError(f"{folder}: {', '.join(missing)} missing: the build did not finish; nothing published")
    meta = _read_json(folder / "extract.json")
    if not isinstance(meta, dict) or not meta.get("build_id"):
        raise PublishError(f"{folder}/extract.json has no build_id (missing, unreadable or written by an older "
                           "coincast): rebuild with `coincast build --force`; nothing published")
    build_id = meta["build_id"]
    report = _read_json(folder / "validation.json")
    if not isinstance(report, dict):
        raise PublishError(f"{folder}/validation.json is missing or unreadable: nothing published")
    if report.get("build_id") != build_id:
        raise PublishError(f"{folder}/validation.json is from build {report.get('build_id')}, extract.json from "
                           f"{build_id}: the gate did not judge this data; nothing published")
    if not report.get("passed"):
        raise PublishError(f"build {build_id} did not pass: {gate_reason(report)}; nothing published")
    for p in paths:
        if p.suffix == ".json":
            data = _read_json(p)
            found = {data.get("build_id")} if isinstance(data, dict) and "build_id" in data else None
        elif p.suffix == ".parquet":
            found = _parquet_build_ids(p)
        else:
            continue
        if found is not None and found != {build_id}:
            raise PublishError(f"{p} is from build {', '.join(map(str, sorted(found, key=str)))}, extract.json from "
                               f"{build_id}: the products mix builds; rebuild with `coincast build --force`; "
                               "nothing published")
    return meta


def _snapshot_name(folder: Path, build_id: str) -> str:
    name = f"{SNAPSHOT_PREFIX}{build_id}"
    return name if not (folder / name).exists() else f"{name}-{uuid.uuid4().hex[:6]}"  # published again


def _place(src: Path, dest: Path, copy: bool) -> str:
    if not copy:
        try:
            os.link(src, dest)
            return "link"
        except OSError:  # a file system without hard links: a copy is a snapshot too
            pass
    shutil.copy2(src, dest)
    return "copy"


def _current(folder: Path) -> str | None:
    try:
        return os.readlink(folder / POINTER)
    except OSError:
        return None


def _switch(folder: Path, target: str) -> None:
    """Point ``folder/published`` at ``target`` with one atomic rename: a reader always finds one snapshot."""
    pointer = folder / POINTER
    tmp = folder / f".{POINTER}.{uuid.uuid4().hex}.tmp"
    os.symlink(target, tmp)
    try:
        os.replace(tmp, pointer)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _prune(folder: Path, keep: set[str]) -> list[str]:
    removed = []
    for d in folder.glob(f"{SNAPSHOT_PREFIX}*"):
        if d.name not in keep and d.is_dir() and not d.is_symlink():
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d.name)
    return sorted(removed)


def publish_files(folder: str | os.PathLike, files: Iterable[str | os.PathLike], copies: Iterable[str] = (),
                  manifest: str | os.PathLike | None = None) -> dict[str, Any]:
    """Snapshot ``files`` (products of ``folder``'s build; names in ``copies`` are copied, the rest hard-linked),
    switch ``folder/published`` to the snapshot, write the manifest (default ``folder/published.json``), remove
    snapshots older than the previous one. Returns the manifest. PublishError (nothing changed) unless
    :func:`check_build` accepts the files."""
    folder = Path(folder)
    paths = [Path(f) for f in files]
    meta = check_build(folder, paths)
    pointer = folder / POINTER
    if pointer.exists() and not pointer.is_symlink():
        raise PublishError(f"{pointer} is not a symlink: move it away (coincast owns this name); nothing published")
    copy_names = {Path(c).name for c in copies}
    name = _snapshot_name(folder, meta["build_id"])
    tmp = folder / f"{SNAPSHOT_PREFIX}tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        how = {p.name: _place(p, tmp / p.name, p.name in copy_names) for p in paths}
        info = {"build_id": meta["build_id"], "coin": meta.get("coin"), "source": meta.get("source"),
                "simulated": meta.get("simulated"), "clock": meta.get("now"), "last": meta.get("last"),
                "published_at": pd.Timestamp.now(tz="UTC").isoformat(), "snapshot": name,
                "files": {n: {"bytes": (tmp / n).stat().st_size, "how": h} for n, h in sorted(how.items())}}
        fileio.write_json_atomic(info, tmp / MANIFEST)
        os.rename(tmp, folder / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    previous = _current(folder)
    _switch(folder, name)
    fileio.write_json_atomic(info, manifest if manifest is not None else folder / MANIFEST)
    _prune(folder, {name, previous or name})
    return info


def _product_paths(product: Any) -> dict[str, str]:
    """{key: path} of a task's product (a Ploomber MetaProduct, a mapping or one path)."""
    if hasattr(product, "to_json_serializable"):
        product = product.to_json_serializable()
    if isinstance(product, Mapping):
        return {str(k): str(v) for k, v in product.items()}
    return {"": str(product)}


def publish(product: Any, upstream: Mapping[str, Any]) -> None:
    """The pipeline's last task (a Ploomber PythonCallable; pipeline.yaml): publish the products of every task
    (executed notebooks, key ``nb``, copied) as the coin's published snapshot. Ploomber runs it only when every
    upstream task succeeded; :func:`check_build` refuses anything else (e.g. ``ploomber task publish --force``
    after a failed gate)."""
    tasks = [upstream["extract"], upstream["validate"], upstream["features"], upstream["profile"],
             upstream["train"], upstream["forecast"], upstream["monitor"]]
    files, copies = [], []
    for task_product in tasks:
        for key, path in _product_paths(task_product).items():
            files.append(path)
            if key == "nb":
                copies.append(path)
    own = _product_paths(product)
    out = Path(own.get("manifest") or next(iter(own.values())))
    publish_files(out.parent, files, copies, manifest=out)


# --- reading ----------------------------------------------------------------------------------------------------
def published_folder(folder: str | os.PathLike) -> Path | None:
    """The published snapshot of a coin's products folder, resolved once (None if nothing is published)."""
    pointer = Path(folder) / POINTER
    try:
        target = pointer.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    return target if target.is_dir() else None


#: written by ``coincast build`` / a tick beside a coin's products when its build failed (removed on success), so a
#: build that failed before its extraction wrote anything (e.g. the API unreachable) is still reported
FAILURE = "failed.json"


def describe_status(published: Mapping[str, Any] | None, latest: Mapping[str, Any] | None,
                    validation: Mapping[str, Any] | None, failure: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The published build vs the latest one (``extract.json`` of the snapshot and of the working products, the
    working ``validation.json``, and :data:`FAILURE` if the last build failed): ``failed`` when the latest build
    was not published, with a one-line ``reason``; ``gate`` is the latest build's own gate report, if it got that
    far."""
    published = published or {}
    pub_id = published.get("build_id")
    latest_id = (latest or {}).get("build_id")
    gate, reason = None, None
    if failure and latest_id == pub_id:  # the last build stopped before a new extraction was written
        latest = {"source": failure.get("source"), "now": failure.get("clock") or failure.get("at")}
        latest_id, failed, reason = None, True, str(failure.get("reason") or "did not finish")
    else:
        failed = bool(latest) and (not published or latest_id != pub_id)
        gate = validation if validation and latest_id and validation.get("build_id") == latest_id else None
    if failed and reason is None:
        if not latest_id:
            reason = "its products carry no build stamp (made by an older coincast): run `coincast build`"
        elif gate is not None and not gate.get("passed", True):
            reason = gate_reason(gate)
        elif gate is not None:
            reason = "did not finish: a task after the validation gate failed or is still running (see the build log)"
        else:
            reason = "did not finish: it stopped before the validation gate reported, or is still running"
    return {"published": bool(published), "failed": failed, "reason": reason, "gate": gate,
            "published_build_id": pub_id, "published_source": published.get("source"),
            "published_clock": published.get("now"),
            "latest_build_id": latest_id, "latest_source": (latest or {}).get("source"),
            "latest_clock": (latest or {}).get("now")}


def build_status(folder: str | os.PathLike) -> dict[str, Any]:
    """:func:`describe_status` of a coin's products folder (``products/<coin>/``); never raises."""
    folder = Path(folder)
    snapshot = published_folder(folder)
    published = _read_json(snapshot / "extract.json") if snapshot is not None else None
    latest = _read_json(folder / "extract.json")
    validation = _read_json(folder / "validation.json")
    failure = _read_json(folder / FAILURE)
    return {**describe_status(published if isinstance(published, dict) else None,
                              latest if isinstance(latest, dict) else None,
                              validation if isinstance(validation, dict) else None,
                              failure if isinstance(failure, dict) else None),
            "snapshot": snapshot}


def record_failure(folder: str | os.PathLike, reason: str | None, source: str | None = None,
                   clock: Any = None) -> None:
    """Write (``reason``) or remove (None) the coin's :data:`FAILURE` marker, atomically."""
    path = Path(folder) / FAILURE
    if reason is None:
        path.unlink(missing_ok=True)
        return
    fileio.write_json_atomic({"reason": reason, "source": source, "clock": None if clock is None else str(clock),
                          "at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds")}, path)


__all__ = ["FAILURE", "KEEP", "MANIFEST", "POINTER", "PublishError", "build_status", "check_build",
           "describe_status", "gate_reason", "publish", "publish_files", "published_folder",
           "record_failure", "stamp"]
