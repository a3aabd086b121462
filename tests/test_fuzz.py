"""Valid configs give well-formed databases (issue 17): float features finite or null."""

from __future__ import annotations

import numpy as np
import polars as pl

import plurel_fast
from plurel_fast.config import (
    Choices,
    Config,
    DAGParams,
    DatabaseParams,
    SCMParams,
)


def check_database(db, config: Config) -> None:
    """Float features finite or null; bools without nulls; keys in range; dates sorted."""
    params = config.database_params
    # windows are whole days, from the midnight of min_timestamp
    lo = np.datetime64(params.min_timestamp.date(), "ns")
    hi = np.datetime64(params.max_timestamp, "ns")
    for name, table in db.table_dict.items():
        df, n = table.df, len(table.df)
        keys = {table.pkey_col, table.time_col, *table.fkey_col_to_pkey_table}
        assert df["row_idx"].dtype == pl.Int64 and df["row_idx"].to_list() == list(range(n))
        for col, parent in table.fkey_col_to_pkey_table.items():
            fk = df[col]
            assert fk.dtype == pl.Int64 and fk.null_count() == 0, (name, col)
            assert n == 0 or (fk.min() >= 0 and fk.max() < len(db.table_dict[parent])), (name, col)
        if table.time_col is not None:
            dates = df[table.time_col].to_numpy()
            assert dates.dtype == np.dtype("datetime64[ns]")
            assert (np.diff(dates.astype(np.int64)) >= 0).all(), (name, "dates out of order")
            assert n == 0 or (lo <= dates.min() and dates.max() <= hi), (name, "dates outside")
        for col in df.columns:
            if col in keys:
                continue
            s = df[col]
            if s.dtype == pl.Float64:
                assert s.drop_nulls().is_finite().all(), (name, col, "non-finite values")
            elif s.dtype == pl.Boolean:
                assert s.null_count() == 0, (name, col)
            else:
                assert s.dtype == pl.String and s.null_count() == 0, (name, col, s.dtype)


# ---------------------------------------------------------------------------
# The overflow the fuzzing found: a dense SCM (every node a parent of every
# later one) with product aggregation multiplies up to 1e4 per parent; the
# float32 aggregate overflowed and the features came out -inf / NaN, and lazy
# categorical columns crashed quantization ("quantize needs NaN-free values").
# ---------------------------------------------------------------------------

DENSE_PRODUCT = Config(
    database_params=DatabaseParams(
        table_layout_choices=Choices("set", ["ErdosRenyi"]),
        num_tables_choices=Choices("range", [1, 2]),
        num_rows_entity_table_choices=Choices("range", [1, 1]),
        num_rows_activity_table_choices=Choices("range", [1, 1]),
        num_cols_choices=Choices("range", [1, 4]),
        column_nan_perc_choices=Choices("range", [0.0, 0.0]),
        col_transform_choices=Choices("set", ["identity"]),
    ),
    scm_params=SCMParams(
        scm_layout_choices=Choices("set", ["ErdosRenyi"]),
        scm_col_node_perc_choices=Choices("range", [1.0, 1.0]),
        col_stype_choices=Choices("set", ["numerical"]),
        initialization_choices=Choices("set", ["kaiming_normal"]),
        activation_choices=Choices("set", ["relu"]),
        entity_table_ts_trend_scale=-100.0,
        propagation_agg_choices=Choices("set", ["product"]),
        mlp_emb_dim=1,
        mlp_num_layers_choices=Choices("range", [1, 1]),
        mlp_weight_density_choices=Choices("range", [1.0, 1.0]),
        source_gen_type_choices=Choices("set", ["ts"]),
        propagation_mode_choices=Choices("set", ["type_eager"]),
    ),
    dag_params=DAGParams(er_p_choices=Choices("range", [1.0, 1.0])),
)


def test_finite_is_the_identity_on_finite_values():
    from plurel_fast.generate import finite

    big = FLOAT32_MAX_64
    x = np.array([0.0, -0.0, 1.5, -3e38, 5e-324, big, -big, 1e300])
    assert finite(x) is x
    y = finite(np.array([np.inf, -np.inf, np.nan, -0.0, 2.5]))
    assert y.tolist() == [big, -big, 0.0, -0.0, 2.5] and np.signbit(y[3])


def test_product_overflow_saturates_instead_of_inf():
    db = plurel_fast.generate(9206, DENSE_PRODUCT)
    check_database(db, DENSE_PRODUCT)
    values = np.concatenate([
        t.df.select(pl.col(pl.Float64)).to_numpy().ravel() for t in db.table_dict.values()
    ])
    # the overflowed column saturates at the float32 range; before it was -inf
    assert float(-FLOAT32_MAX_64) in values.tolist()


def test_product_overflow_in_lazy_categorical_columns_does_not_crash():
    lazy = DENSE_PRODUCT.replace(
        scm_params=DENSE_PRODUCT.scm_params.replace(
            col_stype_choices=Choices("set", ["categorical", "numerical"]),
            propagation_mode_choices=Choices("set", ["type_lazy"]),
        ),
        database_params=DENSE_PRODUCT.database_params.replace(
            num_rows_entity_table_choices=Choices("range", [20, 40]),
            num_rows_activity_table_choices=Choices("range", [20, 40]),
            num_cols_choices=Choices("range", [6, 8]),
        ),
    )
    for seed in range(6):
        check_database(plurel_fast.generate(seed, lazy), lazy)


FLOAT32_MAX_64 = float(np.finfo(np.float32).max)
