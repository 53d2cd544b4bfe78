"""Worker processes started safely: fork only from a single-threaded process, else a fork server.

Forking copies one thread: a lock another thread held at that moment (logging's, a queue's, ZeroMQ's in a Jupyter
kernel) stays locked forever in the child. coincast starts workers in two places, the coins of a build
(:func:`coincast.operations.build.build`, ``coin_jobs``) and the backtest's models (:func:`coincast.forecasting.backtest.run_forecasts`,
``n_jobs``), from processes that may have threads: a Jupyter kernel always does (heartbeat, IOPub, control),
and so does a long-lived caller such as a replay or a test. :func:`pool_context` forks when the process has no
other Python thread (the coincast command's own process: fastest, the children share its imports) and otherwise
uses the standard library's fork server, a clean single-threaded process that imports ``preload`` once and forks
the workers from itself. (CPython's ProcessPoolExecutor starts its own manager thread only after forking its
workers, so the pool itself never makes the fork unsafe.)
"""
from __future__ import annotations

import multiprocessing
import threading
from multiprocessing.context import BaseContext
from typing import Sequence


def safe_to_fork() -> bool:
    """True when this process runs no Python thread besides the main one."""
    return threading.active_count() == 1


def pool_context(preload: Sequence[str] = ()) -> BaseContext:
    """The start method for a pool of workers started now: ``fork`` if :func:`safe_to_fork`, else
    ``forkserver`` with ``preload`` imported once in the server."""
    if safe_to_fork():
        return multiprocessing.get_context("fork")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(preload))
    return ctx
