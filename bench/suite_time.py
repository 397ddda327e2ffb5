"""Where the test suite's time goes: sums what tests/support/cputime.py recorded (docs/
benchmarks.md, "Test suite time").

Run by hand (never in CI), after a suite run with the plugin, e.g.::

    TRAJCORPUS_CPUTIME=/tmp/t.jsonl .venv/bin/python -m pytest -q -n 2
    .venv/bin/python bench/suite_time.py /tmp/t.jsonl [--top 25] [--against OLD.jsonl]

Prints the totals (tests, CPU of the tests and of their children, wall), per worker and per
module (most CPU first), and the costliest tests. With ``--against``, each module's CPU beside
the other record's (a before/after of the same suite).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

__all__ = ["load", "by_key", "main"]


def load(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def by_key(rows: list[dict], key) -> dict[str, dict[str, float]]:
    """tests, wall, and CPU (the process's and its children's) summed per ``key(row)``."""
    out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in rows:
        s = out[key(r)]
        s["tests"] += 1
        s["wall"] += r["wall"]
        s["cpu"] += r["self"] + r["children"]
    return out


def _module(row: dict) -> str:
    return row["test"].split("::")[0]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("record")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--against", help="another record: its per-module CPU side by side")
    args = ap.parse_args(argv)
    rows = load(args.record)
    total = by_key(rows, lambda r: "all")["all"]
    print(f"{int(total['tests'])} tests: CPU {total['cpu']:.0f} s "
          f"(tests' processes {sum(r['self'] for r in rows):.0f} s, their children "
          f"{sum(r['children'] for r in rows):.0f} s), wall summed over tests {total['wall']:.0f} s")
    for worker, s in sorted(by_key(rows, lambda r: r.get("worker", "-")).items()):
        print(f"  worker {worker}: {int(s['tests'])} tests, CPU {s['cpu']:.0f} s, "
              f"wall {s['wall']:.0f} s")
    old = by_key(load(args.against), _module) if args.against else {}
    print(f"\n{'module':48} {'tests':>5} {'CPU s':>8} {'wall s':>8}"
          + (f" {'before':>8}" if old else ""))
    modules = by_key(rows, _module)
    for name in sorted(set(modules) | set(old), key=lambda m: -modules.get(m, {}).get("cpu", 0)):
        s = modules.get(name, defaultdict(float))
        line = f"{name:48} {int(s['tests']):5d} {s['cpu']:8.1f} {s['wall']:8.1f}"
        if old:
            line += f" {old.get(name, {}).get('cpu', 0.0):8.1f}"
        print(line)
    print(f"\nthe {args.top} costliest tests (CPU s, wall s):")
    for r in sorted(rows, key=lambda r: -(r["self"] + r["children"]))[:args.top]:
        print(f"{r['self'] + r['children']:8.1f} {r['wall']:8.1f}  {r['test']}")


if __name__ == "__main__":
    main()
