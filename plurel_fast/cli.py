"""Command line: ``plurel-fast generate --seed S --out DIR [--config FILE] [--schema SQL]``."""

from __future__ import annotations

import argparse
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
    return parser


def _load_config(args):
    from plurel_fast.config import Config

    if args.config is not None and args.preset is not None:
        raise ValueError("give --config or --preset, not both")
    if args.preset is not None:
        return Config.preset(args.preset)
    if args.config is None:
        return Config()
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
    from plurel_fast.generate import DEFAULT_CHUNK_ROWS, generate

    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    out = args.out.expanduser()
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

    db = generate(
        args.seed, config, chunk_rows=args.chunk_rows or DEFAULT_CHUNK_ROWS, on_table=progress
    )
    t1 = time.perf_counter()
    db.save(out, overwrite=args.overwrite)
    t2 = time.perf_counter()
    print(f"{db.name}: {len(db.table_dict)} tables, {db.num_rows} rows, {db.num_tokens} tokens")
    referenced = {p for t in db.table_dict.values() for p in t.fkey_col_to_pkey_table.values()}
    for name, table in db.table_dict.items():
        kind = "entity" if name in referenced else "activity"  # SPEC §1 roles
        fkeys = ", ".join(f"{c}->{p}" for c, p in table.fkey_col_to_pkey_table.items())
        print(f"  {name:<10} {kind:<8} {len(table):>8} rows  {fkeys}")
    print(f"generated in {t1 - t0:.2f} s, written to {out} in {t2 - t1:.2f} s")
    return 0


def _exit_on_sigterm(signum, frame):
    # A preempted or cancelled job gets SIGTERM: unwind like Ctrl-C, so a save in
    # progress removes its temporary folder instead of leaving it behind.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm) if main_thread else None
    try:
        if args.command == "generate":
            return _generate(args)
    except (ValueError, OSError, TypeError) as err:
        # OSError covers a full disk or a folder that vanished mid-write, each as one line.
        print(f"plurel-fast: error: {err}", file=sys.stderr)
        return 2
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    return 1


if __name__ == "__main__":
    sys.exit(main())
