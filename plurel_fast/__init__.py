"""plurel_fast: fast, faithful synthetic relational databases (the PluRel method).

``generate(seed, config)`` is the one entry point; everything else (CLI, corpus
jobs, the RelBench adapter) calls it.
"""

from plurel_fast.config import Choices, Config, DAGParams, DatabaseParams, SCMParams
from plurel_fast.database import Database, Table
from plurel_fast.generate import generate

__all__ = [
    "Choices",
    "Config",
    "DAGParams",
    "Database",
    "DatabaseParams",
    "SCMParams",
    "Table",
    "generate",
]
