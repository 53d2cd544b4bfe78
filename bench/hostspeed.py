"""How fast this host is right now: the CPU seconds of one fresh ``import ploomber.spec`` (what every build, task
and tick pays first), printed on one line. ``make test`` prints it before and after the suite.

The 2-core machine this project is measured on runs the same code up to ~2.5x slower at some hours than at
others, CPU seconds included (2026-12-03: the whole suite took 9 min of CPU at 18:20 UTC and 20 min at 18:45, and
`python -X importtime` put this import at 1.8 s at 18:25 and 4.0 s at 18:35; this probe gave 3.6-4.9 s later). A
suite's or a benchmark's time means little without the host's speed beside it: quote both.

    python bench/hostspeed.py            # host speed: `import ploomber.spec` 3.65 s CPU, 3.52 s wall in a fresh ...
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time


def probe() -> tuple[float, float]:
    """(CPU seconds, wall seconds) of a fresh interpreter importing ploomber.spec (user + system, from wait4)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as sink:
        proc = subprocess.Popen([sys.executable, "-c", "import ploomber.spec"], stdout=sink, stderr=sink)
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("hostspeed: `import ploomber.spec` failed in a fresh process")
    return usage.ru_utime + usage.ru_stime, time.perf_counter() - start


def main() -> int:
    cpu, wall = probe()
    print(f"host speed: `import ploomber.spec` {cpu:.2f} s CPU, {wall:.2f} s wall in a fresh process (lower is "
          "faster; docs/testing.md lists suite times beside it)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
