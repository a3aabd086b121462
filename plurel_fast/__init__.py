"""plurel_fast: fast, faithful synthetic relational databases (the PluRel method).

``generate(seed, config)`` returns a database in memory; ``generate_to(seed, config,
path)`` writes it straight to a folder, tables larger than memory in Parquet row groups
(the CLI and corpus jobs use it). ``SyntheticDataset`` is the drop-in for
``plurel.SyntheticDataset``.
"""

from plurel_fast.config import Choices, Config, DAGParams, DatabaseParams, SCMParams
from plurel_fast.database import Database, Table
from plurel_fast.generate import generate
from plurel_fast.plan.sql_schema import SchemaError, SchemaWarning

# Importing RelBench takes about a second (it pulls in scikit-learn), so the names that
# need it are imported on first use, keeping `import plurel_fast` (CLI, workers) quick.
_LAZY = {
    "SyntheticDataset": "plurel_fast.relbench",
    "CacheMismatchError": "plurel_fast.relbench",
    "generate_to": "plurel_fast.stream",
}

__all__ = [
    "CacheMismatchError",
    "Choices",
    "Config",
    "DAGParams",
    "Database",
    "DatabaseParams",
    "SCMParams",
    "SchemaError",
    "SchemaWarning",
    "SyntheticDataset",
    "Table",
    "generate",
    "generate_to",
]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
