"""Run the hourly tick from cron: add or remove one tagged line in the user's crontab.

The line is tagged with the project folder, so several coincast checkouts can each have their own, and
installing twice replaces the line instead of adding a second one. Everything else in the crontab is
kept byte for byte.
"""
from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

TAG = "# coincast-hourly:"
DEFAULT_MINUTE = 5  # a few minutes past the hour: CoinGecko's hourly point has been sampled by then


def cron_escape(text: str) -> str:
    """``text`` as a crontab command keeps it: cron turns an unescaped ``%`` into a newline (crontab(5))."""
    return text.replace("%", "\\%")


def tag_for(project: str | Path) -> str:
    return cron_escape(f"{TAG}{Path(project).resolve()}")


def missing_env_files(project: str | Path, env_files: str) -> list[Path]:
    """The variant files named in ``env_files`` (comma-separated, relative to the project, as ``make hourly``'s
    ENV_FILE) that do not exist."""
    root = Path(project).resolve()
    named = [root / name.strip() for name in env_files.split(",") if name.strip()]
    return [path for path in named if not path.is_file()]


def cron_line(project: str | Path, minute: int = DEFAULT_MINUTE, env_files: str = "") -> str:
    """``M * * * * cd <project> && mkdir -p logs && make -s hourly >> logs/cron.log 2>&1  # coincast-hourly:<project>``.
    Raises ValueError (one line) for a minute outside 0-59 or an env file that does not exist."""
    if not 0 <= minute <= 59:
        raise ValueError(f"--minute must be 0-59, got {minute}")
    missing = missing_env_files(project, env_files)
    if missing:
        raise ValueError(f"env file not found: {missing[0]} (--env-files names files in the project folder)")
    root = Path(project).resolve()
    env = f" ENV_FILE={shlex.quote(env_files)}" if env_files else ""
    command = f"cd {shlex.quote(str(root))} && mkdir -p logs && make -s hourly{env} >> logs/cron.log 2>&1"
    return f"{minute} * * * * {cron_escape(command)}  {tag_for(root)}"


def with_line(crontab: str, project: str | Path, line: str) -> str:
    """``crontab`` with this project's tagged line replaced by (or added as) ``line``."""
    kept = [row for row in crontab.splitlines() if not row.rstrip().endswith(tag_for(project))]
    return "\n".join([*kept, line]) + "\n"


def without_line(crontab: str, project: str | Path) -> str:
    kept = [row for row in crontab.splitlines() if not row.rstrip().endswith(tag_for(project))]
    return "\n".join(kept) + "\n" if kept else ""


def _crontab() -> str:
    exe = shutil.which("crontab")
    if exe is None:
        raise RuntimeError("crontab not found: install cron (Debian/Ubuntu: apt-get install cron)")
    return exe


def read_crontab() -> str:
    proc = subprocess.run([_crontab(), "-l"], capture_output=True, text=True)
    if proc.returncode != 0:
        if "no crontab" in proc.stderr.lower():
            return ""
        raise RuntimeError(f"crontab -l failed: {proc.stderr.strip()}")
    return proc.stdout


def write_crontab(text: str) -> None:
    proc = subprocess.run([_crontab(), "-"], input=text, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"crontab - failed: {proc.stderr.strip()}")


def install(project: str | Path, minute: int = DEFAULT_MINUTE, env_files: str = "") -> str:
    line = cron_line(project, minute, env_files)
    write_crontab(with_line(read_crontab(), project, line))
    return line


def remove(project: str | Path) -> bool:
    """Remove this project's line; returns whether there was one."""
    current = read_crontab()
    updated = without_line(current, project)
    if updated == current or (not current.strip() and not updated):
        return False
    write_crontab(updated)
    return True
