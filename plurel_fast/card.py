"""RelBench's dataset card for a database folder: ``schema.svg`` and ``README.md``.

RelBench 3.x renders both itself (`relbench.schema.render_schema_svg`, an
entity-relationship diagram laid out by graphviz's ``dot``, and
`relbench.schema.dataset_card`), so a generated folder looks like a hosted RelBench
dataset. Both need graphviz: the ``graphviz`` Python package and the ``dot`` binary.
Without them `write_card` writes nothing and says why in one line; generation never
fails for want of a picture.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from plurel_fast.io.parquet import DB_DIR, MANIFEST_FILE, TASKS_DIR

__all__ = ["CARD_FILE", "SCHEMA_FILE", "card_unavailable", "write_card"]

SCHEMA_FILE = "schema.svg"
CARD_FILE = "README.md"
DOT_INSTALL = "apt-get install graphviz"
PY_INSTALL = "pip install 'plurel-fast[report]'"


def card_unavailable() -> str | None:
    """Why a card cannot be drawn here (one line with the install command), or None."""
    if shutil.which("dot") is None:
        return f"no dataset card: graphviz's `dot` binary is not installed ({DOT_INSTALL})"
    if importlib.util.find_spec("graphviz") is None:
        return f"no dataset card: the graphviz Python package is not installed ({PY_INSTALL})"
    return None


def write_card(folder: str | os.PathLike) -> str | None:
    """Write ``schema.svg`` and ``README.md`` into the database folder `folder`, with
    one task row per ``tasks/*/manifest.yaml``. Returns None when written, else the one
    line saying what is missing (nothing is written then). Each file is written beside
    its place and renamed in, so a reader never sees half of one."""
    reason = card_unavailable()
    if reason is not None:
        return reason
    from relbench.manifest import DatasetManifest, TaskManifest
    from relbench.schema import dataset_card, render_schema_svg

    root = Path(folder)
    manifest = DatasetManifest.load(root / MANIFEST_FILE)
    tasks = [TaskManifest.load(p) for p in sorted((root / TASKS_DIR).glob(f"*/{MANIFEST_FILE}"))]
    tmp_svg = root / f".{SCHEMA_FILE}.tmp-{os.getpid()}.svg"
    tmp_card = root / f".{CARD_FILE}.tmp-{os.getpid()}"
    try:
        render_schema_svg(manifest, tmp_svg, db_dir=root / DB_DIR)
        tmp_card.write_text(dataset_card(manifest, tasks, repo=str(root)), encoding="utf-8")
        os.replace(tmp_svg, root / SCHEMA_FILE)
        os.replace(tmp_card, root / CARD_FILE)
    finally:
        tmp_svg.unlink(missing_ok=True)
        tmp_card.unlink(missing_ok=True)
    return None
