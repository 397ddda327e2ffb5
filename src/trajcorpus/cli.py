"""``trajcorpus`` command line (SPEC section 8).

Bad input or bad arguments print one line (what, where, why) and exit 2; ``--debug`` shows the
traceback instead. Each subcommand is a thin shell over a library function.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from .errors import TrajcorpusError

__all__ = ["main", "build_parser"]

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and no abbreviations (``--shard_byte`` is a typo, not a
    prefix of ``--shard_bytes``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # argparse's default prints usage; keep it one line
        raise TrajcorpusError(self.prog, message)


DEFAULT_CATALOG = "catalog.yaml"
RUN_EPILOG = """Any other --flag is an Apache Beam pipeline option and is passed to Beam, written
--name=value (e.g. --project=my-project --region=us-central1
--temp_location=gs://my-bucket/tmp --dry_run=True); see docs/running-on-dataflow.md.
A flag that neither trajcorpus nor Beam knows is refused."""


def _catalog_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--catalog", default=None, metavar="FILE",
                   help=f"catalog file (default: ./{DEFAULT_CATALOG})")


def build_parser() -> argparse.ArgumentParser:
    from .pipelines.buildcache import CACHE_DIR_HELP
    from .shards.codecs import format_choices
    from .shards.layout import MIN_SHARD_BYTES, MIN_SHARDS

    p = _Parser(prog="trajcorpus", description=__doc__.splitlines()[0])
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run the Beam job for one catalog dataset",
                         description="Run the Beam job for one catalog dataset into an output "
                         "folder.", epilog=RUN_EPILOG)
    _catalog_arg(run)
    run.add_argument("--dataset", required=True, help="catalog id (trajcorpus catalog list)")
    run.add_argument("--input", metavar="URI",
                     help="read this instead of the catalog entry's uri; an input that is itself "
                     "one dataset is read as such")
    run.add_argument("--option", action="append", default=[], metavar="KEY=JSON",
                     help="reader option over the catalog entry's, e.g. --option "
                     "games='[\"Pong\"]' (repeatable)")
    run.add_argument("--output", required=True, help="output folder (local path or gs://)")
    run.add_argument("--overwrite", action="store_true",
                     help="replace this dataset's earlier output in --output, or write into a "
                     "folder that holds other files (default: refuse)")
    run.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    run.add_argument("--format", choices=format_choices(), default="both",
                     help="shard format(s) (default: %(default)s)")
    run.add_argument("--runner", default="DirectRunner",
                     choices=("DirectRunner", "DataflowRunner", "DaskRunner"),
                     help="default: %(default)s")
    run.add_argument("--shard_bytes", type=int, default=None, metavar="N",
                     help="target encoded bytes per shard (default: 268435456 = 256 MiB)")
    run.add_argument("--min_shards", type=int, default=None, metavar="N",
                     help=f"at least this many shards per split while each keeps "
                     f"{MIN_SHARD_BYTES >> 20} MiB (default: {MIN_SHARDS}; 1 = by "
                     "--shard_bytes only)")
    run.add_argument("--cache_dir", default=None, metavar="URI", help=CACHE_DIR_HELP)
    run.add_argument("--direct_num_workers", type=int, default=None, metavar="N",
                     help="DirectRunner worker processes (default: the number of cores, "
                     f"{os.cpu_count() or 1} here)")
    run.add_argument("--quiet", action="store_true", help="no progress display")

    eps = sub.add_parser("episodes", help="list the episodes a source yields")
    eps.add_argument("--kind", required=True)
    eps.add_argument("--input", required=True)
    eps.add_argument("--json", action="store_true", help="one JSON object per line")
    eps.add_argument("--option", action="append", default=[], metavar="KEY=JSON",
                     help="reader option, e.g. --option games='[\"Pong\"]'")

    ver = sub.add_parser("verify", help="re-hash every file of an output against its manifest")
    ver.add_argument("output")

    cache = sub.add_parser("cache", help="show or clear an output's build cache "
                           "(docs/build-cache.md)")
    cache.add_argument("output")
    cache.add_argument("--cache_dir", default=None, metavar="URI",
                       help="the cache folder, if the run was given one (default: "
                       "OUTPUT/.trajcorpus-cache)")
    cache.add_argument("--clear", action="store_true", help="delete every entry")

    card = sub.add_parser("card", help="(re)write the dataset card of an output folder")
    card.add_argument("output")

    pub = sub.add_parser("publish", help="upload an output folder to the Hugging Face hub")
    pub.add_argument("output")
    pub.add_argument("--repo", required=True, help="ORG/NAME")
    pub.add_argument("--private", action="store_true")

    cat = sub.add_parser("catalog", help="list, show or validate the catalog")
    cat_sub = cat.add_subparsers(dest="catalog_command", required=True, parser_class=_Parser)
    cl = cat_sub.add_parser("list")
    _catalog_arg(cl)
    cs = cat_sub.add_parser("show")
    cs.add_argument("id")
    _catalog_arg(cs)
    cv = cat_sub.add_parser("validate")
    cv.add_argument("file", nargs="?", default=None,
                    help=f"catalog file (default: ./{DEFAULT_CATALOG})")
    return p


def catalog_path(given: str | None) -> str:
    """The catalog file to read: the one given, else ./catalog.yaml (an error naming both the
    file looked for and how to pass one when it is absent)."""
    from . import fs

    if given is not None:
        return given
    if not fs.exists(DEFAULT_CATALOG):
        raise TrajcorpusError(os.path.abspath(DEFAULT_CATALOG), (
            "no catalog file here; pass --catalog FILE (the repository's catalog.yaml lists "
            "every known corpus and the bundled demo corpora)"))
    return DEFAULT_CATALOG


def _cmd_catalog(args: argparse.Namespace) -> int:
    from .schemas.catalog import load_catalog

    if args.catalog_command == "validate":
        path = catalog_path(args.file)
        cat = load_catalog(path)
        print(f"{path}: OK, {len(cat.datasets)} datasets "
              f"({sum(d.demo for d in cat.datasets)} demo)")
        return 0
    cat = load_catalog(catalog_path(args.catalog))
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
    from .fs import check_input
    from .sources import open_source

    src = open_source(args.kind, args.input, options=_parse_options(args.option))
    check_input(args.input)  # after the kind is known to exist, before any read
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


def beam_option_names() -> list[str]:
    """Every ``--flag`` Apache Beam's pipeline options know (what ``run`` passes through)."""
    parser = _beam_parser()
    return sorted(o for a in parser._actions for o in a.option_strings if o.startswith("--"))


def _beam_parser() -> argparse.ArgumentParser:
    from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

    class Parser(_BeamArgumentParser):
        def error(self, message: str) -> None:
            raise TrajcorpusError("trajcorpus run", f"Beam option: {message}")

    parser = Parser(allow_abbrev=False)
    seen: set[str] = set()
    for cls in PipelineOptions.__subclasses__():  # as PipelineOptions.get_all_options does
        if str(cls) not in seen:
            seen.add(str(cls))
            cls._add_argparse_args(parser)
    return parser


def check_beam_args(extra: Sequence[str], own: Sequence[str]) -> None:
    """Refuse what neither ``run`` nor Beam knows (Beam itself only logs a warning and runs
    with its defaults), with the closest known option as a hint."""
    import difflib

    parser = _beam_parser()
    _, unknown = parser.parse_known_args(list(extra))
    if not unknown:
        return
    bad = unknown[0]
    name = bad.split("=", 1)[0]
    known = [*own, *beam_option_names()]
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6) if name.startswith("--") \
        else []
    hint = f" (did you mean {close[0]}?)" if close else \
        " (trajcorpus run --help lists the options)"
    what = "option" if bad.startswith("-") else "argument"
    raise TrajcorpusError("trajcorpus run", f"unknown {what} {bad}{hint}")


_CHILD_ENV = "TRAJCORPUS_RUN_CHILD"


def _run_flags(args: argparse.Namespace, extra: Sequence[str]) -> list[str]:
    flags = list(extra)
    for name in ("shard_bytes", "min_shards", "cache_dir", "direct_num_workers"):
        value = getattr(args, name)
        if value is not None:
            flags.append(f"--{name}={value}")
    return flags


def _supervised_run(argv: Sequence[str]) -> tuple[str, str] | None:
    """(output, dataset) of a ``run`` that names both; else None (the full parser reports what
    is wrong, or prints the help, in this process).

    Why: the supervising process only relays the child's output and says, on Ctrl-C, which
    staging folder was left. The child parses and checks everything (and refuses bad options
    before anything runs), so this process imports no more than argparse: building the full
    parser here would import the pipelines, shards and Beam's option list (~1 CPU s a run).
    """
    words = [a for a in argv if not a.startswith("-")]
    if not words or words[0] != "run" or {"-h", "--help"} & set(argv):
        return None
    lite = _Parser(add_help=False)
    lite.add_argument("--output")
    lite.add_argument("--dataset")
    try:
        known, _ = lite.parse_known_args(argv)
    except TrajcorpusError:  # e.g. `--output` with no value: the full parser says so
        return None
    return (known.output, known.dataset) if known.output and known.dataset else None


def _cmd_run(args: argparse.Namespace, beam_args: list[str]) -> int:
    from .pipelines import run_job

    run_job(catalog=catalog_path(args.catalog), dataset=args.dataset, output=args.output,
            input_uri=args.input, options=_parse_options(args.option), seed=args.seed,
            fmt=args.format, runner=args.runner, beam_args=_run_flags(args, beam_args),
            progress=not args.quiet, overwrite=args.overwrite)
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


def _cmd_cache(args: argparse.Namespace) -> int:
    from .pipelines.buildcache import cache_root, cache_summary, clear_cache

    root = cache_root(args.output, args.cache_dir)
    if root is None:
        raise TrajcorpusError("--cache_dir", "none names no cache folder")
    entries, size = cache_summary(root)
    if args.clear:
        clear_cache(root)
        print(f"{root}: removed {entries} entries, {size / 1e6:.1f} MB")
    else:
        print(f"{root}: {entries} entries, {size / 1e6:.1f} MB")
    return 0


def _cmd_card(args: argparse.Namespace) -> int:
    from .cards import write_card

    print(write_card(args.output))
    return 0


def _cmd_publish(args: argparse.Namespace) -> int:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    from .shards import publish

    try:  # before anything touches the network
        validate_repo_id(args.repo)
    except HFValidationError as e:
        raise TrajcorpusError("--repo", f"{args.repo!r} is not a valid Hugging Face repo id "
                              f"(ORG/NAME): {str(e).splitlines()[0]}") from None

    print(publish(args.output, repo_id=args.repo, private=args.private))
    return 0


def _own_options(parser: argparse.ArgumentParser, command: str) -> list[str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [o for a in sub.choices[command]._actions for o in a.option_strings]


def main(argv: Sequence[str] | None = None) -> int:
    """The ``trajcorpus`` command. From the console (``argv`` None) ``run`` supervises the job in
    a child process group (see :func:`_supervised_run`); called with ``argv`` it runs in-process."""
    console = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    args: argparse.Namespace | None = None
    if not debug:  # gcsfs logs a traceback per failed retry; the error itself is one line
        import logging

        for name in ("gcsfs", "fsspec", "huggingface_hub"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        if console and os.environ.get(_CHILD_ENV) != "1" and (where := _supervised_run(argv)):
            from .supervise import supervise_run

            return supervise_run(argv, *where, _CHILD_ENV)
        parser = build_parser()
        # `run` passes the flags it does not own to Beam, once Beam is known to accept them
        args, extra = parser.parse_known_args(argv)
        if extra and args.command != "run":
            raise TrajcorpusError(f"trajcorpus {args.command}",
                                  f"unrecognized arguments: {' '.join(extra)}")
        if args.command == "catalog":
            return _cmd_catalog(args)
        if args.command == "episodes":
            return _cmd_episodes(args)
        if args.command == "run":
            _parse_options(args.option)
            check_beam_args(extra, _own_options(parser, "run"))
            return _cmd_run(args, extra)
        if args.command == "verify":
            return _cmd_verify(args)
        if args.command == "card":
            return _cmd_card(args)
        if args.command == "cache":
            return _cmd_cache(args)
        if args.command == "publish":
            return _cmd_publish(args)
        raise TrajcorpusError("trajcorpus", f"unknown command {args.command!r}")
    except TrajcorpusError as e:
        if debug:
            raise
        print(f"trajcorpus: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as e:
        if debug:
            raise
        print(f"trajcorpus: error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("trajcorpus: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `trajcorpus episodes ... | head`: the reader went away, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:
        from .fs import network_error

        reason = network_error(e)
        if reason is None or debug:
            raise
        if args is not None and args.command == "publish":
            where = args.repo
        else:
            where = getattr(args, "input", None) or getattr(args, "output", None) or "trajcorpus"
        print(f"trajcorpus: error: {where}: {reason}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
