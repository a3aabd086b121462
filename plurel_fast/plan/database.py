"""The whole plan of one database: schema plus one HSBM per foreign key."""

from __future__ import annotations

import msgspec

from plurel_fast.config import Config
from plurel_fast.plan.hsbm import HsbmPlan, plan_hsbm
from plurel_fast.plan.rng import plan_rng, stream_key
from plurel_fast.plan.schema import SchemaPlan, plan_schema


class ForeignKeyPlan(msgspec.Struct, frozen=True):
    """How the rows of ``child`` pick their row of ``parent`` (SPEC §3)."""

    child: str
    fkey_col: str
    parent: str
    hsbm: HsbmPlan


class DatabasePlan(msgspec.Struct, frozen=True):
    """Everything decided once per database; small, picklable, inspectable."""

    seed: int
    config: Config
    schema: SchemaPlan
    foreign_keys: tuple[ForeignKeyPlan, ...]

    def foreign_keys_of(self, child: str) -> tuple[ForeignKeyPlan, ...]:
        return tuple(fk for fk in self.foreign_keys if fk.child == child)


def plan_database(seed: int, config: Config) -> DatabasePlan:
    """Plan database ``seed`` under ``config`` (stages 1 and 2 of SPEC §1-3)."""
    schema = plan_schema(seed, config)
    foreign_keys = []
    for table in schema.tables:
        for fkey_col, parent_name in zip(table.fkey_cols, table.parents):
            parent = schema.table(parent_name)
            path = ("hsbm", table.id, parent.id)
            hsbm = plan_hsbm(
                parent.num_rows,
                table.num_rows,
                config.scm_params,
                plan_rng(seed, *path),
                stream_key(seed, *path),
            )
            foreign_keys.append(ForeignKeyPlan(table.name, fkey_col, parent_name, hsbm))
    return DatabasePlan(seed=seed, config=config, schema=schema, foreign_keys=tuple(foreign_keys))
