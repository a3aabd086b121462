"""Command line: ``plurel-fast generate --seed S --out DIR [--config FILE]``."""

from __future__ import annotations

import argparse
import os
import sys
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
    if args.config.is_dir():
        raise ValueError(
            f"--config {args.config} is a folder; give a config file (.json or .toml)"
        )
    if not args.config.is_file():
        raise FileNotFoundError(f"config file {args.config} does not exist")
    return Config.load(args.config)


def _generate(args) -> int:
    from plurel_fast.generate import DEFAULT_CHUNK_ROWS, generate

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
    config = _load_config(args)
    t0 = time.perf_counter()

    def progress(table, done, total):
        if not args.quiet:
            print(f"  [{done}/{total}] {table.name}: {table.num_rows} rows, "
                  f"{len(table.features)} features ({time.perf_counter() - t0:.1f} s)",
                  file=sys.stderr, flush=True)

    db = generate(
        args.seed,
        config,
        chunk_rows=DEFAULT_CHUNK_ROWS if args.chunk_rows is None else args.chunk_rows,
        on_table=progress,
    )
    t1 = time.perf_counter()
    db.save(out, overwrite=args.overwrite)
    t2 = time.perf_counter()
    print(f"{db.name}: {len(db.table_dict)} tables, {db.num_rows} rows, {db.num_tokens} tokens")
    for name, table in db.table_dict.items():
        kind = "activity" if table.time_col else "entity"
        fkeys = ", ".join(f"{c}->{p}" for c, p in table.fkey_col_to_pkey_table.items())
        print(f"  {name:<10} {kind:<8} {len(table):>8} rows  {fkeys}")
    print(f"generated in {t1 - t0:.2f} s, written to {out} in {t2 - t1:.2f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "generate":
            return _generate(args)
    except (ValueError, FileNotFoundError, FileExistsError, TypeError) as err:
        print(f"plurel-fast: error: {err}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
