"""The reference's corpus workload, driven the way its own corpus script drives it.

Runs in the *reference's* virtualenv (plurel 1.1.0, torch, relbench 1.1.0; see
bench/README.md), never in ours:

    /work/refvenv/bin/python bench/reference_corpus.py --num-dbs 32 --num-proc 2 \
        --out-dir /tmp/ref-corpus [--seed-offset 0] [--overwrite]

What the reference's corpus script (``scripts/synthetic_gen.py`` of the plurel
repository) does for every seed, and what this driver therefore does too:

- a ``multiprocessing.Pool`` of ``--num-proc`` workers (the platform's default
  start method, fork on Linux, after the parent has imported torch and plurel),
  seeds ``offset .. offset + N - 1`` handed out with ``imap_unordered``;
- in the worker: ``torch.set_num_threads(1)``, ``set_random_seed(0)``, then
  ``SyntheticDataset(seed=seed, config=Config(cache_dir=<dir>/plurel-<seed>))``
  and ``dataset.get_db()``. With a cache_dir, RelBench's ``get_db`` calls
  ``make_db()``, renumbers keys (``reindex_pkeys_and_fkeys``), saves one parquet
  file per table under ``<cache_dir>/db/`` and returns the rows up to the test
  timestamp. The script keeps its cache folders under ``~/.cache/relbench``;
  here they go under ``--out-dir``.

The script's optional ``--preprocess`` step (relational-transformer's Rust
preprocessor and a text-embedding pass, via pixi) is not reproduced: it is
training preparation, off by default, and needs that repository's toolchain.

Additions of this driver, outside the generation itself: the database that
``get_db`` saves is kept (by wrapping the dataset's ``make_db``) so its tokens
can be counted, and each worker prints one line per database,
``plurel-<seed>: N tables, R rows, T tokens, X s``, and records the worker's CPU
seconds per database beside the wall seconds (CPU well below wall means the worker
waited for a core: other load on the machine). The RelBench progress
messages ``get_db`` prints are sent to /dev/null.

Tokens, as in plurel_fast (``Table.num_tokens``, DESIGN §8): the non-null cells of
every column of a table except its primary key and foreign keys, time column
included. The reference marks missing cells with NaN (pandas), so ``notna``
counts exactly its non-missing cells. They are counted on the full database that
is saved to disk, not on the ``upto(test_timestamp)`` view ``get_db`` returns,
because that is what a corpus holds (plurel_fast counts its saved tables too).

The last line of output is ``@@RESULT {json}``: seeds, per-database records,
import seconds and the pool's wall seconds, for ``bench/corpus_vs_reference.py``.
"""

from __future__ import annotations

import time

_T_START = time.perf_counter()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
from multiprocessing import Pool  # noqa: E402
from pathlib import Path  # noqa: E402

# Imported in the parent before the pool starts, as the reference's script does.
import torch  # noqa: E402
from plurel.config import Config  # noqa: E402
from plurel.dataset import SyntheticDataset  # noqa: E402
from plurel.utils import set_random_seed  # noqa: E402

IMPORT_SECONDS = time.perf_counter() - _T_START
RESULT_PREFIX = "@@RESULT "


def count_tokens(db) -> int:
    """Non-null cells outside the key columns (time column included) of a RelBench
    Database."""
    total = 0
    for table in db.table_dict.values():
        keys = {table.pkey_col, *table.fkey_col_to_pkey_table}
        for col in table.df.columns:
            if col not in keys:
                total += int(table.df[col].notna().sum())
    return total


def build_one(seed: int, out_dir: str, prefix: str) -> dict:
    """One database, as the reference script's worker builds it, plus a token count."""
    t0, c0 = time.perf_counter(), time.process_time()
    name = f"{prefix}-{seed}"
    try:
        torch.set_num_threads(1)
        set_random_seed(0)
        dataset = SyntheticDataset(seed=seed, config=Config(cache_dir=str(Path(out_dir) / name)))
        made = []
        make_db = dataset.make_db

        def keep_made_db():
            db = make_db()
            made.append(db)
            return db

        dataset.make_db = keep_made_db
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            dataset.get_db()
        seconds = time.perf_counter() - t0
        cpu_seconds = time.process_time() - c0  # this worker's CPU, all its threads
        if not made:
            raise RuntimeError(f"get_db did not generate {name}: its cache folder was not empty")
        db = made[0]
        record = {
            "seed": seed, "name": name, "tables": len(db.table_dict),
            "rows": int(sum(len(t.df) for t in db.table_dict.values())),
            "tokens": count_tokens(db), "seconds": round(seconds, 3),
            "cpu_seconds": round(cpu_seconds, 3), "pid": os.getpid(),
            "status": "ok", "error": None,
        }
        print(f"{name}: {record['tables']} tables, {record['rows']} rows, "
              f"{record['tokens']} tokens, {seconds:.1f}s", flush=True)
    except Exception as exc:  # noqa: BLE001 - reported in the result, the run goes on
        traceback.print_exc()
        record = {"seed": seed, "name": name, "tables": None, "rows": None, "tokens": None,
                  "seconds": round(time.perf_counter() - t0, 3), "pid": os.getpid(),
                  "status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        print(f"{name}: FAILED {record['error']}", flush=True)
    return record


def _worker(args):
    return build_one(*args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed-offset", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--num-dbs", type=int, required=True, help="number of databases")
    parser.add_argument("--num-proc", type=int, default=os.cpu_count(),
                        help="pool workers (default: one per core, as the script)")
    parser.add_argument("--out-dir", type=Path, required=True,
                        help="where the per-database cache folders plurel-<seed>/db go")
    parser.add_argument("--db-prefix", default="plurel", help="name prefix (default plurel)")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete existing <prefix>-<seed> folders first (otherwise an "
                        "existing one is an error: get_db would load it instead of generating)")
    args = parser.parse_args(argv)

    seeds = list(range(args.seed_offset, args.seed_offset + args.num_dbs))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        folder = args.out_dir / f"{args.db_prefix}-{seed}"
        if folder.exists():
            if not args.overwrite:
                print(f"{folder} exists (use --overwrite)", file=sys.stderr)
                return 2
            shutil.rmtree(folder)

    t0 = time.perf_counter()
    tasks = [(s, str(args.out_dir), args.db_prefix) for s in seeds]
    with Pool(processes=args.num_proc) as pool:
        records = list(pool.imap_unordered(_worker, tasks))
    pool_seconds = time.perf_counter() - t0
    records.sort(key=lambda r: r["seed"])
    result = {
        "seeds": seeds, "num_proc": args.num_proc, "records": records,
        "import_seconds": round(IMPORT_SECONDS, 3), "pool_seconds": round(pool_seconds, 3),
        "torch": torch.__version__, "python": sys.version.split()[0],
    }
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0 if all(r["status"] == "ok" for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
