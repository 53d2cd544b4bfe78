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

Workers die with the process that started them (:func:`die_with_parent`, each pool's initializer): a worker whose
owner was killed (kill -9 of a tick) would otherwise run on as an orphan, writing its coin's products while the tick
lock is free, then wait forever for an owner that is gone.
"""
from __future__ import annotations

import ctypes
import fcntl
import multiprocessing
import os
import signal
import sys
import threading
from multiprocessing.context import BaseContext
from typing import Sequence

#: prctl(2) option: the signal the kernel sends this process when the thread that forked it exits (Linux).
PR_SET_PDEATHSIG = 1


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


def die_with_parent() -> None:
    """A pool's ``initializer``: the worker is killed when the process that started the pool dies, and exits at once
    if it is already gone.

    Two signals, one per way a worker is started. Its parent's death: prctl ``PR_SET_PDEATHSIG`` (SIGKILL; Linux,
    through ctypes) covers a worker the pool's owner forked (``fork``). A worker the fork server forked has the
    server as its parent, and the server outlives the owner while any worker holds its "alive" pipe, so its death
    never comes: that worker is told by its end of the pipe from the owner (``multiprocessing.parent_process()``'s
    sentinel, which only the owner writes to), set to raise SIGIO, whose default action ends the process, when the
    owner's end closes. No thread is started: the worker stays a process that may fork (:func:`safe_to_fork`)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(err)}")
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    fd = parent.sentinel
    try:
        signal.signal(signal.SIGIO, signal.SIG_DFL)  # SIGIO ends the process (its default action)
        fcntl.fcntl(fd, fcntl.F_SETOWN, os.getpid())
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_ASYNC)
    except (AttributeError, OSError, ValueError):  # no SIGIO on this system: the parent's death signal only
        pass
    if not parent.is_alive():  # died before the lines above: no signal will come
        os._exit(1)
