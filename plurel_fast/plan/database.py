"""The whole plan of one database: schema, one HSBM per foreign key, one SCM and
post-processing plan per table."""

from __future__ import annotations

import msgspec

from plurel_fast.config import Config
from plurel_fast.plan.hsbm import HsbmPlan, plan_hsbm
from plurel_fast.plan.rng import plan_rng, stream_key
from plurel_fast.plan.limits import check_memory
from plurel_fast.plan.post import TablePostPlan, plan_table_post
from plurel_fast.plan.schema import SchemaPlan, plan_schema
from plurel_fast.plan.scm import ScmPlan, plan_scm


class ForeignKeyPlan(msgspec.Struct, frozen=True):
    """How the rows of ``child`` pick their row of ``parent`` (DESIGN §3)."""

    child: str
    fkey_col: str
    parent: str
    hsbm: HsbmPlan


class DatabasePlan(msgspec.Struct, frozen=True):
    """Everything decided once per database; small, picklable, inspectable.

    ``scms`` holds every table's SCM plan (with its MLP weights: tens of MB for
    a large database) when planned eagerly, and is empty when the SCMs are left
    to :meth:`scm`, which plans one on demand: each is a pure function of
    (seed, table, config), so both ways give the same SCMs.
    """

    seed: int
    config: Config
    schema: SchemaPlan
    foreign_keys: tuple[ForeignKeyPlan, ...]
    scms: tuple[ScmPlan, ...]  # table id order, or () when planned on demand
    posts: tuple[TablePostPlan, ...]  # table id order

    def foreign_keys_of(self, child: str) -> tuple[ForeignKeyPlan, ...]:
        return tuple(fk for fk in self.foreign_keys if fk.child == child)

    def scm(self, table_id: int) -> ScmPlan:
        """The SCM plan of table ``table_id``: the stored one, else planned now."""
        if self.scms:
            return self.scms[table_id]
        return plan_scm(self.seed, self.schema.tables[table_id], self.config)


def plan_database(
    seed: int, config: Config, *, scms: bool = True, memory_check: bool = True
) -> DatabasePlan:
    """Plan database ``seed`` under ``config`` (stages 1 and 2 of DESIGN §1-3).

    With ``scms=False`` the per-table SCMs are not planned here but by
    :meth:`DatabasePlan.scm` when needed (``generate`` does this, so that only
    the SCMs of the tables in use are in memory). With ``memory_check`` a schema
    whose generation cannot fit in this machine's memory raises `ConfigError` here,
    before anything is drawn for it (`plurel_fast.plan.limits`).
    """
    schema = plan_schema(seed, config)
    if memory_check:
        check_memory(schema)
    foreign_keys = []
    for table in schema.tables:
        for k, (fkey_col, parent_name) in enumerate(zip(table.fkey_cols, table.parents)):
            parent = schema.table(parent_name)
            path = ("hsbm", table.id, parent.id)
            if parent_name in table.parents[:k]:  # a SQL table's second key to one parent
                path += (k,)
            hsbm = plan_hsbm(
                parent.num_rows,
                table.num_rows,
                config.scm_params,
                plan_rng(seed, *path),
                stream_key(seed, *path),
            )
            foreign_keys.append(ForeignKeyPlan(table.name, fkey_col, parent_name, hsbm))
    scm_plans = tuple(plan_scm(seed, table, config) for table in schema.tables) if scms else ()
    posts = tuple(
        plan_table_post(
            plan_rng(seed, "table", table.id, "post"),
            config.database_params,
            [c.name for c in table.features if c.stype == "numerical"],
            stream_key(seed, "table", table.id, "nulls"),
            no_nulls=[c.name for c in table.features if not c.nullable],
            keep_constant=[c.name for c in table.features if c.dtype == "bool"],
        )
        for table in schema.tables
    )
    return DatabasePlan(
        seed=seed,
        config=config,
        schema=schema,
        foreign_keys=tuple(foreign_keys),
        scms=scm_plans,
        posts=posts,
    )
