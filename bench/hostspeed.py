"""How fast this host is right now: the CPU seconds of one fresh ``import ploomber.spec`` (what every build, task
and tick pays first), printed on one line. ``make test`` prints it before and after the suite.

The 2-core machine this project is measured on runs the same code up to ~2.5x slower at some hours than at
others, CPU seconds included (2026-12-03: the whole suite took 9 min of CPU at 18:20 UTC and 20 min at 18:45, and
`python -X importtime` put this import at 1.8 s at 18:25 and 4.0 s at 18:35; this probe gave 3.6-4.9 s later). A
suite's or a benchmark's time means little without the host's speed beside it: quote both.

    python bench/hostspeed.py            # host speed: `import ploomber.spec` 3.65 s CPU, 3.52 s wall in a fresh ...
"""
from __future__ import annotations

import sys

from speed import BIN, ROOT, measure  # bench/speed.py's fresh-process measure (wall, CPU from wait4)


def main() -> int:
    r = measure([str(BIN / "python"), "-c", "import ploomber.spec"], ROOT)
    print(f"host speed: `import ploomber.spec` {r['cpu_seconds']:.2f} s CPU, {r['seconds']:.2f} s wall in a fresh "
          "process (lower is faster; docs/testing.md lists suite times beside it)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
