"""File edges: atomic writes (temp file in the same folder, fsync, rename) and reads of products."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pandas as pd

from coincast.timeseries import to_utc, utc_now, utc_times


def _umask() -> int:
    """The process's umask (read once, at import: setting it to read it is not thread-safe)."""
    old = os.umask(0o022)
    os.umask(old)
    return old


#: the permissions of a written product: what ``open()`` would give it (0666 less the umask), not mkstemp's 0600,
#: so a dashboard or a teammate running as another user can read what a build wrote
FILE_MODE = 0o666 & ~_umask()


@contextmanager
def _atomic(path: str | os.PathLike, mode: str = "wb") -> Iterator[Any]:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_parquet_atomic(df: pd.DataFrame, path: str | os.PathLike) -> None:
    with _atomic(path, "wb") as fh:
        df.to_parquet(fh, index=False)


def write_text_atomic(text: str, path: str | os.PathLike) -> None:
    with _atomic(path, "w") as fh:
        fh.write(text)


def _default(obj: Any) -> Any:
    if isinstance(obj, pd.Timestamp):
        return obj.isoformat()
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json_atomic(data: Any, path: str | os.PathLike) -> None:
    write_text_atomic(json.dumps(data, indent=2, default=_default) + "\n", path)


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def read_frame(path: str | os.PathLike) -> pd.DataFrame:
    df = pd.read_parquet(path)
    if "timestamp" in df.columns:
        df["timestamp"] = utc_times(df["timestamp"])
    return df


def read_store(
    path: str | os.PathLike,
    empty: Callable[[], pd.DataFrame],
    columns: Sequence[str],
    time_columns: Sequence[str],
    error: type[Exception],
    what: str,
    added: Sequence[str] = (),
) -> pd.DataFrame:
    """An accumulating data file (raw history, prediction log): ``empty()`` if it does not exist yet, else its
    ``columns`` with UTC ``time_columns``; a damaged file raises ``error`` naming it (restore from DVC).
    ``added``: columns introduced after files were first written; a file without one gets it as missing values."""
    p = Path(path)
    if not p.exists():
        return empty()
    try:
        df = pd.read_parquet(p)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise error(f"{what} {p} cannot be read ({type(exc).__name__}): restore it from DVC") from None
    for c in time_columns:
        df[c] = utc_times(df[c])
    for c in added:
        if c not in df.columns:
            df[c] = pd.Series(pd.NA, index=df.index, dtype="object")
    return df[list(columns)]


# --- what identifies a file and a build ---------------------------------------------------------------------
def file_md5(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """md5 of the file's bytes, as DVC 3 computes it (a raw history's data version)."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def new_build_id(source: str, clock: Any = None) -> str:
    """``<source>-<clock as YYYYmmddTHHMMSSZ>-<8 hex>``: unique per extraction, readable, safe in a file name
    (every product of the build carries it: coincast.operations.publish.stamp)."""
    t = to_utc(clock) if clock is not None else utc_now()
    return f"{source}-{t:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
