"""``trajcorpus`` command line (SPEC section 8).

Bad input or bad arguments print one line (what, where, why) and exit 2; ``--debug`` shows the
traceback instead. Each subcommand is a thin shell over a library function.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .errors import TrajcorpusError

__all__ = ["main", "build_parser"]

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's default prints usage; keep it one line
        raise TrajcorpusError(self.prog, message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="trajcorpus", description=__doc__.splitlines()[0])
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run the Beam job for one catalog dataset")
    run.add_argument("--catalog", default="catalog.yaml")
    run.add_argument("--dataset", required=True, help="catalog id")
    run.add_argument("--input", help="override the catalog entry's uri")
    run.add_argument("--output", required=True, help="output folder (local path or gs://)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--format", choices=("webdataset", "parquet", "both"), default="both")
    run.add_argument("--runner", default="DirectRunner",
                     choices=("DirectRunner", "DataflowRunner", "DaskRunner"))
    run.add_argument("--quiet", action="store_true", help="no progress display")

    eps = sub.add_parser("episodes", help="list the episodes a source yields")
    eps.add_argument("--kind", required=True)
    eps.add_argument("--input", required=True)
    eps.add_argument("--json", action="store_true", help="one JSON object per line")
    eps.add_argument("--option", action="append", default=[], metavar="KEY=JSON",
                     help="reader option, e.g. --option games='[\"Pong\"]'")

    ver = sub.add_parser("verify", help="re-hash every file of an output against its manifest")
    ver.add_argument("output")

    card = sub.add_parser("card", help="(re)write the dataset card of an output folder")
    card.add_argument("output")

    pub = sub.add_parser("publish", help="upload an output folder to the Hugging Face hub")
    pub.add_argument("output")
    pub.add_argument("--repo", required=True, help="ORG/NAME")
    pub.add_argument("--private", action="store_true")

    cat = sub.add_parser("catalog", help="list, show or validate the catalog")
    cat_sub = cat.add_subparsers(dest="catalog_command", required=True, parser_class=_Parser)
    cl = cat_sub.add_parser("list")
    cl.add_argument("--catalog", default="catalog.yaml")
    cs = cat_sub.add_parser("show")
    cs.add_argument("id")
    cs.add_argument("--catalog", default="catalog.yaml")
    cv = cat_sub.add_parser("validate")
    cv.add_argument("file", nargs="?", default="catalog.yaml")
    return p


def _cmd_catalog(args: argparse.Namespace) -> int:
    from .schemas.catalog import load_catalog

    if args.catalog_command == "validate":
        cat = load_catalog(args.file)
        print(f"{args.file}: OK, {len(cat.datasets)} datasets "
              f"({sum(d.demo for d in cat.datasets)} demo)")
        return 0
    cat = load_catalog(args.catalog)
    if args.catalog_command == "list":
        width = max(len(d.id) for d in cat.datasets)
        kwidth = max(len(d.kind) for d in cat.datasets)
        for d in cat.datasets:
            print(f"{d.id:<{width}}  {d.kind:<{kwidth}}  {'demo ' if d.demo else '     '}"
                  f"{cat.uri_of(d)}")
        return 0
    entry = cat.get(args.id)
    import yaml

    data = entry.model_dump(mode="json")
    data["uri"] = cat.uri_of(entry)
    print(yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip())
    return 0


def _parse_options(pairs: Sequence[str]) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise TrajcorpusError("--option", f"expected KEY=JSON, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _cmd_episodes(args: argparse.Namespace) -> int:
    """Readers turn bad input into one-line errors; anything else still ends as one line here
    (naming the input and the exception type), with the traceback only under --debug."""
    try:
        return _list_episodes(args)
    except (TrajcorpusError, BrokenPipeError, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001  (the last-resort boundary of `episodes`)
        from .errors import one_line

        raise TrajcorpusError(args.input, f"unexpected {type(e).__name__} while reading "
                              f"{args.kind}: {one_line(e) or '(no message)'}") from e


def _list_episodes(args: argparse.Namespace) -> int:
    from .sources import open_source

    src = open_source(args.kind, args.input, options=_parse_options(args.option))
    skipped: list = []
    for ep in src.episodes(skipped):
        if args.json:
            row = {"episode_id": ep.episode_id, "task": ep.task, "agent": ep.agent,
                   "length": ep.length, "return": ep.return_, "order": list(ep.order),
                   "is_terminal": ep.is_terminal, "is_truncated": ep.is_truncated,
                   "observations": ep.step_shapes(),
                   "actions": {"kind": ep.action_kind, "shape": list(ep.actions.shape[1:]),
                               "dtype": str(ep.actions.dtype)}}
            text = ep.text()
            if text is not None:
                row["text"] = text
            print(json.dumps(row, sort_keys=False))
        else:
            print(f"{ep.episode_id}\ttask={ep.task}\tagent={ep.agent}\tlength={ep.length}\t"
                  f"return={ep.return_:g}")
    for item in skipped:
        print(f"trajcorpus: skipped {item.location}: {item.reason}", file=sys.stderr)
    return 0


def _cmd_run(args: argparse.Namespace, beam_args: list[str]) -> int:
    from .pipelines import run_job

    run_job(catalog=args.catalog, dataset=args.dataset, output=args.output, input_uri=args.input,
            seed=args.seed, fmt=args.format, runner=args.runner, beam_args=beam_args,
            progress=not args.quiet)
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from . import fs
    from .errors import ShardError
    from .shards import verify_output

    if not fs.exists(args.output):
        raise ShardError(args.output, "no such output folder")
    report = verify_output(args.output)
    print(report.render())
    return 0 if report.ok else 1


def _cmd_card(args: argparse.Namespace) -> int:
    from .cards import write_card

    print(write_card(args.output))
    return 0


def _cmd_publish(args: argparse.Namespace) -> int:
    from .shards import publish

    print(publish(args.output, repo_id=args.repo, private=args.private))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        parser = build_parser()
        # `run` passes unknown flags through to Beam (e.g. --project, --region, --dry_run=True).
        args, extra = parser.parse_known_args(argv)
        if extra and args.command != "run":
            raise TrajcorpusError("trajcorpus", f"unrecognized arguments: {' '.join(extra)}")
        if args.command == "catalog":
            return _cmd_catalog(args)
        if args.command == "episodes":
            return _cmd_episodes(args)
        if args.command == "run":
            return _cmd_run(args, extra)
        if args.command == "verify":
            return _cmd_verify(args)
        if args.command == "card":
            return _cmd_card(args)
        if args.command == "publish":
            return _cmd_publish(args)
        raise TrajcorpusError("trajcorpus", f"unknown command {args.command!r}")
    except TrajcorpusError as e:
        if debug:
            raise
        print(f"trajcorpus: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (FileNotFoundError, PermissionError, IsADirectoryError) as e:
        if debug:
            raise
        print(f"trajcorpus: error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("trajcorpus: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `trajcorpus episodes ... | head`: the reader went away, not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
