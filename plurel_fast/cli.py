"""Command line: ``plurel-fast generate`` (one database), ``plurel-fast corpus`` (many,
one worker process per core), ``plurel-fast config`` (print a config file),
``plurel-fast inspect`` (summarise a database or corpus folder), ``plurel-fast
report`` (the same as one HTML page of figures) and ``plurel-fast kernels`` (which
compiled kernels are used; their cache folders)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plurel-fast",
        description="Generate synthetic relational databases (the PluRel method), fast.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser(
        "generate",
        help="generate one database into a folder in RelBench's layout",
        description="Generate database plurel-<seed> and write it to OUT "
        "(manifest.yaml + db/<table>.parquet, readable by relbench.load_dataset).",
    )
    gen.add_argument("--seed", type=int, required=True, help="database seed (>= 0)")
    gen.add_argument("--out", type=Path, required=True, help="output folder (must not exist)")
    gen.add_argument(
        "--config",
        type=Path,
        default=None,
        help="a Config as .json or .toml (default: the reference's defaults)",
    )
    gen.add_argument(
        "--preset", default=None, help="a named config preset instead of --config (default, v1.0.0)"
    )
    gen.add_argument(
        "--schema",
        type=Path,
        default=None,
        help="a SQL file of CREATE TABLE statements to generate from (parsed, never executed)",
    )
    gen.add_argument(
        "--schema-dialect",
        default=None,
        choices=("sqlite", "postgres", "mysql", "duckdb"),
        help="the SQL dialect of --schema (default: detect, else postgres)",
    )
    gen.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    gen.add_argument("--quiet", action="store_true", help="no per-table progress on stderr")
    gen.add_argument(
        "--chunk-rows", type=int, default=None, help="rows per kernel call (memory bound only)"
    )
    gen.add_argument(
        "--card", action="store_true",
        help="also write RelBench's dataset card (schema.svg, README.md; needs graphviz)",
    )
    _corpus_parser(sub)
    _inspect_parsers(sub)
    cfg = sub.add_parser(
        "config",
        help="print a config file to start from",
        description="Print a Config (a preset, or a config file re-encoded) to stdout, "
        "e.g. `plurel-fast config --preset default > cfg.toml`.",
    )
    _config_options(cfg)
    cfg.add_argument("--format", choices=("toml", "json"), default="toml",
                     help="file format to print (default toml)")
    ker = sub.add_parser(
        "kernels",
        help="say which compiled kernels this installation uses; list or prune their caches",
        description="Print which kernels a process uses (shipped for a portable CPU target "
        "or compiled for this CPU, and why) and the kernel cache folders with their sizes. "
        "Folders of other numba versions or kernel sources are 'stale'.",
    )
    ker.add_argument("--prune", action="store_true",
                     help="remove the stale folders (an installation of another version "
                     "that still uses one unpacks or compiles it again)")
    return parser


def _inspect_parsers(sub) -> None:
    ins = sub.add_parser(
        "inspect",
        help="summarise a database folder or a corpus folder",
        description="Print what a database folder (tables, roles, rows, column types, keys, "
        "time range, nulls, tokens, foreign-key in-degrees) or a corpus folder (totals and "
        "distributions across databases, failed seeds) holds.",
    )
    ins.add_argument("path", type=Path, help="a database folder or a corpus folder")
    out = ins.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the summary as JSON")
    out.add_argument("--mermaid", action="store_true",
                     help="print the database's ER diagram in Mermaid erDiagram syntax")
    rep = sub.add_parser(
        "report",
        help="write one HTML page of figures for a database or corpus folder",
        description="Write a self-contained HTML report: schema diagram, per-column "
        "histograms, foreign-key in-degrees, activity columns over time; for a corpus the "
        "distributions across databases. Needs plurel-fast[report] (matplotlib).",
    )
    rep.add_argument("path", type=Path, help="a database folder or a corpus folder")
    rep.add_argument("--out", type=Path, required=True, help="the HTML file to write")
    rep.add_argument("--no-card", dest="card", action="store_false",
                     help="do not write RelBench's dataset card (schema.svg, README.md) into "
                     "a database folder")


def _config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, default=None,
        help="a Config as .json or .toml (default: the reference's defaults)",
    )
    parser.add_argument(
        "--preset", default=None, help="a named config preset instead of --config (default, v1.0.0)"
    )


def _corpus_parser(sub) -> None:
    cor = sub.add_parser(
        "corpus",
        help="generate many databases, one worker process per core",
        description="Generate databases <prefix>-<seed> for seeds S..S+N-1 into OUT, one "
        "folder each (what `generate` writes), and index them in OUT/corpus.jsonl. A rerun "
        "of the same command skips complete databases and redoes the rest.",
    )
    cor.add_argument("--out", type=Path, required=True, help="corpus folder")
    cor.add_argument("--num-dbs", type=int, required=True, help="number of seeds (>= 1)")
    cor.add_argument("--seed-offset", type=int, default=0, help="first seed (default 0)")
    cor.add_argument("--num-proc", type=int, default=None,
                     help="worker processes, one numba thread each (default: one per core; "
                     "with --backend ray: tasks at a time, default the cluster's CPUs)")
    _config_options(cor)
    cor.add_argument("--db-prefix", default="plurel", help="folder name prefix (default plurel)")
    cor.add_argument("--target-tokens", type=int, default=None,
                     help="stop launching seeds once the finished databases hold this many tokens")
    cor.add_argument("--overwrite", action="store_true",
                     help="replace databases made with another config instead of refusing")
    cor.add_argument("--quiet", action="store_true",
                     help="no progress bar, no line per database")
    cor.add_argument("--shard", type=int, default=0,
                     help="this job's shard: seeds with seed %% num-shards == shard (default 0)")
    cor.add_argument("--num-shards", type=int, default=1,
                     help="number of shards, e.g. a slurm array's size (default 1)")
    cor.add_argument("--preprocess", action="store_true",
                     help="run relational-transformer's preprocessor on each database "
                     "(needs plurel-fast[rt]) into --pre-dir")
    cor.add_argument("--pre-dir", type=Path, default=None,
                     help="where --preprocess writes (required with it)")
    cor.add_argument("--backend", choices=("local", "ray"), default="local",
                     help="local worker processes (default), or tasks on a Ray cluster "
                     "(needs plurel-fast[ray]; --out on a filesystem every node sees)")
    cor.add_argument("--address", default=None,
                     help="with --backend ray: the cluster to join ('auto', 'ray://host:10001'); "
                     "default: start a local Ray instance")


def _load_config(args):
    from plurel_fast.config import Config

    if args.config is not None and args.preset is not None:
        raise ValueError("give --config or --preset, not both")
    if args.preset is not None:
        return Config.preset(args.preset)
    if args.config is None:
        return Config()
    if args.config.is_dir():
        raise ValueError(
            f"--config {args.config} is a folder; give a config file (.json or .toml)"
        )
    if not args.config.is_file():
        raise FileNotFoundError(f"config file {args.config} does not exist")
    return Config.load(args.config)


def _with_schema(config, args):
    """``config`` with ``--schema``: the SQL is parsed now, so errors come before any work."""
    from plurel_fast.plan.sql_schema import parse_cached

    if args.schema is None:
        if args.schema_dialect is not None:
            raise ValueError("--schema-dialect needs --schema")
        return config
    path = args.schema.expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"schema file {path} does not exist")
    config = config.replace(
        schema_file=str(path.resolve()),
        schema_sql=None,
        schema_dialect=args.schema_dialect or config.schema_dialect,
    )
    try:
        parse_cached(config.schema_text(), config.schema_dialect)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    return config


def _generate(args) -> int:
    from plurel_fast.generate import DEFAULT_CHUNK_ROWS

    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    if args.chunk_rows is not None and args.chunk_rows < 1:
        raise ValueError(
            f"--chunk-rows must be a positive number of rows, got {args.chunk_rows}; "
            f"leave it out for the default ({DEFAULT_CHUNK_ROWS})"
        )
    out = args.out.expanduser()
    if out.is_symlink() and not out.exists():
        # refused with or without --overwrite: saving replaces only folders
        raise FileExistsError(
            f"--out {out} is a symbolic link to {os.readlink(out)}, which does not exist; "
            "remove the link or choose another --out"
        )
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    config = _with_schema(_load_config(args), args)
    from plurel_fast.io.parquet import check_destination

    check_destination(out, overwrite=args.overwrite)  # before the work, not after it
    t0 = time.perf_counter()

    def progress(table, done, total):
        if not args.quiet:
            print(f"  [{done}/{total}] {table.name}: {table.num_rows} rows, "
                  f"{len(table.features)} features ({time.perf_counter() - t0:.1f} s)",
                  file=sys.stderr, flush=True)

    from plurel_fast.compile_notice import compiling_notice
    from plurel_fast.stream import generate_to

    with compiling_notice(enabled=not args.quiet):
        # Straight to the folder: tables larger than memory go in row groups.
        saved = generate_to(
            args.seed,
            config,
            out,
            chunk_rows=DEFAULT_CHUNK_ROWS if args.chunk_rows is None else args.chunk_rows,
            overwrite=args.overwrite,
            on_table=progress,
        )
    t1 = time.perf_counter()
    print(f"{saved.name}: {len(saved.tables)} tables, {saved.num_rows} rows, "
          f"{saved.num_tokens} tokens")
    referenced = {p for _, fkeys in saved.tables.values() for p in fkeys.values()}
    for name, (rows, fkeys) in saved.tables.items():
        kind = "entity" if name in referenced else "activity"  # DESIGN §1 roles
        links = ", ".join(f"{c}->{p}" for c, p in fkeys.items())
        print(f"  {name:<10} {kind:<8} {rows:>8} rows  {links}")
    how = " in row groups" if saved.streamed else ""
    print(f"generated and written{how} to {out} in {t1 - t0:.2f} s")
    if args.card:
        from plurel_fast.card import write_card

        missing = write_card(out)
        print(missing if missing else f"dataset card: {out / 'README.md'}, {out / 'schema.svg'}")
    return 0


def _inspect(args) -> int:
    import json

    from plurel_fast.inspect import format_summary, inspect_path, to_mermaid

    summary = inspect_path(args.path, degrees=not args.mermaid)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=1))
    elif args.mermaid:
        print(to_mermaid(summary))
    else:
        print(format_summary(summary))
    return 0


def _report(args) -> int:
    from plurel_fast.report import write_report

    out = args.out.expanduser()
    if out.is_dir():
        raise IsADirectoryError(f"--out {out} is a folder; give the HTML file to write")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"--out {out}: folder {out.parent} does not exist")
    page, note = write_report(args.path, out, card=args.card)
    if note:
        print(f"{note}; the schema is drawn with matplotlib instead", file=sys.stderr)
    print(f"report written to {page} ({page.stat().st_size / 1e3:,.0f} kB)")
    return 0


def _exit_on_sigterm(signum, frame):
    # A preempted or cancelled job gets SIGTERM: unwind like Ctrl-C, so a save in
    # progress removes its temporary folder instead of leaving it behind.
    raise SystemExit(128 + signum)


def _corpus(args) -> int:
    from plurel_fast.corpus import CorpusError, format_record, run_corpus

    if args.preprocess and args.pre_dir is None:
        raise CorpusError("--preprocess needs --pre-dir, the folder RT's preprocessor writes to")
    if args.pre_dir is not None and not args.preprocess:
        raise CorpusError("--pre-dir is only used with --preprocess")
    if args.out.exists() and not args.out.is_dir():
        raise CorpusError(f"output folder {args.out} exists and is not a folder")
    config = _load_config(args)

    def log(record):
        if not args.quiet:
            from tqdm import tqdm

            tqdm.write(format_record(record), file=sys.stdout)
            sys.stdout.flush()

    result = run_corpus(
        args.out, args.num_dbs, config=config, seed_offset=args.seed_offset,
        num_proc=args.num_proc, db_prefix=args.db_prefix, target_tokens=args.target_tokens,
        overwrite=args.overwrite, shard=args.shard, num_shards=args.num_shards,
        pre_dir=args.pre_dir if args.preprocess else None, on_record=log,
        progress=not args.quiet, backend=args.backend, address=args.address,
    )
    made = sum(1 for r in result.records if r["status"] == "ok")
    print(f"{made} databases generated, {len(result.skipped)} already complete, "
          f"{len(result.failed)} failed; {result.databases} complete, {result.tokens:,} tokens; "
          f"{result.seconds:.1f} s; index {result.index}")
    if args.target_tokens is not None:
        verdict = "reached" if result.target_reached else "not reached"
        print(f"target of {args.target_tokens:,} tokens {verdict}: {result.tokens:,} tokens in "
              f"{result.databases} databases")
    if result.interrupted:
        print("plurel-fast: interrupted; rerun the same command to finish", file=sys.stderr)
        return 130
    if result.failed:
        seeds = ", ".join(str(r["seed"]) for r in result.failed[:10])
        print(f"plurel-fast: {len(result.failed)} database(s) failed (seeds {seeds}"
              f"{', ...' if len(result.failed) > 10 else ''}); see {result.index}", file=sys.stderr)
        return 1
    return 0


def _config(args) -> int:
    config = _load_config(args)
    text = config.to_toml() if args.format == "toml" else config.to_json() + "\n"
    sys.stdout.write(text)
    return 0


def _kernels(args) -> int:
    from plurel_fast import cache_folders, kernels

    choice = kernels.KERNELS
    kind = f"shipped for {choice.target}" if choice.mode == "portable" else "compiled for this CPU"
    print(f"kernels: {kind} ({choice.reason})")
    print(f"cache: {kernels.CACHE_DIR or '(numba default)'}"
          + (", complete" if kernels.cache_is_complete() else ", kernels compile on first use"))
    if args.prune:
        removed = cache_folders.prune()
        freed = sum(f.bytes for f in removed)
        print(f"removed {len(removed)} stale folder(s), {freed / 1e6:.1f} MB")
    folders = cache_folders.cache_folders()
    print(f"folders under {kernels.cache_base()}:" if folders else
          f"no kernel folders under {kernels.cache_base()}")
    for line in cache_folders.describe(folders):
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm) if main_thread else None
    try:
        if args.command == "generate":
            return _generate(args)
        if args.command == "corpus":
            return _corpus(args)
        if args.command == "config":
            return _config(args)
        if args.command == "inspect":
            return _inspect(args)
        if args.command == "report":
            return _report(args)
        if args.command == "kernels":
            return _kernels(args)
    except BrokenPipeError:  # output piped into `head`, say: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, OSError, TypeError) as err:
        # OSError covers a full disk or a folder that vanished mid-write, each as one line.
        print(f"plurel-fast: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("plurel-fast: interrupted", file=sys.stderr)
        return 130
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    return 1


if __name__ == "__main__":
    sys.exit(main())
