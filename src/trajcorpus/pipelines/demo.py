"""``make demo``: run the job on every bundled corpus into one output folder.

    python -m trajcorpus.pipelines.demo --output demo-out

Each ``demo-*`` catalog entry becomes one config of the same OUT (Atari, MuJoCo, image captions,
robot stacking); the dataset card is written once at the end, and the last lines say how to load
the result with ``datasets.load_dataset``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .. import fs
from ..errors import TrajcorpusError
from ..schemas.catalog import load_catalog
from ..shards.codecs import format_choices
from .job import JobResult, run_dataset

__all__ = ["main", "default_catalog", "run_demo", "load_instructions"]


def default_catalog() -> str:
    """catalog.yaml in the working directory, else the one at the repository root."""
    if os.path.exists("catalog.yaml"):
        return "catalog.yaml"
    return str(Path(__file__).resolve().parents[3] / "catalog.yaml")


def run_demo(output: str, catalog: str, seed: int = 0, fmt: str = "both",
             only: Sequence[str] = (), beam_args: Sequence[str] = (),
             progress: bool = True, overwrite: bool = True) -> list[JobResult]:
    cat = load_catalog(catalog)
    ids = [d.id for d in cat.datasets if d.demo and (not only or d.id in only)]
    if not ids:
        raise TrajcorpusError(catalog, "no demo datasets selected")
    results = []
    for i, dataset in enumerate(ids, 1):
        print(f"== [{i}/{len(ids)}] {dataset}", file=sys.stderr, flush=True)
        results.append(run_dataset(catalog=catalog, dataset=dataset, output=output, seed=seed,
                                   fmt=fmt, beam_args=beam_args, progress=progress, card=False,
                                   overwrite=overwrite))
    from ..cards import write_card

    print(f"== dataset card: {write_card(output)}", file=sys.stderr, flush=True)
    return results


def _python() -> str:
    """How to call this interpreter: ``.venv/bin/python`` rather than a bare ``python`` (which
    may be another Python, without trajcorpus)."""
    exe = sys.executable
    try:
        rel = os.path.relpath(exe)
    except ValueError:
        return exe
    return rel if not rel.startswith("..") else exe


def load_instructions(output: str, results: Sequence[JobResult]) -> str:
    path = fs.local_path(output) if fs.is_local(output) else output
    first = results[0].config
    python = _python()
    bindir = os.path.dirname(python)
    lines = [
        "",
        f"{'config':<24} {'episodes':>9} {'kept':>6} {'rejected':>8} {'sequences':>9} "
        f"{'MB':>8}",
    ]
    for r in results:
        mb = sum(f["bytes"] for f in r.files) / 1e6
        lines.append(f"{r.config:<24} {r.total('read'):>9,} {r.total('kept'):>6,} "
                     f"{r.total('rejected'):>8,} {r.total('sequences'):>9,} {mb:>8.1f}")
    lines += [
        "",
        f"Output: {path} (card: {fs.join(path, 'README.md')}, manifest: "
        f"{fs.join(path, 'manifest.json')})",
        f"Load a config with Hugging Face datasets, in this environment's Python ({python}, "
        f"or any python after `source {os.path.join(bindir, 'activate')}`):",
        "",
        "    import datasets",
        f"    ds = datasets.load_dataset({path!r}, {first!r}, split='train', streaming=True)",
        "    example = next(iter(ds))  # tokens, modality, loss_mask, local_position, is_prompt,",
        "                              # patches, patch_position, meta",
        "",
        f"Configs: {', '.join(r.config for r in results)}",
        f"The command line is {os.path.join(bindir, 'trajcorpus')} (e.g. "
        f"{os.path.join(bindir, 'trajcorpus')} verify {output}).",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m trajcorpus.pipelines.demo",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--output", default="demo-out")
    ap.add_argument("--catalog", default=None, help="default: ./catalog.yaml or the repo's")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--format", default="both", choices=format_choices())
    ap.add_argument("--only", nargs="*", default=[], help="demo ids to run (default: all)")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--overwrite", action="store_true",
                    help="replace the demo configs already in --output (default: refuse)")
    args, beam_args = ap.parse_known_args(argv)
    t0 = time.time()
    try:
        from ..cli import check_beam_args

        check_beam_args(beam_args, [o for a in ap._actions for o in a.option_strings])
        results = run_demo(args.output, args.catalog or default_catalog(), args.seed,
                           args.format, args.only, beam_args, progress=not args.quiet,
                           overwrite=args.overwrite)
    except TrajcorpusError as e:
        print(f"demo: error: {e}", file=sys.stderr)
        return 2
    print(load_instructions(args.output, results))
    print(f"\nDemo finished in {time.time() - t0:.0f}s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
