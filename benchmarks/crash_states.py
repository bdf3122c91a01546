"""How many power-cut states of the spool and the state store are checked, and how fast.

Runs the crash-consistency exploration of `tests/kipu/test_crash_consistency.py` on a
larger workload than the test: the spool and the state store run on a simulated disk
that records every operation, and for every operation that changed the disk, every
state a power cut right then could leave (unsynced writes lost, kept, or kept with the
last one torn; folder changes not yet fsynced kept or not) is written to a real folder
and opened with the real code. Prints a markdown table; the violations column must
read 0 (the details follow the table otherwise, and the exit status is 1).

    .venv/bin/python -m benchmarks.crash_states [--records 600] [--saves 60] [--seed 1]
"""

from __future__ import annotations

import argparse

from tests.kipu.test_crash_consistency import Exploration, explore


def table(results: list[Exploration]) -> str:
    """The figures as a markdown table, one row per subject."""
    lines = [
        "| subject | workload | operations | crash points | crash images "
        "| of which torn | violations | seconds |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.subject} | {r.describe_workload()} | {r.operations:,} | {r.crash_points:,} "
        f"| {r.images:,} | {r.torn_images:,} | {len(r.violations)} | {r.seconds:.1f} |"
        for r in results
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=600, help="spool appends, about")
    parser.add_argument("--saves", type=int, default=60, help="state store saves")
    parser.add_argument("--seed", type=int, default=1, help="of the spool's workload")
    args = parser.parse_args()
    results = explore(args.records, args.saves, args.seed)
    print(table(results))
    violations = [v for r in results for v in r.violations]
    for violation in violations[:50]:
        print(violation)
    return 1 if violations else 0


if __name__ == "__main__":
    raise SystemExit(main())
