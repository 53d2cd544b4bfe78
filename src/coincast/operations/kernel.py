"""papermill's Jupyter kernels with their own stderr in the build's log file, not on the console.

A kernel's stderr is its application log (the notebook's own output travels over IOPub into the executed
notebook). ipykernel 7.4 sometimes writes a whole ``ZMQError: Socket operation on non-socket`` traceback there
when its shutdown races its IOPub thread (a flush scheduled after the socket closed; ipykernel's PR #1518 caught
one such path, not this one): seen once in the 7 papermill builds of 2026-12-03 (`make test` runs and `make
demo`), where it broke the build's short console output. With ``-v`` too, the kernel's log stays in the file.
Named by :func:`coincast.operations.console.quiet_notebooks` as the tasks' ``kernel_manager_class`` (a string,
so that builds running notebooks in-process never import jupyter_client).
"""
from __future__ import annotations

import logging
from typing import Any

from jupyter_client.manager import AsyncKernelManager

#: The logger whose file a kernel's stderr joins: the build's log (``build_log``) or the tick's (``hourly.log``).
LOGGER = "papermill"


def log_file(name: str = LOGGER) -> str | None:
    """The file the logger ``name`` writes to, through its own handlers or its ancestors' (None: no file)."""
    lg: logging.Logger | None = logging.getLogger(name)
    while lg is not None:
        for handler in lg.handlers:
            if isinstance(handler, logging.FileHandler):
                return handler.baseFilename
        lg = lg.parent if lg.propagate else None
    return None


class LoggedKernelManager(AsyncKernelManager):
    """A kernel whose stderr is appended to :func:`log_file` when there is one (stderr unchanged otherwise, or
    when the caller chose it)."""

    async def start_kernel(self, **kw: Any) -> None:
        path = log_file()
        if path is None or "stderr" in kw:
            return await super().start_kernel(**kw)
        with open(path, "ab") as sink:  # the kernel holds its own copy once started
            return await super().start_kernel(stderr=sink, **kw)
